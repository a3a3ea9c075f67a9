"""Anchors, IoU, assignment, box coding, NMS and the Table 4 losses against plain numpy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnlab.facedet.anchors import generate_anchors, level_sizes
from cnnlab.facedet.boxes import anchor_targets, assign, decode, encode, iou, nms, unreachable_faces
from cnnlab.facedet.losses import detection_loss, ohem_mask

V1 = ["conv2", "conv3", "conv4", "conv5", "conv6"]
V2_0 = ["conv3", "conv4", "conv5", "conv6", "conv7"]


def _iou_np(a, b):
    out = np.zeros((len(a), len(b)))
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            w = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
            h = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
            union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - w * h
            out[i, j] = w * h / union
    return out


def _random_boxes(rng, n, size=100.0):
    xy = rng.uniform(0, size, (n, 2))
    return np.concatenate([xy, xy + rng.uniform(5, 40, (n, 2))], 1).astype(np.float32)


def test_iou_matches_eq55_by_hand_and_loop():
    assert float(iou(jnp.array([[0.0, 0, 2, 2]]), jnp.array([[1.0, 1, 3, 3]]))[0, 0]) == pytest.approx(1 / 7)
    rng = np.random.default_rng(0)
    a, b = _random_boxes(rng, 7), _random_boxes(rng, 5)
    np.testing.assert_allclose(jax.jit(iou)(a, b), _iou_np(a, b), rtol=1e-5, atol=1e-7)


def test_anchor_sizes_span_the_papers_ranges():
    sizes = np.concatenate(level_sizes(V1, 16))
    np.testing.assert_allclose(sizes[1:] / sizes[:-1], 2 ** (1 / 3))
    assert sizes[0] == 16 and sizes[-1] == pytest.approx(406.37, abs=0.01) and len(sizes) == 15
    v24 = np.concatenate(level_sizes(V1 + ["conv7"], 8))
    assert len(v24) == 18 and v24[0] == 8 and v24[-1] == pytest.approx(406.37, abs=0.01)
    anchors, levels = generate_anchors(64, ["conv4", "conv5"], aspect_ratios=(1.0, 1 / 1.5))
    assert anchors.shape == (4 * 4 * 6 + 2 * 2 * 6, 4) and levels.tolist() == [0] * 96 + [1] * 24
    w, h = np.asarray(anchors[1, 2:] - anchors[1, :2])  # first cell, size 16, ratio 1:1.5
    assert w / h == pytest.approx(1 / 1.5) and w * h == pytest.approx(16 ** 2)
    np.testing.assert_allclose((anchors[0, :2] + anchors[0, 2:]) / 2, [8, 8])  # centre of the first stride-16 cell


def test_encode_gives_hand_computed_offsets_for_a_size_change_of_non_square_boxes():
    # Anchor 10 x 20 centred at (5, 10); box 20 x 10 centred at (8, 6): the centre moves 3/10 of the anchor's
    # width and -4/20 of its height; the width doubles (log 2) and the height halves (log 1/2).
    anchor = jnp.array([[0.0, 0.0, 10.0, 20.0]])
    box = jnp.array([[-2.0, 1.0, 18.0, 11.0]])
    want = [[0.3, -0.2, np.log(2.0), -np.log(2.0)]]
    np.testing.assert_allclose(encode(box, anchor), want, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(decode(jnp.asarray(want, jnp.float32), anchor), box, rtol=1e-6, atol=1e-5)


def test_encode_decode_round_trip():
    rng = np.random.default_rng(1)
    boxes, anchors = _random_boxes(rng, 50), _random_boxes(rng, 50)
    np.testing.assert_allclose(jax.jit(decode)(jax.jit(encode)(boxes, anchors), anchors), boxes, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(encode(anchors, anchors), 0, atol=1e-6)


def test_assign_thresholds_and_gives_every_face_its_best_anchor():
    anchors = jnp.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60], [100, 100, 140, 140]], jnp.float32)
    gt = jnp.array([[0, 0, 10, 10], [52, 52, 64, 64], [0, 0, 1, 1], [300, 300, 310, 310]], jnp.float32)
    valid = jnp.array([True, True, False, True])
    labels, matched = jax.jit(assign, static_argnames="threshold")(anchors, gt, valid, threshold=0.65)
    # anchor 0: IoU 1; anchor 1: IoU 9/11 ≥ 0.65; anchor 2: IoU 64/180 < 0.65 but it is face 1's best;
    # anchor 3 overlaps nothing; face 2 is padding; face 3 overlaps no anchor (unreachable, not forced).
    assert labels.tolist() == [1, 1, 1, 0]
    assert matched[:3].tolist() == [0, 0, 1]
    unreachable, best = unreachable_faces(anchors, gt, valid, threshold=0.65)
    assert unreachable.tolist() == [False, True, False, True]
    np.testing.assert_allclose(best, [1, 64 / 180, 1 / 100, 0], rtol=1e-6)


def test_anchor_targets_encode_the_matched_face():
    anchors = jnp.array([[0, 0, 10, 10], [20, 20, 40, 40]], jnp.float32)
    gt = jnp.array([[1, 1, 11, 11], [0, 0, 0, 0]], jnp.float32)
    labels, targets = jax.vmap(lambda g, v: anchor_targets(anchors, g, v, threshold=0.5))(
        gt[None], jnp.array([[True, False]]))
    assert labels.tolist() == [[1, 0]]
    np.testing.assert_allclose(targets[0, 0], [0.1, 0.1, 0, 0], atol=1e-6)


def _nms_np(boxes, scores, thr):
    order, keep = np.argsort(-scores, kind="stable"), []
    for i in order:
        if all(_iou_np(boxes[i:i + 1], boxes[j:j + 1])[0, 0] <= thr for j in keep):
            keep.append(i)
    return keep


@pytest.mark.parametrize("n,size,padded", [(60, 60.0, 0), (400, 30.0, 50)])  # sparse; crowded with padding
def test_nms_matches_greedy_reference(n, size, padded):
    rng = np.random.default_rng(2)
    boxes, scores = _random_boxes(rng, n, size=size), rng.uniform(size=n).astype(np.float32)
    scores[:padded] = -np.inf  # padding never comes out
    idx, valid = jax.jit(lambda b, s: nms(b, s, iou_threshold=0.4, max_outputs=n + 20))(boxes, scores)
    want = [i + padded for i in _nms_np(boxes[padded:], scores[padded:], 0.4)]
    assert np.asarray(idx)[np.asarray(valid)].tolist() == want
    assert not np.asarray(valid)[len(want):].any()


def test_sliding_face_finds_v2_0_anchor_gaps_and_upsampling_closes_them():
    """§5.3.5: v2.0 (conv3–conv7) misses faces at regular positions; v2.1's ×2 up-sampling fixes it."""
    xs = np.arange(60.0, 124.0)
    faces = jnp.asarray(np.stack([xs, np.full_like(xs, 100), xs + 40, np.full_like(xs, 152)], 1), jnp.float32)
    valid = jnp.ones(len(xs), bool)
    missed = {}
    for up in (False, True):
        anchors, _ = generate_anchors(256, V2_0, aspect_ratios=(1.0, 1 / 1.5), upsample=up)
        missed[up] = int(unreachable_faces(anchors, faces, valid, threshold=0.65)[0].sum())
    assert missed[False] > 10 and missed[True] == 0


