"""The WIDER FACE evaluation against values the official protocol defines, worked out by hand on a small
synthetic ground truth and derived from the real validation ground truth's own boxes and keep-lists."""

import json

import numpy as np
import pytest
from scipy.io import savemat

from cnnlab.cli import main
from cnnlab.facedet.evaluation import (SETTINGS, GroundTruth, evaluate, evaluate_folder, load_ground_truth,
                                       read_prediction_file, write_prediction_file)


def _cell(items):
    out = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        out[i, 0] = item
    return out


def _write_ground_truth(folder, events):
    """events: {event: {image: (boxes [F,4], {setting: 1-based keep list})}} in the official .mat layout."""
    names = list(events)
    files = _cell([_cell([np.array([img]) for img in events[e]]) for e in names])
    boxes = _cell([_cell([np.asarray(b, np.int32).reshape(-1, 4) for b, _ in events[e].values()]) for e in names])
    savemat(folder / "wider_face_val.mat", {"event_list": _cell([np.array([e]) for e in names]),
                                            "file_list": files, "face_bbx_list": boxes})
    for s in SETTINGS:
        keep = _cell([_cell([np.asarray(k[s], np.uint8).reshape(-1, 1) for _, k in events[e].values()])
                      for e in names])
        savemat(folder / f"wider_{s}_val.mat", {"gt_list": keep})


# Faces A B C (image a), D (image b), none (image c), E (image d, whose prediction file is missing).
A, B, C, D, E = [10, 10, 20, 20], [100, 10, 20, 20], [200, 10, 20, 20], [10, 10, 30, 30], [50, 50, 20, 20]
HAND_GT = {"0--Test": {
    "img_a": ([A, B, C], {"easy": [1], "medium": [1, 2], "hard": [1, 2, 3]}),
    "img_b": ([D], {"easy": [1], "medium": [1], "hard": [1]}),
    "img_c": (np.zeros((0, 4)), {"easy": [], "medium": [], "hard": []}),
    "img_d": ([E], {"easy": [], "medium": [], "hard": [1]}),
}}
HAND_PREDS = {  # raw scores 0.1..0.9 normalise to 0..1
    "img_a": [A + [0.9], [300, 300, 20, 20, 0.8], C + [0.7], [120, 10, 20, 20, 0.6]],  # last: B shifted, IoU .024
    "img_b": [[13, 10, 30, 30, 0.5], [500, 500, 10, 10, 0.1]],  # D shifted by 3: IoU 28/34, still a match
    "img_c": [[0, 0, 50, 50, 0.3]],  # an image without faces: its boxes are never false positives
}
# Worked by hand (docs of evaluation.py): points (recall, precision) in score order, VOC envelope.
# easy  (A, D count): (1/2,1) (1/2,1/2) C ignored, (1/2,1/3) (1,2/4) (1,2/5)   -> 1/2 + 1/2*1/2       = 0.75
# medium (A, B, D):   (1/3,1) (1/3,1/2) C ignored, (1/3,1/3) (2/3,2/4) (2/3,2/5) -> 1/3 + 1/3*1/2     = 0.5
# hard (A..E):        (1/5,1) (1/5,1/2) (2/5,2/3) (2/5,2/4) (3/5,3/5) (3/5,3/6) -> 1/5 + 1/5*2/3 + 1/5*3/5
HAND_AP = {"ap_easy": 0.75, "ap_medium": 0.5, "ap_hard": 0.2 + 0.2 * 2 / 3 + 0.2 * 3 / 5}


# A second hand case, one event, scores already on [0, 1] (the raw min 0 and max 1 occur, so normalising
# changes nothing). Every face counts in every setting except G1, which no setting counts (ignored).
F1, F2 = [0, 0, 19, 19], [100, 0, 19, 19]  # 20 x 20 pixels each: pixel-inclusive area 400
G1, G2 = [0, 0, 19, 19], [2, 0, 19, 19]    # overlapping faces; only G2 counts
H, K = [0, 0, 19, 19], [0, 0, 19, 19]
EDGE_BOXES = [
    [F1, F2],   # img_1
    [G1, G2],   # img_2
    [H],        # img_3
    [K],        # img_4
]
EDGE_KEEP = [[0, 1], [1], [0], [0]]  # 0-based indices of the counted faces
EDGE_PREDS = [
    # P1 = F1's corner 12 x 17 pixels: IoU 204/400 = 0.51 (without the +1: 11*16/19^2 = 0.49, no match).
    # P2 = F2's corner 14 x 14 pixels: IoU 196/400 = 0.49, a false positive.
    # P3 = F1 shifted by 1: IoU 19*20/(800 - 380) = 0.90, but F1 is already recalled: a false positive.
    [[0, 0, 11, 16, 1.0], [100, 0, 13, 13, 0.8505], [1, 0, 19, 19, 0.2505]],
    # P4 = G1 exactly (IoU 1) while its IoU with the counted G2 is 18*20/(800 - 360) = 0.82: its best match
    # is the ignored G1, so it leaves the proposals and does not recall G2.
    [[0, 0, 19, 19, 0.5505]],
    # P5 recalls H; P6, 0.0002 below it (the same threshold bin), overlaps nothing.
    [[0, 0, 19, 19, 0.6504], [300, 300, 19, 19, 0.6502]],
    # P7 recalls K at score exactly 0.3, which 1 - 700/1000 = 0.30000000000000004 does not reach: it enters
    # at t = 701. P8 (score 0) enters at the last threshold, 0.
    [[0, 0, 19, 19, 0.3], [500, 500, 19, 19, 0.0]],
]
# Threshold t (1-based) from which each box scores >= 1 - t/1000: P1 1, P2 150, P5/P6 350, P4 450 (no change:
# dropped), P7 701, P3 750, P8 1000. (proposals, recalled) of the 5 counted faces, summed over the images:
EDGE_CURVE = [(1, 149, 1, 1), (150, 349, 2, 1), (350, 700, 4, 2), (701, 749, 5, 3), (750, 999, 6, 3),
              (1000, 1000, 7, 3)]
