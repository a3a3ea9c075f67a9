"""Words and token ids of the captioning models (§7.2.1).

The vocabulary is every word occurring five or more times in the *training* captions (never the
validation ones, so validation scores resemble test scores), after lower-casing and dropping special
characters. Rarer words become ``<UKN>``, which the models learn to predict like any other word; ``<EOS>``
ends a caption; ``<PAD>`` fills a batch up to its length and is masked out of the loss (Eq. (67)).
"""

import collections
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PAD, EOS, UKN = "<PAD>", "<EOS>", "<UKN>"
PAD_ID, EOS_ID, UKN_ID = 0, 1, 2
MIN_COUNT = 5  # §7.2.1: "every word in the training captions which appear five or more times"


def tokenize(caption: str) -> list[str]:
    """Lower-cased words of ``caption`` with special characters removed ("A man's hot-dog." -> a mans hot dog)."""
    if not isinstance(caption, str):
        raise TypeError(f"tokenize: caption must be a str, got {type(caption).__name__}")
    text = caption.lower().replace("'", "")  # "man's" stays one word instead of "man" + "s"
    return re.sub(r"[^a-z0-9]+", " ", text).split()


@dataclass(frozen=True)
class Vocab:
    """Ordered words; a word's id is its position. ``words[:3]`` are ``<PAD>``, ``<EOS>``, ``<UKN>``."""

    words: tuple[str, ...]

    def __post_init__(self):
        if tuple(self.words[:3]) != (PAD, EOS, UKN):
            raise ValueError(f"Vocab: words must start with {PAD}, {EOS}, {UKN}, got {list(self.words[:3])}")
        if len(set(self.words)) != len(self.words):
            raise ValueError("Vocab: words must be unique")
        object.__setattr__(self, "_index", {w: i for i, w in enumerate(self.words)})

    def __len__(self):
        return len(self.words)

    def encode(self, caption: str, length: int) -> np.ndarray:
        """Token ids ``[length]``: the words (``<UKN>`` if unknown), ``<EOS>``, then ``<PAD>``.

        Captions longer than ``length - 1`` words are cut so that ``<EOS>`` always fits.
        """
        if length < 2:
            raise ValueError(f"Vocab.encode: length must be >= 2 (a word and <EOS>), got {length}")
        ids = [self._index.get(w, UKN_ID) for w in tokenize(caption)][: length - 1] + [EOS_ID]
        return np.array(ids + [PAD_ID] * (length - len(ids)), np.int32)

    def decode(self, ids) -> str:
        """Words of ``ids`` up to the first ``<EOS>``, padding dropped."""
        words = []
        for i in np.asarray(ids).tolist():
            if i == EOS_ID:
                break
            if i != PAD_ID:
                words.append(self.words[i])
        return " ".join(words)

    def save(self, path) -> None:
        Path(path).write_text(json.dumps({"words": list(self.words)}) + "\n")

    @classmethod
    def load(cls, path) -> "Vocab":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"Vocab.load: cannot read a vocabulary from {path} ({e})") from e
        if not isinstance(data, dict) or not isinstance(data.get("words"), list):
            raise ValueError(f'Vocab.load: {path} must hold {{"words": [...]}}')
        return cls(tuple(data["words"]))


def build_vocab(captions, min_count: int = MIN_COUNT) -> Vocab:
    """Vocabulary of the words occurring ``>= min_count`` times in ``captions`` (training captions only).

    Words are ordered by decreasing count, ties alphabetically, so the same captions give the same ids.
    """
    captions = list(captions)
    if not captions:
        raise ValueError("build_vocab: captions is empty")
    counts = collections.Counter(w for c in captions for w in tokenize(c))
    kept = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
    return Vocab((PAD, EOS, UKN, *kept))
