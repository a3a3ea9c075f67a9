"""Anchor boxes of FaceNet (§5.2.1, §5.3.5).

Sizes (square roots of areas) grow by 2^(1/3) from ``min_size`` (16 up to v2.3, 8 from v2.4), three per
feature level, so conv2–conv6 (or conv3–conv7) cover 16 … 406 px and conv2–conv7 cover 8 … 406 px (the
paper's "16² to 416²"). Each size comes in the width:height ratios of the config: 1:1 with 1:2 up to v1.8,
1:1 with 1:1.5 from v1.9. Anchors are centred on every cell of a level's feature map; with the heads'
×2 up-sampling (v2.1) the cells, and so the anchor spacing, halve.
"""

import math

import jax.numpy as jnp
import numpy as np

# Output stride of each ResNet block (conv1 /2, max-pool /2, then /2 per block) and of the extra conv6/conv7.
LEVEL_STRIDES = {"conv2": 4, "conv3": 8, "conv4": 16, "conv5": 32, "conv6": 64, "conv7": 128}
SCALES_PER_LEVEL = 3


def feature_size(image_size: int, stride: int) -> int:
    """Side of a level's feature map: every stride-2 layer (padded) rounds up."""
    size = image_size
    for _ in range(int(math.log2(stride))):
        size = -(-size // 2)
    return size


def level_sizes(levels, min_size: float) -> list:
    """Anchor sizes per level: ``min_size · 2^(i/3)``, i = 0, 1, … over the levels in order."""
    return [[min_size * 2 ** ((SCALES_PER_LEVEL * li + s) / SCALES_PER_LEVEL) for s in range(SCALES_PER_LEVEL)]
            for li in range(len(levels))]


def generate_anchors(image_size: int, levels, *, min_size: float = 16, aspect_ratios=(1.0, 0.5),
                     upsample: bool = False):
    """All anchors of a square image, level by level, in the order the heads emit them ([H, W, A] per level).

    aspect_ratios: width / height of each shape (1:1.5 is 1/1.5). Returns (anchors [A_total, 4] float32 as
    x1 y1 x2 y2, level index [A_total] int32 numpy).
    """
    unknown = [lv for lv in levels if lv not in LEVEL_STRIDES]
    if unknown:
        raise ValueError(f"generate_anchors: unknown levels {unknown}; choose from {list(LEVEL_STRIDES)}")
    boxes, level_ids = [], []
    for li, (level, sizes) in enumerate(zip(levels, level_sizes(levels, min_size))):
        stride = LEVEL_STRIDES[level]
        cells = feature_size(image_size, stride) * (2 if upsample else 1)
        step = stride / (2 if upsample else 1)
        # Width and height of the A = scales × ratios shapes at this level (area size², ratio w/h).
        wh = np.array([[s * math.sqrt(r), s / math.sqrt(r)] for s in sizes for r in aspect_ratios])
        centres = (np.arange(cells) + 0.5) * step
        cy, cx = np.meshgrid(centres, centres, indexing="ij")
        c = np.stack([cx, cy], -1)[:, :, None, :]  # [H, W, 1, 2]
        level_boxes = np.concatenate([c - wh / 2, c + wh / 2], -1).reshape(-1, 4)
        boxes.append(level_boxes)
        level_ids.append(np.full(len(level_boxes), li, np.int32))
    return jnp.asarray(np.concatenate(boxes), jnp.float32), np.concatenate(level_ids)


def anchors_per_position(aspect_ratios) -> int:
    """A, the anchors at each feature-map cell: 3 scales × the ratios."""
    return SCALES_PER_LEVEL * len(aspect_ratios)
