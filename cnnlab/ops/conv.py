"""Convolutions with the paper's backward passes: ``conv1d`` (§6.2) and ``conv2d`` (§3.4).

Layout follows Flax: ``x: [N, T, C_in]`` / ``[N, H, W, C_in]``, kernels ``[k, C_in, C_out]`` /
``[kh, kw, C_in, C_out]``. Each op is a ``jax.custom_vjp`` whose backward is written out (Eq. (24)–(25)
and their 1-D form); ``*_autodiff`` is the same forward with the gradient JAX derives.
bfloat16 inputs give bfloat16 outputs and gradients; every matmul and convolution, forward and backward
(the sums of Eq. (22), (24) and (25)), accumulates in float32 (``cnnlab.ops._dtypes``).
"""

import functools
import math

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from cnnlab.ops._checks import check_floating, check_int_at_least, check_rank
from cnnlab.ops._cpu import has_avx512, l2_bytes, vendor
from cnnlab.ops._dtypes import accumulation_dtype, matmul, transposed

_NWC = ("NWC", "WIO", "NWC")


_IMPLS = ("auto", "patches", "xla")


def _check_impl(op, impl):
    if impl not in _IMPLS:
        raise ValueError(f"{op}: impl must be one of {_IMPLS}, got {impl!r}")


def _check_conv1d(x, w, dilation, impl):
    op = "conv1d"
    check_rank(op, "x", x, 3, "NTC")
    check_rank(op, "w", w, 3, "k, C_in, C_out")
    check_floating(op, "x", x)
    check_floating(op, "w", w)
    check_int_at_least(op, "dilation", dilation, 1)
    _check_impl(op, impl)
    if x.shape[2] != w.shape[1]:
        raise ValueError(f"conv1d: channel mismatch, x has C_in={x.shape[2]} (x.shape={x.shape}) but "
                         f"w expects C_in={w.shape[1]} (w.shape={w.shape})")
    if w.shape[0] < 1:
        raise ValueError(f"conv1d: kernel size must be >= 1, got w.shape={w.shape}")


def _conv1d_fwd_xla(x, w, dilation):
    # Eq. (63) with s = 1 and Eq. (64) with p_left = d(k-1), p_right = 0: T' = T and output t only reads
    # inputs t - d(k-1) ... t, so no output sees the future (§6.2.1, "smart zero-padding").
    pad = dilation * (w.shape[0] - 1)
    return lax.conv_general_dilated(x, w, window_strides=(1,), padding=[(pad, 0)], rhs_dilation=(dilation,),
                                    dimension_numbers=_NWC, preferred_element_type=accumulation_dtype(x, w))


def _conv1d_bwd_xla(dilation, x, w, g):
    pad = dilation * (w.shape[0] - 1)
    # dx[t] = sum_i g[t + d(k-1) - d i] w[i]^T: the anti-causal twin of the forward, i.e. the same dilated
    # convolution of g with the time-reversed, channel-swapped kernel and right-only padding d(k-1).
    w_rot = jnp.flip(w, 0).swapaxes(1, 2)
    dx = lax.conv_general_dilated(g, w_rot, window_strides=(1,), padding=[(0, pad)], rhs_dilation=(dilation,),
                                  dimension_numbers=_NWC, preferred_element_type=accumulation_dtype(g, w))
    # dW[i] = sum_{n,t} x_pad[n, t + d i]^T g[n, t]: correlate the left-padded input with g, stepping the
    # output index by d. The batch axis N is the contraction ("feature") axis, C_in plays the batch axis.
    dw = lax.conv_general_dilated(x, g, window_strides=(dilation,), padding=[(pad, 0)],
                                  dimension_numbers=("CWN", "IWO", "WNC"),
                                  preferred_element_type=accumulation_dtype(x, g))
    return dx, dw


def _taps(x, k, dilation):
    """The 1-D patch matrix [N, T, k * C]: row t holds x_pad[t], x_pad[t + d], ..., x_pad[t + d(k-1)] of the
    left-padded input, i.e. the k inputs that output t reads (Eq. (63))."""
    t, pad = x.shape[1], dilation * (k - 1)
    x_pad = jnp.pad(x, ((0, 0), (pad, 0), (0, 0)))
    return jnp.concatenate([x_pad[:, i * dilation:i * dilation + t] for i in range(k)], axis=-1)


