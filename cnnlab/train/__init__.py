"""The one training engine every cnnlab task uses (MNIST, TCN, face detection, captioning).

It knows nothing about any task. A task hands it

- ``model``: a Flax Linen module; ``model.apply(variables, *inputs, train=bool)`` returns the outputs.
  BatchNorm statistics live in the ``"batch_stats"`` collection (updated with ``mutable=["batch_stats"]``
  when ``train=True``); dropout, if any, draws from the ``"dropout"`` RNG stream.
- ``loss_fn(outputs, batch) -> [N]``: per-example loss; each step minimises its mean over the batch.
- ``metrics_fn(outputs, batch) -> {name: [N]}`` (optional): per-example metrics such as accuracy.
- ``inputs_fn(batch) -> tuple`` (optional, default ``(batch["x"],)``): the model inputs, computed inside
  ``jit`` (so casting uint8 images to float here keeps the host-to-device copy small).
- data sources: ``ArraySource(**arrays)`` (a dict of arrays sharing the first dimension) or any object with
  ``len(source)`` and ``source[int_indices] -> dict of arrays``.

and a ``TrainConfig``; ``train_and_evaluate`` does the rest:

- ``TrainState`` (Flax's, plus ``batch_stats`` and ``rng``) with an Optax SGD-with-momentum optimiser on a
  piecewise-constant schedule (``lr_boundaries`` / ``lr_scales``, e.g. the ×10 warm-up of §6.3), optional
  L2 weight decay and gradient clipping (``make_optimizer``);
- jit-compiled ``train_step`` / ``eval_step`` (``make_steps``), data-parallel over all devices: the
  batch is sharded on the mesh axis "data", parameters are replicated (``data_mesh``); ``batch_size`` and
  ``eval_batch_size`` (global: over all processes) must be divisible by the device count;
- several processes (one per host, ``distributed.initialize`` first, docs/distributed.md): one global mesh,
  each process reads only its rows of every batch (``global_batch``), process 0 writes the run's files and
  every process writes its part of each checkpoint;
- a deterministic input pipeline: batch ``s`` is drawn from a permutation seeded by ``(seed, epoch)``
  (``train_indices``), so the pipeline position is the step saved in the checkpoint;
- validation every ``eval_every`` steps; the weights best on ``select_metric`` (``select_mode`` "min" or
  "max") are kept (§4.3) and used for the final validation and test numbers; without validation data
  (``val_source=None``) the last weights are;
- Orbax checkpoints every ``checkpoint_every`` steps and at the end (state, best weights, metadata), each
  with a CRC32 of every array, checked on restore (``checkpoint``): calling ``train_and_evaluate`` again
  with the same ``workdir`` resumes from the newest intact checkpoint and ends with the same result as an
  uninterrupted run; the result settings must match (else ``CnnlabError``), the display settings
  (``progress``, ``log_every``, ``checkpoint_every``, ``max_to_keep``) may change (``workdir``);
- one writer per ``workdir`` (an ``fcntl`` lock), outputs replaced whole (temporary file + rename);
- a tqdm progress bar (loss, metrics, examples/s), ``metrics.jsonl`` (``{"step", "split": "train"|"val",
  ...}``), ``curves.png`` (accuracy and loss against iterations, like Figure 13) and ``results.json``.

Example (a tiny classifier)::

    import flax.linen as nn, optax
    from cnnlab import train

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, train):
            x = nn.BatchNorm(use_running_average=not train)(x)
            return nn.Dense(10)(x)

    def loss_fn(logits, batch):
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"])

    def metrics_fn(logits, batch):
        return {"accuracy": (logits.argmax(-1) == batch["y"]).astype("float32")}

    config = train.TrainConfig(steps=1000, batch_size=50, learning_rate=0.01, eval_every=200,
                               checkpoint_every=200, select_metric="accuracy", select_mode="max")
    results = train.train_and_evaluate(
        config, "runs/tiny", model=Net(), loss_fn=loss_fn, metrics_fn=metrics_fn,
        train_source=train.ArraySource(x=x_train, y=y_train), val_source=train.ArraySource(x=x_val, y=y_val),
        test_source=train.ArraySource(x=x_test, y=y_test), task_config={"model": "tiny"})
    results["test_accuracy"]

``init_variables(variables) -> variables`` (optional argument of ``train_and_evaluate``) edits the freshly
initialised variables, e.g. to load a pretrained backbone; a resumed run restores over them.

Afterwards ``load_best_variables(workdir, template)`` returns the verified best ``{"params", "batch_stats"}``
(``load_last_state`` the last train state) and ``evaluate(eval_step, variables, source, batch_size)``
evaluates them again (``cnnlab eval``).
"""

from cnnlab.train.checkpoint import load_best_variables, load_last_state
from cnnlab.train.checkpoint import manager as checkpoint_manager
from cnnlab.train.logs import MetricsLog, plot_curves, plot_runs
from cnnlab.train.loop import data_mesh, default_inputs, evaluate, make_steps, train_and_evaluate
from cnnlab.train.pipeline import ArraySource, eval_batches, train_indices
from cnnlab.train.state import (PRECISIONS, TrainConfig, TrainState, compute_dtype, create_train_state,
                                learning_rate_schedule, make_optimizer)

__all__ = ["ArraySource", "MetricsLog", "PRECISIONS", "TrainConfig", "TrainState", "checkpoint_manager",
           "compute_dtype", "create_train_state", "data_mesh", "default_inputs", "eval_batches", "evaluate",
           "learning_rate_schedule", "load_best_variables", "load_last_state", "make_optimizer", "make_steps",
           "plot_curves", "plot_runs", "train_and_evaluate", "train_indices"]
