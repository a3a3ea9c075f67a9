"""FaceNet v1.7 (Table 4), §5.3.4: v1.3 + OHEM per image (top 128 classification losses after NMS). Paper: 46.0 / 51.8 / 42.3.

Easy / medium / hard AP on WIDER FACE val as the paper reports them; what cnnlab reached is in docs/results.md.
"""

from cnnlab.facedet.config import FaceNetConfig


def get_config() -> FaceNetConfig:
    return FaceNetConfig(
        name="v1.7",
        classification="bce", normalisation="positives",
        fpn=True,
        ohem="image", ohem_top_k=128,
    )