# Envelope of precision at recall 1/5: 1; at 2/5 and 3/5: 3/5 (from t = 701..749). Per-box ranking would
# instead see P5 before P6, precision 2/3 at recall 2/5 (AP 0.4533): the thresholds merge them.
EDGE_AP = 1 / 5 * 1 + 1 / 5 * 3 / 5 + 1 / 5 * 3 / 5


def _edge_gt(keep=EDGE_KEEP):
    files = [[f"img_{i + 1}" for i in range(len(EDGE_BOXES))]]
    keep = [[np.asarray(k, np.int64) for k in keep]]
    return GroundTruth(["0--Test"], files, [[np.asarray(b, np.float64) for b in EDGE_BOXES]],
                       {s: keep for s in SETTINGS})


def test_evaluation_hand_case_of_iou_edges_duplicates_ignored_best_match_and_threshold_bins():
    got = evaluate([[np.asarray(p, np.float64) for p in EDGE_PREDS]], _edge_gt())
    want_precision, want_recall = np.full(1000, np.nan), np.full(1000, np.nan)
    for first, last, proposals, recalled in EDGE_CURVE:
        want_precision[first - 1:last] = recalled / proposals
        want_recall[first - 1:last] = recalled / 5
    for s in SETTINGS:
        assert got[f"ap_{s}"] == pytest.approx(EDGE_AP, abs=1e-12), s
        precision, recall = got[f"pr_{s}"]
        np.testing.assert_allclose(precision, want_precision, rtol=1e-12, err_msg=s)
        np.testing.assert_allclose(recall, want_recall, rtol=1e-12, err_msg=s)


def test_equal_scores_all_become_one_and_enter_at_the_first_threshold():
    # One image, faces A and B; a box on A and a box on nothing, both scored 0.7: (0.7 - 0.7) / 0 is
    # undefined, every score becomes 1, so both boxes count at every threshold: precision 1/2, recall 1/2.
    gt = GroundTruth(["0--Test"], [["img"]], [[np.array([A, B], np.float64)]],
                     {s: [[np.array([0, 1])]] for s in SETTINGS})
    got = evaluate([[np.array([A + [0.7], [300, 300, 20, 20, 0.7]], np.float64)]], gt)
    for s in SETTINGS:
        assert got[f"ap_{s}"] == pytest.approx(1 / 2 * 1 / 2, abs=1e-12)
        np.testing.assert_array_equal(got[f"pr_{s}"][0], np.full(1000, 0.5))
        np.testing.assert_array_equal(got[f"pr_{s}"][1], np.full(1000, 0.5))


@pytest.fixture(scope="module")
def hand_case(tmp_path_factory):
    root = tmp_path_factory.mktemp("hand")
    (root / "gt").mkdir()
    _write_ground_truth(root / "gt", HAND_GT)
    for name, rows in HAND_PREDS.items():
        rows = np.asarray(rows, float)
        write_prediction_file(root / "pred" / "0--Test" / f"{name}.txt", f"{name}.jpg", rows[:, :4], rows[:, 4])
    return root


@pytest.fixture(scope="module")
def real_gt(widerface_dir):
    return load_ground_truth(widerface_dir / "eval_tools" / "ground_truth")


def test_evaluation_matches_hand_worked_protocol(hand_case):
    got = evaluate_folder(hand_case / "pred", hand_case / "gt")
    for key, want in HAND_AP.items():
        assert got[key] == pytest.approx(want, abs=1e-12), key


