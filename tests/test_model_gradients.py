"""ResNet-18, FaceNet v2.4 and the captioner are built from ``cnnlab.nn``: with ``grad="custom"`` their
parameter gradients (the paper's written-out backward passes) equal JAX's autodiff of the same forward
(``grad="autodiff"``), and the jaxpr of each forward holds one custom-VJP call per layer and no
``flax.linen`` convolution, dense layer, pooling or normalisation outside them.

Small shapes keep the compiles short: 32x32 images, FaceNet at 64x64 with 32 channels, a two-block TCN.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnlab import configs
from cnnlab import nn as cnn
from cnnlab.caption.model import CaptionModel
from cnnlab.facedet.model import FaceNet
from cnnlab.nn.resnet import Bottleneck, ResNet

# Primitives a flax.linen Conv / Dense / max_pool / BatchNorm / GroupNorm puts in a jaxpr; inside cnnlab's
# models they may only appear inside the custom-VJP calls of cnnlab.ops.
FLAX_LAYER_PRIMITIVES = {"conv_general_dilated", "dot_general", "reduce_window_max", "rsqrt"}

# Custom-VJP calls in one forward, counted by hand from the architectures:
# ResNet-18: stem conv + BN + ReLU + max-pool (4), 8 basic blocks of 2 conv + 2 BN + 2 ReLU (48), three
# projection shortcuts of conv + BN (6).
RESNET18_CALLS = 4 + 8 * 6 + 3 * 2
# FaceNet v2.4: the backbone; conv6 and conv7 (conv + BN + ReLU, then 2 bottlenecks of 3 conv + 3 norm +
# 3 ReLU); 6 laterals; 5 FPN smoothing convs; the two heads (4 bottlenecks + 1 conv) on each of 6 levels.
FACENET_V24_CALLS = RESNET18_CALLS + 2 * (3 + 2 * 9) + 6 + 5 + 2 * 6 * (4 * 9 + 1)
# Captioner with a 2-block TCN: the ResNet-18 encoder; per Single block 2 causal convs + 3 ReLU, a 1x1 skip
# conv in the first (512 -> 8 channels); the output projection.
CAPTION_TCN2_CALLS = RESNET18_CALLS + 2 * 5 + 1 + 1


def _facenet(grad, levels=None, impl="auto"):
    cfg = dataclasses.replace(configs.load("facedet", "v2_4"), image_size=64, channels=32, grad=grad)
    return FaceNet(cfg if levels is None else dataclasses.replace(cfg, levels=levels), impl=impl)


def _captioner(grad, encoder=None, embed_dim=512):
    return CaptionModel(vocab_size=7, decoder="tcn", encoder=encoder, embed_dim=embed_dim, tcn_blocks=2,
                        tcn_channels=8, grad=grad)


class SmallEncoder(nn.Module):
    """A ResNet-shaped stand-in for the captioner's ResNet-18 (cnnlab.nn layers only): strided conv, BN, ReLU,
    padded max-pool, one projection bottleneck, global mean: ``images -> {"pooled": [N, features]}``."""
    features: int = 16
    grad: str = "custom"

    @nn.compact
    def __call__(self, x, train=False):
        x = cnn.op("relu", self.grad)(cnn.BatchNorm(use_running_average=not train, grad=self.grad)(
            cnn.Conv(8, 3, stride=2, padding=1, use_bias=False, grad=self.grad)(x)))
        x = cnn.MaxPool(3, 2, padding=1, grad=self.grad)(x)
        x = Bottleneck(self.features // 4, stride=2, grad=self.grad)(x, train)
        return {"pooled": jnp.mean(x, axis=(1, 2))}


def _walk(jaxpr, counts):
    """Count custom-VJP calls and collect the primitives outside them, through nested jaxprs (jit, scan)."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name.startswith("custom_vjp_call"):
            counts["custom_vjp"] += 1
            continue
        if eqn.params.get("name") == "_resize":  # jax.image.resize's matmuls: plain-JAX up-sampling
            continue
        counts["outside"].add(eqn.primitive.name)
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    _walk(inner, counts)
    return counts


def _layer_calls(fn, *args):
    counts = _walk(jax.make_jaxpr(fn)(*args).jaxpr, {"custom_vjp": 0, "outside": set()})
    return counts["custom_vjp"], counts["outside"]


# 64x64 images: at 32x32 the conv5 batch norm of a batch of 2 sees 2 values per channel, where x_hat = +-1
# whatever the input, its input gradient is zero up to eps and both gradients are rounding noise.
IMAGES = jnp.asarray(np.random.default_rng(0).uniform(0, 1, (2, 64, 64, 3)), jnp.float32)
TOKENS = jnp.asarray([[3, 4, 5, 1, 0], [6, 3, 1, 0, 0]], jnp.int32)
# (model for a grad mode, forward inputs, expected custom-VJP calls)
MODELS = {
    "resnet18": (lambda grad: ResNet(18, grad=grad), (IMAGES,), RESNET18_CALLS),
    # 4 different images: conv7 is 1x1 here, and its batch norm needs more than two distinct values
    "facenet_v2_4": (_facenet, (jnp.asarray(np.random.default_rng(2).uniform(0, 1, (4, 64, 64, 3)), jnp.float32),),
                     FACENET_V24_CALLS),
    "captioner": (_captioner, ((255 * IMAGES).astype(jnp.uint8), TOKENS), CAPTION_TCN2_CALLS),
}
# For the gradients (a compile each): the captioner with a small encoder, FaceNet v2.4 on its three coarsest
# levels (conv6, conv7, FPN, up-sampling GroupNorm heads and the whole backbone, half the head calls).
GRADIENT_MODELS = {
    "resnet18": MODELS["resnet18"][:2],
    "facenet_v2_4_conv5_7": (lambda grad: _facenet(grad, ("conv5", "conv6", "conv7")), MODELS["facenet_v2_4"][1]),
    "facenet_v2_4_conv5_7_xla_forward": (lambda grad: _facenet(grad, ("conv5", "conv6", "conv7"), impl="xla"),
                                         MODELS["facenet_v2_4"][1]),
    "captioner_small_encoder": (lambda grad: _captioner(grad, SmallEncoder(grad=grad), embed_dim=16),
                                MODELS["captioner"][1]),
}


