"""FaceNet v1.0 (Table 4), §5.3.1, the baseline: softmax cross-entropy averaged over all anchors (Eq. 56–58), conv2–conv6, no FPN. Paper: 0 / 0 / 0.

Easy / medium / hard AP on WIDER FACE val as the paper reports them; what cnnlab reached is in docs/results.md.
"""

from cnnlab.facedet.config import FaceNetConfig


def get_config() -> FaceNetConfig:
    return FaceNetConfig(
        name="v1.0",
    )
