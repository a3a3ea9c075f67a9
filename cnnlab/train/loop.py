"""The training loop: jit-compiled steps, data parallelism over a device mesh, validation, best-on-validation
selection (§4.3), Orbax checkpoints with resume, progress bar, ``metrics.jsonl``, curves and ``results.json``.

A task supplies the pieces that are its own:
  model       a Flax Linen module whose ``__call__(*inputs, train: bool)`` returns the outputs;
  loss_fn     ``loss_fn(outputs, batch) -> [N]`` per-example loss (the step minimises its mean);
  metrics_fn  ``metrics_fn(outputs, batch) -> {name: [N]}`` per-example metrics, e.g. accuracy (optional);
  inputs_fn   ``inputs_fn(batch) -> tuple`` of model inputs (default ``(batch["x"],)``), runs inside ``jit``;
  sources     training / validation / test examples (``ArraySource`` or the same interface).
"""

import contextlib
import dataclasses
import errno
import functools
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from tqdm.auto import tqdm

from cnnlab.errors import CnnlabError
from cnnlab.train import checkpoint
from cnnlab.train.logs import MetricsLog, plot_curves
from cnnlab.train.pipeline import eval_indices, train_indices
from cnnlab.train.state import TrainConfig, create_train_state, learning_rate_schedule, make_optimizer
from cnnlab.train.workdir import RunLock, atomic_write_text, check_run_config, split_config


def default_inputs(batch):
    return (batch["x"],)


def data_mesh(devices=None) -> jax.sharding.Mesh:
    """A 1-D mesh over all devices of all processes (axis "data"): batches are split along it, parameters
    replicated. With one process (no ``cnnlab.train.distributed`` start-up) these are its local devices."""
    devices = jax.devices() if devices is None else devices
    # Auto axes let XLA insert the gradient all-reduce itself (explicit axes would need jax.set_mesh).
    return jax.make_mesh((len(devices),), ("data",), axis_types=(jax.sharding.AxisType.Auto,), devices=devices)


@functools.lru_cache(maxsize=16)  # Linen modules are hashable: a second run of the same task reuses the compiles
def make_steps(model, loss_fn, metrics_fn=None, inputs_fn=None, microbatches: int = 1):
    """``train_step(state, batch) -> (state, metrics)`` and jit-compiled
    ``eval_step(variables, batch, mask) -> sums`` (per-example values summed with ``mask``, plus "count").

    ``microbatches`` > 1: ``train_step`` sums the gradient over that many strided slices of the batch
    (examples i, i + k, ...), one compiled call each, and then applies their mean once; for models without
    batch statistics (``TrainConfig.microbatch_size``). Else it is one compiled call.
    """
    inputs_fn = inputs_fn or default_inputs
    metrics_fn = metrics_fn or (lambda outputs, batch: {})

    def objective(params, state, batch, rng):
        outputs, updates = model.apply({"params": params, "batch_stats": state.batch_stats},
                                       *inputs_fn(batch), train=True, mutable=["batch_stats"],
                                       rngs={"dropout": rng})
        return jnp.mean(loss_fn(outputs, batch)), (outputs, updates.get("batch_stats", {}))

    def step_rng(state):  # one key per step, derived from the step number: resuming draws the same masks
        return jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)

    def train_step(state, batch):
        (loss, (outputs, batch_stats)), grads = jax.value_and_grad(objective, has_aux=True)(
            state.params, state, batch, step_rng(state))
        state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
        metrics = {"loss": loss, **{k: jnp.mean(v) for k, v in metrics_fn(outputs, batch).items()}}
        return state, metrics

    def microbatch_sums(state, batch, index):
        # Micro-batch ``index``: examples index, index + k, ... (an even share of every device's shard).
        micro = jax.tree.map(lambda a: lax.dynamic_index_in_dim(
            a.reshape(-1, microbatches, *a.shape[1:]), index, axis=1, keepdims=False), batch)
        (loss, (outputs, _)), grads = jax.value_and_grad(objective, has_aux=True)(
            state.params, state, micro, jax.random.fold_in(step_rng(state), index))
        metrics = {"loss": loss, **{k: jnp.mean(v) for k, v in metrics_fn(outputs, micro).items()}}
        return jax.tree.map(lambda v: v / microbatches, (grads, metrics))

    def zero_sums(state, batch):
        return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(microbatch_sums, state, batch, 0))

    def add_microbatch(sums, state, batch, index):
        return jax.tree.map(jnp.add, sums, microbatch_sums(state, batch, index))

    def apply_sums(state, sums):
        grads, metrics = sums
        return state.apply_gradients(grads=grads), metrics

    def eval_step(variables, batch, mask):
        outputs = model.apply(variables, *inputs_fn(batch), train=False)
        values = {"loss": loss_fn(outputs, batch), **metrics_fn(outputs, batch)}
        return {"count": jnp.sum(mask), **{k: jnp.sum(v * mask) for k, v in values.items()}}

    if microbatches == 1:
        return jax.jit(train_step, donate_argnums=0), jax.jit(eval_step)
    # One call per micro-batch, not a scan or an unrolled loop inside one jit: on the CPU XLA ran those no
    # faster than the whole batch, or far slower (docs/performance.md).
    zero_sums, add_microbatch = jax.jit(zero_sums), jax.jit(add_microbatch, donate_argnums=0)
    apply_sums = jax.jit(apply_sums, donate_argnums=0)

    def microbatched_train_step(state, batch):
        sums = zero_sums(state, batch)
        for index in range(microbatches):
            sums = add_microbatch(sums, state, batch, index)
        return apply_sums(state, sums)
    return microbatched_train_step, jax.jit(eval_step)


