"""cnnlab.nn layers against Flax's own Linen layers (the independent reference), in both gradient modes."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnlab import nn as cnn

X = jax.random.normal(jax.random.key(0), (4, 7, 7, 3))


def _grads(module, variables, x, **kw):
    """Gradients of a fixed random projection of the output w.r.t. the parameters and the input."""
    def f(p, x):
        out = module.apply({**variables, "params": p}, x, **kw)
        out = out[0] if "mutable" in kw else out  # (y, updated batch_stats) in training mode
        return jnp.sum(out * jax.random.normal(jax.random.key(1), out.shape))
    return jax.jit(jax.grad(f, argnums=(0, 1)))(variables["params"], x)


def _assert_close(a, b, tol=1e-5):
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=tol, atol=tol), a, b)


@pytest.mark.parametrize("grad", cnn.GRADS)
@pytest.mark.parametrize("stride,padding", [(1, 0), (2, 1)])
def test_conv_matches_flax_conv_values_and_grads(grad, stride, padding):
    ours = cnn.Conv(5, 3, stride=stride, padding=padding, grad=grad)
    ref = nn.Conv(5, (3, 3), strides=stride, padding=padding)
    variables = ref.init(jax.random.key(2), X)
    variables = {"params": {**variables["params"], "bias": jnp.arange(5.0)}}
    _assert_close(ours.apply(variables, X), ref.apply(variables, X))
    _assert_close(_grads(ours, variables, X), _grads(ref, variables, X))


@pytest.mark.parametrize("grad", cnn.GRADS)
def test_dense_matches_flax_dense_values_and_grads(grad):
    x = X.reshape(4, -1)
    variables = nn.Dense(6).init(jax.random.key(3), x)
    variables = {"params": {**variables["params"], "bias": jnp.linspace(-2.0, 3.0, 6)}}  # Flax inits it to 0
    ours, ref = cnn.Dense(6, grad=grad), nn.Dense(6)
    _assert_close(ours.apply(variables, x), ref.apply(variables, x))
    _assert_close(_grads(ours, variables, x), _grads(ref, variables, x))


@pytest.mark.parametrize("grad", cnn.GRADS)
@pytest.mark.parametrize("shape", [(4, 7, 7, 3), (8, 3)])
def test_batchnorm_matches_flax_in_training_and_inference(grad, shape):
    x = jax.random.normal(jax.random.key(4), shape) * 3 + 1
    ref = nn.BatchNorm(momentum=0.9, epsilon=1e-5)
    ours = cnn.BatchNorm(momentum=0.9, eps=1e-5, grad=grad)
    variables = ref.init(jax.random.key(5), x, use_running_average=False)
    variables = {"params": {"scale": jnp.linspace(0.5, 2, shape[-1]), "bias": jnp.linspace(-1, 1, shape[-1])},
                 "batch_stats": variables["batch_stats"]}
    (y, new), (y_ref, new_ref) = [m.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
                                  for m in (ours, ref)]
    _assert_close((y, new), (y_ref, new_ref))
    assert not np.allclose(new["batch_stats"]["mean"], 0)  # the running averages really moved
    _assert_close(_grads(ours, variables, x, use_running_average=False, mutable=["batch_stats"]),
                  _grads(ref, variables, x, use_running_average=False, mutable=["batch_stats"]), tol=1e-4)
    trained = {**variables, **new}
    _assert_close(ours.apply(trained, x, use_running_average=True), ref.apply(trained, x, use_running_average=True))
    _assert_close(_grads(ours, trained, x, use_running_average=True),
                  _grads(ref, trained, x, use_running_average=True))


@pytest.mark.parametrize("grad", cnn.GRADS)
def test_maxpool_matches_flax_max_pool(grad):
    x = jnp.round(X * 2) / 2  # ties inside windows, where gradient routing matters
    f = lambda x: cnn.MaxPool(2, 2, grad=grad).apply({}, x)
    g = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2))
    _assert_close(f(x), g(x))
    probe = jax.random.normal(jax.random.key(6), g(x).shape)
    _assert_close(jax.grad(lambda x: jnp.sum(f(x) * probe))(x), jax.grad(lambda x: jnp.sum(g(x) * probe))(x))


@pytest.mark.parametrize("grad", cnn.GRADS)
def test_maxpool_with_padding_matches_flax_max_pool_padded(grad):
    x = jnp.round(X * 2) / 2
    def f(x):
        return cnn.MaxPool(3, 2, padding=1, grad=grad).apply({}, x)

    def g(x):
        return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))

    _assert_close(f(x), g(x))
    probe = jax.random.normal(jax.random.key(6), g(x).shape)
    _assert_close(jax.grad(lambda x: jnp.sum(f(x) * probe))(x), jax.grad(lambda x: jnp.sum(g(x) * probe))(x))


@pytest.mark.parametrize("grad", cnn.GRADS)
@pytest.mark.parametrize("shape,groups", [((4, 5, 5, 8), dict(num_groups=None, group_size=4)),
                                          ((3, 6), dict(num_groups=2))])
def test_groupnorm_matches_flax_groupnorm_values_and_grads(grad, shape, groups):
    x = jax.random.normal(jax.random.key(7), shape) * 3 + 1
    ref = nn.GroupNorm(**groups)
    ours = cnn.GroupNorm(**groups, grad=grad)
    variables = {"params": {"scale": jnp.linspace(0.5, 2, shape[-1]), "bias": jnp.linspace(-1, 1, shape[-1])}}
    assert jax.tree.structure(ref.init(jax.random.key(8), x)) == jax.tree.structure(variables)
    _assert_close(ours.apply(variables, x), ref.apply(variables, x))
    _assert_close(_grads(ours, variables, x), _grads(ref, variables, x), tol=1e-4)


def test_layers_reject_unknown_grad_mode():
    with pytest.raises(ValueError, match="grad must be one of"):
        cnn.Dense(3, grad="manual").init(jax.random.key(0), jnp.ones((2, 4)))
