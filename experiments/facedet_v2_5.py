"""FaceNet v2.5 (Table 4), §5.3.6: v2.4 with a ResNet-50 backbone (101 and 152 also tried). Paper: 0 / 0 / 0 (did not converge).

Easy / medium / hard AP on WIDER FACE val as the paper reports them; what cnnlab reached is in docs/results.md.
"""

from cnnlab.facedet.config import FaceNetConfig


def get_config() -> FaceNetConfig:
    return FaceNetConfig(
        name="v2.5",
        classification="bce", normalisation="positives",
        fpn=True,
        aspect_ratios=(1.0, 1 / 1.5), iou_threshold=0.65,
        levels=("conv2", "conv3", "conv4", "conv5", "conv6", "conv7"), min_anchor_size=8,
        upsample=True,
        color_jitter=True,
        depth=50,
    )