def process_rows(sharding, size: int) -> tuple[int, int]:
    """``(start, stop)``: the rows of a global batch of ``size`` held by this process's devices under
    ``sharding`` (batch axis first); the whole batch with one process."""
    rows = sorted({index[0].indices(size)[:2] for index in sharding.addressable_devices_indices_map((size,)).values()})
    start, stop = rows[0][0], rows[-1][1]
    if sum(b - a for a, b in rows) != stop - start:
        raise CnnlabError(f"this process's devices hold rows {rows} of the batch, not one contiguous slice: build "
                          "the mesh from jax.devices() in their order (data_mesh)")
    return start, stop


def global_batch(source, indices: np.ndarray, sharding, extra=None):
    """The global batch ``source[indices]`` (and ``extra``, a pytree of ``[len(indices), ...]`` host arrays)
    as arrays sharded by ``sharding``: each process reads only the rows its devices hold."""
    if jax.process_count() == 1:
        return jax.device_put((source[indices], extra), sharding)
    start, stop = process_rows(sharding, len(indices))
    local = (source[indices[start:stop]], jax.tree.map(lambda a: a[start:stop], extra))
    return jax.tree.map(lambda a: jax.make_array_from_process_local_data(
        sharding, np.asarray(a), (len(indices), *np.shape(a)[1:])), local)


def evaluate(eval_step, variables, source, batch_size: int, mesh=None) -> dict:
    """Mean loss and metrics of ``variables`` over every example of ``source`` (padded batches masked out),
    summed over the devices of every process."""
    mesh = mesh or data_mesh()
    if batch_size % mesh.size:
        raise CnnlabError(f"evaluate: batch_size {batch_size} must be divisible by the {mesh.size} devices")
    sharding = NamedSharding(mesh, P("data"))
    totals = None
    for indices, mask in eval_indices(len(source), batch_size):
        batch, mask = global_batch(source, indices, sharding, mask)
        sums = eval_step(variables, batch, mask)
        totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    totals = jax.device_get(totals)
    return {k: float(v / totals["count"]) for k, v in totals.items() if k != "count"}


def budget_seconds(n: int, done: int, step_seconds: float, eval_every: int | None, eval_seconds: float,
                   final_seconds: float) -> float:
    """Seconds of the work left after step ``done`` in a run of ``n`` steps: ``n - done`` training steps of
    ``step_seconds``, a validation of ``eval_seconds`` at every multiple of ``eval_every`` after ``done`` and
    at step ``n`` (``eval_every=None``: no validation), and ``final_seconds`` for the final evaluation. Not in
    the paper (``TrainConfig.time_budget``)."""
    evals = 0 if eval_every is None else n // eval_every - done // eval_every + (n % eval_every != 0)
    return (n - done) * step_seconds + evals * eval_seconds + final_seconds


