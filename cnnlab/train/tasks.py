"""What every task package shares on top of the engine: a task config is a ``TrainConfig`` subclass, split
here into the engine's settings and the task's own; classification loss and accuracy; the variables template;
reading a run folder back.
"""

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp

from cnnlab.errors import CnnlabError
from cnnlab.nn import GRADS, op
from cnnlab.train import load_best_variables
from cnnlab.train.state import TrainConfig

TRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))


def engine_config(config: TrainConfig) -> TrainConfig:
    """The engine's settings of a task config (a ``TrainConfig`` subclass)."""
    return TrainConfig(**{name: getattr(config, name) for name in TRAIN_FIELDS})


def task_settings(config: TrainConfig, task: str) -> dict:
    """The task's own fields of ``config`` (what ``config.json`` records as ``"task"``), lists for tuples."""
    settings = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name not in TRAIN_FIELDS}
    return {"task": task, **{k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}}


def shorten(config, steps: int):
    """``config`` run for ``steps`` steps: learning-rate boundaries, validation and checkpoint intervals at the
    same fractions of the run (the ``--steps`` flag)."""
    def scale(n):
        return max(1, round(n * steps / config.steps))
    return dataclasses.replace(config, steps=steps, lr_boundaries=tuple(scale(b) for b in config.lr_boundaries),
                               eval_every=min(steps, scale(config.eval_every)),
                               checkpoint_every=min(steps, scale(config.checkpoint_every)))


class ClassificationLoss:
    """Per-example cross-entropy of Eq. (53)-(54) through ``ops.cross_entropy`` (or its autodiff twin), with
    label smoothing ``s``: ``(1 - s) CE(y) + s * mean_k CE(k)``, the cross-entropy against the target
    ``(1 - s) one_hot(y) + s / K`` (Szegedy et al. 2016; not in the paper).

    A class with value equality, so that two runs with the same settings share the engine's compiled steps.
    """

    def __init__(self, grad: str, smoothing: float = 0.0):
        if not 0.0 <= smoothing < 1.0:
            raise CnnlabError(f"label smoothing must be in [0, 1), got {smoothing}")
        self.grad, self.smoothing = grad, float(smoothing)

    def __eq__(self, other):
        return isinstance(other, ClassificationLoss) and (self.grad, self.smoothing) == (other.grad, other.smoothing)

    def __hash__(self):
        return hash((ClassificationLoss, self.grad, self.smoothing))

    def __call__(self, logits, batch):
        loss = op("cross_entropy", self.grad)(logits, batch["y"])
        if self.smoothing:
            logits = logits.astype(jnp.float32)
            uniform = jax.nn.logsumexp(logits, axis=-1) - jnp.mean(logits, axis=-1)  # mean_k -log softmax_k
            loss = (1.0 - self.smoothing) * loss + self.smoothing * uniform
        return loss


# Without smoothing, one object per gradient mode.
CLASSIFICATION_LOSSES = {grad: ClassificationLoss(grad) for grad in GRADS}


def accuracy(logits, batch):
    """``{"accuracy": [N]}``: 1 where the arg-max of ``logits [N, K]`` is the label ``batch["y"]``."""
    return {"accuracy": (jnp.argmax(logits, -1) == batch["y"]).astype(jnp.float32)}


def variables_template(model, *example_inputs):
    """Abstract ``{"params", "batch_stats"}`` of ``model`` on inputs like ``example_inputs`` (nothing computed);
    ``batch_stats`` is ``{}`` for models without BatchNorm, as in the engine's checkpoints."""
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), *example_inputs, train=False))
    return {"params": shapes["params"], "batch_stats": shapes.get("batch_stats", {})}


def read_run(workdir, task: str, config_class):
    """The task config a run folder of ``task`` was trained with (``config.json``), as ``config_class``."""
    path = Path(workdir) / "config.json"
    if not path.is_file():
        raise CnnlabError(f"{workdir} is not a training run folder (no config.json); give the --out folder of "
                          f"`cnnlab train {task}`")
    try:
        saved = json.loads(path.read_text())
    except ValueError as e:
        raise CnnlabError(f"{path} is not valid JSON ({e})") from None
    found = saved.get("task", {}).get("task")
    if found != task:
        raise CnnlabError(f"{workdir} holds a {found!r} run, not {task!r}")
    names = {f.name for f in dataclasses.fields(config_class)}
    values = {**saved["train"], **saved["task"]}
    return config_class(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names})


def load_best(workdir, model, *example_inputs) -> dict:
    """The best-on-validation ``{"params", "batch_stats"}`` of the run in ``workdir``."""
    if not (Path(workdir) / "checkpoints").is_dir():
        raise CnnlabError(f"{workdir} holds no checkpoints/ folder: the run has not saved weights yet")
    return load_best_variables(workdir, variables_template(model, *example_inputs))[0]
