"""Fully connected layer, Eq. (1)-(4), with the backward pass of Eq. (15)-(18).

The activation f of Eq. (2)/(4) is a separate op (``cnnlab.ops.activations``), so here f is the identity and
f' = 1 in Eq. (15)-(18). The paper stores W as [N^(l+1), N^(l)] in §1.3.3 but multiplies X W in Eq. (3);
we use the Eq. (3) layout, w: [D_in, D_out], which is also Flax's. bfloat16 inputs give a bfloat16 output and
gradients; the products and the sums over the batch of Eq. (15)-(18) accumulate in float32.
"""

import jax
import jax.numpy as jnp

from cnnlab.ops._checks import check_floating, check_rank
from cnnlab.ops._dtypes import accumulation_dtype, matmul, transposed


def _check(x, w, b):
    for name, a, rank, layout in (("x", x, 2, "N, D_in"), ("w", w, 2, "D_in, D_out"), ("b", b, 1, "D_out")):
        check_rank("dense", name, a, rank, layout)
        check_floating("dense", name, a)
    if x.shape[1] != w.shape[0] or w.shape[1] != b.shape[0]:
        raise ValueError(f"dense: expected x [N, D_in], w [D_in, D_out], b [D_out], "
                         f"got x {x.shape}, w {w.shape}, b {b.shape}")


def dense_autodiff(x, w, b):
    """Eq. (3): z = x w + b. x: [N, D_in], w: [D_in, D_out], b: [D_out] -> [N, D_out]; JAX derives the gradient."""
    _check(x, w, b)
    return _forward(x, w, b)


def _forward(x, w, b):
    return (matmul(x, w) + b).astype(jnp.result_type(x, w, b))


@jax.custom_vjp
def _dense(x, w, b):
    return _forward(x, w, b)


def _dense_fwd(x, w, b):
    return _forward(x, w, b), (x, w, b)


def _dense_bwd(residuals, delta):
    x, w, b = residuals
    dx = matmul(delta, transposed(w))  # Eq. (15): delta^(l)_ri = sum_j delta^(l+1)_rj W_ij
    # Eq. (17): dL/dW_ij = sum_r X_ri delta_rj (the printed indices are wrong: docs/derivations.md)
    dw = matmul(transposed(x), delta)
    db = jnp.sum(delta, axis=0, dtype=accumulation_dtype(delta))  # Eq. (18)
    return dx.astype(x.dtype), dw.astype(w.dtype), db.astype(b.dtype)


_dense.defvjp(_dense_fwd, _dense_bwd)


def dense(x, w, b):
    """Eq. (3): z = x w + b, backward Eq. (15)-(18). x: [N, D_in], w: [D_in, D_out], b: [D_out] -> [N, D_out]."""
    _check(x, w, b)
    return _dense(x, w, b)
