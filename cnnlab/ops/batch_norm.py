"""Batch normalization, §3.7: training form Eq. (34)-(37) with the backward pass of Eq. (48)-(50) (Eq. (48)
as corrected in docs/derivations.md), the inference form with running statistics, and their update,
Eq. (38)-(39).

x: [N, H, W, C] (NHWC feature maps), [N, T, C] (sequences) or [N, C] (feature vectors, Table 2's BN after a
dense layer); gamma, beta, mean, var: [C]. Statistics run over every axis but the last, so M = N*H*W (the
paper's RHW), N*T or N. An optional ``mask`` (x's shape with a last axis of 1; 1 at real entries, 0 at
padding, e.g. the left padding of unequal-length sequences) restricts the statistics to the real entries,
M = sum(mask); every entry is then normalised with them (docs/derivations.md, "batch_norm with a mask").
Like Ioffe & Szegedy (and Flax, PyTorch) we add eps to the variance in Eq. (36), which the paper omits; the
backward pass is the same with sigma^2 replaced by sigma^2 + eps. bfloat16/float16 inputs are normalised in
float32 and the output cast back; the batch statistics are returned in float32 then.
"""

import functools

import jax
import jax.numpy as jnp

from cnnlab.ops._checks import check_floating, check_shape


def _check(op, x, mask=None, **per_channel):
    if jnp.ndim(x) not in (2, 3, 4):
        raise ValueError(f"{op}: x must have rank 4 (NHWC), 3 (N, T, C) or 2 (N, C), got shape {jnp.shape(x)}")
    check_floating(op, "x", x)
    for name, a in per_channel.items():
        check_shape(op, name, a, x.shape[-1:], "[C]")
        check_floating(op, name, a)
    if mask is not None:
        check_shape(op, "mask", mask, (*x.shape[:-1], 1), "x's shape with a last axis of 1")


def _compute_dtype(x):
    return jnp.promote_types(x.dtype, jnp.float32)


def _weights(x, mask):
    """(weights broadcastable to x, M): the mask (ones without one) and the number of real entries per channel."""
    if mask is None:
        return jnp.ones((), x.dtype), x.size // x.shape[-1]
    w = mask.astype(x.dtype)
    return w, jnp.maximum(jnp.sum(w), 1.0)


def _statistics(x, w, m):
    """Eq. (34)-(35): per-channel mean and (biased) variance over all axes but the last, of the entries with
    weight ``w`` = 1 (``m`` of them)."""
    axes = tuple(range(x.ndim - 1))
    mean = jnp.sum(w * x, axis=axes) / m
    var = jnp.sum(w * jnp.square(x - mean), axis=axes) / m  # two passes: E[x^2] - E[x]^2 cancels badly
    return mean, var


def _forward(x, gamma, beta, mask, eps):
    xc = x.astype(_compute_dtype(x))
    mean, var = _statistics(xc, *_weights(xc, mask))
    x_hat = (xc - mean) * jax.lax.rsqrt(var + eps)  # Eq. (36)
    y = gamma * x_hat + beta  # Eq. (37)
    return y.astype(x.dtype), mean, var


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _batch_norm(x, gamma, beta, mask, eps):
    return _forward(x, gamma, beta, mask, eps)


def _batch_norm_fwd(x, gamma, beta, mask, eps):
    y, mean, var = _forward(x, gamma, beta, mask, eps)
    return (y, mean, var), (x, gamma, beta, mask, mean, var)


def _batch_norm_bwd(eps, residuals, cotangents):
    x, gamma, beta, mask, mean, var = residuals
    delta, d_mean, d_var = cotangents
    axes = tuple(range(x.ndim - 1))
    xc = x.astype(mean.dtype)
    w, m = _weights(xc, mask)  # without a mask w = 1 and m is the paper's RHW
    delta = delta.astype(mean.dtype)
    inv_std = jax.lax.rsqrt(var + eps)
    x_hat = (xc - mean) * inv_std
    sum_delta = jnp.sum(delta, axis=axes)
    sum_delta_x_hat = jnp.sum(delta * x_hat, axis=axes)
    # Eq. (48), corrected: the last term carries (sigma^2)^-1, not the printed (sigma^2)^-3/2. With a mask the
    # statistics see only the real entries (w = 1), so only those receive the two sum terms.
    dx = gamma * inv_std * (delta - w * (sum_delta + x_hat * sum_delta_x_hat) / m)
    # The batch statistics are outputs too (for the running averages): dmu/dx = w/M, dsigma^2/dx = 2 w (x - mu)/M,
    # Eq. (47). Zero cotangents here unless a caller differentiates through them.
    dx = dx + w * (d_mean + 2 * d_var * (xc - mean)) / m
    d_gamma = sum_delta_x_hat  # Eq. (49)
    d_beta = sum_delta  # Eq. (50)
    return dx.astype(x.dtype), d_gamma.astype(gamma.dtype), d_beta.astype(beta.dtype), None


