"""Softmax, Eq. (51), with the backward pass of Eq. (52) (as corrected in docs/derivations.md), and the
cross-entropy loss of Eq. (53)-(54) taken straight from logits. bfloat16 inputs: the sums over the classes run
in float32; softmax returns the input's dtype, the cross-entropy (a loss) float32.
"""

import functools

import jax
import jax.numpy as jnp

from cnnlab.ops._checks import check_floating, check_integer
from cnnlab.ops._dtypes import accumulation_dtype


def _softmax_forward(x, axis):
    # Eq. (51), shifted by the maximum so exp cannot overflow; the shift cancels between numerator and sum.
    xc = x.astype(accumulation_dtype(x))
    z = jnp.exp(xc - jax.lax.stop_gradient(jnp.max(xc, axis=axis, keepdims=True)))
    return (z / jnp.sum(z, axis=axis, keepdims=True)).astype(x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _softmax(x, axis):
    return _softmax_forward(x, axis)


def _softmax_fwd(x, axis):
    y = _softmax_forward(x, axis)
    return y, y


def _softmax_bwd(axis, y, delta):
    # Eq. (52), corrected: delta^(l)_c = y_c (delta^(l+1)_c - sum_c' delta^(l+1)_c' y_c').
    dtype = accumulation_dtype(y, delta)
    yc, dc = y.astype(dtype), delta.astype(dtype)
    return ((yc * (dc - jnp.sum(dc * yc, axis=axis, keepdims=True))).astype(y.dtype),)


_softmax.defvjp(_softmax_fwd, _softmax_bwd)


def _check_axis(op, x, axis):
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise TypeError(f"{op}: axis must be a Python int, got {axis!r}")
    if not -jnp.ndim(x) <= axis < jnp.ndim(x):
        raise ValueError(f"{op}: axis {axis} is out of range for x of shape {jnp.shape(x)}")
    return axis % jnp.ndim(x)


def softmax(x, axis=-1):
    """Softmax along ``axis``, Eq. (51), backward Eq. (52) corrected. x: any shape, e.g. [N, K]."""
    check_floating("softmax", "x", x)
    return _softmax(x, _check_axis("softmax", x, axis))


def softmax_autodiff(x, axis=-1):
    """``softmax`` whose gradient JAX derives."""
    check_floating("softmax", "x", x)
    return _softmax_forward(x, _check_axis("softmax", x, axis))


def _check_cross_entropy(logits, labels):
    if jnp.ndim(logits) < 1:
        raise ValueError(f"cross_entropy: logits must have rank >= 1 ([..., K]), got shape {jnp.shape(logits)}")
    check_floating("cross_entropy", "logits", logits)
    check_integer("cross_entropy", "labels", labels)
    if jnp.shape(labels) != jnp.shape(logits)[:-1]:
        raise ValueError(f"cross_entropy: labels must have shape logits.shape[:-1] = {jnp.shape(logits)[:-1]}, "
                         f"got {jnp.shape(labels)} (logits {jnp.shape(logits)})")


def _cross_entropy_forward(logits, labels):
    # Eq. (53) for a one-hot y and y_hat = softmax(logits): -log y_hat[label] = logsumexp(logits) - logits[label],
    # which never takes the log of an underflowed probability. Computed and returned in at least float32.
    z = logits.astype(accumulation_dtype(logits))
    z = z - jax.lax.stop_gradient(jnp.max(z, axis=-1, keepdims=True))
    log_norm = jnp.log(jnp.sum(jnp.exp(z), axis=-1))
    picked = jnp.take_along_axis(z, labels[..., None], axis=-1)[..., 0]
    return log_norm - picked


@jax.custom_vjp
def _cross_entropy(logits, labels):
    return _cross_entropy_forward(logits, labels)


def _cross_entropy_fwd(logits, labels):
    return _cross_entropy_forward(logits, labels), (logits, labels)


def _cross_entropy_bwd(residuals, delta):
    # Eq. (54) chained through Eq. (52): -y/y_hat times the softmax Jacobian collapses to y_hat - y.
    logits, labels = residuals
    z = logits.astype(accumulation_dtype(logits))
    y_hat = _softmax_forward(z, -1)
    y = jax.nn.one_hot(labels, logits.shape[-1], dtype=z.dtype)
    return (delta[..., None].astype(z.dtype) * (y_hat - y)).astype(logits.dtype), None


_cross_entropy.defvjp(_cross_entropy_fwd, _cross_entropy_bwd)


def cross_entropy(logits, labels):
    """Per-example cross-entropy of softmax(logits) against integer labels, Eq. (53)-(54).

    logits: [..., K] floating, labels: [...] integer in [0, K). Returns the loss [...] in float32 (float64 for
    float64 logits; average it yourself: Eq. (53) sums over the batch). Gradient w.r.t. logits:
    softmax(logits) - one_hot(labels), in the logits' dtype.
    """
    _check_cross_entropy(logits, labels)
    return _cross_entropy(logits, labels)


def cross_entropy_autodiff(logits, labels):
    """``cross_entropy`` whose gradient JAX derives."""
    _check_cross_entropy(logits, labels)
    return _cross_entropy_forward(logits, labels)
