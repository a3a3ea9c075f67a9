"""FaceNet v2.4 (Table 4), §5.3.5: v2.3 on conv2–conv7 with anchors from 8 px (8² … 406²). Paper: 89.6 / 86.8 / 75.8.

Easy / medium / hard AP on WIDER FACE val as the paper reports them; what cnnlab reached is in docs/results.md.
"""

from cnnlab.facedet.config import FaceNetConfig


def get_config() -> FaceNetConfig:
    return FaceNetConfig(
        name="v2.4",
        classification="bce", normalisation="positives",
        fpn=True,
        aspect_ratios=(1.0, 1 / 1.5), iou_threshold=0.65,
        levels=("conv2", "conv3", "conv4", "conv5", "conv6", "conv7"), min_anchor_size=8,
        upsample=True,
        color_jitter=True,
    )