def _loss_inputs(rng, n=2, a=12, k=1):
    logits = jnp.asarray(rng.normal(size=(n, a, k)), jnp.float32)
    offsets = jnp.asarray(rng.normal(size=(n, a, 4)), jnp.float32)
    targets = jnp.asarray(rng.normal(size=(n, a, 4)), jnp.float32)
    labels = jnp.asarray(rng.uniform(size=(n, a)) < 0.3, jnp.int32).at[:, 0].set(1)
    return logits, offsets, labels, targets


def _np_parts(logits, offsets, labels, targets, kind):
    z, y = np.asarray(logits, np.float64), np.asarray(labels, np.float64)
    if kind == "softmax":
        lse = np.log(np.exp(z).sum(-1))
        lc = lse - np.take_along_axis(z, np.asarray(labels)[..., None], -1)[..., 0]
    else:
        q = 1 / (1 + np.exp(-z[..., 0]))
        g = 3.0 if kind == "focal" else 0.0
        lc = -y * (1 - q) ** g * np.log(q) - (1 - y) * q ** g * np.log(1 - q)
    d = np.abs(np.asarray(offsets, np.float64) - np.asarray(targets, np.float64))
    lr = np.where(d < 1, 0.5 * d ** 2, d - 0.5).sum(-1) * y
    return lc, lr, y


