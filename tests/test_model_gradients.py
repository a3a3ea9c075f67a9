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

from cnnlab import nn as cnn
from cnnlab.caption.model import CaptionModel
from cnnlab.facedet.model import FaceNet
from cnnlab.facedet.train import load_config
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


def _facenet(grad, size=64):
    cfg = dataclasses.replace(load_config("v2_4"), image_size=size, channels=32, grad=grad)
    return FaceNet(cfg)


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


IMAGES = jnp.asarray(np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)), jnp.float32)
TOKENS = jnp.asarray([[3, 4, 5, 1, 0], [6, 3, 1, 0, 0]], jnp.int32)
# (model for a grad mode, forward inputs, expected custom-VJP calls)
MODELS = {
    "resnet18": (lambda grad: ResNet(18, grad=grad), (IMAGES,), RESNET18_CALLS),
    "facenet_v2_4": (_facenet, (jnp.tile(IMAGES, (1, 2, 2, 1)),), FACENET_V24_CALLS),
    "captioner": (_captioner, ((255 * IMAGES).astype(jnp.uint8), TOKENS), CAPTION_TCN2_CALLS),
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
