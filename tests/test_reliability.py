"""Nothing lost, nothing silently wrong: kill-anywhere resume, verified checkpoints, one writer per run
folder, atomic outputs, and which settings a resume may change.

The run is ``benchmarks/soak.py``'s (Table 2's net on synthetic MNIST-shaped data, 24 steps, a checkpoint
every 4, the two newest kept); every check compares with that run done once without interruption.
"""

import inspect
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import cnnlab.cli
from benchmarks import soak
from cnnlab import train
from cnnlab.errors import CnnlabError
from cnnlab.train import checkpoint
from cnnlab.train.workdir import RunLock, atomic_write_text
from train_tiny import Interrupted, KilledAt


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("reference")
    soak.run(workdir)
    return workdir, soak.final_record(workdir)


def _copy(reference, tmp_path):
    return shutil.copytree(reference[0], tmp_path / "run")


def test_run_killed_in_every_phase_ends_equal_to_uninterrupted_run(reference, tmp_path):
    figures = soak.soak(tmp_path, 5, np.random.default_rng(0), reference[1],
                        phases=("compile", "step", "save", "eval", "write"))
    assert [k["phase"] for k in figures["kills"]] == ["compile", "step", "save", "eval", "write"]
    assert all(k["killed"] for k in figures["kills"]) and figures["runs"]
    assert [r["differences"] for r in figures["runs"]] == [[]] * len(figures["runs"])
    assert not list(tmp_path.glob("run*/checkpoints/*tmp*"))  # unfinished saves were cleaned up, never used


@pytest.mark.parametrize("how,item", [("flip", "best"), ("truncate", "state"), ("delete", "state")])
def test_damaged_newest_checkpoint_is_named_and_resume_uses_the_previous(reference, tmp_path, how, item):
    workdir = _copy(reference, tmp_path)
    damaged = soak.damage(workdir, how, item=item)
    with pytest.warns(checkpoint.CheckpointWarning) as warned:
        soak.run(workdir)
    message = str(warned[0].message)
    assert "checkpoints/24" in message and f"leaf {item}." in message and "step 20" in message
    assert how == "delete" or str(damaged) in message  # the file flipped or cut is named
    assert [p.name.split("-")[0] for p in (workdir / "checkpoints-damaged").iterdir()] == ["24"]
    assert soak.differences(soak.final_record(workdir), reference[1]) == []


def test_edited_metadata_is_detected_and_resume_uses_the_previous(reference, tmp_path):
    workdir = _copy(reference, tmp_path)
    meta_file = workdir / "checkpoints" / "24" / "meta" / "metadata"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "best_value": meta["best_value"] + 0.25}))  # a plausible JSON
    with pytest.warns(checkpoint.CheckpointWarning, match="checkpoints/24: meta does not match its CRC"):
        soak.run(workdir)
    assert soak.differences(soak.final_record(workdir), reference[1]) == []


def test_removed_newest_checkpoint_resumes_from_the_previous(reference, tmp_path):
    workdir = _copy(reference, tmp_path)
    soak.damage(workdir, "remove")
    soak.run(workdir)
    assert soak.differences(soak.final_record(workdir), reference[1]) == []


def test_flipped_bytes_fail_evaluation_naming_checkpoint_and_leaf(reference, tmp_path):
    workdir = _copy(reference, tmp_path)
    soak.damage(workdir, "flip", item="best", leaf="params.Dense_0.kernel")
    template = soak.final_record(reference[0])["best"]
    with pytest.raises(CnnlabError, match=r"checkpoints/24: leaf best\.params\.Dense_0\.kernel does not match"):
        train.load_best_variables(workdir, template)
    out = subprocess.run([sys.executable, "-m", "cnnlab", "eval", "mnist", "--checkpoint", str(workdir)],
                         capture_output=True, text=True, env=soak.child_env(), timeout=300)
    assert out.returncode != 0 and "best.params.Dense_0.kernel" in out.stderr and "checkpoints/24" in out.stderr
    assert "val_accuracy" not in out.stdout
    if "CnnlabError" in inspect.getsource(cnnlab.cli):  # the CLI prints expected errors as one line, exit 2
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1


