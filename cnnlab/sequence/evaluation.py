"""Evaluation, prediction and streaming prediction with a ``cnnlab train sequence`` run folder.

``load_run(workdir)`` rebuilds the model and its kept weights (the last, or the best on validation);
``evaluate`` and ``predict`` read new data with the run's channel statistics and class list; given several
run folders (e.g. one per seed) they score an ensemble on its members' averaged class probabilities.
``stream_init`` / ``stream_step`` classify sequences online, one time step at a time
(``cnnlab.tcn.streaming``: every causal convolution keeps a ring buffer of its past inputs), equal to
running the whole sequence seen so far through the model.
"""

import csv
import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from cnnlab import train as engine
from cnnlab.errors import CnnlabError
from cnnlab.nn import Dense
from cnnlab.sequence import data
from cnnlab.sequence.config import SequenceConfig
from cnnlab.sequence.model import SequenceClassifier, classifier
from cnnlab.sequence.train import RUN_FILE, encode, inputs, source
from cnnlab.train.tasks import ClassificationLoss, accuracy
from cnnlab.tcn import streaming


@dataclasses.dataclass(frozen=True)
class Run:
    model: SequenceClassifier
    params: dict
    config: SequenceConfig
    classes: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    in_channels: int
    batch_stats: dict = dataclasses.field(default_factory=dict)  # running statistics of norm="batch"


def load_run(workdir) -> Run:
    """The model of the run in ``workdir`` with its kept weights, and its standardisation and classes."""
    path = Path(workdir) / RUN_FILE
    if not path.is_file():
        raise CnnlabError(f"{workdir} is not a `cnnlab train sequence` run folder (no {RUN_FILE})")
    meta = json.loads(path.read_text())
    config = SequenceConfig(**meta["config"])
    config = dataclasses.replace(config, num_blocks=meta["num_blocks"])
    model = classifier(config, len(meta["classes"]), meta["max_length"])
    c = meta["in_channels"]
    template = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 2, c)), jnp.ones((1, 2, 1))))
    variables, _ = engine.load_best_variables(workdir, {"params": template["params"],
                                                        "batch_stats": template.get("batch_stats", {})})
    return Run(model, variables["params"], config, np.array(meta["classes"]), np.array(meta["mean"], np.float32),
               np.array(meta["std"], np.float32), c, variables["batch_stats"])


def _read(run: Run, path) -> data.Sequences:
    """``path``'s test split if it has one (``x_test``, ``NAME_TEST.ts``), else all of it."""
    seqs = data.read(path, "test") or data.read(path, "train")
    if seqs.x.shape[2] != run.in_channels:
        raise CnnlabError(f"{path}: {seqs.x.shape[2]} channels, but the model was trained on {run.in_channels}")
    return seqs


def load_runs(workdirs) -> list[Run]:
    """``load_run`` of one run folder or of several (an ensemble: same classes and channels). Not in the
    paper, which trains single models."""
    workdirs = [workdirs] if isinstance(workdirs, (str, Path)) else list(workdirs)
    runs = [load_run(w) for w in workdirs]
    for w, run in zip(workdirs[1:], runs[1:]):
        if run.classes.tolist() != runs[0].classes.tolist() or run.in_channels != runs[0].in_channels:
            raise CnnlabError(f"{w}: classes {run.classes.tolist()} and {run.in_channels} channels, but "
                              f"{workdirs[0]} has {runs[0].classes.tolist()} and {runs[0].in_channels}; an "
                              "ensemble's runs must match")
    return runs


