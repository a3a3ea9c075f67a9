"""``train(config, workdir)``: a TCN classifier on the user's sequences, trained by the one engine.

The task's own pieces: labels mapped to ``0..K-1`` (the class list is saved), optionally a stratified
validation split of the training set for best-weights selection (§4.3, on validation loss) when it holds at
least ``min_validation`` sequences (else, or with ``val_fraction = 0``, training on all of the training set
and keeping the last weights: a loss on a few held-out sequences picks weights by noise), an optional
pointwise transform (``data.transform``) and per-channel standardisation with the training split's
statistics, the cross-entropy of Eq. (53)-(54) (optionally label-smoothed) and accuracy.
``workdir/sequence.json`` holds what evaluation and prediction need: the config, the classes, the channel
statistics and the model's size.
"""

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from cnnlab import train as engine
from cnnlab.errors import CnnlabError
from cnnlab.sequence import data
from cnnlab.sequence.config import SequenceConfig
from cnnlab.sequence.model import classifier
from cnnlab.train.tasks import ClassificationLoss, accuracy
from cnnlab.train.workdir import atomic_write_text

RUN_FILE = "sequence.json"


def inputs(batch):
    return batch["x"], batch["mask"]


def unit_norm_init(variables):
    """Every weight-normalised convolution's ``g`` set to 1 (unit-norm filters, Salimans & Kingma [6]) and
    the 1x1 skip convolutions rescaled to ``N(0, 1/fan_in)``, instead of the original TCN's ``N(0, 0.01)``
    [33], under which the features start ~100x smaller than the input and training sat on the ``ln K``
    plateau for hundreds of steps (docs/results.md)."""
    def rescale(path, leaf):
        names = [getattr(k, "key", "") for k in path]
        if names[-1] == "scale" and names[-2].startswith("conv"):  # g, not a batch norm's gamma (already 1)
            return jnp.ones_like(leaf)
        if names[-2:] == ["skip", "kernel"]:
            return leaf / 0.01 / np.sqrt(leaf.shape[0] * leaf.shape[1])
        return leaf
    return {**variables, "params": {**variables["params"], "tcn": jax.tree_util.tree_map_with_path(
        rescale, variables["params"]["tcn"])}}


def encode(labels, classes, what: str) -> np.ndarray:
    """Labels -> int32 indices into ``classes``, matched as text (a .ts file's "2" is the class 2 of an .npz);
    a label the training set does not have is an error."""
    index = {str(c): i for i, c in enumerate(classes)}
    unknown = [v for v in labels if str(v) not in index]
    if unknown:
        raise CnnlabError(f"{what} has label {unknown[0]}, which the training set does not have "
                          f"(classes {list(classes)})")
    return np.array([index[str(v)] for v in labels], np.int32)


def source(seqs: data.Sequences, mean, std, y=None, transformed: str = "none") -> engine.ArraySource:
    arrays = {"x": data.standardise(seqs, mean, std, transformed), "mask": seqs.mask}
    return engine.ArraySource(**arrays, **({} if y is None else {"y": y}))


