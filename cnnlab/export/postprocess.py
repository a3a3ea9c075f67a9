"""Post-processing of a FaceNet exported with ``--no-nms``, in NumPy alone (copy it next to your runtime).

The exported graph returns every anchor's decoded box and score; ``nms`` keeps the boxes of one image that
greedy non-maximum suppression keeps, as ``cnnlab.facedet.boxes.nms`` does inside the default export.
"""

import numpy as np


def nms(boxes, scores, iou_threshold: float = 0.4, max_outputs: int = 100, pre_nms_top_k: int = 1000):
    """boxes: [A, 4] x1 y1 x2 y2, scores: [A] -> indices of the kept boxes, best first (at most ``max_outputs``)."""
    order = np.argsort(-scores, kind="stable")[:pre_nms_top_k]
    area = np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    keep = []
    for i in order:
        if len(keep) == max_outputs:
            break
        kept = np.asarray(keep, int)
        lt = np.maximum(boxes[kept, :2], boxes[i, :2])
        rb = np.minimum(boxes[kept, 2:], boxes[i, 2:])
        inter = np.prod(np.maximum(rb - lt, 0), axis=1)
        if not np.any(inter / np.maximum(area[kept] + area[i] - inter, 1e-9) > iou_threshold):
            keep.append(i)
    return np.asarray(keep, int)
