"""The training engine: data parallelism, resume, determinism, schedules, evaluation, best-on-validation."""

import json
import os
import subprocess
import sys
from pathlib import Path

import flax.linen as nn
import jax
import numpy as np
import pytest

import train_tiny
from cnnlab import train

TIMING = ("wall_seconds", "examples_per_second")


def _without_timing(records):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def _best(workdir):
    return train.load_best_variables(workdir, _template())[0]


def _template():
    state = train.create_train_state(train_tiny.TinyNet(), train_tiny.config(), (np.zeros((1, 5), np.float32),))
    return {"params": state.params, "batch_stats": state.batch_stats}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    return workdir, train_tiny.run(workdir)


def test_resume_after_kill_ends_like_uninterrupted_run(uninterrupted, tmp_path):
    workdir, expected = uninterrupted
    source, _ = train_tiny.sources()
    with pytest.raises(train_tiny.Interrupted):
        train_tiny.run(tmp_path, train_source=train_tiny.KilledAt(source, at=15))  # the checkpoint at step 12 exists
    assert not (tmp_path / "results.json").exists()
    resumed = train_tiny.run(tmp_path)  # the same command again
    assert _without_timing([resumed]) == _without_timing([expected])
    log = lambda d: _without_timing(train.MetricsLog(d / "metrics.jsonl").read())
    assert log(tmp_path) == log(workdir)
    jax.tree.map(np.testing.assert_array_equal, _best(tmp_path), _best(workdir))
    clock = [r["wall_seconds"] for r in train.MetricsLog(tmp_path / "metrics.jsonl").read() if r["split"] == "val"]
    assert clock == sorted(clock) and clock[-1] <= resumed["wall_seconds"]  # the clock goes on across the resume


def test_resume_restores_over_init_variables(uninterrupted, tmp_path):
    workdir, expected = uninterrupted
    source, _ = train_tiny.sources()
    with pytest.raises(train_tiny.Interrupted):
        train_tiny.run(tmp_path, train_source=train_tiny.KilledAt(source, at=15))  # the checkpoint at step 12 exists

    def other_weights(variables):  # e.g. a pretrained backbone given on the second call
        return jax.tree.map(lambda v: np.full_like(v, 0.5), variables)

    resumed = train_tiny.run(tmp_path, init_variables=other_weights)
    assert _without_timing([resumed]) == _without_timing([expected])  # the restored step-12 weights won
    jax.tree.map(np.testing.assert_array_equal, _best(tmp_path), _best(workdir))


def test_same_seed_same_run_other_seed_other_run(uninterrupted, tmp_path):
    workdir, expected = uninterrupted
    again = train_tiny.run(tmp_path / "same")
    assert _without_timing([again]) == _without_timing([expected])
    jax.tree.map(np.testing.assert_array_equal, _best(tmp_path / "same"), _best(workdir))
    other = train_tiny.run(tmp_path / "other", seed=1)
    assert other["train_loss"] != expected["train_loss"]


def test_best_on_validation_is_the_reported_one(uninterrupted):
    workdir, results = uninterrupted
    val = [r for r in train.MetricsLog(workdir / "metrics.jsonl").read() if r["split"] == "val"]
    assert [r["step"] for r in val] == [6, 12, 18, 24]
    best = max(val, key=lambda r: r["accuracy"])  # first maximum wins, as in the engine
    assert results["best_step"] == best["step"]
    assert results["val_accuracy"] == pytest.approx(best["accuracy"], abs=1e-6)
    assert (workdir / "curves.png").stat().st_size > 0
    assert json.loads((workdir / "results.json").read_text())["steps"] == 24


def test_validation_records_carry_the_run_clock_up_to_the_results_wall_time(uninterrupted):
    workdir, results = uninterrupted
    clock = [r["wall_seconds"] for r in train.MetricsLog(workdir / "metrics.jsonl").read() if r["split"] == "val"]
    assert len(clock) == 4 and 0 < clock[0] < clock[1] < clock[2] < clock[3] <= results["wall_seconds"]


