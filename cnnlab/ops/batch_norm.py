"""Batch normalization, §3.7: training form Eq. (34)-(37) with the backward pass of Eq. (48)-(50) (Eq. (48)
as corrected in docs/derivations.md), the inference form with running statistics, and their update,
Eq. (38)-(39).

x: [N, H, W, C] (NHWC feature maps) or [N, C] (feature vectors, Table 2's BN after a dense layer); gamma, beta,
mean, var: [C]. Statistics run over every axis but the last, so M = N*H*W (the paper's RHW) or M = N.
Like Ioffe & Szegedy (and Flax, PyTorch) we add eps to the variance in Eq. (36), which the paper omits; the
backward pass is the same with sigma^2 replaced by sigma^2 + eps. bfloat16/float16 inputs are normalised in
float32 and the output cast back; the batch statistics are returned in float32 then.
"""

import functools

import jax
import jax.numpy as jnp

from cnnlab.ops._checks import check_floating, check_shape


def _check(op, x, **per_channel):
    if jnp.ndim(x) not in (2, 4):
        raise ValueError(f"{op}: x must have rank 4 (NHWC) or 2 (N, C), got shape {jnp.shape(x)}")
    check_floating(op, "x", x)
    for name, a in per_channel.items():
        check_shape(op, name, a, x.shape[-1:], "[C]")
        check_floating(op, name, a)


def _compute_dtype(x):
    return jnp.promote_types(x.dtype, jnp.float32)


def _statistics(x):
    """Eq. (34)-(35): per-channel mean and (biased) variance over all axes but the last."""
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x, axis=axes)
    var = jnp.mean(jnp.square(x - mean), axis=axes)  # two passes: E[x^2] - E[x]^2 cancels badly
    return mean, var


def _forward(x, gamma, beta, eps):
    xc = x.astype(_compute_dtype(x))
    mean, var = _statistics(xc)
    x_hat = (xc - mean) * jax.lax.rsqrt(var + eps)  # Eq. (36)
    y = gamma * x_hat + beta  # Eq. (37)
    return y.astype(x.dtype), mean, var


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _batch_norm(x, gamma, beta, eps):
    return _forward(x, gamma, beta, eps)


def _batch_norm_fwd(x, gamma, beta, eps):
    y, mean, var = _forward(x, gamma, beta, eps)
    return (y, mean, var), (x, gamma, beta, mean, var)


def _batch_norm_bwd(eps, residuals, cotangents):
    x, gamma, beta, mean, var = residuals
    delta, d_mean, d_var = cotangents
    axes = tuple(range(x.ndim - 1))
    m = x.size // x.shape[-1]  # the paper's RHW
    xc = x.astype(mean.dtype)
    delta = delta.astype(mean.dtype)
    inv_std = jax.lax.rsqrt(var + eps)
    x_hat = (xc - mean) * inv_std
    sum_delta = jnp.sum(delta, axis=axes)
    sum_delta_x_hat = jnp.sum(delta * x_hat, axis=axes)
    # Eq. (48), corrected: the last term carries (sigma^2)^-1, not the printed (sigma^2)^-3/2.
    dx = (gamma * inv_std / m) * (m * delta - sum_delta - x_hat * sum_delta_x_hat)
    # The batch statistics are outputs too (for the running averages): dmu/dx = 1/M, dsigma^2/dx = 2 (x - mu)/M,
    # Eq. (47). Zero cotangents here unless a caller differentiates through them.
    dx = dx + d_mean / m + d_var * (2 / m) * (xc - mean)
    d_gamma = sum_delta_x_hat  # Eq. (49)
    d_beta = sum_delta  # Eq. (50)
    return dx.astype(x.dtype), d_gamma.astype(gamma.dtype), d_beta.astype(beta.dtype)


_batch_norm.defvjp(_batch_norm_fwd, _batch_norm_bwd)


def batch_norm(x, gamma, beta, *, eps=1e-5):
    """Training-mode batch norm, Eq. (34)-(37), backward Eq. (48)-(50).

    x: [N, H, W, C] or [N, C]; gamma, beta: [C]. Returns ``(y, batch_mean, batch_var)``: y like x, the batch
    statistics [C] (biased variance, Eq. (35)) for ``ewma_update``.
    """
    _check("batch_norm", x, gamma=gamma, beta=beta)
    return _batch_norm(x, gamma, beta, float(eps))


def batch_norm_autodiff(x, gamma, beta, *, eps=1e-5):
    """``batch_norm`` whose gradient JAX derives."""
    _check("batch_norm", x, gamma=gamma, beta=beta)
    return _forward(x, gamma, beta, float(eps))


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
    """Inference-mode batch norm with running statistics (§3.7.1). x: [N, H, W, C] or [N, C]; the rest: [C]."""
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
