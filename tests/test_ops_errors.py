"""Bad input to the ops raises at call time with the op, the argument and the shapes in the message."""

import jax.numpy as jnp
import pytest

from cnnlab import ops

f32 = jnp.zeros


@pytest.mark.parametrize("call,error,message", [
    (lambda: ops.dense(f32((2, 3)), f32((4, 5)), f32(5)), ValueError,
     r"dense: expected x \[N, D_in\].*x \(2, 3\), w \(4, 5\)"),
    (lambda: ops.dense(f32((2, 3)), f32((3, 5)), f32(4)), ValueError, r"dense: .*b \(4,\)"),
    (lambda: ops.dense(f32(3), f32((3, 5)), f32(5)), ValueError, r"dense: x must have rank 2"),
    (lambda: ops.dense(f32((2, 3), jnp.int32), f32((3, 5)), f32(5)), TypeError, r"dense: x must be a floating"),
    (lambda: ops.relu(jnp.arange(3)), TypeError, r"relu: x must be a floating"),
    (lambda: ops.sigmoid(jnp.arange(3)), TypeError, r"sigmoid: x must be a floating"),
    (lambda: ops.tanh(jnp.arange(3)), TypeError, r"tanh: x must be a floating"),
    (lambda: ops.batch_norm(f32((2, 3, 4, 5, 6)), f32(6), f32(6)), ValueError,
     r"batch_norm: x must have rank 4 \(NHWC\), 3 \(N, T, C\) or 2 \(N, C\), got shape \(2, 3, 4, 5, 6\)"),
    (lambda: ops.batch_norm(f32((2, 3, 4)), f32(4), f32(4), f32((2, 3))), ValueError,
     r"batch_norm: mask must have shape x's shape with a last axis of 1 = \(2, 3, 1\), got shape \(2, 3\)"),
    (lambda: ops.batch_norm(f32((2, 3, 3, 4)), f32(3), f32(4)), ValueError,
     r"batch_norm: gamma must have shape \[C\] = \(4,\), got shape \(3,\)"),
    (lambda: ops.batch_norm(f32((2, 4)), f32(4), jnp.zeros(4, jnp.int32)), TypeError,
     r"batch_norm: beta must be a floating"),
    (lambda: ops.batch_norm_inference(f32((2, 4)), f32(4), f32(4), f32(4), f32(2)), ValueError,
     r"batch_norm_inference: var must have shape \[C\] = \(4,\), got shape \(2,\)"),
    (lambda: ops.ewma_update(f32(3), f32(3), momentum=1.5), ValueError, r"ewma_update: momentum must be in \[0, 1\]"),
    (lambda: ops.softmax(f32((2, 3)), axis=2), ValueError, r"softmax: axis 2 is out of range for x of shape \(2, 3\)"),
    (lambda: ops.softmax(jnp.arange(3)), TypeError, r"softmax: x must be a floating"),
    (lambda: ops.cross_entropy(f32((4, 10)), jnp.zeros(5, jnp.int32)), ValueError,
     r"cross_entropy: labels must have shape logits.shape\[:-1\] = \(4,\), got \(5,\)"),
    (lambda: ops.cross_entropy(f32((4, 10)), f32(4)), TypeError, r"cross_entropy: labels must be an integer array"),
    (lambda: ops.cross_entropy(f32(()), jnp.zeros((), jnp.int32)), ValueError,
     r"cross_entropy: logits must have rank >= 1"),
])
def test_bad_input_raises_naming_op_argument_and_shape(call, error, message):
    with pytest.raises(error, match=message):
        call()
