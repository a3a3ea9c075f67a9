"""FaceNet v2.1 (Table 4), §5.3.5: v2.0 + ×2 bilinear up-sampling in the heads (denser anchors). Paper: 89.1 / 86.6 / 64.4.

Easy / medium / hard AP on WIDER FACE val as the paper reports them; what cnnlab reached is in docs/results.md.
"""

from cnnlab.facedet.config import FaceNetConfig


def get_config() -> FaceNetConfig:
    return FaceNetConfig(
        name="v2.1",
        classification="bce", normalisation="positives",
        fpn=True,
        aspect_ratios=(1.0, 1 / 1.5), iou_threshold=0.65,
        levels=("conv3", "conv4", "conv5", "conv6", "conv7"),
        upsample=True,
    )
