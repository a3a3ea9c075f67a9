"""``cnnlab.nn.Dropout``: its 16-bit masks have the Bernoulli statistics of ``flax.linen.Dropout``'s.

The references are the binomial distribution (each check allows 5 standard deviations) and Flax's module.
"""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from cnnlab.nn import Dropout
from cnnlab.nn.dropout import drop_threshold, keep_mask


def within_binomial(count, n, p, sigmas=5.0):
    return abs(count - n * p) <= sigmas * np.sqrt(n * p * (1 - p))


@pytest.mark.parametrize("rate", [0.05, 0.5])
def test_keep_mask_drops_at_the_rate_in_each_quarter_of_the_last_axis(rate):
    # Each quarter of the last axis comes from another 16 bits of the Threefry blocks.
    shape = (64, 100, 32)
    dropped = ~np.asarray(keep_mask(jax.random.key(0), rate, shape))
    p = drop_threshold(rate) / 2 ** 16
    for quarter in range(4):
        part = dropped[..., 8 * quarter:8 * (quarter + 1)]
        assert within_binomial(part.sum(), part.size, p), (quarter, part.mean())


def test_keep_mask_entries_from_one_threefry_block_are_independent():
    # Entries j, j + 8, j + 16, j + 24 of a row of 32 share a Threefry block: each pair must be dropped
    # together with probability p^2.
    dropped = ~np.asarray(keep_mask(jax.random.key(1), 0.5, (20_000, 32)))
    for a, b in [(0, 8), (0, 16), (8, 24), (0, 1)]:
        both = np.sum(dropped[:, a] & dropped[:, b])
        assert within_binomial(both, dropped.shape[0], 0.25), (a, b, both)


def test_keep_mask_is_a_function_of_the_key_and_handles_any_last_axis():
    a = keep_mask(jax.random.key(2), 0.3, (50, 7))
    assert a.shape == (50, 7) and a.dtype == jnp.bool_
    assert np.array_equal(a, keep_mask(jax.random.key(2), 0.3, (50, 7)))
    assert not np.array_equal(a, keep_mask(jax.random.key(3), 0.3, (50, 7)))
    legacy = keep_mask(jax.random.PRNGKey(2), 0.3, (50, 7))  # a raw uint32[2] key gives the same mask
    assert np.array_equal(a, legacy)


def test_keep_mask_falls_back_to_bernoulli_for_rbg_keys():
    dropped = ~np.asarray(keep_mask(jax.random.key(0, impl="rbg"), 0.05, (200, 500)))
    assert within_binomial(dropped.sum(), dropped.size, drop_threshold(0.05) / 2 ** 16)


def test_dropout_scales_kept_entries_like_flax_and_is_unbiased():
    x = jax.random.uniform(jax.random.key(4), (400, 250), minval=1.0, maxval=2.0)
    rngs = {"dropout": jax.random.key(5)}
    ours = np.asarray(Dropout(0.2).apply({}, x, rngs=rngs))
    flax = np.asarray(nn.Dropout(0.2, deterministic=False).apply({}, x, rngs=rngs))
    keep = 1 - drop_threshold(0.2) / 2 ** 16  # 0.8 rounded to a multiple of 2^-16; Flax's is 0.8
    for y, k in ((ours, keep), (flax, 0.8)):  # kept entries are x / keep, the others 0
        kept = y != 0
        np.testing.assert_allclose(y[kept], np.asarray(x)[kept] / k, rtol=1e-6)
    # Both are unbiased: the mean of y / x over 100 000 entries is 1 within 5 standard errors.
    se = np.sqrt((1 - keep) / keep / x.size)
    assert abs(np.mean(ours / np.asarray(x)) - 1) < 5 * se
    assert abs(np.mean(flax / np.asarray(x)) - 1) < 5 * se


def test_dropout_is_the_identity_when_deterministic_or_rate_zero_and_rejects_bad_rates():
    x = jnp.arange(12.0).reshape(3, 4)
    assert Dropout(0.5, deterministic=True).apply({}, x) is x
    assert Dropout(0.0).apply({}, x) is x
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\)"):
        Dropout(1.0).apply({}, x, rngs={"dropout": jax.random.key(0)})
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\)"):
        keep_mask(jax.random.key(0), -0.1, (3,))


SHARDED = """
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from cnnlab.nn import Dropout
mesh = Mesh(np.array(jax.devices()), ("batch",))
x = jax.random.normal(jax.random.key(0), (8, 50, 32))
f = jax.jit(lambda x, key: Dropout(0.3).apply({}, x, rngs={"dropout": key}))
xs = jax.device_put(x, NamedSharding(mesh, P("batch")))
hlo = f.lower(xs, jax.random.key(1)).compile().as_text()
print(len(jax.devices()), bool(jnp.array_equal(f(x, jax.random.key(1)), f(xs, jax.random.key(1)))),
      sum(hlo.count(op) for op in ("all-gather", "all-to-all", "collective-permute", "all-reduce")))
"""


def test_dropout_on_a_batch_sharded_input_equals_unsharded_without_communication():
    env = {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", SHARDED], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["4", "True", "0"]  # 4 devices, same output, no collectives