def train_config(config: SequenceConfig, num_train: int) -> engine.TrainConfig:
    """The engine's settings for ``config``: AdamW, warm-up + cosine, clipping (not the paper's §6.3.3 SGD)."""
    return engine.TrainConfig(
        steps=config.steps, batch_size=min(config.batch_size, num_train), learning_rate=config.learning_rate,
        optimizer="adamw", weight_decay=config.weight_decay, schedule="cosine", warmup_steps=config.warmup_steps,
        grad_clip_norm=config.grad_clip_norm, precision=config.precision, time_budget=config.time_budget,
        eval_every=config.eval_every,
        checkpoint_every=max(config.eval_every, config.steps // 4), eval_batch_size=64,
        log_every=min(50, config.eval_every), select_metric="loss", select_mode="min", seed=config.seed,
        progress=config.progress)


def train(config: SequenceConfig, workdir) -> dict:
    """Train on ``config.data``'s training split; returns the engine's results (test metrics if the data has a
    test split) plus the receptive field, the class count and the split sizes."""
    if not config.data:
        raise CnnlabError("cnnlab train sequence: give the data (--data PATH, an .npz or NAME_TRAIN.ts)")
    if config.init not in ("tcn", "unit_norm"):
        raise CnnlabError(f"init must be 'tcn' or 'unit_norm', got {config.init!r}")
    if config.transform not in data.TRANSFORMS:
        raise CnnlabError(f"transform must be one of {', '.join(data.TRANSFORMS)}, got {config.transform!r}")
    train_set, test_set = data.read(config.data, "train"), data.read(config.data, "test")
    if train_set.y is None:
        raise CnnlabError(f"{config.data}: the training data has no labels")
    classes = np.unique(train_set.y)
    if len(classes) < 2:
        held = f"one class ({classes[0].item()!r})" if len(classes) else "no sequences"
        raise CnnlabError(f"{config.data}: the training data holds {held}; need two or more classes")
    y = encode(train_set.y, classes, "training data")
    channels = train_set.x.shape[2]
    test_source = None
    if test_set is not None:
        if test_set.x.shape[2] != channels:
            raise CnnlabError(f"{config.data}: the training data has {channels} channels, the test data "
                              f"{test_set.x.shape[2]}; they must match")
        if test_set.y is None:
            test_set = None
    if not 0.0 <= config.val_fraction < 1.0:
        raise CnnlabError(f"val_fraction must be in [0, 1), got {config.val_fraction}")
    train_idx, val_idx = data.validation_split(y, config.val_fraction, config.seed)
    if len(val_idx) < max(config.min_validation, 1):
        train_idx, val_idx = np.arange(len(y)), np.arange(0)
    mean, std = data.channel_stats(train_set.take(train_idx), config.transform)
    if test_set is not None:
        test_source = source(test_set, mean, std, encode(test_set.y, classes, "test data"), config.transform)
    length = int(train_set.lengths.max())
    model = classifier(config, len(classes), length)
    rf = model.tcn(parent=None).receptive_field()
    if len(val_idx):
        held_out = f"{len(val_idx)} held out for validation"
    else:
        why = "val_fraction=0" if config.val_fraction == 0 else f"under min_validation={config.min_validation}"
        held_out = f"no validation split ({why}): the last weights are kept"
    print(f"sequence TCN: {len(y)} training sequences ({held_out}), "
          f"{channels} channels, {len(classes)} classes, up to {length} steps; {model.num_blocks} {model.block} "
          f"blocks, dilations {model.tcn(parent=None).dilations()}, k={model.kernel_size}, receptive field (Eq. (66)) "
          f"{rf} steps")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    run = {"config": dataclasses.asdict(config), "classes": classes.tolist(), "mean": mean.tolist(),
           "std": std.tolist(), "in_channels": channels, "num_blocks": model.num_blocks, "max_length": length}
    atomic_write_text(workdir / RUN_FILE, json.dumps(run, indent=1) + "\n")
    task = {"task": "sequence", **{k: v for k, v in run.items() if k != "config"},
            **{k: v for k, v in run["config"].items() if k != "progress"}}
    loss = ClassificationLoss(config.grad, config.label_smoothing)
    results = engine.train_and_evaluate(
        train_config(config, len(train_idx)), workdir, model=model, loss_fn=loss,
        metrics_fn=accuracy, inputs_fn=inputs,
        train_source=source(train_set.take(train_idx), mean, std, y[train_idx], config.transform),
        val_source=source(train_set.take(val_idx), mean, std, y[val_idx], config.transform) if len(val_idx) else None,
        test_source=test_source,
        init_variables=unit_norm_init if config.init == "unit_norm" else None,
        task_config=task, extra_results={"receptive_field": rf, "num_blocks": model.num_blocks,
                                         "num_classes": len(classes), "train_sequences": len(train_idx),
                                         "val_sequences": len(val_idx)})
    return results
