"""The official WIDER FACE evaluation (Yang et al., CVPR 2016), re-implemented step for step.

The protocol of the benchmark's MATLAB ``eval_tools`` (``wider_eval.m``), which every published WIDER FACE
number uses:

1. Predictions: one file ``<event>/<image>.txt`` per validation image: the image name, the number of boxes,
   then ``x y w h score`` lines. A missing file counts as an image without detections. Each image's boxes
   are sorted by descending score (stable, as MATLAB's ``sort``).
2. Score normalisation: every score becomes ``(s − min) / (max − min)`` with the min and max over *all*
   images. (Where all scores are equal the MATLAB code divides by zero and scores nothing; here they all
   become 1, as in later versions of the tools.)
3. Per image and setting (easy / medium / hard): the faces that *count* are ``gt_list`` of
   ``wider_<setting>_val.mat`` (1-based); every other face of ``wider_face_val.mat`` is *ignored*. Taking
   the boxes in score order, each box is matched to the face of highest IoU (pixel-inclusive ``+1`` areas,
   VOC ``boxoverlap``). With IoU ≥ 0.5 a box on an ignored face is dropped from the proposals, a box on a
   counted face not yet found recalls it; anything else stays a (false) proposal. Images without faces or
   without predictions are skipped (their boxes are never false positives) but their counted faces are.
4. PR curve: at the 1000 thresholds ``1 − t/1000`` (t = 1…1000) each image adds its number of proposals and
   recalled faces among the boxes scoring ≥ the threshold; precision = recalled / proposals, recall =
   recalled / number of counted faces.
5. AP: VOC integration — the precision envelope (running max from the right), summed over the steps of
   recall.
"""

import dataclasses
import json
from pathlib import Path

import numpy as np
from scipy.io import loadmat

from cnnlab.errors import CnnlabError

SETTINGS = ("easy", "medium", "hard")
IOU_THRESHOLD = 0.5
NUM_THRESHOLDS = 1000


@dataclasses.dataclass
class GroundTruth:
    """The official validation ground truth: per event (61) and image, face boxes ``[F, 4]`` as x y w h and,
    per setting, the 0-based indices of the faces that count."""
    events: list
    files: list
    boxes: list
    keep: dict


def load_ground_truth(gt_dir) -> GroundTruth:
    """Read ``wider_face_val.mat`` and ``wider_{easy,medium,hard}_val.mat`` from ``gt_dir``."""
    gt_dir = Path(gt_dir)
    names = ["wider_face_val.mat"] + [f"wider_{s}_val.mat" for s in SETTINGS]
    missing = [n for n in names if not (gt_dir / n).is_file()]
    if missing:
        raise FileNotFoundError(f"load_ground_truth: {gt_dir} lacks {', '.join(missing)} (the official "
                                "WIDER FACE eval_tools/ground_truth files)")
    face = loadmat(gt_dir / "wider_face_val.mat")
    events = [str(e[0][0]) for e in face["event_list"]]
    files = [[str(f[0][0]) for f in event[0]] for event in face["file_list"]]
    boxes = [[np.asarray(b[0], np.float64).reshape(-1, 4) for b in event[0]] for event in face["face_bbx_list"]]
    keep = {}
    for setting in SETTINGS:
        gt_list = loadmat(gt_dir / f"wider_{setting}_val.mat")["gt_list"]
        # 1-based MATLAB indices, stored as uint8/uint16: widen before subtracting.
        keep[setting] = [[np.asarray(k[0], np.int64).reshape(-1) - 1 for k in event[0]] for event in gt_list]
    return GroundTruth(events, files, boxes, keep)