def _conv1d_fwd_patches(x, w, dilation):
    k, c_in, c_out = w.shape
    return matmul(_taps(x, k, dilation), w.reshape(k * c_in, c_out))


def _conv1d_bwd_patches(dilation, x, w, g):
    k, c_in, c_out = w.shape
    t = x.shape[1]
    # dW = P^T g and dP = g W^T, one matmul each; dP's k column blocks are shifted back onto the input
    # (tap i of output t read input t - d(k-1-i)): the 1-D row2im.
    dw = jnp.einsum("ntp,nto->po", _taps(x, k, dilation), g,
                    preferred_element_type=accumulation_dtype(x, g)).reshape(k, c_in, c_out)
    d_taps = matmul(g, transposed(w.reshape(k * c_in, c_out))).reshape(*g.shape[:2], k, c_in)
    dx = 0
    for i in range(k):
        shift = dilation * (k - 1 - i)
        dx = dx + jnp.pad(d_taps[:, :, i], ((0, 0), (0, shift), (0, 0)))[:, shift:shift + t]
    return dx, dw


def _resolve_conv1d(impl):
    # Decided at trace time. cuDNN's dilated 1-D convolution with the TCN's 32 channels ran at ~1 TFLOP/s on
    # an H100 (docs/performance.md); the patch matmuls are memory-bound and far faster there.
    if impl == "auto":
        return "xla" if jax.default_backend() == "cpu" else "patches"
    return impl


