"""The FaceNet training losses of Table 4 (§5.3.1–§5.3.4), on top of the elementwise ``cnnlab.ops`` losses.

Every version sums a classification loss L_c over anchors and a smooth-L1 regression loss L_r (Eq. 56,
summed over the 4 offsets) over positive anchors; they differ in L_c and its normalisation:

- ``"softmax"`` + ``"all"`` (v1.0, Eq. 57–58): 2-class softmax cross-entropy averaged over *all* anchors.
- ``"bce"`` / ``"focal"`` + ``"positives"`` (v1.1 / v1.2, Eq. 59–61): sums divided by the number of
  positive anchors |N_pos| (SSD, RetinaNet).
- ``"level"`` (v1.5 / v1.6, Eq. 62): the same, but each pyramid level divided by its own positives.
- OHEM (v1.7 per image, v1.8 per batch, §5.3.4): only the ``ohem_top_k`` = 128 largest classification
  losses count, taken after NMS over the predicted boxes (scored by their loss, IoU 0.7 as in Shrivastava et
  al.) so that near-duplicates are not all picked; they are averaged. Regression stays on all positives.
Counts are over the whole batch; a level or batch without positives divides by 1.
"""

import jax
import jax.numpy as jnp
import optax

from cnnlab.facedet.boxes import decode, nms
from cnnlab.ops import binary_cross_entropy, focal_loss, smooth_l1

OHEM_NMS_IOU = 0.7


def classification_loss(logits, labels, *, kind: str, gamma: float = 3.0):
    """Per-anchor L_c. logits: [N, A, 2] for "softmax", [N, A, 1] for "bce"/"focal"; labels: [N, A] in {0, 1}."""
    if kind == "softmax":
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    targets = labels.astype(logits.dtype)
    if kind == "bce":
        return binary_cross_entropy(logits[..., 0], targets)
    if kind == "focal":
        return focal_loss(logits[..., 0], targets, gamma=gamma)
    raise ValueError(f"classification_loss: kind must be 'softmax', 'bce' or 'focal', got {kind!r}")


def ohem_mask(losses, boxes, *, top_k: int, per_image: bool):
    """[N, A] bool: the ``top_k`` largest ``losses`` after NMS over ``boxes`` [N, A, 4], per image or over the
    whole batch (images kept apart by shifting each one's boxes far from the others')."""
    losses, boxes = jax.lax.stop_gradient(losses), jax.lax.stop_gradient(boxes)
    n, a = losses.shape
    pre = min(8 * top_k, a)
    if per_image:
        def one(image_losses, b):
            idx, valid = nms(b, image_losses, iou_threshold=OHEM_NMS_IOU, max_outputs=top_k, pre_nms_top_k=pre)
            return jnp.zeros(a, bool).at[idx].max(valid)
        return jax.vmap(one)(losses, boxes)
    shift = (jnp.arange(n, dtype=boxes.dtype) * 1e5)[:, None, None]
    idx, valid = nms((boxes + shift).reshape(-1, 4), losses.reshape(-1), iou_threshold=OHEM_NMS_IOU,
                     max_outputs=top_k, pre_nms_top_k=min(8 * top_k, n * a))
    return jnp.zeros(n * a, bool).at[idx].max(valid).reshape(n, a)


def detection_loss(cls_logits, box_offsets, labels, box_targets, anchors, level_ids, *, classification: str,
                   normalisation: str, gamma: float = 3.0, ohem: str | None = None, ohem_top_k: int = 128,
                   num_levels: int | None = None):
    """Total loss L(θ) of Eq. (58), (60) or (62), with optional OHEM.

    cls_logits: [N, A, K]; box_offsets, box_targets: [N, A, 4]; labels: [N, A]; anchors: [A, 4];
    level_ids: [A] (numpy, static). Returns (loss, {"cls": L_c part, "reg": L_r part, "num_pos": |N_pos|}).
    """
    if normalisation not in ("all", "positives", "level"):
        raise ValueError(f"detection_loss: normalisation must be 'all', 'positives' or 'level', got {normalisation!r}")
    if ohem not in (None, "image", "batch"):
        raise ValueError(f"detection_loss: ohem must be None, 'image' or 'batch', got {ohem!r}")
    if box_offsets.shape != box_targets.shape or labels.shape != box_offsets.shape[:2]:
        raise ValueError(f"detection_loss: box_offsets {box_offsets.shape}, box_targets {box_targets.shape} and "
                         f"labels {labels.shape} must be [N, A, 4], [N, A, 4], [N, A]")
    # The loss is float32 (float64 with float64 outputs) under either precision (cnnlab.train.TrainConfig).
    dtype = jnp.promote_types(cls_logits.dtype, jnp.float32)
    cls_logits, box_offsets = cls_logits.astype(dtype), box_offsets.astype(dtype)
    pos = (labels > 0).astype(jnp.float32)
    l_c = classification_loss(cls_logits, labels, kind=classification, gamma=gamma).astype(jnp.float32)
    l_r = jnp.sum(smooth_l1(box_offsets - box_targets), axis=-1).astype(jnp.float32) * pos
    num_pos = jnp.sum(pos)
    if ohem is not None:
        boxes = decode(box_offsets, anchors[None])
        mask = ohem_mask(l_c, boxes, top_k=ohem_top_k, per_image=ohem == "image").astype(jnp.float32)
        cls = jnp.sum(l_c * mask) / jnp.maximum(jnp.sum(mask), 1.0)
        reg = jnp.sum(l_r) / jnp.maximum(num_pos, 1.0)
    elif normalisation == "all":
        cls = jnp.mean(l_c)
        reg = jnp.sum(l_r) / jnp.maximum(num_pos, 1.0)
    elif normalisation == "positives":
        cls = jnp.sum(l_c) / jnp.maximum(num_pos, 1.0)
        reg = jnp.sum(l_r) / jnp.maximum(num_pos, 1.0)
    else:
        num_levels = num_levels or int(level_ids.max()) + 1
        per_level = lambda x: jax.ops.segment_sum(jnp.sum(x, axis=0), level_ids, num_segments=num_levels)
        pos_l = jnp.maximum(per_level(pos), 1.0)
        cls = jnp.sum(per_level(l_c) / pos_l)
        reg = jnp.sum(per_level(l_r) / pos_l)
    return cls + reg, {"cls": cls, "reg": reg, "num_pos": num_pos}
