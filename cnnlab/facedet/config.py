"""The settings of one FaceNet version: ``FaceNetConfig``, and one named config per row of Table 4.

Defaults are the baseline v1.0 (§5.2–§5.3.1); each row changes only what the paper changed up to it
(``cnnlab train facedet --config v2_4``; ``cnnlab configs facedet`` lists them). The AP columns quoted are
the paper's easy / medium / hard AP on WIDER FACE val; what cnnlab reached is in docs/results.md.
"""

import dataclasses

from cnnlab.nn import GRADS
from cnnlab.train.state import TrainConfig

DEFAULT = None  # `cnnlab train facedet` needs --config: the defaults alone are 70 000 steps at 512²


@dataclasses.dataclass(frozen=True)
class FaceNetConfig(TrainConfig):
    name: str = "v1.0"
    # Model (§5.2.1, §5.3.3, §5.3.5, §5.3.6)
    depth: int = 18                                   # ResNet backbone
    levels: tuple = ("conv2", "conv3", "conv4", "conv5", "conv6")
    fpn: bool = False                                 # top-down pathway (v1.3+)
    upsample: bool = False                            # ×2 bilinear in the heads after 2 bottlenecks (v2.1+)
    channels: int = 128                               # width of the levels and heads (not given by the paper)
    prior: float = 0.001                              # π of the classification bias b = −log((1−π)/π)
    grad: str = "custom"                              # the paper's custom VJPs or JAX autodiff
    # Anchors (§5.2.1, §5.3.5)
    min_anchor_size: float = 16                       # 8 from v2.4
    # width:height 1:1 and 1:2 until v1.8 (§5.3.5 names the 1:2 it replaced; §5.2.1 prints "1:2/3"),
    # 1:1 and 1:1.5 from v1.9.
    aspect_ratios: tuple = (1.0, 0.5)
    iou_threshold: float = 0.55                       # positive anchors (0.65 from v1.9, 0.55 again in v2.2)
    # Loss (§5.3.1–§5.3.4)
    classification: str = "softmax"                   # "softmax" | "bce" | "focal"
    focal_gamma: float = 3.0
    normalisation: str = "all"                        # "all" | "positives" | "level"
    ohem: str | None = None                           # None | "image" | "batch"
    ohem_top_k: int = 128
    # Data (§5.2.2, §5.3.5): "synthetic" (LFW faces on photographs, num_images of them), an official WIDER
    # FACE folder, or "tfds" / "tfds:<train split>" (tensorflow-datasets' wider_face)
    data: str = "synthetic"
    num_images: int = 64
    color_jitter: bool = False                        # v2.3+
    image_size: int = 512
    max_faces: int = 256                              # ground truth padded to this many faces per image
    # Training (§5.2.2)
    batch_size: int = 8
    steps: int = 70_000
    learning_rate: float = 1e-4
    lr_boundaries: tuple = (50_000, 60_000)
    lr_scales: tuple = (0.1, 0.1)
    grad_clip_norm: float | None = 10.0
    eval_every: int = 70_000
    checkpoint_every: int = 70_000
    eval_batch_size: int = 8
    log_every: int = 10

    def __post_init__(self):
        super().__post_init__()
        for name, options in (("classification", ("softmax", "bce", "focal")),
                              ("normalisation", ("all", "positives", "level")), ("ohem", (None, "image", "batch")),
                              ("grad", GRADS)):
            if getattr(self, name) not in options:
                raise ValueError(f"FaceNetConfig: {name} must be one of {options}, got {getattr(self, name)!r}")

    @property
    def num_classes(self) -> int:
        """K outputs per anchor: two for the softmax of v1.0, one sigmoid logit otherwise."""
        return 2 if self.classification == "softmax" else 1


CONFIG_CLASS = FaceNetConfig


def v1_0() -> FaceNetConfig:
    """Table 4, v1.0, §5.3.1, the baseline: softmax cross-entropy averaged over all anchors (Eq. 56–58),
    conv2–conv6, no FPN. Paper: 0 / 0 / 0.
    """
    return FaceNetConfig(name="v1.0")


def v1_1() -> FaceNetConfig:
    """Table 4, v1.1, §5.3.2: binary cross-entropy normalised by the positive anchors (Eq. 59–60). Paper: 37.4 /
    21.7 / 9.7.
    """
    return dataclasses.replace(v1_0(), name="v1.1", classification="bce", normalisation="positives")


