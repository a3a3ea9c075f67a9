"""The MS-COCO caption metrics (Table 7): BLEU-1..4, METEOR, ROUGE-L and CIDEr-D.

Scores are computed by the official toolkit (``pycocoevalcap``, the PyPI packaging of github
tylin/coco-caption) exactly as ``COCOEvalCap.evaluate`` computes them: captions are PTB-tokenised and
lower-cased by Stanford CoreNLP's ``PTBTokenizer`` with punctuation dropped, BLEU is corpus-level, CIDEr-D
takes its document frequencies from the reference set of the scored images, METEOR 1.5 and the tokenizer
run in Java. Everything but SPICE runs offline (SPICE downloads CoreNLP models), so only SPICE is left out
and nothing is re-implemented here: this module checks and loads the two files, picks the scored images
and hands them to the toolkit.

File formats are the official ones: predictions ``[{"image_id": int, "caption": str}, ...]`` (one per
image, the COCO results format) and references ``{"annotations": [{"image_id", "caption"}, ...], ...}``
(``captions_val2017.json``).
"""

import functools
import json
import shutil
from pathlib import Path

from cnnlab.errors import CnnlabError
from cnnlab.caption.data import read_annotations

# Output names of results.json, in Table 7's reading order after CIDEr-D.
METRICS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider")


def _toolkit():
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.meteor.meteor import Meteor
        from pycocoevalcap.rouge.rouge import Rouge
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    except ImportError as e:
        raise CnnlabError("caption metrics need the official toolkit: pip install 'cnnlab[caption]' "
                          "(pycocoevalcap)") from e
    if shutil.which("java") is None:
        raise CnnlabError("caption metrics: the official toolkit's PTB tokenizer and METEOR need Java "
                          "(a `java` executable on PATH), none was found")
    return PTBTokenizer, Bleu, Meteor, Rouge, Cider


@functools.cache
def meteor_scorer():
    """The toolkit's METEOR scorer, started once per process: its Java start-up and paraphrase table load
    take ~10-20 s on a busy 2-core machine, far longer than scoring a few thousand captions."""
    return _toolkit()[2]()


def _read_json(path, what):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"caption metrics: {what} file {path} does not exist")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CnnlabError(f"caption metrics: {what} file {path} is not valid JSON ({e})") from e


def _check_entries(entries, what, source):
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "image_id" not in entry or "caption" not in entry:
            raise CnnlabError(f"caption metrics: {what} entry {i} of {source} must be an object with "
                              f"'image_id' and 'caption', got {str(entry)[:80]}")
        if isinstance(entry["image_id"], bool) or not isinstance(entry["image_id"], int):
            raise CnnlabError(f"caption metrics: {what} entry {i} of {source} has a non-integer image_id "
                              f"{entry['image_id']!r}")
        if not isinstance(entry["caption"], str):
            raise CnnlabError(f"caption metrics: {what} entry {i} of {source} has a non-string caption "
                              f"{entry['caption']!r}")


def load_predictions(path) -> dict[int, str]:
    """Read a COCO results file ``[{"image_id", "caption"}]`` into ``{image_id: caption}``."""
    data = _read_json(path, "predictions")
    if not isinstance(data, list) or not data:
        raise CnnlabError(f"caption metrics: predictions file {path} must be a non-empty JSON list of "
                          '{"image_id": int, "caption": str} (the COCO results format)')
    _check_entries(data, "prediction", path)
    predictions = {}
    for entry in data:
        if entry["image_id"] in predictions:
            raise CnnlabError(f"caption metrics: predictions file {path} has more than one caption for "
                              f"image_id {entry['image_id']} (the official evaluation scores exactly one)")
        predictions[entry["image_id"]] = entry["caption"]
    return predictions


def load_references(path) -> dict[int, list[str]]:
    """Read official caption annotations (``captions_val2017.json``) into ``{image_id: [caption, ...]}``."""
    return read_annotations(path)[1]


def score_captions(predictions: dict[int, str], references: dict[int, list[str]]) -> dict[str, float]:
    """Official COCO scores of one caption per image against that image's references.

    Args:
      predictions: ``{image_id: caption}``; every id must have references.
      references: ``{image_id: [caption, ...]}``; images without a prediction are ignored, as the
        evaluation server does (CIDEr-D's document frequencies come from the scored images only).
    Returns:
      ``{"bleu_1", ..., "bleu_4", "meteor", "rouge_l", "cider"}`` (CIDEr-D, on the toolkit's ×10 scale).
    """
    if not predictions:
        raise CnnlabError("score_captions: predictions is empty")
    missing = sorted(set(predictions) - set(references))
    if missing:
        raise CnnlabError(f"score_captions: {len(missing)} predicted image ids have no reference captions, "
                          f"e.g. {missing[:5]}")
    tokenizer_cls, bleu_cls, _, rouge_cls, cider_cls = _toolkit()
    ids = list(predictions)  # file order, as COCOEvalCap takes cocoRes.getImgIds()
    # The toolkit's tokenizer takes {id: [{"caption": str}]}, like COCO's imgToAnns.
    tokenizer = tokenizer_cls()
    gts = tokenizer.tokenize({i: [{"caption": c} for c in references[i]] for i in ids})
    res = tokenizer.tokenize({i: [{"caption": predictions[i]}] for i in ids})
    bleu, _ = bleu_cls(4).compute_score(gts, res, verbose=0)
    meteor, _ = meteor_scorer().compute_score(gts, res)
    rouge, _ = rouge_cls().compute_score(gts, res)
    cider, _ = cider_cls().compute_score(gts, res)
    values = [*bleu, meteor, rouge, cider]
    return {name: float(v) for name, v in zip(METRICS, values)}


def evaluate_files(predictions_path, references_path) -> dict[str, float]:
    """``score_captions`` of a COCO results file against an official caption annotation file."""
    return score_captions(load_predictions(predictions_path), load_references(references_path))