def _train_forward(model, variables, *inputs):
    """Training-mode forward (batch statistics, running averages updated): the outputs' leaves."""
    out, _ = model.apply(variables, *inputs, train=True, mutable=["batch_stats"])
    return jax.tree.leaves(out)


@pytest.mark.parametrize("name", MODELS)
def test_forward_jaxpr_has_one_custom_vjp_per_layer_and_no_flax_layer(name):
    make, inputs, expected = MODELS[name]
    variables = jax.eval_shape(make("custom").init, jax.random.key(0), *inputs)
    for grad, calls in (("custom", expected), ("autodiff", 0)):
        n, outside = _layer_calls(lambda v, *x: _train_forward(make(grad), v, *x), variables, *inputs)
        assert n == calls, f"{name} grad={grad}: {n} custom-VJP calls, expected {calls} (one per layer)"
        if grad == "custom":
            assert not outside & FLAX_LAYER_PRIMITIVES, f"{name}: {outside & FLAX_LAYER_PRIMITIVES} outside ops"


def _random_variables(shapes, rng):
    """Variables drawn from their shapes alone (``jax.eval_shape`` of init; Flax's eager init of FaceNet takes
    long): kernels ~ N(0, 1/fan_in), scales 1 + N(0, 0.1^2), biases N(0, 0.1^2), running statistics (0, 1)."""
    def draw(path, leaf):
        name = jax.tree_util.keystr(path[-1:])
        if "batch_stats" in jax.tree_util.keystr(path[:1]):
            return np.ones(leaf.shape) if "var" in name else np.zeros(leaf.shape)
        if leaf.ndim > 1:
            return rng.normal(size=leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1]))
        return (1.0 if "scale" in name else 0.0) + 0.1 * rng.normal(size=leaf.shape)
    return jax.tree_util.tree_map_with_path(draw, shapes)


def _parameter_gradients(model, variables, inputs, probes):
    """Gradients w.r.t. the parameters of a random linear read-out of every training-mode output."""
    def loss(params):
        outs = _train_forward(model, {**variables, "params": params}, *inputs)
        return sum(jnp.sum(p * o) for p, o in zip(probes, outs))
    return jax.jit(jax.grad(loss))(variables["params"])


def _largest_relative_error(custom, autodiff):
    """max over leaves of max |g_custom - g_autodiff| / max |g_autodiff| (the leaf's name with it)."""
    errors = jax.tree_util.tree_map_with_path(
        lambda path, c, a: (float(np.max(np.abs(c - a)) / max(np.max(np.abs(a)), 1e-30)), jax.tree_util.keystr(path)),
        custom, autodiff)
    return max(jax.tree.leaves(errors, is_leaf=lambda e: isinstance(e, tuple)))


# FaceNet in float32 runs its convolutions with impl="xla" in both modes. With impl="auto" the custom model's
# narrow layers take the patch forward, whose float32 sums are rounded differently from XLA's convolution that
# conv2d_autodiff runs; with random weights this FaceNet (batch norms over 4 values at conv7, 1x1 maps)
# amplifies that last-bit difference to up to 1.9e-2 of a leaf's largest gradient entry, 60x more than the
# autodiff model's own float32-vs-float64 error (6.8e-4; 64x64, batch 4, 2026-12-02). With the same forward the
# custom backward (Eq. (24)-(25) as XLA convolutions, batch/group norm, ReLU, max-pool) and autodiff agree to
# ~3e-6; float64 checks the patch backward of impl="auto" to ~1e-12.
@pytest.mark.parametrize("name,dtype,tolerance", [("resnet18", "float32", 1e-4), ("resnet18", "float64", 1e-10),
                                                  ("captioner_small_encoder", "float32", 1e-4),
                                                  ("captioner_small_encoder", "float64", 1e-10),
                                                  ("facenet_v2_4_conv5_7_xla_forward", "float32", 1e-4),
                                                  ("facenet_v2_4_conv5_7", "float64", 1e-10)])
def test_custom_parameter_gradients_equal_autodiff(name, dtype, tolerance):
    make, inputs = GRADIENT_MODELS[name]
    rng = np.random.default_rng(1)
    with jax.enable_x64(dtype == "float64"):
        inputs = [x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x for x in inputs]
        shapes = jax.eval_shape(make("custom").init, jax.random.key(0), *inputs)
        variables = jax.tree.map(lambda v: jnp.asarray(v, dtype), _random_variables(shapes, rng))
        outs = jax.eval_shape(lambda v: _train_forward(make("custom"), v, *inputs), variables)
        probes = [jnp.asarray(rng.normal(size=o.shape), dtype) for o in outs]
        grads = {grad: _parameter_gradients(make(grad), variables, inputs, probes) for grad in cnn.GRADS}
        assert all(g.dtype == jnp.dtype(dtype) for g in jax.tree.leaves(grads["custom"]))
        error, leaf = _largest_relative_error(grads["custom"], grads["autodiff"])
    assert error <= tolerance, f"{name} {dtype}: custom vs autodiff gradient of {leaf}: {error:.2e}"