def conv1d_autodiff(x, w, *, dilation=1, impl="auto"):
    """Causal dilated convolution (Eq. (63)–(64)), gradient derived by JAX. Same signature as ``conv1d``.

    ``impl`` picks the forward that JAX differentiates, as in ``conv1d``, so custom and autodiff differ only in
    the backward. (``conv2d_autodiff`` always differentiates ``lax.conv``, the benchmarks' reference; for the
    TCN on a GPU that would mean cuDNN's dilated convolution, 7x slower than the tap matmuls.)
    """
    _check_conv1d(x, w, dilation, impl)
    fwd = _conv1d_fwd_patches if _resolve_conv1d(impl) == "patches" else _conv1d_fwd_xla
    return fwd(x, w, dilation).astype(x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv1d(x, w, dilation, impl):
    fwd = _conv1d_fwd_patches if impl == "patches" else _conv1d_fwd_xla
    return fwd(x, w, dilation).astype(x.dtype)


def _conv1d_fwd(x, w, dilation, impl):
    return _conv1d(x, w, dilation, impl), (x, w)


def _conv1d_bwd(dilation, impl, res, g):
    x, w = res
    bwd = _conv1d_bwd_patches if impl == "patches" else _conv1d_bwd_xla
    dx, dw = bwd(dilation, x, w, g)
    return dx.astype(x.dtype), dw.astype(w.dtype)


_conv1d.defvjp(_conv1d_fwd, _conv1d_bwd)


def conv1d(x, w, *, dilation=1, impl="auto"):
    """Causal dilated 1-D convolution of the TCN, Eq. (63)–(64) with s = 1, p_left = d(k-1), p_right = 0.

    x: [N, T, C_in], w: [k, C_in, C_out] -> [N, T, C_out]; output t depends on x[t - d(k-1) .. t] only.
    The backward pass is written out: dx is the time-reversed (anti-causal) convolution of the output
    gradient, dW the correlation of the padded input with it. ``impl``: "xla" = ``lax.conv_general_dilated``,
    "patches" = one matmul with the [N, T, k C_in] patch matrix (and its transpose for the backward),
    "auto" = xla on the CPU, patches elsewhere. All give the same values.
    """
    _check_conv1d(x, w, dilation, impl)
    return _conv1d(x, w, dilation, _resolve_conv1d(impl))


# ---------------------------------------------------------------------------------------------- conv2d

_NHWC = ("NHWC", "HWIO", "NHWC")
# Patch-matrix entries per im2row block on the CPU: the patch matrix of a few examples stays in the caches
# while it is multiplied; the whole batch's one (66 MB for 64->64 at 24x24, batch 50) does not. 2048 rows of a
# 3x3x64 patch matrix (4.7 MB in float32) per MiB of the core's L2 cache, and never fewer: on a Zen 5 (1 MiB
# L2) 2 or 4 times as many made the Table 1 step 4 % and 14 % slower; on an Intel Xeon with 2 MiB of L2
# twice as many made it 5-7 % faster in float32 and 11-12 % in bfloat16 (docs/performance.md). (A Zen 3's
# 512 KiB L2 keeps 1 MiB's blocks: smaller ones were not measured there.) A 1-channel input layer takes the
# whole batch in one block.
_BLOCK_ENTRIES = 2048 * 576 * max(1, (l2_bytes() or 0) // 2 ** 20)


def _chunk(n, rows, row_size):
    """Examples per block: at most ``_BLOCK_ENTRIES`` patch-matrix entries (``rows`` rows of ``row_size``
    per example; at least one example). A divisor of the batch if one is at least half that cap, since
    zero-padding the batch to whole blocks costs a copy of x and delta (3-9 % slower here); else the
    blocks are evened out (50 at 6x6: 2 blocks of 25, not 28 + 28)."""
    cap = max(1, _BLOCK_ENTRIES // (rows * row_size))
    if cap >= n:
        return n
    divisor = max(d for d in range(1, cap + 1) if n % d == 0)
    if 2 * divisor >= cap:
        return divisor
    blocks = -(-n // cap)
    return -(-n // blocks)


def _check_conv2d(x, w, stride, padding, impl):
    op = "conv2d"
    check_rank(op, "x", x, 4, "NHWC")
    check_rank(op, "w", w, 4, "kh, kw, C_in, C_out")
    check_floating(op, "x", x)
    check_floating(op, "w", w)
    check_int_at_least(op, "stride", stride, 1)
    check_int_at_least(op, "padding", padding, 0)
    _check_impl(op, impl)
    if x.shape[3] != w.shape[2]:
        raise ValueError(f"conv2d: channel mismatch, x has C_in={x.shape[3]} (x.shape={x.shape}) but "
                         f"w expects C_in={w.shape[2]} (w.shape={w.shape})")
    h, wd = x.shape[1] + 2 * padding, x.shape[2] + 2 * padding
    if w.shape[0] > h or w.shape[1] > wd or min(w.shape[:2]) < 1:
        raise ValueError(f"conv2d: kernel {w.shape[:2]} (w.shape={w.shape}) does not fit the padded input "
                         f"{(h, wd)} (x.shape={x.shape}, padding={padding})")


def _out_size(size, k, stride, padding):
    """Eq. (20)–(21), rounded down: the last (size - k + 2p) mod s rows are never read."""
    return (size + 2 * padding - k) // stride + 1


def _conv2d_xla(x, w, stride, padding):
    return lax.conv_general_dilated(x, w, (stride, stride), [(padding, padding)] * 2, dimension_numbers=_NHWC,
                                    preferred_element_type=accumulation_dtype(x, w))


def _conv2d_bwd_xla(stride, padding, x, w, g):
    """Eq. (24)–(25) as XLA convolutions (the GPU/TPU path)."""
    kh, kw = w.shape[:2]
    rh = (x.shape[1] + 2 * padding - kh) % stride  # rows the forward never read get zero gradient
    rw = (x.shape[2] + 2 * padding - kw) % stride
    # Eq. (24): dx = full correlation of the stride-dilated delta with the 180°-rotated, channel-swapped
    # kernel; (k-1-p) undoes the forward padding (negative when p > k-1, which XLA accepts).
    w_rot = jnp.flip(w, (0, 1)).swapaxes(2, 3)
    dx = lax.conv_general_dilated(g, w_rot, (1, 1),
                                  [(kh - 1 - padding, kh - 1 - padding + rh),
                                   (kw - 1 - padding, kw - 1 - padding + rw)],
                                  lhs_dilation=(stride, stride), dimension_numbers=_NHWC,
                                  preferred_element_type=accumulation_dtype(g, w))
    # Eq. (25): dW[j, i] = sum_{r,h',w'} x_pad[r, s h' + j, s w' + i] delta[r, h', w']: correlate the input
    # with the stride-dilated delta; the batch axis is contracted, C_in plays the batch axis.
    dw = lax.conv_general_dilated(x, g, (1, 1), [(padding, padding - rh), (padding, padding - rw)],
                                  rhs_dilation=(stride, stride),
                                  dimension_numbers=("CHWN", "IHWO", "HWNC"),
                                  preferred_element_type=accumulation_dtype(x, g))
    return dx, dw


def _patch_index(h, w, kh, kw, stride, padding):
    """Where each patch-matrix entry comes from (§3.4.1, im2row), computed once at trace time: int32
    [oh * ow * kh * kw] indices into the flattened input ``x.reshape(H * W, C)``, taps ordered (j, i) like
    the rows of ``w.reshape(kh * kw * C_in, C_out)``; taps that fall in the zero padding point to row H * W,
    a zero row appended by ``_im2row``."""
    oh, ow = _out_size(h, kh, stride, padding), _out_size(w, kw, stride, padding)
    rows = (stride * np.arange(oh)[:, None] + np.arange(kh) - padding)[:, None, :, None]  # [oh, 1, kh, 1]
    cols = (stride * np.arange(ow)[:, None] + np.arange(kw) - padding)[None, :, None, :]  # [1, ow, 1, kw]
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    return np.where(inside, rows * w + cols, h * w).astype(np.int32).reshape(-1)


def _im2row(x, index, taps):
    """Patch matrix (§3.4.1, im2row) as one gather: x [B, H, W, C] -> [B * oh * ow, taps * C], ``index``
    from ``_patch_index``, ``taps`` = kh * kw.

    A gather of whole C-channel rows ran 1.3x faster here than nine strided slices and a concatenation
    (which XLA's CPU backend copies twice)."""
    b, h, w, c = x.shape
    flat = x.reshape(b, h * w, c)
    if index.max() == h * w:  # some taps read the zero padding
        flat = jnp.concatenate([flat, jnp.zeros((b, 1, c), x.dtype)], axis=1)
    return jnp.take(flat, index, axis=1, mode="clip").reshape(-1, taps * c)


def _row2im(d_patches, kh, kw, stride, hp, wp):
    """Adjoint of ``_im2row`` (§3.4.1, row2im): [B, oh, ow, kh*kw*C] -> [B, hp, wp, C], each tap's gradient
    placed back at its input position (interior padding s-1 undoes the stride) and summed, Eq. (24)."""
    b, oh, ow, kc = d_patches.shape
    c = kc // (kh * kw)
    d = d_patches.reshape(b, oh, ow, kh * kw, c)
    zero = jnp.zeros((), d.dtype)
    out = 0
    for t, (j, i) in enumerate((j, i) for j in range(kh) for i in range(kw)):
        high_h = hp - j - stride * (oh - 1) - 1
        high_w = wp - i - stride * (ow - 1) - 1
        out = out + lax.pad(d[:, :, :, t], zero,
                            [(0, 0, 0), (j, high_h, stride - 1), (i, high_w, stride - 1), (0, 0, 0)])
    return out


def _blocks(a, chunk):
    """[N, ...] -> [ceil(N / chunk), chunk, ...], zero-padding the batch: zero examples add nothing to dW,
    and their outputs and dx rows are cut off again. One loop body keeps the compile small."""
    n = a.shape[0]
    a = jnp.pad(a, [(0, -n % chunk)] + [(0, 0)] * (a.ndim - 1))
    return a.reshape(-1, chunk, *a.shape[1:])


def _unblock(a, n):
    return a.reshape(-1, *a.shape[2:])[:n]


def _pointwise(x, w, stride):
    """A 1x1 kernel without padding: its patch matrix is the strided input itself, no copy to gather."""
    oh, ow = _out_size(x.shape[1], 1, stride, 0), _out_size(x.shape[2], 1, stride, 0)
    return x[:, :stride * (oh - 1) + 1:stride, :stride * (ow - 1) + 1:stride], w.reshape(w.shape[2:])


def _conv2d_patches(x, w, stride, padding):
    kh, kw, c_in, c_out = w.shape
    n, h, wd, _ = x.shape
    if kh == kw == 1 and padding == 0:  # Eq. (22) is one matmul over the channels
        xs, w_mat = _pointwise(x, w, stride)
        return matmul(xs, w_mat)
    index = _patch_index(h, wd, kh, kw, stride, padding)
    w_mat = w.reshape(kh * kw * c_in, c_out)

    def block(xb):  # Eq. (22) as one matmul per block
        return matmul(_im2row(xb, index, kh * kw), w_mat).reshape(xb.shape[0], -1, c_out)

    oh, ow = _out_size(h, kh, stride, padding), _out_size(wd, kw, stride, padding)
    chunk = _chunk(n, oh * ow, kh * kw * c_in)
    y = block(x) if chunk == n else _unblock(lax.map(block, _blocks(x, chunk)), n)
    return y.reshape(n, oh, ow, c_out)


def _dw(delta, patches):
    """Eq. (25) as dW = P^T delta for delta [M, C_out] and patches P [M, kh kw C_in] -> [kh kw C_in, C_out].

    The narrower operand is transposed in memory (``transposed``): delta^T P, then that small product
    transposed, when delta is the narrower (the Table 1 step 5-9 % faster in float32 with two threads than
    with the transpose folded into the dot, docs/performance.md)."""
    if delta.shape[1] <= patches.shape[1]:
        return transposed(matmul(transposed(delta), patches))
    return matmul(transposed(patches), delta)


def _conv2d_bwd_patches(stride, padding, x, w, g):
    """Eq. (24)–(25) with patch matrices, block by block: dx = row2im(delta W^T), dW = sum im2row(x)^T delta."""
    kh, kw, c_in, c_out = w.shape
    n, h, wd, _ = x.shape
    oh, ow = g.shape[1:3]
    if kh == kw == 1 and padding == 0:  # Eq. (24): dx = delta W^T on the read positions; Eq. (25): x^T delta
        xs, w_mat = _pointwise(x, w, stride)
        zero = jnp.zeros((), accumulation_dtype(g, w))
        dx = lax.pad(matmul(g, transposed(w_mat)), zero,
                     [(0, 0, 0), (0, h - stride * (oh - 1) - 1, stride - 1),
                      (0, wd - stride * (ow - 1) - 1, stride - 1), (0, 0, 0)])
        return dx, _dw(g.reshape(-1, c_out), xs.reshape(-1, c_in)).reshape(w.shape)
    hp, wp = h + 2 * padding, wd + 2 * padding
    index = _patch_index(h, wd, kh, kw, stride, padding)
    w_mat = w.reshape(kh * kw * c_in, c_out)

    def block(xb, gb):
        dxb = _row2im(matmul(gb, transposed(w_mat)), kh, kw, stride, hp, wp)
        dxb = dxb[:, padding:padding + h, padding:padding + wd]
        return dxb, _dw(gb.reshape(-1, c_out), _im2row(xb, index, kh * kw))

    def step(dw, xg):
        dxb, dwb = block(*xg)
        return dw + dwb, dxb

    chunk = _chunk(n, oh * ow, kh * kw * c_in)
    if chunk == n:
        dx, dw = block(x, g)
        return dx, dw.reshape(w.shape)
    dw = jnp.zeros(w_mat.shape, accumulation_dtype(x, g))  # Eq. (25)'s sum over the blocks
    dw, dx = lax.scan(step, dw, (_blocks(x, chunk), _blocks(g, chunk)))
    return _unblock(dx, n), dw.reshape(w.shape)


# impl="auto" on the CPU, per layer and pass, by the entries of one example's patch matrix (oh ow kh kw C_in),
# with limits measured on one 2-core CPU of each kind (docs/performance.md):
# - Without AVX-512 (AMD EPYC Zen 3, AVX2, 2026-12-02) XLA's CPU convolution backward loses to the patch
#   matmuls everywhere (JAX's autodiff of lax.conv made the Table 1 step 5.7x slower than the patch backward).
#   Patches for every pass made the ResNet-18 step (batch 8, 224²) 1.44x and the FaceNet v2.4 step (batch 8,
#   256²) 1.47x faster than the AMD AVX-512 rule, but v2.4 ``detect`` at 512² 1.85x slower: its 4.7M-19M-entry
#   maps keep XLA's forward. This rule: ResNet-18 1.55x, FaceNet step 1.28x, detect within 10 % of before.
# - With AVX-512, AMD (EPYC Zen 5, 2026-12-01/02): 1x1 kernels are one matmul on the patch path (2.7x faster
#   than XLA's convolution forward at 128x128x128 -> 32). For 3x3 kernels the patch forward took 0.57-0.91x
#   XLA's time on the Table 1 layers (C_in <= 64, <= 332K entries): the whole Table 1 step ran 1.11x (batch 50)
#   and 1.19x (batch 128) faster with it on both cores. It took 1.3-1.8x XLA's time on ResNet's 14x14x256 and
#   larger maps and FaceNet's, and although it was faster alone on ResNet's 7x7x512 layers, the ResNet-18 step
#   was not (PyTorch / cnnlab 0.78-0.81 with it, 0.84 without): wider layers keep XLA's forward. The patch
#   backward won up to larger maps (Table 1: 0.3-0.7x XLA's time; ResNet's 14x14 and 7x7 stages ~0.9x) and
#   lost on ResNet-18's 28x28x128 and 56x56x64 layers (1.4-2x).
# - With AVX-512, Intel (Xeon family 6 model 167, AMX, 2026-12-02): the AMD forward limits; the patch backward
#   up to 2M entries made the ResNet-18 step 1.18x faster than the AMD backward limit (all its layers have
#   <= 1.8M) and left the FaceNet v2.4 step within 2 % (its 2.4M-entry conv2 layers and wider heads keep XLA's
#   backward: patches for them made the step 7 % slower).
# rule -> (patch forward: max entries, max input channels; patch backward: max entries)
_PATCH_LIMITS = {"no-avx512": (2560 * 1024, math.inf, math.inf),
                 "avx512-amd": (384 * 1024, 64, 512 * 1024),
                 "avx512-intel": (384 * 1024, 64, 2048 * 1024)}


def _cpu_rule() -> str:
    """Which of ``_PATCH_LIMITS`` this CPU takes (an AVX-512 CPU of another vendor: the AMD one)."""
    if not has_avx512():
        return "no-avx512"
    return "avx512-intel" if vendor() == "GenuineIntel" else "avx512-amd"


def _resolve(impl, x_shape, w_shape, stride, padding):
    """(forward, backward) implementation, decided at trace time from the backend, the CPU and the layer's
    shape."""
    if impl != "auto":
        return impl, impl
    if jax.default_backend() != "cpu":  # cuDNN's convolutions are the fast path
        return "xla", "xla"
    kh, kw, c_in, _ = w_shape
    if kh == kw == 1:
        return "patches", "patches"
    oh, ow = _out_size(x_shape[1], kh, stride, padding), _out_size(x_shape[2], kw, stride, padding)
    entries = oh * ow * kh * kw * c_in
    fwd_entries, fwd_channels, bwd_entries = _PATCH_LIMITS[_cpu_rule()]
    return ("patches" if entries <= fwd_entries and c_in <= fwd_channels else "xla",
            "patches" if entries <= bwd_entries else "xla")


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv2d(x, w, stride, padding, impls):
    fwd = _conv2d_patches if impls[0] == "patches" else _conv2d_xla
    return fwd(x, w, stride, padding).astype(x.dtype)


def _conv2d_fwd(x, w, stride, padding, impls):
    return _conv2d(x, w, stride, padding, impls), (x, w)


def _conv2d_bwd(stride, padding, impls, res, g):
    x, w = res
    bwd = _conv2d_bwd_patches if impls[1] == "patches" else _conv2d_bwd_xla
    dx, dw = bwd(stride, padding, x, w, g)
    return dx.astype(x.dtype), dw.astype(w.dtype)


_conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def conv2d(x, w, *, stride=1, padding=0, impl="auto"):
    """2-D convolution (cross-correlation) of Eq. (20)–(22) with the backward of Eq. (24)–(25).

    x: [N, H, W, C_in], w: [kh, kw, C_in, C_out] -> [N, H', W', C_out], H' = floor((H - kh + 2p) / s) + 1
    (Eq. (21); when s does not divide H - kh + 2p the last rows are never read and get zero gradient).
    Symmetric zero padding ``padding`` = p, ``stride`` = s. ``impl``: "patches" = im2row / row2im patch
    matrices and matmuls blocked over the batch (§3.4.1), "xla" = XLA convolutions (cuDNN on GPU),
    "auto" = xla off the CPU; on the CPU chosen per layer and per pass (``_resolve``: patches for 1x1 kernels;
    for larger ones patches wherever one example's patch matrix is small (and, on CPUs with AVX-512, narrow),
    XLA's convolutions on larger or wider maps; without AVX-512 the backward always on patches).
    The backward is Eq. (24)–(25) either way, and all give the same values.
    """
    _check_conv2d(x, w, stride, padding, impl)
    return _conv2d(x, w, stride, padding, _resolve(impl, x.shape, w.shape, stride, padding))


def conv2d_autodiff(x, w, *, stride=1, padding=0, impl="auto"):
    """``lax.conv_general_dilated`` with the gradient JAX derives; same signature as ``conv2d`` (``impl``
    is checked and otherwise ignored)."""
    _check_conv2d(x, w, stride, padding, impl)
    return _conv2d_xla(x, w, stride, padding).astype(x.dtype)
