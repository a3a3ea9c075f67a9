"""Box arithmetic of the one-shot detector (§5.1.2): IoU, anchor assignment, offsets, NMS. Pure JAX, jittable.

Boxes are ``[..., 4]`` corner coordinates ``x1 y1 x2 y2`` in pixels (continuous: area = (x2−x1)(y2−y1)).
Ground truth per image is padded to a fixed ``[G, 4]`` with a validity mask ``[G]`` so shapes stay static
under ``jit``. (The official WIDER evaluation's pixel-inclusive IoU lives in ``evaluation.py``.)
"""

import jax
import jax.numpy as jnp


def box_area(boxes):
    """boxes: [..., 4] -> [...]; empty boxes have area 0."""
    return jnp.maximum(boxes[..., 2] - boxes[..., 0], 0) * jnp.maximum(boxes[..., 3] - boxes[..., 1], 0)


def iou(a, b):
    """Intersection over union, Eq. (55): ``|A ∩ B| / (|A| + |B| − |A ∩ B|)``. a: [N, 4], b: [M, 4] -> [N, M]."""
    if a.shape[-1] != 4 or b.shape[-1] != 4:
        raise ValueError(f"iou: boxes must be [..., 4], got {a.shape} and {b.shape}")
    lt = jnp.maximum(a[:, None, :2], b[None, :, :2])
    rb = jnp.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = jnp.prod(jnp.maximum(rb - lt, 0), axis=-1)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return inter / jnp.maximum(union, 1e-9)


def assign(anchors, gt_boxes, gt_valid, *, threshold: float):
    """Label anchors positive (1) or negative (0) against one image's faces (§5.1.2).

    An anchor is positive if its IoU with some face is ≥ ``threshold`` (0.55 or 0.65 in Table 4); besides,
    every face gets its best anchor (if that overlaps it at all), so that no face goes untrained.
    anchors: [A, 4]; gt_boxes: [G, 4]; gt_valid: [G] bool. Returns (labels [A] int32, matched [A] int32: the
    face index each anchor regresses to).
    """
    overlaps = jnp.where(gt_valid[None, :], iou(anchors, gt_boxes), -1.0)  # [A, G]
    matched = jnp.argmax(overlaps, axis=1)
    positive = jnp.max(overlaps, axis=1) >= threshold
    best_anchor = jnp.argmax(overlaps, axis=0)  # [G]
    best_iou = jnp.max(overlaps, axis=0)
    force = gt_valid & (best_iou > 0)
    # Faces that take no forced anchor scatter to index A, which mode="drop" discards.
    target = jnp.where(force, best_anchor, anchors.shape[0])
    matched = matched.at[target].set(jnp.arange(gt_boxes.shape[0]), mode="drop")
    positive = positive.at[target].set(True, mode="drop")
    return positive.astype(jnp.int32), matched.astype(jnp.int32)


def unreachable_faces(anchors, gt_boxes, gt_valid, *, threshold: float):
    """Faces that no anchor reaches at ``threshold`` (IoU of their best anchor below it): they are learnt only
    through the forced best-anchor match, if at all. This is the failure §5.3.5 found by sliding a face across
    a video (v2.0's anchors were too sparse). Returns ([G] bool, best IoU per face [G])."""
    best = jnp.max(iou(anchors, gt_boxes), axis=0)
    return gt_valid & (best < threshold), best


def encode(boxes, anchors):
    """Regression targets (R-CNN parameterisation): centre offsets in anchor widths, log size ratios.
    boxes, anchors: [..., 4] -> [..., 4] as (dx, dy, dw, dh)."""
    aw, ah = anchors[..., 2] - anchors[..., 0], anchors[..., 3] - anchors[..., 1]
    ax, ay = anchors[..., 0] + 0.5 * aw, anchors[..., 1] + 0.5 * ah
    w = jnp.maximum(boxes[..., 2] - boxes[..., 0], 1e-3)
    h = jnp.maximum(boxes[..., 3] - boxes[..., 1], 1e-3)
    x, y = boxes[..., 0] + 0.5 * w, boxes[..., 1] + 0.5 * h
    return jnp.stack([(x - ax) / aw, (y - ay) / ah, jnp.log(w / aw), jnp.log(h / ah)], axis=-1)


# exp() of a log-ratio this large is a box 60x its anchor: wider than any image; clipping keeps decode finite.
_MAX_LOG_RATIO = 4.1


def decode(offsets, anchors):
    """Inverse of ``encode``: offsets [..., 4] on anchors [..., 4] -> boxes [..., 4]."""
    aw, ah = anchors[..., 2] - anchors[..., 0], anchors[..., 3] - anchors[..., 1]
    ax, ay = anchors[..., 0] + 0.5 * aw, anchors[..., 1] + 0.5 * ah
    x, y = ax + offsets[..., 0] * aw, ay + offsets[..., 1] * ah
    w = aw * jnp.exp(jnp.minimum(offsets[..., 2], _MAX_LOG_RATIO))
    h = ah * jnp.exp(jnp.minimum(offsets[..., 3], _MAX_LOG_RATIO))
    return jnp.stack([x - 0.5 * w, y - 0.5 * h, x + 0.5 * w, y + 0.5 * h], axis=-1)


def nms(boxes, scores, *, iou_threshold: float, max_outputs: int, pre_nms_top_k: int = 1000):
    """Greedy non-maximum suppression with static shapes.

    The ``pre_nms_top_k`` best-scoring boxes are visited in score order; a box is kept unless it overlaps an
    already kept box by more than ``iou_threshold``. boxes: [B, 4], scores: [B] (−inf marks padding).
    Returns (indices [max_outputs] into ``boxes``, valid [max_outputs] bool), best first.
    """
    k = min(pre_nms_top_k, boxes.shape[0])
    top_scores, order = jax.lax.top_k(scores, k)
    overlaps = iou(boxes[order], boxes[order])
    # Only earlier (higher-scoring) boxes can suppress a later one.
    suppresses = (overlaps > iou_threshold) & jnp.tri(k, k, -1, dtype=bool)

    # Greedy NMS keeps box i iff no kept earlier box suppresses it. Instead of visiting the k boxes one by one
    # (k dependent steps), iterate that rule on all boxes at once from "keep every real box": after round r
    # every box whose chain of possible suppressors is at most r long is final, so the loop reaches the
    # greedy answer (its unique fixed point) in (longest chain + 1) rounds, a handful in practice.
    real = jnp.isfinite(top_scores)

    def rule(keep):
        return real & ~jnp.any(suppresses & keep[None, :], axis=1)

    def not_done(carry):
        keep, previous = carry
        return jnp.any(keep != previous)

    keep, _ = jax.lax.while_loop(not_done, lambda carry: (rule(carry[0]), carry[0]), (rule(real), real))
    # Kept boxes first, in score order: sort by (not kept, rank).
    sel = jnp.argsort(jnp.where(keep, jnp.arange(k), k + jnp.arange(k)))
    indices, valid = order[sel], keep[sel]
    if max_outputs > k:
        indices = jnp.pad(indices, (0, max_outputs - k))
        valid = jnp.pad(valid, (0, max_outputs - k))
    return indices[:max_outputs], valid[:max_outputs]


def anchor_targets(anchors, gt_boxes, gt_valid, *, threshold: float):
    """Training targets of one image: (labels [A] int32, box offsets [A, 4]) from ``assign`` and ``encode``.
    vmap it over a batch of padded ground truth ``[N, G, 4]``, ``[N, G]``."""
    labels, matched = assign(anchors, gt_boxes, gt_valid, threshold=threshold)
    return labels, encode(gt_boxes[matched], anchors)
