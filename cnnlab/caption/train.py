"""Training and evaluating a captioner (§7.3) on the shared engine ``cnnlab.train``.

``train(config, workdir)`` builds the vocabulary from the training captions (saved as ``workdir/vocab.json``),
trains with teacher forcing and Eq. (67), then captions the scored images greedily and adds the official COCO
metrics (``train_*`` on training images, ``val_*`` on validation images) to ``workdir/results.json``.
``load_trained(workdir)`` restores model, best weights and config, ``load_vocab(workdir)`` the vocabulary,
for ``evaluate(workdir)`` (``cnnlab eval caption --checkpoint``) and ``cnnlab caption``.
"""

import functools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from cnnlab import train as engine
from cnnlab.caption import data, decode, metrics
from cnnlab.caption.config import CaptionConfig
from cnnlab.caption.model import caption_loss
from cnnlab.caption.vocab import Vocab, build_vocab
from cnnlab.errors import CnnlabError
from cnnlab.nn.resnet_weights import load_resnet_weights
from cnnlab.paths import DATA_DIR_ENV, data_dir as shared_data_dir
from cnnlab.train import tasks

TASK = "caption"


def data_root(data_dir=None) -> Path:
    """``data_dir``, else COCO-MINI under ``$CNNLAB_DATA_DIR/coco/mini``."""
    if data_dir:
        return Path(data_dir)
    root = shared_data_dir("coco")
    if root is None:
        raise CnnlabError(f"captioning needs COCO-layout data: give --data-dir or set {DATA_DIR_ENV}")
    return root / "mini"


def inputs_fn(batch):
    return batch["x"], batch["tokens"]


def loss_fn(logits, batch):
    return caption_loss(logits, batch["tokens"])


def load_source(data_root, split: str, vocab: Vocab, config: CaptionConfig, limit: int | None = None):
    """(``CaptionSource``, image paths, image ids, captions) of a COCO-layout split, first ``limit`` images."""
    paths, ids, captions = data.load_split(data_root, split)
    paths, ids, captions = paths[:limit], ids[:limit], captions[:limit]
    images = data.load_images(paths, config.image_size)
    tokens = data.encode_captions(vocab, captions, config.max_length)
    return data.CaptionSource(images, tokens), paths, ids, captions


def caption_images(model, variables, vocab: Vocab, images, *, beam: int = 1, max_length: int = 20,
                   batch_size: int = 16) -> list[str]:
    """Captions of uint8 ``images [N, H, W, 3]``: greedy (``beam=1``) or beam search, ``batch_size`` at a time."""
    out = []
    for start in range(0, len(images), batch_size):
        chunk = jnp.asarray(images[start:start + batch_size])
        if beam == 1:
            tokens = decode.greedy(model, variables, chunk, max_length=max_length)
        else:
            tokens = decode.beam_search(model, variables, chunk, width=beam, max_length=max_length)
        out.extend(vocab.decode(t) for t in np.asarray(tokens))
    return out


def score(model, variables, vocab, source, ids, captions, config, *, beam: int = 1) -> tuple[dict, list]:
    """Official COCO metrics of the generated captions against all references of each image."""
    generated = caption_images(model, variables, vocab, source.images, beam=beam, max_length=config.max_length)
    predictions = [{"image_id": i, "caption": c} for i, c in zip(ids, generated)]
    scores = metrics.score_captions({p["image_id"]: p["caption"] for p in predictions}, dict(zip(ids, captions)))
    return scores, predictions