def v1_2() -> FaceNetConfig:
    """Table 4, v1.2, §5.3.2: focal loss, γ = 3 (Eq. 61). Paper: 22.4 / 12.1 / 5.1."""
    return dataclasses.replace(v1_0(), name="v1.2", classification="focal", normalisation="positives",
                               focal_gamma=3.0)


def v1_3() -> FaceNetConfig:
    """Table 4, v1.3, §5.3.3: v1.1 + the FPN top-down pathway. Paper: 89.3 / 85.9 / 65.9."""
    return dataclasses.replace(v1_1(), name="v1.3", fpn=True)


def v1_4() -> FaceNetConfig:
    """Table 4, v1.4, §5.3.3: v1.2 + FPN (focal loss). Paper: 81.0 / 81.0 / 64.2."""
    return dataclasses.replace(v1_2(), name="v1.4", fpn=True)


def v1_5() -> FaceNetConfig:
    """Table 4, v1.5, §5.3.3: v1.3 with the level-separated normalisation of Eq. (62). Paper: 87.2 / 82.5 / 50.4."""
    return dataclasses.replace(v1_3(), name="v1.5", normalisation="level")


def v1_6() -> FaceNetConfig:
    """Table 4, v1.6, §5.3.3: v1.4 with the level-separated normalisation of Eq. (62). Paper: 85.1 / 80.0 / 50.6."""
    return dataclasses.replace(v1_4(), name="v1.6", normalisation="level")


def v1_7() -> FaceNetConfig:
    """Table 4, v1.7, §5.3.4: v1.3 + OHEM per image (top 128 classification losses after NMS). Paper: 46.0 / 51.8
    / 42.3.
    """
    return dataclasses.replace(v1_3(), name="v1.7", ohem="image", ohem_top_k=128)


def v1_8() -> FaceNetConfig:
    """Table 4, v1.8, §5.3.4: v1.3 + OHEM over the whole batch (top 128). Paper: 55.9 / 36.8 / 15.6."""
    return dataclasses.replace(v1_3(), name="v1.8", ohem="batch", ohem_top_k=128)


def v1_9() -> FaceNetConfig:
    """Table 4, v1.9, §5.3.5: v1.3 with anchor ratio 1:1.5 (was 1:2) and IoU threshold 0.65. Paper: 88.7 / 86.4 /
    64.8.
    """
    return dataclasses.replace(v1_3(), name="v1.9", aspect_ratios=(1.0, 1 / 1.5), iou_threshold=0.65)


def v2_0() -> FaceNetConfig:
    """Table 4, v2.0, §5.3.5: v1.9 on conv3–conv7 (conv7 added, anchors still 16–406 px). Paper: 84.4 / 83.4 /
    57.1.
    """
    return dataclasses.replace(v1_9(), name="v2.0", levels=("conv3", "conv4", "conv5", "conv6", "conv7"))


def v2_1() -> FaceNetConfig:
    """Table 4, v2.1, §5.3.5: v2.0 + ×2 bilinear up-sampling in the heads (denser anchors). Paper: 89.1 / 86.6 /
    64.4.
    """
    return dataclasses.replace(v2_0(), name="v2.1", upsample=True)


def v2_2() -> FaceNetConfig:
    """Table 4, v2.2, §5.3.5: v2.1 with the IoU threshold back at 0.55. Paper: 87.1 / 84.1 / 61.3."""
    return dataclasses.replace(v2_1(), name="v2.2", iou_threshold=0.55)


def v2_3() -> FaceNetConfig:
    """Table 4, v2.3, §5.3.5: v2.1 + colour jitter (noise, hue shift). The paper builds on the better threshold,
    0.65 (v2.2's 0.55 was worse). Paper: 92.2 / 90.3 / 70.1.
    """
    return dataclasses.replace(v2_1(), name="v2.3", color_jitter=True)


def v2_4() -> FaceNetConfig:
    """Table 4, v2.4, §5.3.5: v2.3 on conv2–conv7 with anchors from 8 px (8² … 406²). Paper: 89.6 / 86.8 / 75.8."""
    return dataclasses.replace(v2_3(), name="v2.4", levels=("conv2", "conv3", "conv4", "conv5", "conv6", "conv7"),
                               min_anchor_size=8)


def v2_5() -> FaceNetConfig:
    """Table 4, v2.5, §5.3.6: v2.4 with a ResNet-50 backbone (101 and 152 also tried). Paper: 0 / 0 / 0 (did not
    converge).
    """
    return dataclasses.replace(v2_4(), name="v2.5", depth=50)