_batch_norm.defvjp(_batch_norm_fwd, _batch_norm_bwd)


def batch_norm(x, gamma, beta, mask=None, *, eps=1e-5):
    """Training-mode batch norm, Eq. (34)-(37), backward Eq. (48)-(50).

    x: [N, H, W, C], [N, T, C] or [N, C]; gamma, beta: [C]; mask: None or x's shape with a last axis of 1 (the
    statistics over the entries where it is 1). Returns ``(y, batch_mean, batch_var)``: y like x, the batch
    statistics [C] (biased variance, Eq. (35)) for ``ewma_update``.
    """
    _check("batch_norm", x, mask, gamma=gamma, beta=beta)
    return _batch_norm(x, gamma, beta, mask, float(eps))


def batch_norm_autodiff(x, gamma, beta, mask=None, *, eps=1e-5):
    """``batch_norm`` whose gradient JAX derives."""
    _check("batch_norm", x, mask, gamma=gamma, beta=beta)
    return _forward(x, gamma, beta, mask, float(eps))


def _inference_forward(x, gamma, beta, mean, var, eps):
    xc = x.astype(_compute_dtype(x))
    y = gamma * (xc - mean) * jax.lax.rsqrt(var + eps) + beta  # Eq. (36)-(37) with the running statistics
    return y.astype(x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def _batch_norm_inference(x, gamma, beta, mean, var, eps):
    return _inference_forward(x, gamma, beta, mean, var, eps)


def _batch_norm_inference_fwd(x, gamma, beta, mean, var, eps):
    return _inference_forward(x, gamma, beta, mean, var, eps), (x, gamma, beta, mean, var)


def _batch_norm_inference_bwd(eps, residuals, delta):
    # With fixed statistics Eq. (36)-(37) is affine in x, so only the first term of Eq. (48) survives.
    x, gamma, beta, mean, var = residuals
    axes = tuple(range(x.ndim - 1))
    dtype = _compute_dtype(x)
    xc, delta = x.astype(dtype), delta.astype(dtype)
    inv_std = jax.lax.rsqrt(var + eps)
    x_hat = (xc - mean) * inv_std
    dx = delta * gamma * inv_std
    d_gamma = jnp.sum(delta * x_hat, axis=axes)  # Eq. (49)
    d_beta = jnp.sum(delta, axis=axes)  # Eq. (50)
    d_mean = -jnp.sum(dx, axis=axes)
    d_var = -0.5 * inv_std * inv_std * jnp.sum(dx * (xc - mean), axis=axes)  # d(v + eps)^-1/2 = -1/2 (v + eps)^-3/2
    return tuple(g.astype(a.dtype) for g, a in zip((dx, d_gamma, d_beta, d_mean, d_var), residuals))


_batch_norm_inference.defvjp(_batch_norm_inference_fwd, _batch_norm_inference_bwd)


def batch_norm_inference(x, gamma, beta, mean, var, *, eps=1e-5):
    """Inference-mode batch norm with running statistics (§3.7.1). x: [N, H, W, C], [N, T, C] or [N, C]; the
    rest: [C]."""
    _check("batch_norm_inference", x, gamma=gamma, beta=beta, mean=mean, var=var)
    return _batch_norm_inference(x, gamma, beta, mean, var, float(eps))


def batch_norm_inference_autodiff(x, gamma, beta, mean, var, *, eps=1e-5):
    """``batch_norm_inference`` whose gradient JAX derives."""
    _check("batch_norm_inference", x, gamma=gamma, beta=beta, mean=mean, var=var)
    return _inference_forward(x, gamma, beta, mean, var, float(eps))


def ewma_update(running, batch_value, *, momentum=0.9):
    """Eq. (38)-(39): running <- momentum * running + (1 - momentum) * batch_value, leaf by leaf.

    The paper's weight lambda multiplies the batch value, so lambda = 1 - momentum; ``momentum`` follows
    Flax's BatchNorm (0.9 keeps 90% of the old average per step).
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"ewma_update: momentum must be in [0, 1], got {momentum}")
    return jax.tree.map(lambda r, b: momentum * r + (1 - momentum) * b, running, batch_value)
