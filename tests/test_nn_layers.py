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


@pytest.mark.parametrize("layer,shape", [("conv", (8, 32, 32, 2)), ("conv1d", (8, 900, 2))])
def test_bfloat16_bias_gradient_is_summed_in_float32(layer, shape):
    """Eq. (23)'s bias gradient over N H' W' (or N T) = 7 200 outputs of bfloat16 activations: summed in
    bfloat16 it would be off by ~1e-2 relative; the float64 sum of the same cotangents is the reference."""
    module = (cnn.Conv(3, 3, padding=1, dtype=jnp.bfloat16) if layer == "conv"
              else cnn.Conv1D(3, kernel_size=2, dtype=jnp.bfloat16))
    x = jax.random.normal(jax.random.key(0), shape)
    variables = module.init(jax.random.key(1), x)
    # cotangents exact in bfloat16, all positive so that rounding errors cannot cancel
    g = jax.random.uniform(jax.random.key(2), shape[:-1] + (3,), minval=1.0, maxval=2.0).astype(jnp.bfloat16)
    grads = jax.jit(jax.grad(lambda p: jnp.sum(module.apply({**variables, "params": p}, x).astype(jnp.float32)
                                               * g.astype(jnp.float32))))(variables["params"])
    assert grads["bias"].dtype == jnp.float32
    reference = np.asarray(g, np.float64).reshape(-1, 3).sum(axis=0)
    np.testing.assert_allclose(np.asarray(grads["bias"], np.float64), reference, rtol=1e-5)


def test_layers_reject_unknown_grad_mode():
    with pytest.raises(ValueError, match="grad must be one of"):
        cnn.Dense(3, grad="manual").init(jax.random.key(0), jnp.ones((2, 4)))
