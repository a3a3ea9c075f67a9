"""FaceNet v1.5 (Table 4), §5.3.3: v1.3 with the level-separated normalisation of Eq. (62). Paper: 87.2 / 82.5 / 50.4.

Easy / medium / hard AP on WIDER FACE val as the paper reports them; what cnnlab reached is in docs/results.md.
"""

from cnnlab.facedet.config import FaceNetConfig


def get_config() -> FaceNetConfig:
    return FaceNetConfig(
        name="v1.5",
        classification="bce", normalisation="level",
        fpn=True,
    )