def steps_within_budget(seconds_left: float, done: int, most: int, step_seconds: float, eval_every: int | None,
                        eval_seconds: float, final_seconds: float) -> int:
    """The most steps ``n`` (``done < n <= most``) whose remaining work (``budget_seconds``) fits
    ``seconds_left``; ``done + 1`` if even that does not fit. Not in the paper (``TrainConfig.time_budget``)."""
    cost = lambda n: budget_seconds(n, done, step_seconds, eval_every, eval_seconds, final_seconds)
    lo, hi = done + 1, most  # cost grows with n: the largest n with cost(n) <= seconds_left, by bisection
    if hi <= lo or cost(hi) <= seconds_left:
        return max(hi, lo)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if cost(mid) <= seconds_left else (lo, mid - 1)
    return lo


class _Prefix:
    """The first ``n`` examples of ``source``."""

    def __init__(self, source, n):
        self.source, self.n = source, n

    def __len__(self):
        return self.n

    def __getitem__(self, indices):
        return self.source[indices]


def _evaluation_seconds(eval_step, variables, source, batch_size, mesh) -> float:
    """Seconds ``evaluate`` takes per example of ``source`` (0 without one), timed on (at most) two batches
    after one that compiles."""
    if source is None:
        return 0.0
    evaluate(eval_step, variables, _Prefix(source, min(len(source), batch_size)), batch_size, mesh)
    n = min(len(source), 2 * batch_size)
    began = time.perf_counter()
    evaluate(eval_step, variables, _Prefix(source, n), batch_size, mesh)
    return (time.perf_counter() - began) / n


def _fit_to_budget(config, done, spent, step_seconds, compile_seconds, eval_example_seconds, val_source,
                   test_source, only_if_late=False) -> int:
    """The run's length under ``config.time_budget`` (``steps_within_budget``; ``config.steps`` the most), the
    same on every process.

    ``spent``: the run's wall seconds so far; ``eval_example_seconds``: seconds to evaluate one example.
    Reserved: one more compilation (the step with the fitted schedule) and 5 % of the time left for the
    machine's speed drifting over it. ``only_if_late``: keep ``config.steps`` unless finishing it would
    overrun the whole budget."""
    budget = 60.0 * config.time_budget
    eval_every = None if val_source is None else config.eval_every
    val_seconds = 0.0 if val_source is None else eval_example_seconds * len(val_source)
    final_seconds = eval_example_seconds * sum(len(s) for s in (val_source, test_source) if s is not None)
    costs = (step_seconds, eval_every, val_seconds, final_seconds)
    steps = config.steps
    if not only_if_late or budget_seconds(steps, done, *costs) > budget - spent:
        steps = steps_within_budget(0.95 * (budget - spent) - compile_seconds, done, steps, *costs)
    if jax.process_count() > 1:  # the timings differ between processes; process 0's fit holds for all
        from jax.experimental import multihost_utils
        steps = int(multihost_utils.broadcast_one_to_all(np.int32(steps)))
    return steps


def _variables(state):
    return {"params": state.params, "batch_stats": state.batch_stats}


def _is_better(value, best, mode):
    return best is None or (value < best if mode == "min" else value > best)


def _divergence_message(step, split, loss, learning_rate, meta) -> str:
    return (f"step {step}: {split} loss is {loss} at learning rate {float(learning_rate):g}; stopping. The best "
            f"weights (step {meta['best_step']}) are evaluated. A lower learning rate or gradient clipping may help.")


