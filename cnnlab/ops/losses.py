"""The detection losses of §5.3: smooth L1, binary cross-entropy and focal loss, elementwise.

All three are plain JAX functions whose gradients JAX derives (the paper derives no backward pass for
them). The classification losses take *logits* ``z`` rather than probabilities ``p̂ = σ(z)`` and are
written with ``log σ(z)`` / ``log σ(−z)`` so that they stay finite for any |z| (``log(σ(z))`` computed as
``log`` of a rounded-to-zero sigmoid would give ``-inf`` from |z| ≈ 17 in float32). They compute and return
float32 for bfloat16 inputs (float64 for float64; the gradient w.r.t. a bfloat16 input is bfloat16) and work
under ``jit``, ``vmap`` and ``grad``.
"""

import jax
import jax.numpy as jnp

from cnnlab.ops._checks import check_floating
from cnnlab.ops._dtypes import accumulation_dtype


def _check_pair(op: str, logits, targets) -> None:
    check_floating(op, "logits", logits)
    if jnp.shape(logits) != jnp.shape(targets):
        raise ValueError(f"{op}: logits and targets must have the same shape, got {jnp.shape(logits)} "
                         f"and {jnp.shape(targets)}")


def smooth_l1(x, *, beta: float = 1.0):
    """Smooth L1 loss of Eq. (56), elementwise: ``0.5 x²/β`` if ``|x| < β`` else ``|x| − 0.5 β``.

    The paper's form is ``β = 1``; the general ``β`` (Fast R-CNN / torchvision) keeps the function and
    its slope continuous at ``|x| = β``. ``x``: any shape (the regression residual ``r − r̂``).
    """
    check_floating("smooth_l1", "x", x)
    if not beta > 0:
        raise ValueError(f"smooth_l1: beta must be > 0, got {beta}")
    x = x.astype(accumulation_dtype(x))
    abs_x = jnp.abs(x)
    return jnp.where(abs_x < beta, 0.5 * x * x / beta, abs_x - 0.5 * beta)


def binary_cross_entropy(logits, targets):
    """Binary cross-entropy of Eq. (59) from logits, elementwise.

    ``−p log p̂ − (1 − p) log(1 − p̂)`` with ``p̂ = σ(z)``, i.e. ``−p log σ(z) − (1 − p) log σ(−z)``.
    ``logits``, ``targets``: the same shape; targets in [0, 1] (soft targets allowed).
    """
    _check_pair("binary_cross_entropy", logits, targets)
    logits = logits.astype(accumulation_dtype(logits))
    p = jnp.asarray(targets, logits.dtype)
    return -p * jax.nn.log_sigmoid(logits) - (1 - p) * jax.nn.log_sigmoid(-logits)


def focal_loss(logits, targets, *, gamma: float = 2.0, alpha: float | None = None):
    """Focal loss of Eq. (61) (RetinaNet) from logits, elementwise.

    ``−α p (1 − p̂)^γ log p̂ − (1 − α)(1 − p) p̂^γ log(1 − p̂)`` with ``p̂ = σ(z)``; ``alpha=None`` weighs
    both terms 1 (the paper's form). Erratum: the paper prints the modulating factors as ``(1 − p)^γ`` and
    ``p^γ`` of the *target* p, which are 0 for hard labels and would make the loss vanish; RetinaNet's
    factors, used here, are of the *prediction* p̂. ``gamma = 0`` gives ``binary_cross_entropy``; the
    paper's v1.2 uses ``gamma = 3``. The factors are ``exp(γ log σ(∓z))`` so they too stay finite.
    """
    _check_pair("focal_loss", logits, targets)
    if gamma < 0:
        raise ValueError(f"focal_loss: gamma must be >= 0, got {gamma}")
    if alpha is not None and not 0 <= alpha <= 1:
        raise ValueError(f"focal_loss: alpha must be in [0, 1] or None, got {alpha}")
    logits = logits.astype(accumulation_dtype(logits))
    p = jnp.asarray(targets, logits.dtype)
    log_p = jax.nn.log_sigmoid(logits)  # log p̂
    log_not_p = jax.nn.log_sigmoid(-logits)  # log (1 − p̂)
    pos = -p * jnp.exp(gamma * log_not_p) * log_p
    neg = -(1 - p) * jnp.exp(gamma * log_p) * log_not_p
    if alpha is not None:
        pos, neg = alpha * pos, (1 - alpha) * neg
    return pos + neg
