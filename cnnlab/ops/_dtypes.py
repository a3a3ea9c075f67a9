"""The accumulation dtype of the ops: bfloat16 (8-bit significand) inputs are summed in float32.

A bfloat16 sum of M terms loses about log2(M) of its 8 significant bits (a batch-norm mean over
M = N*H*W = 24 200 entries, the weight gradient of Eq. (25) over as many rows), so every op forms its sums,
matrix products and convolutions in ``accumulation_dtype`` and casts the result back to the input's dtype.
float32 and float64 inputs accumulate in their own dtype.
"""

import jax.numpy as jnp


def accumulation_dtype(*arrays):
    """float32 for bfloat16/float16 arrays, else their common dtype (float32, float64)."""
    return jnp.promote_types(jnp.result_type(*arrays), jnp.float32)


def matmul(a, b):
    """``a @ b`` accumulated (and returned) in ``accumulation_dtype(a, b)``."""
    return jnp.matmul(a, b, preferred_element_type=accumulation_dtype(a, b))