def read_prediction_file(path) -> np.ndarray:
    """One submission file -> boxes ``[P, 5]`` (x y w h score) sorted by descending score.

    Raises ``CnnlabError`` naming the file and line for a malformed file (name line not naming this image,
    count not an integer, a box line without 5 numbers, fewer or more box lines than the count).
    """
    path = Path(path)
    lines = [line.strip() for line in path.read_text().splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if len(lines) < 2:
        raise CnnlabError(f"{path}: expected the image name on line 1 and the box count on line 2")
    if Path(lines[0]).stem != path.stem:
        raise CnnlabError(f"{path}:1: image name {lines[0]!r} does not name this file's image {path.stem!r}")
    try:
        count = int(lines[1])
    except ValueError:
        raise CnnlabError(f"{path}:2: box count must be an integer, got {lines[1]!r}") from None
    rows = lines[2:]
    if count < 0 or len(rows) != count:
        raise CnnlabError(f"{path}:2: box count says {count} but the file has {len(rows)} box lines")
    boxes = np.zeros((count, 5))
    for i, row in enumerate(rows):
        fields = row.split()
        try:
            if len(fields) < 5:
                raise ValueError
            boxes[i] = [float(v) for v in fields[:5]]
        except ValueError:
            raise CnnlabError(f"{path}:{i + 3}: expected 'x y w h score', got {row!r}") from None
    return boxes[np.argsort(-boxes[:, 4], kind="stable")]


def write_prediction_file(path, image_name: str, boxes_xywh, scores) -> None:
    """Write one submission file (the format ``read_prediction_file`` reads). boxes: [P, 4], scores: [P]."""
    boxes_xywh, scores = np.asarray(boxes_xywh, np.float64).reshape(-1, 4), np.asarray(scores).reshape(-1)
    if len(boxes_xywh) != len(scores):
        raise ValueError(f"write_prediction_file: {len(boxes_xywh)} boxes but {len(scores)} scores")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [f"{x:.1f} {y:.1f} {w:.1f} {h:.1f} {s:.6f}" for (x, y, w, h), s in zip(boxes_xywh, scores)]
    path.write_text("\n".join([image_name, str(len(rows))] + rows) + "\n")


def read_predictions(pred_dir, gt: GroundTruth) -> list:
    """All submission files under ``pred_dir`` for the images of ``gt``; a missing file gives ``[0, 5]``."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise CnnlabError(f"read_predictions: no predictions folder {pred_dir}")
    preds = []
    for event, files in zip(gt.events, gt.files):
        preds.append([read_prediction_file(p) if (p := pred_dir / event / f"{name}.txt").is_file()
                      else np.zeros((0, 5)) for name in files])
    return preds


def normalize_scores(preds: list) -> list:
    """Step 2: scores mapped by the global min and max over all images to [0, 1]."""
    scores = np.concatenate([p[:, 4] for event in preds for p in event] + [np.zeros(0)])
    if scores.size == 0:
        return preds
    lo, hi = scores.min(), scores.max()
    out = []
    for event in preds:
        out.append([np.column_stack([p[:, :4], (p[:, 4] - lo) / (hi - lo) if hi > lo else p[:, 4] - lo + 1])
                    for p in event])
    return out


def box_overlaps(boxes, faces) -> np.ndarray:
    """IoU of the official tools (pixel-inclusive ``+1`` widths). boxes: [P, 4], faces: [F, 4] as x y w h;
    returns [P, F]."""
    a = np.column_stack([boxes[:, :2], boxes[:, :2] + boxes[:, 2:4]])[:, None]
    b = np.column_stack([faces[:, :2], faces[:, :2] + faces[:, 2:4]])[None]
    w = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1
    h = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1
    inter = w * h
    # Degenerate faces (w < 0 in a few official boxes) give zero or negative unions: masked below.
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((w > 0) & (h > 0), inter / (area_a + area_b - inter), 0.0)


def image_pr_info(scores, matched, counted) -> np.ndarray:
    """Steps 3–4 for one image and setting, vectorised.

    scores: [P] normalised, descending; matched: [P] index of the face each box matches at IoU ≥ 0.5, or −1;
    counted: [F] bool, the faces of this setting. Returns [1000, 2]: (proposals, recalled faces) at each
    threshold ``1 − t/1000``.
    """
    hit = matched >= 0
    on_counted = hit & counted[np.maximum(matched, 0)]
    proposal = ~(hit & ~on_counted)  # boxes on ignored faces leave the proposals
    # A counted face is recalled by the first box matched to it; later boxes on it stay proposals.
    first = np.zeros_like(on_counted)
    _, idx = np.unique(np.where(on_counted, matched, -1), return_index=True)
    first[idx] = True
    recalled = np.cumsum(first & on_counted)
    proposals = np.cumsum(proposal)
    thresholds = 1 - np.arange(1, NUM_THRESHOLDS + 1) / NUM_THRESHOLDS
    n_above = np.searchsorted(-scores, -thresholds, side="right")  # boxes with score ≥ threshold
    last = np.maximum(n_above - 1, 0)
    return np.where(n_above[:, None] > 0, np.column_stack([proposals[last], recalled[last]]), 0)


def voc_ap(recall, precision) -> float:
    """Step 5: VOC AP — precision envelope integrated over the recall steps (NaN precision ignored as
    MATLAB's ``max`` does)."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.fmax.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def evaluate(preds: list, gt: GroundTruth) -> dict:
    """AP per setting of predictions (``read_predictions`` layout, raw scores) against ``gt``.

    Returns ``{"ap_easy", "ap_medium", "ap_hard"}`` and, per setting, ``"pr_<setting>"``: (precision,
    recall) at the 1000 thresholds.
    """
    if len(preds) != len(gt.events) or any(len(p) != len(f) for p, f in zip(preds, gt.files)):
        raise ValueError("evaluate: preds must have one list per event and one array per image of gt")
    preds = normalize_scores(preds)
    totals = {s: np.zeros((NUM_THRESHOLDS, 2)) for s in SETTINGS}
    count_face = {s: 0 for s in SETTINGS}
    for e, (event_preds, event_boxes) in enumerate(zip(preds, gt.boxes)):
        for i, (pred, faces) in enumerate(zip(event_preds, event_boxes)):
            for s in SETTINGS:
                count_face[s] += len(gt.keep[s][e][i])
            if len(faces) == 0 or len(pred) == 0:
                continue
            overlaps = box_overlaps(pred[:, :4], faces)
            matched = np.where(overlaps.max(1) >= IOU_THRESHOLD, overlaps.argmax(1), -1)
            for s in SETTINGS:
                counted = np.zeros(len(faces), bool)
                counted[gt.keep[s][e][i]] = True
                totals[s] += image_pr_info(pred[:, 4], matched, counted)
    results = {}
    for s in SETTINGS:
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = totals[s][:, 1] / totals[s][:, 0]
            recall = totals[s][:, 1] / count_face[s]
        results[f"ap_{s}"] = voc_ap(recall, precision)
        results[f"pr_{s}"] = (precision, recall)
    return results


def plot_pr_curves(results: dict, path, label: str = "cnnlab") -> None:
    """One PNG with the three settings' precision–recall curves, AP in the legend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 4), sharey=True)
    for ax, s in zip(axes, SETTINGS):
        precision, recall = results[f"pr_{s}"]
        ax.plot(recall, np.nan_to_num(precision), label=f"{label} AP {results[f'ap_{s}']:.3f}")
        ax.set(title=f"WIDER FACE val, {s}", xlabel="recall", xlim=(0, 1), ylim=(0, 1.01))
        ax.legend(loc="lower left")
    axes[0].set_ylabel("precision")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def evaluate_folder(pred_dir, gt_dir, out_dir=None) -> dict:
    """Score a folder of submission files; with ``out_dir`` write results.json and pr_curves.png there."""
    gt = load_ground_truth(gt_dir)
    results = evaluate(read_predictions(pred_dir, gt), gt)
    summary = {k: results[k] for k in ("ap_easy", "ap_medium", "ap_hard")}
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "results.json").write_text(json.dumps(
            {**summary, "predictions": str(pred_dir), "ground_truth": str(gt_dir),
             "protocol": "official WIDER FACE val (IoU 0.5, 1000 thresholds, VOC AP)"}, indent=2) + "\n")
        plot_pr_curves(results, out_dir / "pr_curves.png")
    return summary
