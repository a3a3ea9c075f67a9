"""The detection losses against their closed forms (numpy, float64) and central finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnnlab.ops import binary_cross_entropy, focal_loss, smooth_l1

Z = np.array([-8.0, -2.5, -0.3, 0.0, 0.4, 1.7, 6.0])
T = np.array([0.0, 1.0, 1.0, 0.0, 0.3, 1.0, 0.0])


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _focal_np(z, t, gamma, alpha=None):
    q = _sigmoid(z)
    a = 1.0 if alpha is None else alpha
    b = 1.0 if alpha is None else 1.0 - alpha
    return -a * t * (1 - q) ** gamma * np.log(q) - b * (1 - t) * q ** gamma * np.log(1 - q)


def _central_diff(f, z, eps=1e-6):
    return (f(z + eps) - f(z - eps)) / (2 * eps)


def test_smooth_l1_matches_eq56_and_is_continuous_at_beta():
    x = np.array([-3.0, -1.0, -0.5, 0.0, 0.999, 1.0, 2.0])
    want = np.where(np.abs(x) < 1, 0.5 * x ** 2, np.abs(x) - 0.5)
    np.testing.assert_allclose(smooth_l1(jnp.asarray(x, jnp.float32)), want, rtol=1e-6)
    lo, hi = smooth_l1(jnp.array([0.5 - 1e-4, 0.5 + 1e-4]), beta=0.5)
    assert abs(float(hi - lo)) < 1e-3  # value continuous, slope 1 on both sides
    np.testing.assert_allclose(jax.grad(lambda v: smooth_l1(v, beta=0.5))(jnp.float32(0.4999)), 0.9998, rtol=1e-4)


def test_binary_cross_entropy_matches_eq59_closed_form():
    q = _sigmoid(Z)
    want = -T * np.log(q) - (1 - T) * np.log(1 - q)
    np.testing.assert_allclose(binary_cross_entropy(jnp.asarray(Z, jnp.float32), jnp.asarray(T)), want, rtol=1e-5)


@pytest.mark.parametrize("gamma,alpha", [(0.0, None), (2.0, None), (3.0, None), (2.0, 0.25)])
def test_focal_loss_matches_eq61_with_prediction_modulating_factor(gamma, alpha):
    got = focal_loss(jnp.asarray(Z, jnp.float32), jnp.asarray(T), gamma=gamma, alpha=alpha)
    np.testing.assert_allclose(got, _focal_np(Z, T, gamma, alpha), rtol=1e-5, atol=1e-7)


def test_focal_loss_gamma_zero_equals_binary_cross_entropy():
    z, t = jnp.asarray(Z, jnp.float32), jnp.asarray(T, jnp.float32)
    np.testing.assert_allclose(focal_loss(z, t, gamma=0.0), binary_cross_entropy(z, t), rtol=1e-6)


@pytest.mark.parametrize("name", ["bce", "focal3"])
def test_classification_loss_gradients_match_finite_differences(name):
    if name == "bce":
        jax_fn = lambda z: jnp.sum(binary_cross_entropy(z, jnp.asarray(T, jnp.float32)))
        np_fn = lambda z: -T * np.log(_sigmoid(z)) - (1 - T) * np.log(1 - _sigmoid(z))
    else:
        jax_fn = lambda z: jnp.sum(focal_loss(z, jnp.asarray(T, jnp.float32), gamma=3.0))
        np_fn = lambda z: _focal_np(z, T, 3.0)
    got = jax.jit(jax.grad(jax_fn))(jnp.asarray(Z, jnp.float32))
    np.testing.assert_allclose(got, _central_diff(np_fn, Z), rtol=2e-4, atol=1e-6)


def test_smooth_l1_gradient_matches_finite_differences():
    x = np.array([-2.0, -0.7, 0.3, 0.9, 1.5])
    want = _central_diff(lambda v: np.where(np.abs(v) < 1, 0.5 * v ** 2, np.abs(v) - 0.5), x)
    np.testing.assert_allclose(jax.grad(lambda v: jnp.sum(smooth_l1(v)))(jnp.asarray(x, jnp.float32)), want,
                               rtol=1e-4)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_losses_stay_finite_and_linear_for_huge_logits(dtype):
    z = jnp.array([-1000.0, -100.0, 100.0, 1000.0], dtype)
    t = jnp.array([1.0, 0.0, 0.0, 1.0], dtype)
    bce = binary_cross_entropy(z, t)
    assert bce.dtype == jnp.float32  # losses are float32 for bfloat16 logits too
    np.testing.assert_allclose(np.asarray(bce, np.float32), [1000.0, 0.0, 100.0, 0.0], rtol=1e-2, atol=1e-6)
    fl = focal_loss(z, t, gamma=3.0)
    np.testing.assert_allclose(np.asarray(fl, np.float32), [1000.0, 0.0, 100.0, 0.0], rtol=1e-2, atol=1e-6)
    for f in (lambda v: binary_cross_entropy(v, t), lambda v: focal_loss(v, t, gamma=3.0)):
        g = jax.grad(lambda v: jnp.sum(f(v)))(z)
        assert g.dtype == dtype
        assert np.all(np.isfinite(np.asarray(g, np.float32)))
        np.testing.assert_allclose(np.asarray(g, np.float32), [-1.0, 0.0, 1.0, 0.0], atol=1e-2)


def test_losses_vectorise_with_vmap_and_jit():
    z = jnp.asarray(np.stack([Z, -Z]), jnp.float32)
    t = jnp.asarray(np.stack([T, 1 - T]), jnp.float32)
    f = jax.jit(jax.vmap(lambda a, b: focal_loss(a, b, gamma=2.0)))
    np.testing.assert_allclose(f(z, t), focal_loss(z, t, gamma=2.0), rtol=1e-6)


def test_losses_reject_bad_arguments():
    with pytest.raises(ValueError, match=r"binary_cross_entropy: logits and targets must have the same shape, got "
                                         r"\(3,\) and \(2,\)"):
        binary_cross_entropy(jnp.zeros(3), jnp.zeros(2))
    with pytest.raises(TypeError, match="focal_loss: logits must be a floating-point array"):
        focal_loss(jnp.zeros(3, jnp.int32), jnp.zeros(3))
    with pytest.raises(ValueError, match="focal_loss: gamma"):
        focal_loss(jnp.zeros(3), jnp.zeros(3), gamma=-1.0)
    with pytest.raises(ValueError, match="smooth_l1: beta"):
        smooth_l1(jnp.zeros(3), beta=0.0)


@pytest.mark.parametrize("grad", ["custom", "autodiff"])
def test_label_smoothed_classification_loss_equals_optax_on_smoothed_targets(grad):
    from cnnlab.errors import CnnlabError
    from cnnlab.train.tasks import ClassificationLoss

    logits = jnp.asarray(np.random.default_rng(0).normal(0, 3, (5, 7)), jnp.float32)
    labels = jnp.array([0, 6, 3, 3, 1])
    loss = ClassificationLoss(grad, smoothing=0.1)
    expected = optax.softmax_cross_entropy(logits, optax.smooth_labels(jax.nn.one_hot(labels, 7), 0.1))
    np.testing.assert_allclose(loss(logits, {"y": labels}), expected, rtol=1e-5, atol=1e-6)
    got, want = (jax.grad(lambda z, f=f: jnp.sum(f(z)))(logits) for f in
                 (lambda z: loss(z, {"y": labels}),
                  lambda z: optax.softmax_cross_entropy(z, optax.smooth_labels(jax.nn.one_hot(labels, 7), 0.1))))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert ClassificationLoss(grad, 0.1) == loss and ClassificationLoss(grad) != loss
    with pytest.raises(CnnlabError, match=r"label smoothing must be in \[0, 1\)"):
        ClassificationLoss(grad, smoothing=1.0)
