"""FaceNet v1.9 (Table 4), §5.3.5: v1.3 with anchor ratio 1:1.5 (was 1:2) and IoU threshold 0.65. Paper: 88.7 / 86.4 / 64.8.

Easy / medium / hard AP on WIDER FACE val as the paper reports them; what cnnlab reached is in docs/results.md.
"""

from cnnlab.facedet.config import FaceNetConfig


def get_config() -> FaceNetConfig:
    return FaceNetConfig(
        name="v1.9",
        classification="bce", normalisation="positives",
        fpn=True,
        aspect_ratios=(1.0, 1 / 1.5), iou_threshold=0.65,
    )
