"""Max-pooling, Eq. (28)–(33), with its backward written out (``jax.custom_vjp``).

Tie rule: when several inputs of a window share the maximum (common after ReLU, where whole windows are
0), Eq. (33) is ambiguous. ``max_pool2d`` routes the window's gradient to the FIRST arg-max in row-major
window order (j, then i), exactly like ``jax.grad`` of ``lax.reduce_window(max)`` (XLA's select-and-scatter),
so the custom and autodiff paths agree bit for bit. Overlapping windows (stride < window) add their
contributions, as the paper's last sentence of §3.6.2 says.

Padding (the ResNet stem's 3x3 / stride 2 / padding 1 pool): the input is padded with -inf on every side, so a
padded position is never a window's maximum (each window holds at least one real input when padding < window)
and Eq. (33) routes no gradient to it; the backward scatters onto the padded grid and crops the padding off.
"""

import functools

import jax
from jax import lax
import jax.numpy as jnp

from cnnlab.ops._checks import check_floating, check_int_at_least, check_rank
from cnnlab.ops._dtypes import accumulation_dtype


def _check_max_pool2d(x, window, stride, padding):
    op = "max_pool2d"
    check_rank(op, "x", x, 4, "NHWC")
    check_floating(op, "x", x)
    check_int_at_least(op, "window", window, 1)
    check_int_at_least(op, "stride", stride, 1)
    check_int_at_least(op, "padding", padding, 0)
    if padding >= window:
        raise ValueError(f"max_pool2d: padding={padding} must be < window={window}, or some windows would "
                         "hold padding only")
    if window > x.shape[1] + 2 * padding or window > x.shape[2] + 2 * padding:
        raise ValueError(f"max_pool2d: window={window} is larger than the padded input's spatial size "
                         f"{(x.shape[1] + 2 * padding, x.shape[2] + 2 * padding)} (x.shape={x.shape}, "
                         f"padding={padding})")


def _max_pool2d_xla(x, window, stride, padding):
    # Eq. (28)–(31) on the -inf-padded input: H' = floor((H + 2p - k) / s) + 1.
    pads = ((0, 0), (padding, padding), (padding, padding), (0, 0))
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, window, window, 1), (1, stride, stride, 1), pads)


def max_pool2d_autodiff(x, *, window=2, stride=2, padding=0):
    """Max-pooling (Eq. (31)) via ``lax.reduce_window``, gradient derived by JAX. Same signature."""
    _check_max_pool2d(x, window, stride, padding)
    return _max_pool2d_xla(x, window, stride, padding)


def _taps(x, window, stride, oh, ow):
    """The window's k*k strided views of x, stacked: [k*k, N, oh, ow, C] in row-major (j, i) order."""
    return jnp.stack([x[:, j:j + stride * (oh - 1) + 1:stride, i:i + stride * (ow - 1) + 1:stride]
                      for j in range(window) for i in range(window)])


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool2d(x, window, stride, padding):
    return _max_pool2d_xla(x, window, stride, padding)


def _max_pool2d_fwd(x, window, stride, padding):
    return _max_pool2d_xla(x, window, stride, padding), x


def _max_pool2d_bwd(window, stride, padding, x, g):
    oh, ow = g.shape[1:3]
    # bfloat16: routed and summed in float32 (exact for the arg-max, and the select/pad chain ran 16x faster
    # than in bfloat16 on the CPU); dx is cast back.
    dtype = accumulation_dtype(x, g)
    x, g, x_dtype = x.astype(dtype), g.astype(dtype), x.dtype
    x_pad = x
    if padding:
        x_pad = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)), constant_values=-jnp.inf)
    # Eq. (33): the delta goes to the input that was the window's max; argmax picks the first of ties.
    first = jnp.argmax(_taps(x_pad, window, stride, oh, ow), axis=0)
    h, w = x_pad.shape[1:3]
    zero = jnp.zeros((), g.dtype)
    dx = jnp.zeros_like(x_pad)
    for t, (j, i) in enumerate((j, i) for j in range(window) for i in range(window)):
        # scatter tap t's share back to its input positions (interior padding s-1 undoes the stride)
        share = jnp.where(first == t, g, zero)
        dx = dx + lax.pad(share, zero, [(0, 0, 0), (j, h - j - stride * (oh - 1) - 1, stride - 1),
                                        (i, w - i - stride * (ow - 1) - 1, stride - 1), (0, 0, 0)])
    return (dx[:, padding:padding + x.shape[1], padding:padding + x.shape[2]].astype(x_dtype),)


_max_pool2d.defvjp(_max_pool2d_fwd, _max_pool2d_bwd)


def max_pool2d(x, *, window=2, stride=2, padding=0):
    """Max-pooling over k x k windows with stride s, Eq. (28)–(33). x: [N, H, W, C] -> [N, H', W', C],
    H' = floor((H + 2p - k) / s) + 1 with ``padding`` p rows/columns of -inf on every side (p < k).
    Gradient ties go to the first arg-max (see module docstring)."""
    _check_max_pool2d(x, window, stride, padding)
    return _max_pool2d(x, window, stride, padding)
