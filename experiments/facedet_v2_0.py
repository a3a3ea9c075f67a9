"""FaceNet v2.0 (Table 4), §5.3.5: v1.9 on conv3–conv7 (conv7 added, anchors still 16–406 px). Paper: 84.4 / 83.4 / 57.1.

Easy / medium / hard AP on WIDER FACE val as the paper reports them; what cnnlab reached is in docs/results.md.
"""

from cnnlab.facedet.config import FaceNetConfig


def get_config() -> FaceNetConfig:
    return FaceNetConfig(
        name="v2.0",
        classification="bce", normalisation="positives",
        fpn=True,
        aspect_ratios=(1.0, 1 / 1.5), iou_threshold=0.65,
        levels=("conv3", "conv4", "conv5", "conv6", "conv7"),
    )