def evaluate(workdirs, path) -> dict:
    """Loss and accuracy of the run's kept weights on ``path`` (its test split if it has one). Several run
    folders: an ensemble, scored on its members' averaged class probabilities (``loss``: their mean
    cross-entropy), with each member's accuracy beside it."""
    runs = load_runs(workdirs)
    seqs = _read(runs[0], path)
    if seqs.y is None:
        raise CnnlabError(f"{path}: no labels to evaluate against (use `cnnlab predict sequence`)")
    y = encode(seqs.y, runs[0].classes, str(path))
    if len(runs) == 1:
        run = runs[0]
        _, eval_step = engine.make_steps(run.model, ClassificationLoss(run.config.grad), accuracy, inputs)
        results = engine.evaluate(eval_step, {"params": run.params, "batch_stats": run.batch_stats},
                                  source(seqs, run.mean, run.std, y, run.config.transform), 64)
        return {**results, "sequences": len(seqs.lengths)}
    members = [predict_sequences(run, seqs)[1] for run in runs]
    probs = np.mean(members, 0)
    return {"accuracy": float(np.mean(probs.argmax(-1) == y)),
            "loss": float(-np.mean(np.log(np.maximum(probs[np.arange(len(y)), y], 1e-12)))),
            "sequences": len(seqs.lengths), "members": len(runs),
            "member_accuracy": [float(np.mean(p.argmax(-1) == y)) for p in members]}


def predict(workdirs, path) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class labels [N], class probabilities [N, K]) for ``path`` (its test split if it has one);
    several run folders: an ensemble, its members' class probabilities averaged."""
    runs = load_runs(workdirs)
    seqs = _read(runs[0], path)
    probs = np.mean([predict_sequences(run, seqs)[1] for run in runs], 0)
    return runs[0].classes[probs.argmax(-1)], probs


def predict_sequences(run: Run, seqs: data.Sequences) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class labels [N], class probabilities [N, K]) for raw sequences (``cnnlab.sequence.data``)."""
    if seqs.x.shape[2] != run.in_channels:
        raise CnnlabError(f"{seqs.x.shape[2]} channels, but the model was trained on {run.in_channels}")
    logits = _jitted_apply(run.model)({"params": run.params, "batch_stats": run.batch_stats},
                                      data.standardise(seqs, run.mean, run.std, run.config.transform), seqs.mask)
    probs = np.asarray(jax.nn.softmax(logits, -1))
    return run.classes[probs.argmax(-1)], probs


def _jitted_apply(model):
    return jax.jit(lambda variables, x, mask: model.apply(variables, x, mask))


def write_predictions(out, labels, probs, classes) -> None:
    """CSV with one row per sequence: ``index, prediction, p_<class>...``."""
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "prediction", *[f"p_{c}" for c in classes]])
        for i, (label, p) in enumerate(zip(labels, probs)):
            writer.writerow([i, label, *[f"{v:.6f}" for v in p]])


def stream_init(run: Run, batch_size: int = 1) -> dict:
    """The empty stream state for ``batch_size`` sequences that start together."""
    tcn = run.model.tcn(parent=None)
    return {"cache": streaming.init_cache(tcn, run.params["tcn"], batch_size, run.in_channels,
                                          batch_stats=run.batch_stats.get("tcn")),
            "sum": jnp.zeros((batch_size, run.model.channels)), "count": jnp.zeros(())}


def stream_step(run: Run, state: dict, x_t) -> tuple[jax.Array, dict]:
    """Consume one raw (unstandardised) time step ``x_t: [N, C]``; return (logits ``[N, K]`` of the sequences
    so far, new state). Pure in ``state``; jit it with ``run`` closed over for speed."""
    x_t = (data.transform(jnp.asarray(x_t, jnp.float32), run.config.transform) - run.mean) / run.std
    features, cache = streaming.step(run.model.tcn(parent=None), run.params["tcn"], state["cache"], x_t,
                                     run.batch_stats.get("tcn"))
    state = {"cache": cache, "sum": state["sum"] + features, "count": state["count"] + 1}
    if run.model.readout == "mean":
        features = state["sum"] / state["count"]
    head = Dense(run.model.num_classes, grad=run.model.grad)
    return head.apply({"params": run.params["head"]}, features), state
