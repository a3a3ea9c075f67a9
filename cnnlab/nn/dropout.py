"""``Dropout`` with a cheaper mask: four 16-bit uniforms from each Threefry block.

``flax.linen.Dropout`` draws its mask with ``jax.random.bernoulli``: one float32 uniform per element, and
with JAX's default partitionable Threefry one Threefry-2x32 block (20 rounds) per uniform, of which 32 of
the 64 output bits are used. In the TCN of §6 (24 dropout layers on ``[N, 784, 32]`` activations) that
made up 38 % of a CPU training step (docs/performance.md). ``keep_mask`` uses all 64 bits of each block as four 16-bit
uniforms, so it hashes a quarter as many blocks; the drop probability is ``rate`` rounded to a multiple of
2^-16 (0.05 -> 0.0500031). The masks are laid out block by block along the last axis, so an input sharded
over its leading (batch) axis gives masks computed shard by shard.
"""

import math

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax import lax
from jax.extend.random import threefry2x32_p

_LEVELS = 2 ** 16


def drop_threshold(rate: float) -> int:
    """``rate`` in units of 2^-16: an entry is dropped when its 16-bit uniform is below this."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    return round(rate * _LEVELS)


def keep_mask(key, rate: float, shape) -> jax.Array:
    """A boolean mask of ``shape`` whose entries are independently ``True`` with probability
    ``1 - drop_threshold(rate) / 2^16``. ``key``: a Threefry key (``jax.random.key`` or a legacy
    ``PRNGKey``); other PRNG implementations (rbg) fall back to ``jax.random.bernoulli``."""
    threshold = drop_threshold(rate)
    data = jax.random.key_data(key)
    if data.shape != (2,) or data.dtype != jnp.uint32:
        return jax.random.bernoulli(key, 1.0 - threshold / _LEVELS, shape)
    *lead, last = shape
    quarter = -(-last // 4)  # Threefry blocks per row of the last axis; each gives four 16-bit uniforms
    count = lax.iota(jnp.uint32, math.prod(lead) * quarter).reshape(*lead, quarter)
    hi, lo = threefry2x32_p.bind(data[0], data[1], count, jnp.zeros_like(count))
    t = jnp.uint32(threshold)
    keep = [(hi & 0xFFFF) >= t, (hi >> 16) >= t, (lo & 0xFFFF) >= t, (lo >> 16) >= t]
    return jnp.concatenate(keep, axis=-1)[..., :last]


class Dropout(nn.Module):
    """The TCN's dropout after each convolution (§6.3.3, Figure 19).

    Inverted dropout as ``flax.linen.Dropout`` (drop each entry with probability ``rate``, rounded to a
    multiple of 2^-16, and scale the kept ones by the inverse of the keep probability, so ``E[y] = x``;
    identity when ``deterministic``), with ``keep_mask``'s cheaper mask. Reads the ``"dropout"`` RNG stream."""
    rate: float
    deterministic: bool = False

    @nn.compact
    def __call__(self, x):
        if self.deterministic or self.rate == 0.0:
            return x
        mask = keep_mask(self.make_rng("dropout"), self.rate, x.shape)
        keep = 1.0 - drop_threshold(self.rate) / _LEVELS
        return jnp.where(mask, x / keep, 0.0).astype(x.dtype)