@pytest.mark.parametrize("kind,norm", [("softmax", "all"), ("bce", "positives"), ("focal", "positives"),
                                       ("bce", "level"), ("focal", "level")])
def test_detection_loss_normalisations_match_eq58_60_62(kind, norm):
    rng = np.random.default_rng(3)
    logits, offsets, labels, targets = _loss_inputs(rng, k=2 if kind == "softmax" else 1)
    level_ids = np.array([0] * 8 + [1] * 4)
    anchors = jnp.zeros((12, 4))
    loss, parts = detection_loss(logits, offsets, labels, targets, anchors, level_ids, classification=kind,
                                 normalisation=norm, gamma=3.0)
    lc, lr, y = _np_parts(logits, offsets, labels, targets, kind)
    if norm == "all":
        want = lc.mean() + lr.sum() / y.sum()
    elif norm == "positives":
        want = (lc.sum() + lr.sum()) / y.sum()
    else:
        want = sum((lc[:, level_ids == p].sum() + lr[:, level_ids == p].sum()) / max(y[:, level_ids == p].sum(), 1)
                   for p in (0, 1))
    assert float(loss) == pytest.approx(want, rel=1e-5)
    assert float(parts["num_pos"]) == y.sum()


def test_ohem_keeps_top_k_losses_after_nms_per_image_and_per_batch():
    # Image 0: three boxes, the two largest losses on near-duplicate boxes; image 1: two separate boxes.
    boxes = jnp.array([[[0, 0, 10, 10], [0, 0, 10, 11], [50, 50, 60, 60]],
                       [[0, 0, 10, 10], [30, 30, 40, 40], [70, 70, 80, 80]]], jnp.float32)
    losses = jnp.array([[9.0, 8.0, 1.0], [5.0, 4.0, 0.5]])
    mask = jax.jit(ohem_mask, static_argnames=("top_k", "per_image"))
    per_image = mask(losses, boxes, top_k=2, per_image=True)
    assert per_image.tolist() == [[True, False, True], [True, True, False]]  # duplicate 8.0 suppressed
    per_batch = mask(losses, boxes, top_k=2, per_image=False)
    assert per_batch.tolist() == [[True, False, False], [True, False, False]]  # 9 and 5 over the batch
    loss_fn = jax.jit(lambda lg: detection_loss(lg, jnp.zeros((2, 3, 4)), jnp.zeros((2, 3), jnp.int32),
                                                 jnp.zeros((2, 3, 4)), boxes[0], np.zeros(3, np.int32),
                                                 classification="bce", normalisation="positives",
                                                 ohem="image", ohem_top_k=2)[0])
    g = jax.grad(loss_fn)(jnp.array([[[3.0], [2.9], [-2.0]], [[1.0], [0.5], [-3.0]]]))
    # Only the selected anchors get a gradient; the loss is their mean BCE.
    assert (np.asarray(g)[..., 0] != 0).tolist() == [[True, False, True], [True, False, True]]


def test_detection_loss_rejects_bad_settings():
    x = jnp.zeros((1, 2, 1))
    with pytest.raises(ValueError, match="detection_loss: normalisation"):
        detection_loss(x, jnp.zeros((1, 2, 4)), jnp.zeros((1, 2), jnp.int32), jnp.zeros((1, 2, 4)),
                       jnp.zeros((2, 4)), np.zeros(2), classification="bce", normalisation="mean")
