"""Forward values of the non-convolution ops against independent references (NumPy, jax.nn, Optax, Flax)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnnlab import ops

RNG = np.random.default_rng(0)


def test_dense_matches_numpy():
    x, w, b = RNG.standard_normal((4, 3)), RNG.standard_normal((3, 5)), RNG.standard_normal(5)
    np.testing.assert_allclose(ops.dense(*map(jnp.float32, (x, w, b))), x @ w + b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op,reference", [(ops.relu, jax.nn.relu), (ops.sigmoid, jax.nn.sigmoid),
                                          (ops.tanh, np.tanh)])
def test_activations_match_reference_including_extremes(op, reference):
    x = jnp.array([-1000.0, -3.0, -0.5, 0.0, 0.5, 3.0, 1000.0])
    np.testing.assert_allclose(op(x), reference(x), rtol=1e-6)
    assert np.all(np.isfinite(jax.grad(lambda x: op(x).sum())(x)))


def test_relu_gradient_at_zero_is_zero_like_jax_nn_relu():
    assert jax.grad(ops.relu)(0.0) == jax.grad(jax.nn.relu)(0.0) == 0.0


@pytest.mark.parametrize("shape", [(3, 4, 5, 2), (4, 7, 3), (6, 3)])
def test_batch_norm_matches_flax_batchnorm_and_returns_batch_statistics(shape):
    x = jnp.asarray(RNG.standard_normal(shape) * 3 + 1, jnp.float32)
    gamma, beta = jnp.asarray(RNG.standard_normal((2, shape[-1])), jnp.float32)
    y, mean, var = ops.batch_norm(x, gamma, beta, eps=1e-5)
    module = nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5)
    variables = {"params": {"scale": gamma, "bias": beta},
                 "batch_stats": {"mean": jnp.zeros(shape[-1]), "var": jnp.ones(shape[-1])}}
    y_flax, updated = module.apply(variables, x, mutable=["batch_stats"])
    np.testing.assert_allclose(y, y_flax, rtol=1e-5, atol=1e-5)
    axes = tuple(range(len(shape) - 1))
    np.testing.assert_allclose(mean, np.mean(np.asarray(x), axes), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var, np.var(np.asarray(x), axes), rtol=1e-5)
    # Eq. (38)-(39) with lambda = 1 - momentum is Flax's running-average update.
    running = ops.ewma_update({"mean": jnp.zeros(shape[-1]), "var": jnp.ones(shape[-1])},
                              {"mean": mean, "var": var}, momentum=0.9)
    np.testing.assert_allclose(running["mean"], updated["batch_stats"]["mean"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(running["var"], updated["batch_stats"]["var"], rtol=1e-5)


def test_batch_norm_with_a_mask_matches_flax_batchnorm_mask_and_ignores_the_padding():
    x = jnp.asarray(RNG.standard_normal((3, 6, 2)) * 2 - 1, jnp.float32)
    mask = jnp.asarray(np.arange(6)[None, :, None] >= np.array([0, 2, 5])[:, None, None], jnp.float32)
    gamma, beta = jnp.asarray(RNG.standard_normal((2, 2)), jnp.float32)
    y, mean, var = ops.batch_norm(x, gamma, beta, mask)
    variables = {"params": {"scale": gamma, "bias": beta},
                 "batch_stats": {"mean": jnp.zeros(2), "var": jnp.ones(2)}}
    y_flax, _ = nn.BatchNorm(use_running_average=False, epsilon=1e-5).apply(variables, x, mask=mask,
                                                                            mutable=["batch_stats"])
    np.testing.assert_allclose(y, y_flax, rtol=1e-5, atol=1e-5)
    real = np.asarray(x)[np.asarray(mask[..., 0]) > 0]  # [M, C]: the real steps only
    np.testing.assert_allclose(mean, real.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var, real.var(0), rtol=1e-5)
    # Changing the padded entries changes their outputs only, not the statistics or the real outputs.
    y2, mean2, _ = ops.batch_norm(jnp.where(mask > 0, x, 100.0), gamma, beta, mask)
    np.testing.assert_allclose(mean2, mean, rtol=1e-6)
    is_real = np.asarray(mask[..., 0]) > 0
    np.testing.assert_allclose(np.asarray(y2)[is_real], np.asarray(y)[is_real], rtol=1e-6)


def test_batch_norm_inference_matches_flax_batchnorm_with_running_average():
    x = jnp.asarray(RNG.standard_normal((3, 4, 5, 2)), jnp.float32)
    gamma, beta, mean = jnp.asarray(RNG.standard_normal((3, 2)), jnp.float32)
    var = jnp.asarray(RNG.uniform(0.5, 2, 2), jnp.float32)
    y_flax = nn.BatchNorm(use_running_average=True, epsilon=1e-5).apply(
        {"params": {"scale": gamma, "bias": beta}, "batch_stats": {"mean": mean, "var": var}}, x)
    np.testing.assert_allclose(ops.batch_norm_inference(x, gamma, beta, mean, var), y_flax, rtol=1e-5, atol=1e-6)


def test_ewma_update_is_eq_38_with_lambda_one_minus_momentum():
    lam = 0.25  # Eq. (38): mu_EWMA <- lambda mu + (1 - lambda) mu_EWMA
    assert float(ops.ewma_update(jnp.float32(2.0), jnp.float32(6.0), momentum=1 - lam)) == lam * 6 + (1 - lam) * 2


def test_softmax_matches_jax_nn_and_survives_large_logits():
    x = jnp.asarray(RNG.standard_normal((3, 5, 2)) * 50 + 500, jnp.float32)
    np.testing.assert_allclose(ops.softmax(x, axis=1), jax.nn.softmax(x, axis=1), rtol=1e-5, atol=1e-7)


def test_cross_entropy_matches_optax_and_is_stable_for_extreme_logits():
    logits = jnp.asarray(RNG.standard_normal((2, 3, 10)) * 200, jnp.float32)  # probabilities underflow in float32
    labels = jnp.asarray(RNG.integers(0, 10, (2, 3)), jnp.int32)
    loss = ops.cross_entropy(logits, labels)
    np.testing.assert_allclose(loss, optax.softmax_cross_entropy_with_integer_labels(logits, labels), rtol=1e-5)
    grad = jax.grad(lambda z: ops.cross_entropy(z, labels).sum())(logits)
    np.testing.assert_allclose(grad, jax.nn.softmax(logits) - jax.nn.one_hot(labels, 10), atol=1e-6)