def train(config: CaptionConfig, workdir, *, data_dir=None, encoder_weights=None) -> dict:
    """Train on the train split of ``data_dir`` (``data_root``), validate on its val split, score both; returns
    results.json. ``encoder_weights``: a torchvision ResNet-18 checkpoint the image encoder starts from; None:
    random."""
    root = data_root(data_dir)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    _, _, train_captions = data.load_split(root, "train")
    train_captions = train_captions[:config.train_images]
    vocab = build_vocab([c for cs in train_captions for c in cs], config.min_count)  # training captions only
    vocab.save(workdir / "vocab.json")
    train_source, _, train_ids, train_caps = load_source(root, "train", vocab, config, config.train_images)
    val_source, _, val_ids, val_caps = load_source(root, "val", vocab, config, config.val_images)
    model = config.model(len(vocab))
    start = "random (from scratch)" if encoder_weights is None else str(encoder_weights)
    print(f"image encoder ResNet-18: {start}")
    init = None if encoder_weights is None else functools.partial(
        load_resnet_weights, encoder_weights, 18, at="image_encoder")
    train_config = tasks.engine_config(config)
    task = {**tasks.task_settings(config, TASK), "vocab_size": len(vocab), "data_root": str(root),
            "encoder_weights": start}

    extra = {}
    if config.score_untrained:  # the same initial weights the engine starts from (same seed)
        state = engine.create_train_state(model, train_config, inputs_fn(train_source[np.arange(1)]), init)
        untrained = {"params": state.params, "batch_stats": state.batch_stats}
        scores, _ = score(model, untrained, vocab, _head(train_source, config.score_images), train_ids, train_caps,
                          config)
        extra = {f"untrained_train_{k}": v for k, v in scores.items()}
    results = engine.train_and_evaluate(train_config, workdir, model=model, loss_fn=loss_fn,
                                        train_source=train_source, val_source=val_source, inputs_fn=inputs_fn,
                                        task_config=task,
                                        extra_results={**extra, "encoder_weights": start, "grad": config.grad},
                                        init_variables=init)
    if config.score_images:
        variables = tasks.load_best(workdir, model, *_example(config))
        for split, source, ids, caps in (("train", train_source, train_ids, train_caps),
                                         ("val", val_source, val_ids, val_caps)):
            scores, predictions = score(model, variables, vocab, _head(source, config.score_images), ids, caps, config)
            results.update({f"{split}_{k}": v for k, v in scores.items()})
            (workdir / f"predictions_{split}.json").write_text(json.dumps(predictions, indent=1) + "\n")
        (workdir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def _head(source, n):
    return data.CaptionSource(source.images[:n], source.tokens[:n])


def _example(config: CaptionConfig):
    return (np.zeros((1, config.image_size, config.image_size, 3), np.uint8),
            np.zeros((1, config.max_length), np.int32))


def load_vocab(workdir) -> Vocab:
    path = Path(workdir) / "vocab.json"
    if not path.is_file():
        raise CnnlabError(f"{workdir} is not a captioning run (no vocab.json)")
    return Vocab.load(path)


def load_trained(workdir, weights: str = "best"):
    """(model, variables, config) of a run written by ``train``.

    weights: ``"best"`` (best on validation, what the engine keeps for evaluation) or ``"last"`` (the final
    training state: what an over-fitting run has memorised).
    """
    if weights not in ("best", "last"):
        raise CnnlabError(f"load_trained: weights must be 'best' or 'last', got {weights!r}")
    config = tasks.read_run(workdir, TASK, CaptionConfig)
    model = config.model(len(load_vocab(workdir)))
    if weights == "best":
        return model, tasks.load_best(workdir, model, *_example(config)), config
    return model, _load_last_variables(workdir, model, config, tasks.engine_config(config)), config


def evaluate(workdir, *, data_dir=None, split: str = "val", weights: str = "best", beam: int = 1,
             limit: int | None = None) -> dict:
    """Official COCO metrics of the captions a run generates for the first ``limit`` images of ``split``;
    ``"predictions"`` holds the captions, ``"paths"`` and ``"references"`` what they describe."""
    model, variables, config = load_trained(workdir, weights)
    vocab = load_vocab(workdir)
    source, paths, ids, refs = load_source(data_root(data_dir), split, vocab, config, limit)
    generated = caption_images(model, variables, vocab, source.images, beam=beam, max_length=config.max_length)
    scores = metrics.score_captions(dict(zip(ids, generated)), dict(zip(ids, refs)))
    return {**scores, "images": len(ids), "split": split, "weights": weights, "beam": beam,
            "decoder": config.decoder, "predictions": [{"image_id": i, "caption": c} for i, c in zip(ids, generated)],
            "paths": [str(p) for p in paths], "references": refs}


def _load_last_variables(workdir, model, config, train_config):
    abstract = jax.eval_shape(lambda: engine.create_train_state(model, train_config, _example(config)))
    state, _ = engine.load_last_state(workdir, abstract)
    return {"params": state.params, "batch_stats": state.batch_stats}
