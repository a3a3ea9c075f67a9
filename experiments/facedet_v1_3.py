"""FaceNet v1.3 (Table 4), §5.3.3: v1.1 + the FPN top-down pathway. Paper: 89.3 / 85.9 / 65.9.

Easy / medium / hard AP on WIDER FACE val as the paper reports them; what cnnlab reached is in docs/results.md.
"""

from cnnlab.facedet.config import FaceNetConfig


def get_config() -> FaceNetConfig:
    return FaceNetConfig(
        name="v1.3",
        classification="bce", normalisation="positives",
        fpn=True,
    )
