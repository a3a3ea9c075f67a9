"""FaceNet v2.2 (Table 4), §5.3.5: v2.1 with the IoU threshold back at 0.55. Paper: 87.1 / 84.1 / 61.3.

Easy / medium / hard AP on WIDER FACE val as the paper reports them; what cnnlab reached is in docs/results.md.
"""

from cnnlab.facedet.config import FaceNetConfig


def get_config() -> FaceNetConfig:
    return FaceNetConfig(
        name="v2.2",
        classification="bce", normalisation="positives",
        fpn=True,
        aspect_ratios=(1.0, 1 / 1.5), iou_threshold=0.55,
        levels=("conv3", "conv4", "conv5", "conv6", "conv7"),
        upsample=True,
    )
