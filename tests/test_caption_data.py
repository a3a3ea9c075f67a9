"""Vocabulary rules of §7.2.1 and the COCO-layout data reader, on hand-made and real COCO-MINI captions."""

import collections
import json
import re

import numpy as np
import pytest

from cnnlab.caption import data
from cnnlab.caption.vocab import EOS_ID, PAD_ID, UKN_ID, Vocab, build_vocab, tokenize


def test_tokenize_lowercases_and_drops_special_characters():
    assert tokenize("A Man's HOT-dog, on a plate!") == ["a", "mans", "hot", "dog", "on", "a", "plate"]


def test_vocab_keeps_words_occurring_five_or_more_times():
    train = ["A dog runs."] * 4 + ["a DOG sits"] + ["a cat, sits"] * 4
    vocab = build_vocab(train)
    # counts: a 9, dog 5, sits 5, cat 4, runs 4 -> cat and runs are <UKN>
    assert vocab.words == ("<PAD>", "<EOS>", "<UKN>", "a", "dog", "sits")
    assert vocab.encode("A cat runs", 6).tolist() == [vocab.words.index("a"), UKN_ID, UKN_ID, EOS_ID, PAD_ID, PAD_ID]


def test_vocab_encode_truncates_keeping_eos_and_decode_stops_there():
    vocab = build_vocab(["a dog sits"] * 5)
    ids = vocab.encode("a dog sits a dog", 4)
    assert ids.tolist()[-1] == EOS_ID and len(ids) == 4
    assert vocab.decode(ids) == "a dog sits"
    assert vocab.decode([3, 4, EOS_ID, 5, 5]) == "a dog"


def test_vocab_save_load_roundtrip(tmp_path):
    vocab = build_vocab(["a dog sits"] * 5)
    vocab.save(tmp_path / "vocab.json")
    assert Vocab.load(tmp_path / "vocab.json") == vocab
    (tmp_path / "bad.json").write_text('{"words": ["a", "b"]}')
    with pytest.raises(ValueError, match="must start with"):
        Vocab.load(tmp_path / "bad.json")


def test_vocab_errors_for_empty_or_malformed_caption_files(tmp_path):
    with pytest.raises(ValueError, match="captions is empty"):
        build_vocab([])
    cases = {"empty.json": "", "list.json": "[]", "noanns.json": '{"annotations": []}',
             "badann.json": '{"annotations": [{"image_id": 1}]}'}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match="read_annotations"):
            data.read_annotations(tmp_path / name)


def test_vocab_from_mini_training_captions_only(coco_dir):
    root = coco_dir / "mini"
    _, _, train = data.load_split(root, "train")
    _, _, val = data.load_split(root, "val")
    vocab = build_vocab([c for cs in train for c in cs])
    # §7.2.1's rule counted independently: lower-cased runs of letters and digits, apostrophes dropped.
    counts = collections.Counter(w for cs in train for c in cs for w in re.findall(r"[a-z0-9]+",
                                                                                  c.lower().replace("'", "")))
    assert {"a", "of", "on"} <= set(vocab.words)
    assert all(counts.get(w, 0) >= 5 for w in vocab.words[3:])
    frequent = {w for w, n in counts.items() if n >= 5}
    assert len(frequent) > 50 and frequent == set(vocab.words[3:])  # every word seen 5 times is in
    val_only = {w for cs in val for c in cs for w in tokenize(c)} - set(counts)
    assert val_only and not val_only & set(vocab.words)


def test_load_split_reads_official_layout(coco_dir):
    paths, ids, captions = data.load_split(coco_dir / "mini", "train")
    assert len(paths) == len(ids) == 80 and sum(map(len, captions)) == 400
    ann = json.loads((coco_dir / "mini" / "annotations" / "captions_train2017.json").read_text())
    first = [a["caption"] for a in ann["annotations"] if a["image_id"] == ids[0]]
    assert captions[0] == first
    image = data.load_image(paths[0])
    assert image.shape == (224, 224, 3) and image.dtype == np.uint8


def test_caption_source_pairs_each_image_with_each_of_its_captions():
    vocab = build_vocab(["w%d" % i for i in range(6)] * 5)
    captions = [["w%d" % i, "w%d w%d" % (i, i)] for i in range(6)]
    tokens = data.encode_captions(vocab, captions, 4)  # [6, 2, 4]
    images = np.arange(6, dtype=np.uint8).reshape(6, 1, 1, 1) * np.ones((1, 2, 2, 3), np.uint8)
    source = data.CaptionSource(images, tokens)
    assert len(source) == 12
    batch = source[np.arange(12)]
    assert batch["image"].shape == (12, 2, 2, 3) and batch["tokens"].shape == (12, 4)
    pairs = {(int(im[0, 0, 0]), vocab.decode(tok)) for im, tok in zip(batch["image"], batch["tokens"])}
    assert pairs == {(i, c) for i in range(6) for c in captions[i]}
