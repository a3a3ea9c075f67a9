import jax.numpy as jnp
import pytest

from cnnlab.ops._checks import check_floating, check_int_at_least, check_rank


def test_check_rank_names_op_argument_and_shape():
    with pytest.raises(ValueError, match=r"conv2d: x must have rank 4 \(NHWC\), got shape \(2, 3\)"):
        check_rank("conv2d", "x", jnp.zeros((2, 3)), 4, "NHWC")


def test_check_floating_rejects_integers():
    with pytest.raises(TypeError, match="dense: x must be a floating-point array, got dtype int32"):
        check_floating("dense", "x", jnp.zeros(3, jnp.int32))
    check_floating("dense", "x", jnp.zeros(3, jnp.bfloat16))


@pytest.mark.parametrize("value,error", [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError)])
def test_check_int_at_least_rejects_bad_strides(value, error):
    with pytest.raises(error, match="conv2d: stride"):
        check_int_at_least("conv2d", "stride", value, 1)