def train_and_evaluate(config: TrainConfig, workdir, *, model, loss_fn, train_source, val_source,
                       test_source=None, metrics_fn=None, inputs_fn=None, task_config=None,
                       extra_results=None, mesh=None, init_variables=None) -> dict:
    """Train ``model`` as ``config`` says, resuming from ``workdir``'s last checkpoint if there is one.

    Writes into ``workdir``: ``config.json`` (``config`` and ``task_config``), ``checkpoints/`` (Orbax: the
    train state, the best weights so far, metadata), ``metrics.jsonl``, ``curves.png`` and ``results.json``.
    Returns the results dict: ``steps``, ``best_step``, ``train_loss`` (mean over the last ``log_every``
    steps), ``precision`` (``config.precision``; the task built ``model`` with its dtype), ``val_<metric>`` and
    ``test_<metric>`` of the best weights, ``wall_seconds``,
    ``examples_per_second`` (training steps only, compile excluded), ``devices``, and ``extra_results``.
    ``val_source=None``: no validation; the weights kept (and tested) are the last ones, saved at every
    checkpoint;
    ``diverged_at_step`` if the mean training loss or the validation loss became NaN or infinite (the run
    stops at that step, saves nothing from it on and reports the best weights before it).
    ``init_variables(variables) -> variables`` (optional) edits the fresh variables before training, e.g.
    loads a pretrained backbone (``cnnlab.nn.resnet_weights.load_resnet_weights``); a resumed run restores
    over them.

    Each validation record of ``metrics.jsonl`` carries ``wall_seconds``: the run's wall-clock time so far, as
    in ``results.json`` (continued across resumes), for curves against time (``cnnlab.train.logs.plot_runs``).

    ``workdir`` has one writer: a second run on it fails at once (``RunLock``); resuming needs the same result
    settings, display settings may change (``cnnlab.train.workdir``). Checkpoints are verified on resume; a
    damaged one is reported and the newest intact one is used (``cnnlab.train.checkpoint``).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    # Processes of one multi-process run share the folder; the first one holds the lock for them.
    with RunLock(workdir) if jax.process_index() == 0 else contextlib.nullcontext():
        return _train_and_evaluate(config, workdir, model=model, loss_fn=loss_fn, train_source=train_source,
                                   val_source=val_source, test_source=test_source, metrics_fn=metrics_fn,
                                   inputs_fn=inputs_fn, task_config=task_config, extra_results=extra_results,
                                   mesh=mesh, init_variables=init_variables)


def _train_and_evaluate(config, workdir, *, model, loss_fn, train_source, val_source, test_source, metrics_fn,
                        inputs_fn, task_config, extra_results, mesh, init_variables) -> dict:
    began = time.perf_counter()  # wall_seconds counts everything below, compilation and evaluation included
    inputs_fn = inputs_fn or default_inputs
    mesh = mesh or data_mesh()
    for name in ("batch_size", "eval_batch_size"):
        if getattr(config, name) % mesh.size:
            raise CnnlabError(f"train_and_evaluate: config.{name} {getattr(config, name)} must be divisible "
                              f"by the number of devices ({mesh.size})")
    primary = jax.process_index() == 0  # the one process that writes the run's files and shows progress
    run_config = {"train": config.to_dict(), "task": task_config or {}}
    check_run_config(workdir, run_config, TrainConfig(steps=1, batch_size=1, learning_rate=0.0).to_dict(),
                     write=primary)
    result_config = {"train": split_config(run_config["train"])[0], "task": run_config["task"]}
    replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))

    state = create_train_state(model, config, inputs_fn(train_source[np.arange(1)]), init_variables)
    if config.microbatch_size is not None and config.microbatch_size < config.batch_size:
        if config.microbatch_size % mesh.size:
            raise CnnlabError(f"train_and_evaluate: config.microbatch_size {config.microbatch_size} must be "
                              f"divisible by the number of devices ({mesh.size})")
        if jax.tree.leaves(state.batch_stats):
            raise CnnlabError("train_and_evaluate: config.microbatch_size is for models without batch statistics; "
                              "this model has BatchNorm, whose statistics would be those of the micro-batches")
    state = jax.device_put(state, replicated)
    best = jax.tree.map(jnp.copy, _variables(state))
    meta = {"best_step": 0, "best_value": None, "wall_seconds": 0.0, "train_seconds": 0.0, "train_examples": 0}
    log = (MetricsLog if primary else _ReadOnlyLog)(workdir / "metrics.jsonl")
    restored = checkpoint.restore_for_resume(workdir, {"state": state, "best": best}, result_config)
    if restored is not None:
        (state, best), meta = (restored[0]["state"], restored[0]["best"]), restored[1]
    mngr = checkpoint.manager(workdir, config.max_to_keep)
    start = int(state.step)
    log.truncate_after(start)
    microbatches = config.batch_size // (config.microbatch_size or config.batch_size)
    train_step, eval_step = make_steps(model, loss_fn, metrics_fn, inputs_fn, microbatches)
    fit_at = None  # the step after which the run's length is fitted to config.time_budget
    guard_at = None  # after the fit: the training seconds and examples at the last check of the deadline
    eval_example_seconds = None  # seconds to evaluate one example, measured at the fit and at validations
    if config.time_budget is not None:
        if "fitted_steps" in meta:  # fitted before the checkpoint this run resumes from
            config = dataclasses.replace(config, steps=meta["fitted_steps"])
            state = state.replace(tx=make_optimizer(config))
            guard_at = (meta["train_seconds"], meta["train_examples"])
        else:  # the end of the warm-up (which does not depend on where the cosine ends), after >= 20 timed steps
            fit_at = max(config.warmup_steps, 20, start + 20)
            fit_at = fit_at if fit_at < config.steps else None
    schedule = learning_rate_schedule(config)

    timed_from, pending, train_means = None, [], {}
    # Redraw at most every 0.5 s on a terminal, every 30 s into a log file (one line per redraw there).
    bar = tqdm(total=config.steps, initial=start, disable=not (config.progress and primary), desc="train",
               unit="step", mininterval=0.5 if sys.stderr.isatty() else 30.0)
    say = bar.write if primary else (lambda *args, **kwargs: None)
    try:
        step, loop_began = start, time.perf_counter()
        while step < config.steps:  # config.steps may shrink at step fit_at (time_budget)
            indices = train_indices(len(train_source), config.batch_size, config.seed, step)
            state, metrics = train_step(state, global_batch(train_source, indices, sharded)[0])
            pending.append(metrics)
            done = step + 1
            if timed_from is None:  # the first step of a process includes compilation: not timed
                jax.block_until_ready(state)
                timed_from, timed_steps = time.perf_counter(), 0
                compile_seconds = timed_from - loop_began
            else:
                timed_steps += 1
            is_eval = val_source is not None and (done % config.eval_every == 0 or done == config.steps)
            is_save = done % config.checkpoint_every == 0 or done == config.steps
            if done % config.log_every == 0 or is_eval or is_save:
                train_means = {k: float(np.mean(v)) for k, v in jax.device_get(jax.tree.map(
                    lambda *xs: jnp.stack(xs), *pending)).items()}
                pending = []
                now = time.perf_counter()
                meta["train_seconds"] += now - timed_from
                meta["train_examples"] += timed_steps * config.batch_size
                timed_from, timed_steps = now, 0
                speed = meta["train_examples"] / max(meta["train_seconds"], 1e-9)
                log.append({"step": done, "split": "train", **train_means,
                            "learning_rate": float(schedule(step)), "examples_per_second": speed})
                bar.set_postfix({**{k: f"{v:.4f}" for k, v in train_means.items()}, "ex/s": f"{speed:.0f}"})
                if "loss" in train_means and not np.isfinite(train_means["loss"]):
                    # SGD never comes back from non-finite weights: stop instead of training on NaNs, keep
                    # the best weights so far, and save nothing from this step on.
                    meta["diverged_at_step"] = done
                    say(_divergence_message(done, "training", train_means["loss"], schedule(step), meta),
                              file=sys.stderr)
                    break
            if is_eval:
                val_began = time.perf_counter()
                val = evaluate(eval_step, _variables(state), val_source, config.eval_batch_size, mesh)
                val_seconds = time.perf_counter() - val_began
                log.append({"step": done, "split": "val", **val,
                            "wall_seconds": meta["wall_seconds"] + time.perf_counter() - began})
                if not np.isfinite(val["loss"]):
                    # The update of this step already broke the weights (its training loss was taken before
                    # it): the same stop as above, before these weights are kept or saved.
                    meta["diverged_at_step"] = done
                    say(_divergence_message(done, "validation", val["loss"], schedule(step), meta),
                              file=sys.stderr)
                    break
                if _is_better(val[config.select_metric], meta["best_value"], config.select_mode):
                    best = jax.tree.map(jnp.copy, _variables(state))
                    meta.update(best_step=done, best_value=val[config.select_metric])
                if config.progress:
                    say(f"step {done}: " + ", ".join(f"val {k} {v:.4f}" for k, v in val.items()))
                timed_from = time.perf_counter()  # validation time is not training time
            fitted_steps = None
            if done == fit_at:  # the run's length fitted to the budget, from the speed so far
                now = time.perf_counter()
                meta["train_seconds"] += now - timed_from
                meta["train_examples"] += timed_steps * config.batch_size
                timed_steps = 0
                step_seconds = meta["train_seconds"] * config.batch_size / meta["train_examples"]
                eval_example_seconds = _evaluation_seconds(eval_step, _variables(state), val_source or test_source,
                                                           config.eval_batch_size, mesh)
                fitted_steps = _fit_to_budget(config, done, meta["wall_seconds"] + time.perf_counter() - began,
                                              step_seconds, compile_seconds, eval_example_seconds, val_source,
                                              test_source)
                news = (f"{fitted_steps} of at most {config.steps} steps fit (measured here: {step_seconds:.3f} s "
                        "a step)")
            elif guard_at is not None and (is_eval or (val_source is None and is_save)) and done < config.steps:
                # The deadline guarded at each validation: if the machine has slowed so much that the fitted
                # length would overrun the budget, fit again (shorter) from the speed since the last check.
                seconds, examples = (meta["train_seconds"] - guard_at[0], meta["train_examples"] - guard_at[1])
                if examples:
                    step_seconds = seconds * config.batch_size / examples
                    if is_eval:
                        eval_example_seconds = val_seconds / len(val_source)
                    elif eval_example_seconds is None:  # resumed without a validation set
                        eval_example_seconds = _evaluation_seconds(
                            eval_step, _variables(state), test_source, config.eval_batch_size, mesh)
                    fitted_steps = _fit_to_budget(
                        config, done, meta["wall_seconds"] + time.perf_counter() - began, step_seconds,
                        compile_seconds, eval_example_seconds, val_source, test_source, only_if_late=True)
                    news = (f"the machine slowed to {step_seconds:.3f} s a step, {config.steps} steps would "
                            f"overrun it, {fitted_steps} fit")
            if fitted_steps is not None:
                guard_at = (meta["train_seconds"], meta["train_examples"])
            if fitted_steps is not None and (fitted_steps != config.steps or done == fit_at):
                config = dataclasses.replace(config, steps=fitted_steps)
                state = state.replace(tx=make_optimizer(config))  # the same optimiser state, the fitted schedule
                schedule = learning_rate_schedule(config)
                meta["fitted_steps"] = config.steps
                bar.total = config.steps
                bar.refresh()
                say(f"time budget {config.time_budget:g} min: {news}; the schedule now ends at step {config.steps}",
                    file=sys.stderr)
                timed_from = None  # the next step compiles the fitted schedule: not timed either
            if is_save:
                if val_source is None:  # nothing to select on: the weights kept are the latest
                    best = jax.tree.map(jnp.copy, _variables(state))
                    meta["best_step"] = done
                meta["wall_seconds"] += time.perf_counter() - began
                began = time.perf_counter()
                with _disk_errors(workdir, mngr):
                    checkpoint.save(mngr, done, {"state": state, "best": best}, meta, result_config)
            bar.update(1)
            step = done
        bar.close()
    finally:
        with _disk_errors(workdir, mngr):
            mngr.wait_until_finished()
        mngr.close()

    results = {"steps": int(state.step), "best_step": meta["best_step"],
               "train_loss": train_means.get("loss", _last(log, "train", "loss")), "precision": config.precision}
    for split, source in (("val", val_source), ("test", test_source)):
        if source is not None:
            results.update({f"{split}_{k}": v for k, v in
                            evaluate(eval_step, best, source, config.eval_batch_size, mesh).items()})
    if "diverged_at_step" in meta:
        results["diverged_at_step"] = meta["diverged_at_step"]
    results.update(wall_seconds=meta["wall_seconds"] + time.perf_counter() - began,
                   examples_per_second=meta["train_examples"] / max(meta["train_seconds"], 1e-9),
                   devices=mesh.size, processes=jax.process_count(), device_kind=mesh.devices.flat[0].device_kind,
                   **(extra_results or {}))
    if primary:
        atomic_write_text(workdir / "results.json", json.dumps(results, indent=2) + "\n")
        plot_curves(log.read(), workdir / "curves.png", title=workdir.name)
    return results


class _ReadOnlyLog(MetricsLog):
    """``metrics.jsonl`` as the processes other than process 0 see it: they read it, never write it."""

    def truncate_after(self, step: int) -> None:
        pass

    def append(self, record: dict) -> None:
        pass


def _last(log, split, metric):
    values = [r[metric] for r in log.read() if r["split"] == split and metric in r]
    return values[-1] if values else None


@contextlib.contextmanager
def _disk_errors(workdir, mngr):
    """A checkpoint that cannot be written (full disk, lost mount: an ``OSError`` anywhere in the chain, also
    from Orbax's background writer) becomes a ``CnnlabError`` saying which checkpoints are intact."""
    try:
        yield
    except Exception as e:
        cause = e
        while cause is not None and not isinstance(cause, OSError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        full = " (disk full)" if cause.errno == errno.ENOSPC else ""
        mngr.reload()
        raise CnnlabError(f"train_and_evaluate: could not write a checkpoint{full} in {workdir / 'checkpoints'}: "
                          f"{cause}; the checkpoints of steps {mngr.all_steps() or 'none'} are complete (verified "
                          "on resume): free space and rerun the same command to resume") from e