def test_plot_command_draws_runs_in_one_png_and_rejects_a_folder_without_a_log(uninterrupted, tmp_path, capsys):
    import cnnlab.cli
    workdir, _ = uninterrupted
    out = tmp_path / "runs.png"
    assert cnnlab.cli.main(["plot", str(workdir), str(workdir), "--label", "a", "--label", "b",
                            "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cnnlab.cli.main(["plot", str(tmp_path), "--out", str(tmp_path / "x.png")]) == 2
    assert cnnlab.cli.main(["plot", str(workdir), "--metric", "f1", "--out", str(tmp_path / "x.png")]) == 2
    assert cnnlab.cli.main(["plot", str(workdir), "--label", "a", "--label", "b", "--out", "x.png"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert [line.split(":")[:2] for line in err] == [["cnnlab", " error"]] * 3
    assert "no metrics.jsonl" in err[0] and "no validation 'f1'" in err[1] and "2 --label" in err[2]
    assert not (tmp_path / "x.png").exists()


def test_eight_devices_match_single_device_losses(uninterrupted, tmp_path):
    _, expected = uninterrupted
    env = {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8",
           "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": str(Path(__file__).parent.parent)}
    out = subprocess.run([sys.executable, str(Path(__file__).parent / "train_tiny.py"), str(tmp_path)],
                         env=env, capture_output=True, text=True, timeout=300, check=True)
    parallel = json.loads(out.stdout.strip().splitlines()[-1])
    assert parallel["results"]["devices"] == 8
    single = [r["loss"] for r in train.MetricsLog(uninterrupted[0] / "metrics.jsonl").read()
              if r["split"] == "train"]
    np.testing.assert_allclose(parallel["losses"], single, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(parallel["results"]["test_loss"], expected["test_loss"], rtol=1e-4)


def test_changed_settings_in_same_workdir_raise(uninterrupted):
    workdir, _ = uninterrupted
    with pytest.raises(ValueError, match="another configuration"):
        train_tiny.run(workdir, learning_rate=0.5)


def test_config_rejects_bad_settings_before_work():
    with pytest.raises(ValueError, match="TrainConfig: batch_size must be a positive int, got 0"):
        train_tiny.config(batch_size=0)
    with pytest.raises(ValueError, match="same length"):
        train_tiny.config(lr_boundaries=(5, 10), lr_scales=(0.1,))


def test_warmup_and_decay_schedule_matches_section_6_3():
    config = train.TrainConfig(steps=100_000, batch_size=100, learning_rate=0.001,
                               lr_boundaries=(200, 1000, 70_000, 90_000), lr_scales=(10, 10, 0.1, 0.1))
    schedule = train.learning_rate_schedule(config)
    expected = {0: 0.001, 199: 0.001, 200: 0.01, 999: 0.01, 1000: 0.1, 69_999: 0.1, 70_000: 0.01,
                90_000: 0.001}
    assert {s: pytest.approx(float(schedule(s)), rel=1e-6) for s in expected} == expected


def test_train_indices_are_epoch_permutations_and_reproducible():
    batches = np.stack([train.train_indices(10, 3, seed=7, step=s) for s in range(6)])
    assert sorted(batches[:3].ravel()) == sorted(set(batches[:3].ravel()))  # no repeats within an epoch
    np.testing.assert_array_equal(batches[4], train.train_indices(10, 3, seed=7, step=4))
    assert not np.array_equal(batches[:3], batches[3:])  # a fresh permutation each epoch


def test_evaluate_masks_padded_examples():
    _, val = train_tiny.sources()  # 40 examples, batches of 16: the last one is padded by 8
    model = train_tiny.TinyNet()
    state = train.create_train_state(model, train_tiny.config(), (val.arrays["x"][:1],))
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    _, eval_step = train.make_steps(model, train_tiny.loss_fn, train_tiny.metrics_fn)
    got = train.evaluate(eval_step, variables, val, batch_size=16)
    logits = np.asarray(model.apply(variables, val.arrays["x"], train=False), np.float64)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    y = val.arrays["y"]
    assert got["loss"] == pytest.approx(-log_probs[np.arange(len(y)), y].mean(), rel=1e-5)
    assert got["accuracy"] == pytest.approx((logits.argmax(-1) == y).mean())


def test_run_stops_when_training_loss_becomes_nan_and_reports_the_step(tmp_path, capsys):
    results = train_tiny.run(tmp_path, learning_rate=1e30)  # the first update sends the weights to inf
    assert results["diverged_at_step"] == results["steps"] < train_tiny.config().steps
    assert np.isnan(results["train_loss"]) and np.isfinite(results["test_loss"])  # best weights: step 0's
    assert "stopping" in capsys.readouterr().err


@pytest.mark.parametrize("metric,mode", [("accuracy", "max"), ("loss", "min")])
def test_no_checkpoint_and_no_best_weights_after_divergence(tmp_path, metric, mode):
    # Learning rate 1e30 from the 6th step on: its update sends the weights to ~1e29, so the validation at
    # step 6 has a NaN loss, while the training loss of that step (taken before the update) is still finite.
    results = train_tiny.run(tmp_path, lr_boundaries=(5,), lr_scales=(1e31,), eval_every=2, checkpoint_every=1,
                             max_to_keep=20, select_metric=metric, select_mode=mode)
    assert results["diverged_at_step"] == 6
    mngr = train.checkpoint_manager(tmp_path)
    assert list(mngr.all_steps()) == [1, 2, 3, 4, 5]
    mngr.close()
    best, meta = train.load_best_variables(tmp_path, _template())
    assert meta["best_step"] == results["best_step"] in (2, 4)
    assert all(np.isfinite(v).all() for v in jax.tree.leaves(best))
    assert np.isfinite(results["val_loss"]) and np.isfinite(results["test_loss"])


def test_batch_sizes_not_divisible_by_the_device_count_are_refused_before_training(tmp_path):
    script = """
import json, sys
import numpy as np
import train_tiny
from cnnlab import train
messages = []
for overrides in ({"batch_size": 3}, {"eval_batch_size": 5}):
    try:
        train_tiny.run(sys.argv[1], **overrides)
    except ValueError as e:
        messages.append(str(e))
_, val = train_tiny.sources()
_, eval_step = train.make_steps(train_tiny.TinyNet(), train_tiny.loss_fn)
try:
    train.evaluate(eval_step, {}, val, batch_size=7)
except ValueError as e:
    messages.append(str(e))
print(json.dumps(messages))
"""
    env = {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2",
           "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent.parent), str(Path(__file__).parent)])}
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "run")], env=env, capture_output=True,
                         text=True, timeout=300, check=True)
    messages = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(messages) == 3, out.stderr[-2000:]
    assert "batch_size 3 must be divisible by the number of devices (2)" in messages[0]
    assert "eval_batch_size 5 must be divisible by the number of devices (2)" in messages[1]
    assert "batch_size 7 must be divisible by the 2 devices" in messages[2]
    assert not (tmp_path / "run" / "checkpoints").exists() or not any((tmp_path / "run" / "checkpoints").iterdir())


class DenseNet(nn.Module):  # no batch statistics, no dropout: micro-batches must give the same updates
    @nn.compact
    def __call__(self, x, train):
        return nn.Dense(3)(nn.relu(nn.Dense(16)(x)))


def _dense_run(workdir, **overrides):
    train_source, val = train_tiny.sources()
    return train.train_and_evaluate(train_tiny.config(steps=12, **overrides), workdir, model=DenseNet(),
                                    loss_fn=train_tiny.loss_fn, metrics_fn=train_tiny.metrics_fn,
                                    train_source=train_source, val_source=val, test_source=val)


def test_microbatches_give_the_whole_batch_updates(tmp_path):
    whole = _dense_run(tmp_path / "whole")
    micro = _dense_run(tmp_path / "micro", microbatch_size=4)
    records = [train.MetricsLog(tmp_path / d / "metrics.jsonl").read() for d in ("whole", "micro")]
    for key in ("loss", "accuracy"):
        values = [[r[key] for r in rs if r["split"] == "train"] for rs in records]
        np.testing.assert_allclose(values[1], values[0], rtol=1e-5, atol=1e-6)
    assert micro["test_loss"] == pytest.approx(whole["test_loss"], rel=1e-5)


def test_microbatches_rejected_for_batch_norm_and_bad_sizes(tmp_path):
    with pytest.raises(ValueError, match="batch statistics"):
        train_tiny.run(tmp_path, microbatch_size=4)
    with pytest.raises(ValueError, match="microbatch_size must be a positive int dividing batch_size 16"):
        train_tiny.config(microbatch_size=5)