def test_cli_eval_widerface_writes_results_and_pr_curves(hand_case, tmp_path):
    assert main(["eval", "widerface", "--predictions", str(hand_case / "pred"),
                 "--ground-truth", str(hand_case / "gt"), "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["ap_easy"] == pytest.approx(0.75)
    assert (tmp_path / "pr_curves.png").stat().st_size > 1000


def _reachable(boxes):
    """Faces a prediction equal to them can recall: a valid box (w, h >= 0), not an exact copy of an earlier face
    (the official matching takes the first face of highest IoU)."""
    ok = (boxes[:, 2] >= 0) & (boxes[:, 3] >= 0)
    _, first = np.unique(boxes, axis=0, return_index=True)
    unique = np.zeros(len(boxes), bool)
    unique[first] = True
    return ok & unique


def _gt_predictions(gt, rng, drop_image=lambda e, i: False):
    preds = []
    for e, event in enumerate(gt.boxes):
        preds.append([])
        for i, boxes in enumerate(event):
            boxes = boxes[_reachable(boxes)] if not drop_image(e, i) else np.zeros((0, 4))
            p = np.column_stack([boxes, rng.uniform(0.2, 1.0, len(boxes))])
            preds[-1].append(p[np.argsort(-p[:, 4], kind="stable")])
    return preds


def _expected_recall(gt, setting, drop_image=lambda e, i: False):
    found = total = 0
    for e, event in enumerate(gt.boxes):
        for i, boxes in enumerate(event):
            keep = gt.keep[setting][e][i]
            total += len(keep)
            if not drop_image(e, i) and len(keep):
                found += int(_reachable(boxes)[keep].sum())
    return found / total


def test_ground_truth_as_predictions_scores_one_on_the_faces_that_count(real_gt):
    got = evaluate(_gt_predictions(real_gt, np.random.default_rng(0)), real_gt)
    for s in SETTINGS:
        # Precision stays 1 (boxes on ignored faces leave the proposals), so AP = the reachable fraction:
        # 1.0 for easy and medium; hard counts one duplicated face and one of negative width (2 of 31 958).
        assert got[f"ap_{s}"] == pytest.approx(_expected_recall(real_gt, s), abs=1e-12)
    assert got["ap_easy"] == pytest.approx(1.0) and got["ap_medium"] == pytest.approx(1.0)
    assert got["ap_hard"] == pytest.approx(1 - 2 / 31958)


def test_dropped_images_lower_ap_to_the_recalled_fraction(real_gt):
    drop = lambda e, i: (e + i) % 3 == 0
    got = evaluate(_gt_predictions(real_gt, np.random.default_rng(1), drop), real_gt)
    for s in SETTINGS:
        want = _expected_recall(real_gt, s, drop)
        assert 0.5 < want < 0.8
        assert got[f"ap_{s}"] == pytest.approx(want, abs=1e-12)


def test_low_scored_false_positives_leave_ap_unchanged_and_scores_normalise_globally(real_gt):
    rng = np.random.default_rng(2)
    preds = _gt_predictions(real_gt, rng)
    clean = evaluate(preds, real_gt)
    far = np.array([[-500.0, -500.0, 30.0, 30.0]])  # overlaps no face
    low = [[np.vstack([p, np.column_stack([far, [0.1]])]) for p in ev] for ev in preds]
    got = evaluate(low, real_gt)
    for s in SETTINGS:
        assert got[f"ap_{s}"] == pytest.approx(clean[f"ap_{s}"], abs=1e-12)
    # A false positive above every true box in each image lowers AP; an affine change of all scores does not.
    high = [[np.vstack([np.column_stack([far, [1.5]]), p]) for p in ev] for ev in preds]
    worse = evaluate(high, real_gt)
    affine = evaluate([[p * [1, 1, 1, 1, 40.0] + [0, 0, 0, 0, -7.0] for p in ev] for ev in high], real_gt)
    for s in SETTINGS:
        assert worse[f"ap_{s}"] < clean[f"ap_{s}"] - 0.05
        assert affine[f"ap_{s}"] == pytest.approx(worse[f"ap_{s}"], abs=1e-12)


@pytest.mark.parametrize("text,line,message", [
    ("img_a.jpg\n", "", "expected the image name on line 1"),
    ("other.jpg\n0\n", ":1", "does not name this file's image"),
    ("img_a.jpg\ntwo\n", ":2", "box count must be an integer"),
    ("img_a.jpg\n2\n1 2 3 4 0.5\n", ":2", "box count says 2 but the file has 1 box lines"),
    ("img_a.jpg\n2\n1 2 3 4 0.5\n1 2 3 x 0.5\n", ":4", "expected 'x y w h score'"),
    ("img_a.jpg\n1\n1 2 3 4\n", ":3", "expected 'x y w h score'"),
])
def test_prediction_reader_names_file_and_line_of_malformed_entries(tmp_path, text, line, message):
    path = tmp_path / "img_a.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"img_a.txt{line}: .*{message}" if line else message):
        read_prediction_file(path)


def test_prediction_reader_sorts_by_descending_score(tmp_path):
    path = tmp_path / "img_a.txt"
    path.write_text("0--Test/img_a.jpg\n3\n1 1 5 5 0.2\n2 2 5 5 0.9\n3 3 5 5 0.5\n")
    np.testing.assert_array_equal(read_prediction_file(path)[:, 0], [2, 3, 1])
