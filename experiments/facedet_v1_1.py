"""FaceNet v1.1 (Table 4), §5.3.2: binary cross-entropy normalised by the positive anchors (Eq. 59–60). Paper: 37.4 / 21.7 / 9.7.

Easy / medium / hard AP on WIDER FACE val as the paper reports them; what cnnlab reached is in docs/results.md.
"""

from cnnlab.facedet.config import FaceNetConfig


def get_config() -> FaceNetConfig:
    return FaceNetConfig(
        name="v1.1",
        classification="bce", normalisation="positives",
    )
