"""Numeric evidence for the errata of docs/derivations.md: each printed equation implemented literally, next
to the corrected form cnnlab implements, both against ``jax.grad`` of the autodiff twin, in float64.

Run it as ``cnnlab gradcheck --errata``. Errors are ``max |g - g_ref| / max |g_ref|``.
"""

import jax
import jax.numpy as jnp
import numpy as np

from cnnlab.ops.activations import sigmoid, sigmoid_autodiff
from cnnlab.ops.batch_norm import batch_norm, batch_norm_autodiff
from cnnlab.ops.dense import dense, dense_autodiff
from cnnlab.ops.softmax import softmax, softmax_autodiff


def printed_eq15(x, w, b, delta):
    """Eq. (15) as printed, f = sigmoid: delta^(l)_ri = sum_j delta_rj f'(Z_ri) W_ji -- f' taken at the input
    index i instead of the output index j (only defined when D_in = D_out). W_ji in the paper's [out, in]
    layout is w[i, j] in ours."""
    s = jax.nn.sigmoid(x @ w + b)
    f_prime = s * (1 - s)
    return jnp.einsum("rj,ri,ij->ri", delta, f_prime, w)


def printed_eq17(x, w, b, delta):
    """Eq. (17) as printed, f = sigmoid: dL/dW_ji = sum_r delta_ri f'(Z_ri) X_ri -- every index is i, so the
    'gradient' does not depend on j (only defined when D_in = D_out). Returned in our [in, out] layout."""
    s = jax.nn.sigmoid(x @ w + b)
    column = jnp.sum(delta * s * (1 - s) * x, axis=0)  # indexed by i only
    return jnp.broadcast_to(column[:, None], w.shape)


def printed_eq48(x, gamma, delta):
    """Eq. (48) as printed (final line): (1/RHW) gamma (sigma^2)^-1/2 (RHW delta - sum delta
    - (X - mu) (sigma^2)^-3/2 sum delta (X - mu)). The paper has no eps; neither do we here."""
    axes = tuple(range(x.ndim - 1))
    m = x.size // x.shape[-1]
    mean = jnp.mean(x, axis=axes)
    var = jnp.mean((x - mean) ** 2, axis=axes)
    xc = x - mean
    return (gamma * var ** -0.5 / m) * (m * delta - jnp.sum(delta, axis=axes)
                                        - xc * var ** -1.5 * jnp.sum(delta * xc, axis=axes))


def printed_eq52(x, delta):
    """Eq. (52) as printed (final line): delta^(l)_rc = delta_rc X^(l+1)_rc (1 - sum_c' X^(l+1)_rc'), which is
    zero for every input because a softmax output sums to 1."""
    y = jax.nn.softmax(x, axis=-1)
    return delta * y * (1 - jnp.sum(y, axis=-1, keepdims=True))


def _relative_error(g, reference):
    return float(jnp.max(jnp.abs(g - reference)) / jnp.max(jnp.abs(reference)))


def _rows(x, w, b, u, x_bn, gamma, beta, u_bn, x_sm, u_sm):
    """The gradients of each erratum, in one jitted function (eager dispatch would compile op by op)."""
    dense_ref = jax.grad(lambda x, w: jnp.sum(u * sigmoid_autodiff(dense_autodiff(x, w, b))), (0, 1))(x, w)
    dense_new = jax.grad(lambda x, w: jnp.sum(u * sigmoid(dense(x, w, b))), (0, 1))(x, w)
    bn_ref = jax.grad(lambda x: jnp.sum(u_bn * batch_norm_autodiff(x, gamma, beta, eps=0.0)[0]))(x_bn)
    bn_new = jax.grad(lambda x: jnp.sum(u_bn * batch_norm(x, gamma, beta, eps=0.0)[0]))(x_bn)
    sm_ref = jax.grad(lambda x: jnp.sum(u_sm * softmax_autodiff(x)))(x_sm)
    sm_new = jax.grad(lambda x: jnp.sum(u_sm * softmax(x)))(x_sm)
    return [  # (printed, corrected, reference)
        (printed_eq15(x, w, b, u), dense_new[0], dense_ref[0]),
        (printed_eq17(x, w, b, u), dense_new[1], dense_ref[1]),
        (printed_eq48(x_bn, gamma, u_bn), bn_new, bn_ref),
        (printed_eq52(x_sm, u_sm), sm_new, sm_ref),
    ]


def errata_errors(seed: int = 0):
    """Return rows ``(equation, gradient, printed error, corrected error)``; the corrected form is the
    gradient of cnnlab's custom-VJP op, the reference ``jax.grad`` of its autodiff twin."""
    rng = np.random.default_rng(seed)
    normal = rng.standard_normal
    with jax.enable_x64(True):
        # Dense layer + sigmoid (Eq. (1)-(2)), square so that the printed indices are defined: D_in = D_out = 5.
        dense_args = [normal((4, 5)), normal((5, 5)), normal(5), normal((4, 5))]
        # Batch norm, x: [R, H, W, C] with variance ~9 per channel: the printed (sigma^2)^-3/2 is off by 1/sigma.
        bn_args = [3 * normal((4, 3, 3, 2)) + 1, normal(2), normal(2), normal((4, 3, 3, 2))]
        softmax_args = [normal((4, 10)), normal((4, 10))]  # K = 10 classes
        gradients = jax.jit(_rows)(*map(jnp.asarray, dense_args + bn_args + softmax_args))
        errors = [(_relative_error(p, r), _relative_error(c, r)) for p, c, r in gradients]
    names = [("(15)", "dense: dL/dX"), ("(17)", "dense: dL/dW"), ("(48)", "batch_norm: dL/dX"),
             ("(52)", "softmax: dL/dX")]
    return [name + error for name, error in zip(names, errors)]


def report(seed: int = 0) -> None:
    """Print the errata table (float64)."""
    print("relative error vs jax.grad of the autodiff twin, float64")
    print(f"{'Eq.':<5}  {'gradient':<18}  {'printed form':>12}  {'corrected':>10}")
    for equation, gradient, printed, corrected in errata_errors(seed):
        print(f"{equation:<5}  {gradient:<18}  {printed:12.2e}  {corrected:10.2e}")
