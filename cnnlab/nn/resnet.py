"""ResNet-18/34/50/101/152 (He et al. 2016), the backbone of FaceNet (§5.2.1) and of the captioning encoder.

The layout and the submodule names follow torchvision's ``resnet*`` (``conv1``, ``bn1``, ``layer1_0`` …
with ``conv1``/``bn1``/``conv2``/``bn2``[/``conv3``/``bn3``] and ``downsample_conv``/``downsample_bn``), so a
torchvision state_dict maps onto the params one name at a time (torchvision's "v1.5": the stride of a
bottleneck sits on its 3×3 convolution). Input: ``x: [N, H, W, 3]``, ImageNet-normalised RGB.
``ResNet(depth)(x, train)`` returns ``{"conv2": [N, H/4, W/4, C2], "conv3": …/8, "conv4": …/16,
"conv5": …/32, "pooled": [N, C5]}`` with C5 = 512 (18, 34) or 2048 (50, 101, 152).

Every layer is a ``cnnlab.nn`` module on the paper's ops (convolution Eq. (20)–(25), batch norm Eq. (34)–(50),
max-pooling Eq. (28)–(33), ReLU): ``grad="custom"`` runs their written-out backward passes, ``"autodiff"``
JAX's gradient of the same forward; ``impl`` picks ``ops.conv2d``'s implementation. The global average pool
is a plain mean (its gradient, 1/(HW) to every position, is what autodiff gives). ``dtype`` is every layer's
compute dtype (``cnnlab.nn.layers``; e.g. ``jnp.bfloat16``, with float32 parameters and statistics).
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnnlab.nn.layers import BatchNorm, Conv, GroupNorm, MaxPool, op

# (block type, blocks per stage conv2..conv5) of each depth; He et al. 2016, Table 1.
DEPTHS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3)),
          101: ("bottleneck", (3, 4, 23, 3)), 152: ("bottleneck", (3, 8, 36, 3))}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _conv(features, kernel, stride, grad, impl, name=None, dtype=None):
    # torchvision pads k//2 on every side and has no conv biases before BatchNorm.
    return Conv(features, kernel, stride=stride, padding=kernel // 2, use_bias=False, grad=grad, impl=impl,
                dtype=dtype, name=name)


def _bn(train, grad, name=None, dtype=None):
    # Flax momentum 0.9 is torch's momentum 0.1; eps as torch.
    return BatchNorm(use_running_average=not train, momentum=0.9, eps=1e-5, grad=grad, dtype=dtype, name=name)


class BasicBlock(nn.Module):
    """Two 3×3 convolutions and an identity (or 1×1 projection) shortcut; output ``planes`` channels."""
    planes: int
    stride: int = 1
    grad: str = "custom"
    impl: str = "auto"
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool):
        g, impl, dt, relu = self.grad, self.impl, self.dtype, op("relu", self.grad)
        y = relu(_bn(train, g, "bn1", dt)(_conv(self.planes, 3, self.stride, g, impl, "conv1", dt)(x)))
        y = _bn(train, g, "bn2", dt)(_conv(self.planes, 3, 1, g, impl, "conv2", dt)(y))
        if self.stride != 1 or x.shape[-1] != self.planes:
            x = _bn(train, g, "downsample_bn", dt)(
                _conv(self.planes, 1, self.stride, g, impl, "downsample_conv", dt)(x))
        return relu(x + y)


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (strided), 1×1 expand to ``4 · planes``; the residual bottleneck FaceNet also uses
    for conv6/conv7 and its heads.

    ``norm="group"`` replaces BatchNorm by GroupNorm: a head shared across pyramid levels sees differently
    scaled maps at each level, and one set of BatchNorm running statistics cannot serve them all at inference.
    """
    planes: int
    stride: int = 1
    expansion: int = 4
    norm: str = "batch"
    grad: str = "custom"
    impl: str = "auto"
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool):
        g, impl, dt, relu = self.grad, self.impl, self.dtype, op("relu", self.grad)
        out = self.planes * self.expansion
        norm = (lambda name: _bn(train, g, name, dt)) if self.norm == "batch" else (
            lambda name: GroupNorm(num_groups=None, group_size=min(8, self.planes), grad=g, dtype=dt, name=name))
        y = relu(norm("bn1")(_conv(self.planes, 1, 1, g, impl, "conv1", dt)(x)))
        y = relu(norm("bn2")(_conv(self.planes, 3, self.stride, g, impl, "conv2", dt)(y)))
        y = norm("bn3")(_conv(out, 1, 1, g, impl, "conv3", dt)(y))
        if self.stride != 1 or x.shape[-1] != out:
            x = norm("downsample_bn")(_conv(out, 1, self.stride, g, impl, "downsample_conv", dt)(x))
        return relu(x + y)


class ResNet(nn.Module):
    """ResNet of ``depth`` 18, 34, 50, 101 or 152 returning the conv2–conv5 maps and the pooled feature."""
    depth: int = 18
    grad: str = "custom"
    impl: str = "auto"
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        if self.depth not in DEPTHS:
            raise ValueError(f"ResNet: depth must be one of {sorted(DEPTHS)}, got {self.depth}")
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"ResNet: x must be [N, H, W, 3], got shape {x.shape}")
        kind, blocks = DEPTHS[self.depth]
        block = BasicBlock if kind == "basic" else Bottleneck
        g, impl, dt = self.grad, self.impl, self.dtype
        x = op("relu", g)(_bn(train, g, "bn1", dt)(_conv(64, 7, 2, g, impl, "conv1", dt)(x)))
        x = MaxPool(3, 2, padding=1, grad=g)(x)
        features = {}
        for stage, (n, planes) in enumerate(zip(blocks, (64, 128, 256, 512))):
            for i in range(n):
                stride = 2 if i == 0 and stage > 0 else 1
                x = block(planes, stride, grad=g, impl=impl, dtype=dt, name=f"layer{stage + 1}_{i}")(x, train)
            features[f"conv{stage + 2}"] = x
        features["pooled"] = jnp.mean(x, axis=(1, 2), dtype=jnp.promote_types(x.dtype, jnp.float32)).astype(x.dtype)
        return features


def normalize_imagenet(images):
    """images: [N, H, W, 3] RGB in [0, 1] -> the input the ImageNet weights expect."""
    return (images - jnp.asarray(IMAGENET_MEAN, images.dtype)) / jnp.asarray(IMAGENET_STD, images.dtype)
