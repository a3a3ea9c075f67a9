"""Group normalization (Wu & He 2018; not in the paper), with its backward derived the way §3.7 derives batch
norm's, Eq. (48)–(50), over the G channel groups of one example instead of over the batch
(docs/derivations.md, "Group normalization").

x: [N, ..., C] (NHWC maps or [N, C]); gamma, beta: [C]; C = G * C_g. Statistics run over the spatial axes and
the C_g channels of each group, separately for every example, so M = H * W * C_g and there are no running
averages: training and inference compute the same function. eps is added to the variance as in
``flax.linen.GroupNorm`` (whose default 1e-6 is ours too). bfloat16/float16 inputs are normalised in float32
and the output cast back.
"""

import functools

import jax
import jax.numpy as jnp

from cnnlab.ops._checks import check_floating, check_int_at_least, check_shape


def _check(x, gamma, beta, num_groups):
    op = "group_norm"
    if jnp.ndim(x) < 2:
        raise ValueError(f"{op}: x must have rank >= 2 ([N, ..., C]), got shape {jnp.shape(x)}")
    check_floating(op, "x", x)
    for name, a in (("gamma", gamma), ("beta", beta)):
        check_shape(op, name, a, x.shape[-1:], "[C]")
        check_floating(op, name, a)
    check_int_at_least(op, "num_groups", num_groups, 1)
    if x.shape[-1] % num_groups:
        raise ValueError(f"{op}: C={x.shape[-1]} channels (x.shape={x.shape}) do not split into "
                         f"num_groups={num_groups} equal groups")


def _grouped(x, num_groups):
    """[N, ..., C] -> [N, S, G, C_g] in the compute dtype (S: the product of the spatial axes)."""
    dtype = jnp.promote_types(x.dtype, jnp.float32)
    return x.astype(dtype).reshape(x.shape[0], -1, num_groups, x.shape[-1] // num_groups)


def _normalise(xg, eps):
    """Eq. (34)–(36) per example and group: mean and biased variance over (S, C_g), then x_hat."""
    mean = jnp.mean(xg, axis=(1, 3), keepdims=True)
    var = jnp.mean(jnp.square(xg - mean), axis=(1, 3), keepdims=True)  # two passes, as batch_norm
    inv_std = jax.lax.rsqrt(var + eps)
    return (xg - mean) * inv_std, inv_std


def _forward(x, gamma, beta, num_groups, eps):
    x_hat, _ = _normalise(_grouped(x, num_groups), eps)
    y = gamma * x_hat.reshape(x.shape) + beta  # Eq. (37), gamma and beta per channel
    return y.astype(x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _group_norm(x, gamma, beta, num_groups, eps):
    return _forward(x, gamma, beta, num_groups, eps)


def _group_norm_fwd(x, gamma, beta, num_groups, eps):
    return _forward(x, gamma, beta, num_groups, eps), (x, gamma, beta)


def _group_norm_bwd(num_groups, eps, residuals, delta):
    x, gamma, beta = residuals
    xg = _grouped(x, num_groups)
    x_hat, inv_std = _normalise(xg, eps)
    delta = delta.astype(xg.dtype)
    axes = tuple(range(x.ndim - 1))
    # Eq. (49)–(50): gamma and beta are per channel, so their sums run over the batch and the spatial axes.
    d_gamma = jnp.sum(delta * x_hat.reshape(x.shape), axis=axes)
    d_beta = jnp.sum(delta, axis=axes)
    # Eq. (48) with the group as the normalisation set (M entries): gamma varies inside a group, so it cannot
    # be taken out of the sums as in batch norm; the sums run over dL/dx_hat = gamma * delta instead.
    d_hat = (delta * gamma).reshape(xg.shape)
    m = xg.shape[1] * xg.shape[3]
    sum_d = jnp.sum(d_hat, axis=(1, 3), keepdims=True)
    sum_d_x_hat = jnp.sum(d_hat * x_hat, axis=(1, 3), keepdims=True)
    dx = (inv_std / m) * (m * d_hat - sum_d - x_hat * sum_d_x_hat)
    return dx.reshape(x.shape).astype(x.dtype), d_gamma.astype(gamma.dtype), d_beta.astype(beta.dtype)


_group_norm.defvjp(_group_norm_fwd, _group_norm_bwd)


def group_norm(x, gamma, beta, *, num_groups, eps=1e-6):
    """Group norm: each example's channels split into ``num_groups`` groups, each group normalised over its
    spatial positions and channels (Eq. (34)–(36) per group), then scaled and shifted per channel (Eq. (37));
    the backward is Eq. (48)–(50) over the group (docs/derivations.md).

    Args:
      x: [N, ..., C], C divisible by ``num_groups``.
      gamma, beta: [C].
    Returns:
      y, like x.
    """
    _check(x, gamma, beta, num_groups)
    return _group_norm(x, gamma, beta, num_groups, float(eps))


def group_norm_autodiff(x, gamma, beta, *, num_groups, eps=1e-6):
    """``group_norm`` whose gradient JAX derives."""
    _check(x, gamma, beta, num_groups)
    return _forward(x, gamma, beta, num_groups, float(eps))
