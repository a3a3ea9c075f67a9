"""Training and evaluating a captioner (§7.3) on the shared engine ``cnnlab.train``.

``train_and_evaluate(config, train_config, workdir, data_root)`` builds the vocabulary from the training
captions (saved as ``workdir/vocab.json``), trains with teacher forcing and Eq. (67), then captions the
scored images greedily and adds the official COCO metrics (``train_*`` on training images, ``val_*`` on
validation images) to ``workdir/results.json``. ``load_captioner(workdir)`` restores model, vocabulary
and the best weights for ``cnnlab eval caption --checkpoint`` and ``cnnlab caption``.
"""

import dataclasses
import functools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from cnnlab import train as engine
from cnnlab.caption import data, decode, metrics
from cnnlab.caption.model import DECODERS, CaptionModel, caption_loss
from cnnlab.caption.vocab import MIN_COUNT, Vocab, build_vocab
from cnnlab.nn.layers import GRADS
from cnnlab.nn.resnet_weights import load_resnet_weights


@dataclasses.dataclass(frozen=True)
class CaptionConfig:
    """The task settings of one captioning run (the optimiser's are ``cnnlab.train.TrainConfig``)."""
    decoder: str = "tcn"          # "tcn" (§7.2.3) | "gru" (§7.2.4) | "tcn-concat" (§7.4)
    image_size: int = data.IMAGE_SIZE
    max_length: int = 20          # tokens per caption incl. <EOS>: COCO captions rarely exceed 15 words (§7.4)
    min_count: int = MIN_COUNT
    dropout: float = 0.0
    score_images: int = 500       # images captioned per split for the metrics after training (0: none)
    train_images: int | None = None  # first N training / validation images only (over-fitting runs)
    val_images: int | None = None
    grad: str = "custom"          # backward: "custom" (the paper's equations) | "autodiff" (JAX's)

    def __post_init__(self):
        if self.decoder not in DECODERS:
            raise ValueError(f"CaptionConfig: decoder must be one of {DECODERS}, got {self.decoder!r}")
        if self.grad not in GRADS:
            raise ValueError(f"CaptionConfig: grad must be one of {GRADS}, got {self.grad!r}")
        for name in ("image_size", "max_length", "min_count"):
            if getattr(self, name) < (2 if name == "max_length" else 1):
                raise ValueError(f"CaptionConfig: {name} must be positive, got {getattr(self, name)}")

    def model(self, vocab_size: int) -> CaptionModel:
        return CaptionModel(vocab_size=vocab_size, decoder=self.decoder, dropout=self.dropout, grad=self.grad)


def inputs_fn(batch):
    return batch["image"], batch["tokens"]


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


def train_and_evaluate(config: CaptionConfig, train_config: engine.TrainConfig, workdir, data_root,
                       *, score_untrained: bool = False, encoder_weights=None) -> dict:
    """Train on ``data_root``'s train split, validate on its val split, score both; returns results.json.
    ``encoder_weights``: a torchvision ResNet-18 checkpoint the image encoder starts from; None: random."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    _, _, train_captions = data.load_split(data_root, "train")
    train_captions = train_captions[:config.train_images]
    vocab = build_vocab([c for cs in train_captions for c in cs], config.min_count)  # training captions only
    vocab.save(workdir / "vocab.json")
    train_source, _, train_ids, train_caps = load_source(data_root, "train", vocab, config, config.train_images)
    val_source, _, val_ids, val_caps = load_source(data_root, "val", vocab, config, config.val_images)
    model = config.model(len(vocab))
    start = "random (from scratch)" if encoder_weights is None else str(encoder_weights)
    print(f"image encoder ResNet-18: {start}")
    init = None if encoder_weights is None else functools.partial(
        load_resnet_weights, encoder_weights, 18, at="image_encoder")
    task = {**dataclasses.asdict(config), "vocab_size": len(vocab), "data_root": str(data_root),
            "encoder_weights": start}

    extra = {}
    if score_untrained:  # the same initial weights the engine starts from (same seed)
        state = engine.create_train_state(model, train_config, inputs_fn(train_source[np.arange(1)]), init)
        untrained = {"params": state.params, "batch_stats": state.batch_stats}
        extra = {f"untrained_train_{k}": v for k, v in score(
            model, untrained, vocab, _head(train_source, config.score_images), train_ids, train_caps, config)[0].items()}
    results = engine.train_and_evaluate(train_config, workdir, model=model, loss_fn=loss_fn,
                                        train_source=train_source, val_source=val_source, inputs_fn=inputs_fn,
                                        task_config=task,
                                        extra_results={**extra, "encoder_weights": start, "grad": config.grad},
                                        init_variables=init)
    if config.score_images:
        variables, _ = engine.load_best_variables(workdir, _template(model, config))
        for split, source, ids, caps in (("train", train_source, train_ids, train_caps),
                                         ("val", val_source, val_ids, val_caps)):
            scores, predictions = score(model, variables, vocab, _head(source, config.score_images), ids, caps, config)
            results.update({f"{split}_{k}": v for k, v in scores.items()})
            (workdir / f"predictions_{split}.json").write_text(json.dumps(predictions, indent=1) + "\n")
        (workdir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def _head(source, n):
    return data.CaptionSource(source.images[:n], source.tokens[:n])


def _template(model, config: CaptionConfig):
    """Abstract ``{"params", "batch_stats"}`` of ``model`` (shapes only, nothing computed)."""
    images = jnp.zeros((1, config.image_size, config.image_size, 3), jnp.uint8)
    return jax.eval_shape(lambda: model.init(jax.random.key(0), images, jnp.zeros((1, config.max_length), jnp.int32)))


def load_captioner(workdir, weights: str = "best"):
    """(model, variables, vocab, config) of a finished ``train_and_evaluate`` run in ``workdir``.

    weights: ``"best"`` (best on validation, what the engine keeps for evaluation) or ``"last"`` (the final
    training state: what an over-fitting run has memorised).
    """
    if weights not in ("best", "last"):
        raise ValueError(f"load_captioner: weights must be 'best' or 'last', got {weights!r}")
    workdir = Path(workdir)
    for name in ("config.json", "vocab.json"):
        if not (workdir / name).is_file():
            raise FileNotFoundError(f"load_captioner: {workdir} is not a captioning run (no {name})")
    saved = json.loads((workdir / "config.json").read_text())
    task = saved["task"]
    fields = {f.name for f in dataclasses.fields(CaptionConfig)}
    config = CaptionConfig(**{k: v for k, v in task.items() if k in fields})
    vocab = Vocab.load(workdir / "vocab.json")
    model = config.model(len(vocab))
    if weights == "best":
        variables, _ = engine.load_best_variables(workdir, _template(model, config))
    else:
        variables = _load_last_variables(workdir, model, config, engine.TrainConfig(**saved["train"]))
    return model, variables, vocab, config


def _load_last_variables(workdir, model, config, train_config):
    example = (jnp.zeros((1, config.image_size, config.image_size, 3), jnp.uint8),
               jnp.zeros((1, config.max_length), jnp.int32))
    abstract = jax.eval_shape(lambda: engine.create_train_state(model, train_config, example))
    state, _ = engine.load_last_state(workdir, abstract)
    return {"params": state.params, "batch_stats": state.batch_stats}
