"""Caption metrics against the official toolkit's own ``COCOEvalCap.evaluate`` run on real COCO captions."""

import json
import shutil

import pytest

from cnnlab.caption import metrics

# Only the comparison with the toolkit needs it and Java; the file checks run anywhere.
needs_toolkit = pytest.mark.skipif(shutil.which("java") is None,
                                   reason="the official COCO toolkit's tokenizer and METEOR need Java")


class _NoSpice:
    """SPICE downloads CoreNLP models, which is impossible offline; every other scorer is the toolkit's."""

    def compute_score(self, gts, res):
        return 0.0, [0.0] * len(gts)

    def method(self):
        return "SPICE"


@pytest.fixture(scope="module")
def val_predictions(coco_dir, tmp_path_factory):
    """One reference caption per image taken out as the prediction, for 300 val2017 images."""
    refs = json.loads((coco_dir / "annotations" / "captions_val2017.json").read_text())
    by_image = {}
    for a in refs["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    ids = sorted(by_image)[:300]
    # The k-th caption of image k mod 5, so predictions vary in style; it stays among the references, as
    # it would for a human-level captioner scored against all five.
    preds = [{"image_id": i, "caption": by_image[i][k % len(by_image[i])]["caption"]} for k, i in enumerate(ids)]
    path = tmp_path_factory.mktemp("caption") / "predictions.json"
    path.write_text(json.dumps(preds))
    return path, coco_dir / "annotations" / "captions_val2017.json"


@needs_toolkit
def test_caption_metrics_equal_official_cocoevalcap(val_predictions, monkeypatch, tmp_path):
    pytest.importorskip("pycocoevalcap", reason="needs the caption extra (pycocoevalcap)")
    from pycocoevalcap import eval as coco_eval
    from pycocotools.coco import COCO

    from cnnlab.cli import main

    pred_path, ref_path = val_predictions
    main(["eval", "caption", "--predictions", str(pred_path), "--references", str(ref_path), "--out", str(tmp_path)])
    ours = json.loads((tmp_path / "results.json").read_text())
    assert sorted(ours) == sorted(metrics.METRICS)

    monkeypatch.setattr(coco_eval, "Spice", _NoSpice)
    # COCOEvalCap starts its own METEOR (a second Java process), so cnnlab's scorer is checked, not reused.
    coco = COCO(str(ref_path))
    coco_res = coco.loadRes(str(pred_path))
    official = coco_eval.COCOEvalCap(coco, coco_res)
    official.params["image_id"] = coco_res.getImgIds()  # score the predicted images, as the server does
    official.evaluate()
    names = {"bleu_1": "Bleu_1", "bleu_2": "Bleu_2", "bleu_3": "Bleu_3", "bleu_4": "Bleu_4",
             "meteor": "METEOR", "rouge_l": "ROUGE_L", "cider": "CIDEr"}
    for ours_name, official_name in names.items():
        assert ours[ours_name] == pytest.approx(official.eval[official_name], rel=1e-12, abs=1e-12), ours_name
    # A reference caption scores high but not perfectly against the other references of its image.
    assert 0.5 < ours["bleu_1"] < 1.0 and ours["cider"] > 0.5


def test_caption_metrics_reject_missing_image_ids(tmp_path, coco_dir):
    pred = tmp_path / "p.json"
    pred.write_text(json.dumps([{"image_id": 1, "caption": "a cat"}]))
    with pytest.raises(ValueError, match="no reference captions"):
        metrics.evaluate_files(pred, coco_dir / "annotations" / "captions_val2017.json")


@pytest.mark.parametrize("content, match", [
    ("not json", "not valid JSON"),
    ('{"image_id": 1}', "non-empty JSON list"),
    ('[{"image_id": 1}]', "must be an object with 'image_id' and 'caption'"),
    ('[{"image_id": "1", "caption": "x"}]', "non-integer image_id"),
    ('[{"image_id": 1, "caption": "x"}, {"image_id": 1, "caption": "y"}]', "more than one caption"),
])
def test_caption_predictions_malformed_file_errors(tmp_path, content, match):
    path = tmp_path / "p.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=match):
        metrics.load_predictions(path)


def test_caption_references_malformed_file_errors(tmp_path):
    path = tmp_path / "r.json"
    path.write_text('[{"image_id": 1, "caption": "x"}]')
    with pytest.raises(ValueError, match="annotations"):
        metrics.load_references(path)
    with pytest.raises(FileNotFoundError):
        metrics.load_references(tmp_path / "absent.json")
