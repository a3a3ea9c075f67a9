"""FaceNet v1.2 (Table 4), §5.3.2: focal loss, γ = 3 (Eq. 61). Paper: 22.4 / 12.1 / 5.1.

Easy / medium / hard AP on WIDER FACE val as the paper reports them; what cnnlab reached is in docs/results.md.
"""

from cnnlab.facedet.config import FaceNetConfig


def get_config() -> FaceNetConfig:
    return FaceNetConfig(
        name="v1.2",
        classification="focal", normalisation="positives",
        focal_gamma=3.0,
    )
