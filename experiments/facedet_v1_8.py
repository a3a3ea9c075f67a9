"""FaceNet v1.8 (Table 4), §5.3.4: v1.3 + OHEM over the whole batch (top 128). Paper: 55.9 / 36.8 / 15.6.

Easy / medium / hard AP on WIDER FACE val as the paper reports them; what cnnlab reached is in docs/results.md.
"""

from cnnlab.facedet.config import FaceNetConfig


def get_config() -> FaceNetConfig:
    return FaceNetConfig(
        name="v1.8",
        classification="bce", normalisation="positives",
        fpn=True,
        ohem="batch", ohem_top_k=128,
    )
