"""FaceNet v1.6 (Table 4), §5.3.3: v1.4 with the level-separated normalisation of Eq. (62). Paper: 85.1 / 80.0 / 50.6.

Easy / medium / hard AP on WIDER FACE val as the paper reports them; what cnnlab reached is in docs/results.md.
"""

from cnnlab.facedet.config import FaceNetConfig


def get_config() -> FaceNetConfig:
    return FaceNetConfig(
        name="v1.6",
        classification="focal", normalisation="level",
        focal_gamma=3.0,
        fpn=True,
    )