def test_no_intact_checkpoint_fails_saying_how_to_start_afresh(reference, tmp_path):
    workdir = _copy(reference, tmp_path)
    for step in ("24", "20"):
        leaf_file = checkpoint.leaf_file(workdir / "checkpoints" / step / "state", "params.Dense_0.kernel")
        leaf_file.write_bytes(leaf_file.read_bytes()[:100])
    with pytest.raises(CnnlabError, match="has no intact checkpoint.*24.*20.*to start afresh remove"):
        soak.run(workdir)


def test_full_disk_at_save_fails_clearly_and_keeps_the_previous_checkpoint(reference, tmp_path):
    with soak.full_disk(12), pytest.raises(CnnlabError, match=r"disk full.*No space left.*steps \[4, 8\] are "):
        soak.run(tmp_path)
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == [4, 8]
    soak.run(tmp_path)
    assert soak.differences(soak.final_record(tmp_path), reference[1]) == []


def test_second_writer_fails_at_once_naming_the_first(reference, tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(CnnlabError, match=rf"in use by another training run \(pid {os.getpid()} on "):
            soak.run(tmp_path)
        train.load_best_variables(reference[0], reference[1]["best"])  # readers take no lock
    assert not (tmp_path / "checkpoints").exists()
    soak.run(tmp_path, steps=4, eval_every=4)  # the lock is free again


def test_lock_of_a_killed_process_is_free(tmp_path):
    code = ("import sys, time; from cnnlab.train.workdir import RunLock; "
            "lock = RunLock(sys.argv[1]).__enter__(); print('locked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                            env=soak.child_env())
    assert proc.stdout.readline().strip() == "locked"
    with pytest.raises(CnnlabError, match=f"pid {proc.pid} on"):
        RunLock(tmp_path).__enter__()
    proc.kill()
    proc.wait()
    with RunLock(tmp_path):
        assert json.loads((tmp_path / "lock").read_text())["pid"] == os.getpid()


def test_resume_with_display_settings_changed_ends_equal(reference, tmp_path):
    data = soak.sources()
    with pytest.raises(Interrupted):
        soak.run(tmp_path, train_source=KilledAt(data["train"], at=10), progress=True)
    soak.run(tmp_path, progress=False, max_to_keep=3)  # `cnnlab train ... --no-progress` on the same folder
    assert soak.differences(soak.final_record(tmp_path), reference[1]) == []
    assert json.loads((tmp_path / "config.json").read_text())["train"]["max_to_keep"] == 3


def test_resume_with_other_log_and_checkpoint_intervals_keeps_weights_and_scores(reference, tmp_path):
    data = soak.sources()
    with pytest.raises(Interrupted):
        soak.run(tmp_path, train_source=KilledAt(data["train"], at=10))
    soak.run(tmp_path, log_every=3, checkpoint_every=5)
    got, want = soak.final_record(tmp_path), reference[1]
    assert [d for d in soak.differences(got, want) if d != "log"] == ["results"]
    scores = lambda r: {k: v for k, v in r["results"].items() if k != "train_loss"}  # noqa: E731
    assert scores(got) == scores(want)  # train_loss: the mean over the last logging window


def test_other_steps_fail_naming_steps_and_other_results_settings_name_them(reference, tmp_path):
    workdir = _copy(reference, tmp_path)
    with pytest.raises(CnnlabError, match=r"steps=24 \(--steps 24\), asked for steps=30.*another output folder"):
        soak.run(workdir, steps=30)
    with pytest.raises(CnnlabError, match=r"another configuration .*learning_rate 0\.05 -> 0\.1"):
        soak.run(workdir, learning_rate=0.1)


def test_metrics_log_truncation_drops_later_and_unfinished_records(tmp_path):
    log = train.MetricsLog(tmp_path / "metrics.jsonl")
    for step in (2, 4, 6):
        log.append({"step": step, "split": "train", "loss": 1.0 / step})
    with open(log.path, "a") as f:
        f.write('{"step": 8, "split": "tr')  # a writer stopped mid-line
    assert [r["step"] for r in log.read()] == [2, 4, 6]
    log.truncate_after(4)
    assert log.path.read_text() == "".join(json.dumps({"step": s, "split": "train", "loss": 1.0 / s}) + "\n"
                                           for s in (2, 4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]  # no temporary file left


def test_atomic_write_leaves_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    atomic_write_text(path, "old\n")

    def fail(*args):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        atomic_write_text(path, "new\n")
    assert path.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]
