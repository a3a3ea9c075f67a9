"""TrainConfig.time_budget: the cosine schedule's length fitted to a wall-clock budget after the warm-up."""

import time
import types

import numpy as np
import optax
import pytest

import train_tiny
from cnnlab import train
from cnnlab.errors import CnnlabError
from cnnlab.train import loop

COSINE = dict(schedule="cosine", warmup_steps=20, lr_boundaries=(), lr_scales=(), steps=60, eval_every=10,
              checkpoint_every=25)
TIMING = ("wall_seconds", "examples_per_second")


def _simulated_cost(n, done, step_seconds, eval_every, eval_seconds, final_seconds):
    """Seconds of steps done+1 .. n, run one by one, validating where the loop does, then the final evaluation."""
    seconds = 0.0
    for step in range(done + 1, n + 1):
        seconds += step_seconds
        if eval_every is not None and (step % eval_every == 0 or step == n):
            seconds += eval_seconds
    return seconds + final_seconds


@pytest.mark.parametrize("seconds_left", [-5.0, 0.0, 3.0, 37.5, 100.0, 1e6])
@pytest.mark.parametrize("eval_every", [None, 1, 7, 50])
def test_steps_within_budget_is_the_longest_run_that_fits(seconds_left, eval_every):
    done, most, step_seconds, eval_seconds, final = 20, 300, 0.25, 1.5, 2.0
    fits = [n for n in range(done + 1, most + 1)
            if _simulated_cost(n, done, step_seconds, eval_every, eval_seconds, final) <= seconds_left]
    expected = max(fits) if fits else done + 1
    got = loop.steps_within_budget(seconds_left, done, most, step_seconds, eval_every, eval_seconds, final)
    assert got == expected


def test_time_budget_settings_are_checked_before_work():
    with pytest.raises(CnnlabError, match="time_budget needs schedule='cosine'"):
        train_tiny.config(time_budget=5.0)  # the tiny config's piecewise schedule
    for bad in (0, -1.0, float("nan"), True, "5"):
        with pytest.raises(CnnlabError, match="time_budget must be a positive number of minutes"):
            train_tiny.config(**COSINE, time_budget=bad)


def _fitted_to(monkeypatch, steps, calls):
    def fake(seconds_left, done, most, *args):
        calls.append((done, most))
        return steps
    monkeypatch.setattr(loop, "steps_within_budget", fake)


def test_budget_run_fitted_to_40_steps_equals_a_40_step_run(tmp_path, monkeypatch):
    calls = []
    _fitted_to(monkeypatch, 40, calls)
    fitted = train_tiny.run(tmp_path / "budget", **COSINE, time_budget=1.0)
    plain = train_tiny.run(tmp_path / "plain", **{**COSINE, "steps": 40})
    assert calls == [(20, 60)]  # fitted once, at the end of the warm-up, with --steps as the most
    assert fitted["steps"] == 40
    strip = lambda r: {k: v for k, v in r.items() if k not in TIMING}
    assert strip(fitted) == strip(plain)
    # The logged learning rates are Optax's warm-up + cosine ending at step 40, before the fit and after it.
    schedule = optax.warmup_cosine_decay_schedule(0.0, 0.1, 20, 40)
    rates = [r["learning_rate"] for r in train.MetricsLog(tmp_path / "budget" / "metrics.jsonl").read()
             if r["split"] == "train"]
    np.testing.assert_allclose(rates, [float(schedule(s)) for s in range(40)], rtol=1e-6)


def test_resumed_budget_run_keeps_its_fitted_length(tmp_path, monkeypatch):
    calls = []
    _fitted_to(monkeypatch, 40, calls)
    expected = train_tiny.run(tmp_path / "whole", **COSINE, time_budget=1.0)
    source, _ = train_tiny.sources()
    with pytest.raises(train_tiny.Interrupted):  # stopped at step 31: the checkpoint of step 25 holds the fit
        train_tiny.run(tmp_path / "cut", train_source=train_tiny.KilledAt(source, at=31), **COSINE, time_budget=1.0)
    _fitted_to(monkeypatch, 55, calls)  # a new fit would give another length
    resumed = train_tiny.run(tmp_path / "cut", **COSINE, time_budget=1.0)
    assert len(calls) == 2  # the resumed run did not fit again
    strip = lambda r: {k: v for k, v in r.items() if k not in TIMING}
    assert strip(resumed) == strip(expected) and resumed["steps"] == 40


def test_generous_budget_runs_every_step_and_a_tiny_one_stops_after_the_warm_up(tmp_path):
    assert train_tiny.run(tmp_path / "generous", **COSINE, time_budget=600.0)["steps"] == 60
    assert train_tiny.run(tmp_path / "tiny", **COSINE, time_budget=1e-4)["steps"] == 21


class SlowsDown(train.ArraySource):
    """Training source whose batches take ``seconds`` more from batch number ``at`` on (a machine that slows)."""

    def __init__(self, source, at, seconds):
        super().__init__(**source.arrays)
        self.at, self.seconds, self.calls = at, seconds, 0

    def __getitem__(self, indices):
        if len(indices) > 1:
            self.calls += 1
            if self.calls > self.at:
                time.sleep(self.seconds)
        return super().__getitem__(indices)


def test_budget_run_that_slows_down_ends_earlier_and_within_the_budget(tmp_path, capsys):
    source, _ = train_tiny.sources()
    budget = 0.4  # minutes. The fit at step 20 (a few ms a step) keeps all 60 steps; from batch 22 on every
    # step takes 0.8 s more, so at the validation of step 30 the 30 steps left (24 s) would overrun the 24 s.
    results = train_tiny.run(tmp_path / "slow", train_source=SlowsDown(source, at=21, seconds=0.8),
                             **{**COSINE, "log_every": 5}, time_budget=budget)
    messages = capsys.readouterr().err
    assert "60 of at most 60 steps fit" in messages
    assert "the machine slowed to" in messages  # fitted again at a validation, shorter
    assert 30 < results["steps"] < 60
    assert results["wall_seconds"] <= 60 * budget
    # The learning rates logged after the second fit follow the cosine that ends at the new length.
    records = [r for r in train.MetricsLog(tmp_path / "slow" / "metrics.jsonl").read() if r["split"] == "train"]
    last = records[-1]
    assert last["step"] == results["steps"]
    schedule = optax.warmup_cosine_decay_schedule(0.0, 0.1, 20, results["steps"])
    np.testing.assert_allclose(last["learning_rate"], float(schedule(results["steps"] - 1)), rtol=1e-6)


def test_budget_run_at_an_even_pace_is_not_fitted_again(tmp_path, capsys):
    results = train_tiny.run(tmp_path / "even", **COSINE, time_budget=1.0)
    messages = capsys.readouterr().err
    assert results["steps"] == 60 and messages.count("time budget") == 1


def test_late_fit_reserves_five_percent_of_the_time_left_not_of_the_whole_budget():
    # One-second steps, no validation or test, a 1-minute budget. Half of it spent: 95 % of the 30 s left
    # (28.5 s) holds 28 more steps; 95 % of the whole budget less what was spent (27 s) would hold 27.
    fit = lambda steps, spent, late: loop._fit_to_budget(
        types.SimpleNamespace(time_budget=1.0, eval_every=10, steps=steps), 0, spent, 1.0, 0.0, 0.0, None, None,
        only_if_late=late)
    assert fit(1000, 0.0, False) == 57
    assert fit(1000, 30.0, False) == 28
    assert fit(40, 30.0, True) == 28  # 40 steps would overrun the 30 s left: fitted again
    assert fit(25, 30.0, True) == 25  # 25 fit: kept
