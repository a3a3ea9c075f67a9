"""FaceNet (§5.2.1): ResNet backbone, extra conv6/conv7 levels, optional FPN, shared residual heads.

``FaceNet(config)(images, train)`` takes ``images: [N, S, S, 3]`` RGB in [0, 1] and returns
``(cls_logits [N, A_total, K], box_offsets [N, A_total, 4])`` with anchors ordered as
``anchors.generate_anchors`` orders them (level by level, then [H, W, A]).

Every convolution, normalisation and ReLU is a ``cnnlab.nn`` layer on the paper's ops; ``config.grad`` picks
their backward (``"custom"``: the written-out equations, ``"autodiff"``: JAX's). The up-sampling of the FPN
(nearest) and of the v2.1+ heads (bilinear) stays ``jax.image.resize``: it has no parameters and is linear,
so JAX's gradient of it (the transposed interpolation) is exact and there is no equation to write out.
``dtype`` is every layer's compute dtype (``cnnlab.nn.layers``); the tasks pass
``cnnlab.train.compute_dtype(config.precision)``.
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnlab.facedet.anchors import anchors_per_position
from cnnlab.facedet.config import FaceNetConfig
from cnnlab.nn.layers import BatchNorm, Conv, op
from cnnlab.nn.resnet import Bottleneck, ResNet, normalize_imagenet


class ExtraLevel(nn.Module):
    """conv6 / conv7: one stride-2 3×3 convolution and two residual bottlenecks (§5.2.1, §5.3.5)."""
    channels: int
    grad: str = "custom"
    impl: str = "auto"
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool):
        g, dt = self.grad, self.dtype
        x = op("relu", g)(BatchNorm(use_running_average=not train, momentum=0.9, grad=g, dtype=dt)(
            Conv(self.channels, 3, stride=2, padding=1, use_bias=False, grad=g, impl=self.impl, dtype=dt)(x)))
        for _ in range(2):
            x = Bottleneck(self.channels // 4, grad=g, impl=self.impl, dtype=dt)(x, train)
        return x


class Head(nn.Module):
    """Four residual bottlenecks then a 3×3 convolution to ``outputs`` per cell; with ``upsample`` the map is
    enlarged ×2 (bilinear) after the first two (v2.1). One instance serves every level (shared weights), so
    its bottlenecks use GroupNorm (see ``Bottleneck``); the paper does not say which normalisation it used."""
    channels: int
    outputs: int
    upsample: bool
    grad: str = "custom"
    impl: str = "auto"
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool):
        for i in range(4):
            if i == 2 and self.upsample:
                n, h, w, c = x.shape
                x = jax.image.resize(x, (n, 2 * h, 2 * w, c), "bilinear")
            x = Bottleneck(self.channels // 4, norm="group", grad=self.grad, impl=self.impl, dtype=self.dtype)(
                x, train)
        return Conv(self.outputs, 3, padding=1, kernel_init=nn.initializers.normal(0.01), grad=self.grad,
                    impl=self.impl, dtype=self.dtype)(x)


class FaceNet(nn.Module):
    """``config.grad`` picks every layer's backward; ``impl`` the convolutions' implementation."""
    config: FaceNetConfig
    impl: str = "auto"
    dtype: Any = None

    @nn.compact
    def __call__(self, images, train: bool = False):
        cfg = self.config
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"FaceNet: images must be [N, S, S, 3], got shape {images.shape}")
        c, g, impl, dt = cfg.channels, cfg.grad, self.impl, self.dtype
        feats = ResNet(cfg.depth, grad=g, impl=impl, dtype=dt, name="backbone")(normalize_imagenet(images), train)
        if "conv6" in cfg.levels or "conv7" in cfg.levels:
            feats["conv6"] = ExtraLevel(c, g, impl, dt, name="conv6")(feats["conv5"], train)
        if "conv7" in cfg.levels:
            feats["conv7"] = ExtraLevel(c, g, impl, dt, name="conv7")(feats["conv6"], train)
        # 1×1 laterals bring every level to one width so the heads can be shared.
        maps = {lv: Conv(c, 1, grad=g, impl=impl, dtype=dt, name=f"lateral_{lv}")(feats[lv]) for lv in cfg.levels}
        if cfg.fpn:  # FPN top-down pathway (Lin et al. 2017): add the up-sampled coarser level, then smooth
            for fine, coarse in reversed(list(zip(cfg.levels[:-1], cfg.levels[1:]))):
                n, h, w, _ = maps[fine].shape
                up = jax.image.resize(maps[coarse], (n, h, w, c), "nearest")
                maps[fine] = Conv(c, 3, padding=1, grad=g, impl=impl, dtype=dt, name=f"smooth_{fine}")(maps[fine] + up)
        a, k = anchors_per_position(cfg.aspect_ratios), cfg.num_classes
        # Prior π (§5.2.1): face probability π for every anchor at initialisation, b = −log((1−π)/π).
        prior_bias = -math.log((1 - cfg.prior) / cfg.prior)
        cls_head = Head(c, a * k, cfg.upsample, g, impl, dt, name="cls_head")
        reg_head = Head(c, a * 4, cfg.upsample, g, impl, dt, name="reg_head")
        cls, reg = [], []
        for lv in cfg.levels:
            logits = cls_head(maps[lv], train)
            n = logits.shape[0]
            logits = logits.reshape(n, -1, k)
            if k == 2:  # softmax: background logit 0, face logit b gives p(face) = π
                logits = logits + jnp.asarray([0.0, prior_bias], logits.dtype)
            else:
                logits = logits + prior_bias
            cls.append(logits)
            reg.append(reg_head(maps[lv], train).reshape(n, -1, 4))
        return jnp.concatenate(cls, axis=1), jnp.concatenate(reg, axis=1)
