"""FaceNet v2.3 (Table 4), §5.3.5: v2.1 + colour jitter (noise, hue shift). The paper builds on the better threshold, 0.65
(v2.2's 0.55 was worse). Paper: 92.2 / 90.3 / 70.1.

Easy / medium / hard AP on WIDER FACE val as the paper reports them; what cnnlab reached is in docs/results.md.
"""

from cnnlab.facedet.config import FaceNetConfig


def get_config() -> FaceNetConfig:
    return FaceNetConfig(
        name="v2.3",
        classification="bce", normalisation="positives",
        fpn=True,
        aspect_ratios=(1.0, 1 / 1.5), iou_threshold=0.65,
        levels=("conv3", "conv4", "conv5", "conv6", "conv7"),
        upsample=True,
        color_jitter=True,
    )
