"""conv1d / conv2d / max_pool2d: custom VJPs against jax.grad of the lax twins, causality, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnlab import ops


def _rand(key, *shapes, dtype=jnp.float32):
    keys = jax.random.split(jax.random.PRNGKey(key), len(shapes))
    return [jax.random.normal(k, s, dtype) for k, s in zip(keys, shapes)]


def _vjp_pair(f, f_ref, args, g):
    y, vjp = jax.vjp(f, *args)
    y_ref, vjp_ref = jax.vjp(f_ref, *args)
    return (y, *vjp(g)), (y_ref, *vjp_ref(g))


def _assert_close(got, want, tol):
    for a, b in zip(got, want):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=tol, atol=tol)


# ---------------------------------------------------------------- conv1d

CONV1D_GRID = [  # (N, T, C_in, C_out, k, dilation)
    (2, 9, 3, 4, 3, 1), (3, 11, 2, 5, 2, 3), (1, 5, 2, 2, 4, 2), (2, 7, 3, 2, 1, 2), (2, 4, 1, 1, 3, 3),
]


@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-5), (jnp.float64, 1e-12)])
@pytest.mark.parametrize("n,t,ci,co,k,d", CONV1D_GRID)
def test_conv1d_grad_matches_autodiff(n, t, ci, co, k, d, dtype, tol):
    with jax.enable_x64(dtype == jnp.float64):
        x, w, g = _rand(k + d, (n, t, ci), (k, ci, co), (n, t, co), dtype=dtype)
        got, want = _vjp_pair(lambda x, w: ops.conv1d(x, w, dilation=d),
                              lambda x, w: ops.conv1d_autodiff(x, w, dilation=d), (x, w), g)
        _assert_close(got, want, tol)


def test_conv1d_matches_explicit_sum_eq63():
    n, t, ci, co, k, d = 2, 10, 3, 2, 3, 2
    x, w = _rand(0, (n, t, ci), (k, ci, co))
    x_pad = np.pad(np.asarray(x), ((0, 0), (d * (k - 1), 0), (0, 0)))
    want = sum(x_pad[:, i * d:i * d + t] @ np.asarray(w[i]) for i in range(k))
    np.testing.assert_allclose(ops.conv1d(x, w, dilation=d), want, rtol=1e-5, atol=1e-5)


def test_conv1d_is_causal_future_input_changes_no_earlier_output():
    x, w = _rand(1, (2, 16, 3), (4, 3, 5))
    t0 = 9
    x_future = x.at[:, t0].add(10.0)
    for d in (1, 2, 4):
        y, y_future = ops.conv1d(x, w, dilation=d), ops.conv1d(x_future, w, dilation=d)
        np.testing.assert_array_equal(y[:, :t0], y_future[:, :t0])
        assert not np.allclose(y[:, t0], y_future[:, t0])
        # the gradient of an early output must not reach later inputs either
        dx = jax.grad(lambda x: ops.conv1d(x, w, dilation=d)[:, :t0].sum())(x)
        assert np.all(dx[:, t0:] == 0)


def test_conv1d_works_under_jit_and_vmap():
    x, w, g = _rand(2, (3, 2, 8, 3), (3, 3, 4), (3, 2, 8, 4))
    f = jax.jit(jax.vmap(lambda x, g: jax.vjp(lambda x, w: ops.conv1d(x, w, dilation=2), x, w)[1](g)))
    f_ref = jax.vmap(lambda x, g: jax.vjp(lambda x, w: ops.conv1d_autodiff(x, w, dilation=2), x, w)[1](g))
    _assert_close(f(x, g), f_ref(x, g), 1e-5)


@pytest.mark.parametrize("shape_x,shape_w,kwargs,error,match", [
    ((2, 8), (3, 2, 4), {}, ValueError, r"conv1d: x must have rank 3"),
    ((2, 8, 3), (3, 4), {}, ValueError, r"conv1d: w must have rank 3"),
    ((2, 8, 3), (3, 2, 4), {}, ValueError, r"conv1d: channel mismatch.*C_in=3.*C_in=2"),
    ((2, 8, 3), (3, 3, 4), {"dilation": 0}, ValueError, r"conv1d: dilation must be >= 1"),
    ((2, 8, 3), (3, 3, 4), {"dilation": 1.0}, TypeError, r"conv1d: dilation must be a Python int"),
])
def test_conv1d_rejects_bad_input(shape_x, shape_w, kwargs, error, match):
    with pytest.raises(error, match=match):
        ops.conv1d(jnp.zeros(shape_x), jnp.zeros(shape_w), **kwargs)
