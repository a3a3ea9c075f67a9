"""FaceNet v1.4 (Table 4), §5.3.3: v1.2 + FPN (focal loss). Paper: 81.0 / 81.0 / 64.2.

Easy / medium / hard AP on WIDER FACE val as the paper reports them; what cnnlab reached is in docs/results.md.
"""

from cnnlab.facedet.config import FaceNetConfig


def get_config() -> FaceNetConfig:
    return FaceNetConfig(
        name="v1.4",
        classification="focal", normalisation="positives",
        focal_gamma=3.0,
        fpn=True,
    )
