"""Multi-process data parallelism (JAX's distributed runtime, gloo collectives on the CPU): 2 processes x 2
devices train exactly like 1 process x 4 devices, write one set of outputs and checkpoints, and fail fast
when a peer dies. Each process is a subprocess with a timeout, so a hung peer fails the test."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import train_tiny
from cnnlab import train

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("distributed_worker.py")
TIMEOUT = 150  # seconds for one run of all its processes, compiles included (a few seconds when idle)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int, *paths) -> dict:
    """A child process's environment: ``devices`` CPU devices, the test session's other XLA flags kept."""
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()
    return {**os.environ, "XLA_FLAGS": flags, "PYTHONPATH": os.pathsep.join(map(str, paths)), "JAX_PLATFORMS": "cpu"}


def launch(workdir, processes: int, devices: int, *extra) -> list[subprocess.CompletedProcess]:
    """Run the tiny training in ``processes`` processes of ``devices`` CPU devices each, all at once."""
    env = _env(devices, ROOT, WORKER.parent)
    address = f"127.0.0.1:{_free_port()}"
    cluster = lambda i: [address, str(processes), str(i)] if processes > 1 else []  # noqa: E731
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(workdir), *cluster(i), *extra], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(processes)]
    done = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=TIMEOUT)
            done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    finally:
        for p in procs:
            p.kill()
    return done


def _output(run: subprocess.CompletedProcess) -> dict:
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def _last_params(workdir):
    template = train.create_train_state(train_tiny.TinyNet(), train_tiny.config(), (np.zeros((1, 5), np.float32),))
    return train.load_last_state(workdir, template)[0].params


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    one, two = tmp_path_factory.mktemp("one-process"), tmp_path_factory.mktemp("two-processes")
    return (one, [_output(r) for r in launch(one, 1, 4)]), (two, [_output(r) for r in launch(two, 2, 2)])


def test_two_processes_train_like_one_process_on_as_many_devices(runs):
    (one, [single]), (two, [first, second]) = runs
    assert first["results"]["processes"] == 2 and first["results"]["devices"] == single["results"]["devices"] == 4
    np.testing.assert_allclose(first["losses"], single["losses"], rtol=1e-5, atol=1e-6)
    assert len(first["losses"]) == train_tiny.config().steps
    for key in ("test_accuracy", "val_accuracy"):
        assert abs(first["results"][key] - single["results"][key]) <= 1e-6
        assert second["results"][key] == first["results"][key]  # both processes agree
    assert first["results"]["best_step"] == second["results"]["best_step"] == single["results"]["best_step"]
    for a, b in zip(*(jax.tree.leaves(_last_params(w)) for w in (one, two))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_only_process_zero_writes_the_run_files(runs):
    _, (two, [first, _]) = runs
    assert json.loads((two / "results.json").read_text()) == first["results"]
    assert len(train.MetricsLog(two / "metrics.jsonl").read()) == len([
        r for r in train.MetricsLog(runs[0][0] / "metrics.jsonl").read()])  # each record once, not twice
    assert (two / "curves.png").exists() and (two / "config.json").exists()
    assert not list(two.glob(".*.tmp-*"))


def test_two_processes_resume_a_one_process_checkpoint(runs, tmp_path):
    (_, [single]), _ = runs
    stopped = launch(tmp_path, 1, 4, "--stop-at", "0:15:raise")[0]
    assert stopped.returncode != 0 and (tmp_path / "checkpoints" / "12").is_dir()
    first, second = (_output(r) for r in launch(tmp_path, 2, 2))
    np.testing.assert_allclose(first["losses"], single["losses"], rtol=1e-5, atol=1e-6)
    assert abs(first["results"]["test_accuracy"] - single["results"]["test_accuracy"]) <= 1e-6


def test_a_dead_peer_stops_the_other_process_with_an_error(runs, tmp_path):
    (_, [single]), _ = runs
    first, second = launch(tmp_path, 2, 2, "--stop-at", "1:15:exit")  # communicate() times out if one hangs
    assert first.returncode != 0 and second.returncode != 0
    first, second = (_output(r) for r in launch(tmp_path, 2, 2))  # rerunning both resumes
    np.testing.assert_allclose(first["losses"], single["losses"], rtol=1e-5, atol=1e-6)


def test_time_budget_fit_of_process_zero_holds_for_every_process(tmp_path):
    runs = [_output(r) for r in launch(tmp_path, 2, 2, "--fit", "40,30")]  # the processes' own fits differ
    assert [r["results"]["steps"] for r in runs] == [40, 40]
    assert len(runs[0]["losses"]) == 40  # process 0 logged every step of the fitted run
    for key in ("test_accuracy", "val_accuracy", "best_step", "train_loss"):
        assert runs[0]["results"][key] == runs[1]["results"][key]  # both processes trained the same run


def test_cnnlab_train_mnist_on_two_processes_gives_the_one_process_results(tmp_path):
    """The issue's command: ``cnnlab train mnist`` on 2 processes x 1 device vs 1 process x 2 devices."""
    address = f"127.0.0.1:{_free_port()}"
    command = lambda out, *cluster: [sys.executable, "-m", "cnnlab", "train", "mnist", "--model", "mlp",  # noqa: E731
                                     "--steps", "6", "--eval-every", "3", "--set", "log_every=1", "--no-progress",
                                     "--out", str(out), *cluster]
    env = lambda devices: _env(devices, ROOT)  # noqa: E731
    procs = [subprocess.Popen(command(tmp_path / "two", "--coordinator-address", address, "--num-processes", "2",
                                      "--process-id", str(i)), env=env(1), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
    single = subprocess.run(command(tmp_path / "one"), env=env(2), capture_output=True, text=True, timeout=TIMEOUT)
    try:
        outputs = [p.communicate(timeout=TIMEOUT)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert single.returncode == 0, single.stderr[-3000:]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    one, two = (json.loads((tmp_path / name / "results.json").read_text()) for name in ("one", "two"))
    assert two["processes"] == 2 and one["processes"] == 1 and one["devices"] == two["devices"] == 2
    assert two["test_accuracy"] == one["test_accuracy"] and two["best_step"] == one["best_step"]
    losses = [[r["loss"] for r in train.MetricsLog(tmp_path / name / "metrics.jsonl").read() if r["split"] == "train"]
              for name in ("one", "two")]
    assert len(losses[0]) == 6 and losses[1] == losses[0]  # two devices' gradients add up the same either way
    assert "test accuracy" in outputs[0].lower() and "test accuracy" not in outputs[1].lower()  # process 0 reports


def test_every_train_command_takes_the_start_up_flags():
    from cnnlab.cli import build_parser
    parser = build_parser()
    tasks = parser._subparsers._group_actions[0].choices["train"]._subparsers._group_actions[0].choices
    assert {"mnist", "seqmnist"} <= set(tasks)
    for task, task_parser in tasks.items():
        flags = {option for action in task_parser._actions for option in action.option_strings}
        assert {"--coordinator-address", "--num-processes", "--process-id"} <= flags, task


@pytest.mark.parametrize("env, expected", [
    ({}, None), ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"}, None),
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4"}, "SLURM"),
    ({"OMPI_MCA_orte_hnp_uri": "1.2.3.4", "OMPI_COMM_WORLD_SIZE": "2"}, "Open MPI"),
    ({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, None),
    ({"KUBERNETES_SERVICE_HOST": "10.0.0.1", "JOB_COMPLETION_INDEX": "0"}, "Kubernetes"),
    ({"TPU_WORKER_HOSTNAMES": "a"}, None), ({"TPU_WORKER_HOSTNAMES": "a,b"}, "Cloud TPU")])
def test_cluster_environment_is_detected_only_with_several_processes(monkeypatch, env, expected):
    from cnnlab.train import distributed
    for name in ("SLURM_JOB_ID", "SLURM_NTASKS", "OMPI_MCA_orte_hnp_uri", "OMPI_COMM_WORLD_SIZE",
                 "KUBERNETES_SERVICE_HOST", "JOB_COMPLETION_INDEX", "TPU_WORKER_HOSTNAMES"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert distributed.cluster_environment() == expected
    if expected is None:
        assert distributed.initialize() is False  # one process: the runtime is not started


def test_bad_start_up_flags_are_errors():
    from cnnlab.errors import CnnlabError
    from cnnlab.train import distributed
    with pytest.raises(CnnlabError, match="--process-id must be in 0 .. 1"):
        distributed.initialize("127.0.0.1:1", 2, 2)
    with pytest.raises(CnnlabError, match="--num-processes must be at least 1"):
        distributed.initialize("127.0.0.1:1", 0, 0)
