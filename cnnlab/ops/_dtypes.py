"""The accumulation dtype of the ops: bfloat16 (8-bit significand) inputs are summed in float32.

A bfloat16 sum of M terms loses about log2(M) of its 8 significant bits (a batch-norm mean over
M = N*H*W = 24 200 entries, the weight gradient of Eq. (25) over as many rows), so every op forms its sums,
matrix products and convolutions in ``accumulation_dtype`` and casts the result back to the input's dtype.
float32 and float64 inputs accumulate in their own dtype.
"""

from jax import lax
import jax.numpy as jnp


def accumulation_dtype(*arrays):
    """float32 for bfloat16/float16 arrays, else their common dtype (float32, float64)."""
    return jnp.promote_types(jnp.result_type(*arrays), jnp.float32)


def matmul(a, b):
    """``a @ b`` accumulated (and returned) in ``accumulation_dtype(a, b)``."""
    return jnp.matmul(a, b, preferred_element_type=accumulation_dtype(a, b))


def transposed(a):
    """The matrix ``a.T``, written out in memory for a matmul to read.

    XLA's CPU backend folds a plain transpose into the dot that reads it, and a bfloat16 dot with a transposed
    operand is not lowered to YNNPACK's bfloat16 kernels: XLA converts both operands to float32 first (2.5-3x
    slower on a CPU with AMX, docs/performance.md), and a float32 dot with a folded transpose is not lowered to
    YNNPACK at all. The barrier keeps the transpose a copy of its own; going through a size-1 axis keeps XLA
    from seeing the dot's operand as a transpose.
    """
    return lax.optimization_barrier(jnp.swapaxes(a[:, :, None], 0, 1)).reshape(a.shape[1], a.shape[0])
