"""The settings of one FaceNet version (one row of Table 4). Defaults are the baseline v1.0 (§5.2–§5.3.1);
each ``experiments/facedet_v*.py`` changes only what the paper changed up to its row."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class FaceNetConfig:
    name: str = "v1.0"
    # Model (§5.2.1, §5.3.3, §5.3.5, §5.3.6)
    depth: int = 18                                   # ResNet backbone
    levels: tuple = ("conv2", "conv3", "conv4", "conv5", "conv6")
    fpn: bool = False                                 # top-down pathway (v1.3+)
    upsample: bool = False                            # ×2 bilinear in the heads after 2 bottlenecks (v2.1+)
    channels: int = 128                               # width of the levels and heads (not given by the paper)
    prior: float = 0.001                              # π of the classification bias b = −log((1−π)/π)
    grad: str = "custom"                              # backward: "custom" (the paper's) | "autodiff" (JAX's)
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
    # Data and training (§5.2.2, §5.3.5)
    color_jitter: bool = False                        # v2.3+
    image_size: int = 512
    max_faces: int = 256                              # ground truth padded to this many faces per image
    batch_size: int = 8
    steps: int = 70_000
    learning_rate: float = 1e-4
    lr_boundaries: tuple = (50_000, 60_000)
    lr_scales: tuple = (0.1, 0.1)

    @property
    def num_classes(self) -> int:
        """K outputs per anchor: two for the softmax of v1.0, one sigmoid logit otherwise."""
        return 2 if self.classification == "softmax" else 1
