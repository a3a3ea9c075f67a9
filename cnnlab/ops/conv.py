"""Convolutions with the paper's backward passes: ``conv1d`` (§6.2) and ``conv2d`` (§3.4).

Layout follows Flax: ``x: [N, T, C_in]`` / ``[N, H, W, C_in]``, kernels ``[k, C_in, C_out]`` /
``[kh, kw, C_in, C_out]``. Each op is a ``jax.custom_vjp`` whose backward is written out (Eq. (24)–(25)
and their 1-D form); ``*_autodiff`` is the same forward with the gradient JAX derives.
"""

import functools

import jax
from jax import lax
import jax.numpy as jnp

from cnnlab.ops._checks import check_floating, check_int_at_least, check_rank

_NWC = ("NWC", "WIO", "NWC")


def _check_conv1d(x, w, dilation):
    op = "conv1d"
    check_rank(op, "x", x, 3, "NTC")
    check_rank(op, "w", w, 3, "k, C_in, C_out")
    check_floating(op, "x", x)
    check_floating(op, "w", w)
    check_int_at_least(op, "dilation", dilation, 1)
    if x.shape[2] != w.shape[1]:
        raise ValueError(f"conv1d: channel mismatch, x has C_in={x.shape[2]} (x.shape={x.shape}) but "
                         f"w expects C_in={w.shape[1]} (w.shape={w.shape})")
    if w.shape[0] < 1:
        raise ValueError(f"conv1d: kernel size must be >= 1, got w.shape={w.shape}")


def _conv1d_fwd_xla(x, w, dilation):
    # Eq. (63) with s = 1 and Eq. (64) with p_left = d(k-1), p_right = 0: T' = T and output t only reads
    # inputs t - d(k-1) ... t, so no output sees the future (§6.2.1, "smart zero-padding").
    pad = dilation * (w.shape[0] - 1)
    return lax.conv_general_dilated(x, w, window_strides=(1,), padding=[(pad, 0)],
                                    rhs_dilation=(dilation,), dimension_numbers=_NWC)


def conv1d_autodiff(x, w, *, dilation=1):
    """Causal dilated convolution (Eq. (63)–(64)), gradient derived by JAX. Same signature as ``conv1d``."""
    _check_conv1d(x, w, dilation)
    return _conv1d_fwd_xla(x, w, dilation)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv1d(x, w, dilation):
    return _conv1d_fwd_xla(x, w, dilation)


def _conv1d_fwd(x, w, dilation):
    return _conv1d_fwd_xla(x, w, dilation), (x, w)


def _conv1d_bwd(dilation, res, g):
    x, w = res
    k = w.shape[0]
    pad = dilation * (k - 1)
    # dx[t] = sum_i g[t + d(k-1) - d i] w[i]^T: the anti-causal twin of the forward, i.e. the same dilated
    # convolution of g with the time-reversed, channel-swapped kernel and right-only padding d(k-1).
    w_rot = jnp.flip(w, 0).swapaxes(1, 2)
    dx = lax.conv_general_dilated(g, w_rot, window_strides=(1,), padding=[(0, pad)],
                                  rhs_dilation=(dilation,), dimension_numbers=_NWC)
    # dW[i] = sum_{n,t} x_pad[n, t + d i]^T g[n, t]: correlate the left-padded input with g, stepping the
    # output index by d. The batch axis N is the contraction ("feature") axis, C_in plays the batch axis.
    x_pad = jnp.pad(x, ((0, 0), (pad, 0), (0, 0)))
    dw = lax.conv_general_dilated(x_pad, g, window_strides=(dilation,), padding=[(0, 0)],
                                  dimension_numbers=("CWN", "IWO", "WNC"))
    return dx.astype(x.dtype), dw.astype(w.dtype)


_conv1d.defvjp(_conv1d_fwd, _conv1d_bwd)


def conv1d(x, w, *, dilation=1):
    """Causal dilated 1-D convolution of the TCN, Eq. (63)–(64) with s = 1, p_left = d(k-1), p_right = 0.

    x: [N, T, C_in], w: [k, C_in, C_out] -> [N, T, C_out]; output t depends on x[t - d(k-1) .. t] only.
    The backward pass is written out: dx is the time-reversed (anti-causal) convolution of the output
    gradient, dW the correlation of the padded input with it.
    """
    _check_conv1d(x, w, dilation)
    return _conv1d(x, w, dilation)
