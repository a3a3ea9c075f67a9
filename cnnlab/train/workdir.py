"""The run folder: one writer at a time, files replaced whole, and the settings a resume must keep.

- ``RunLock(workdir)``: an ``fcntl`` lock on ``workdir/lock`` held by ``train_and_evaluate`` while it runs
  (the kernel drops it when the process dies, even by SIGKILL); the file names the holder (pid, host, start
  time, command), so a second run on the same folder fails at once saying which process has it.
  Read-only commands (``eval``, ``detect``, ...) never take it.
- ``atomic_write_text`` / ``atomic_path``: write a temporary file beside the target, flush it to disk and
  ``os.replace`` it over the target, so ``results.json``, ``config.json``, ``curves.png`` and
  ``metrics.jsonl`` are either the old file or the new one, never half of one.
- ``check_run_config``: a run folder belongs to one result. ``RESULT`` settings (model, data, optimiser,
  schedule, seed, steps, validation and selection: everything but ``DISPLAY``) must match to resume;
  ``DISPLAY`` settings (``progress``, ``log_every``, ``checkpoint_every``, ``max_to_keep``) only change how
  the run is shown or kept, so changing them resumes (``config.json`` then records the new values).
  ``steps`` is fixed when a run starts: its schedule, validation points and best step depend on it, so a
  longer (or shorter) run is a new run, and asking an existing folder for other ``--steps`` fails.
"""

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from cnnlab.errors import CnnlabError

# TrainConfig fields that change neither the parameters nor the validation/test numbers: the progress bar,
# the training-log interval (metrics.jsonl "train" lines and results' train_loss are means over its windows),
# the checkpoint interval (a checkpoint step also ends a logging window) and how many checkpoints are kept.
DISPLAY = ("progress", "log_every", "checkpoint_every", "max_to_keep")


def atomic_write_text(path, text: str) -> None:
    """Replace ``path`` by a file holding ``text``, all at once."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; once the caller has written it, it replaces ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class RunLock:
    """Exclusive ``fcntl.flock`` on ``workdir/lock`` for the life of a training run (a context manager)."""

    def __init__(self, workdir):
        self.path = Path(workdir) / "lock"
        self.fd = None

    def __enter__(self):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip()
            os.close(fd)
            try:
                h = json.loads(holder)
                holder = f"pid {h['pid']} on {h['host']}, started {h['started']}: {h['command']}"
            except (ValueError, KeyError, TypeError):
                pass
            raise CnnlabError(f"{self.path.parent} is in use by another training run ({holder}); wait for it "
                              "to finish or stop it, or train into another output folder") from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        self.fd = fd
        for stale in self.path.parent.glob(".*.tmp-*"):  # left by a writer killed mid-write
            stale.unlink(missing_ok=True)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)  # closing the descriptor releases the lock
        self.fd = None


def split_config(train: dict) -> tuple[dict, dict]:
    """``(result, display)`` parts of a ``TrainConfig.to_dict()``."""
    return ({k: v for k, v in train.items() if k not in DISPLAY}, {k: v for k, v in train.items() if k in DISPLAY})


def check_run_config(workdir: Path, run_config: dict, defaults: dict, write: bool = True) -> None:
    """Write ``workdir/config.json`` (``{"train": ..., "task": ...}``), or check that the run it holds has the
    same result settings as ``run_config``: raises ``CnnlabError`` naming the settings that differ.

    ``defaults``: the TrainConfig defaults, taken by settings missing from an older ``config.json``;
    ``write=False`` (processes other than process 0 of a multi-process run) only checks.
    """
    path = workdir / "config.json"
    if path.exists():
        try:
            saved = json.loads(path.read_text())
            saved_train, saved_task = dict(saved["train"]), saved["task"]
        except (ValueError, KeyError, TypeError) as e:
            raise CnnlabError(f"{path} is not a cnnlab run configuration ({e}); train into another output "
                              "folder") from None
        for key, value in run_config["train"].items():
            if key not in saved_train and value == defaults.get(key, object()):
                saved_train[key] = value
        saved_result, now_result = split_config(saved_train)[0], split_config(run_config["train"])[0]
        if saved_result.get("steps") != now_result.get("steps"):
            raise CnnlabError(
                f"{workdir} holds a run of steps={saved_result.get('steps')} (--steps "
                f"{saved_result.get('steps')}), asked for steps={now_result.get('steps')}: a run's length is fixed "
                "when it starts (its learning-rate schedule, validation points and best step depend on it); rerun "
                f"with --steps {saved_result.get('steps')} to resume or finish it, or train for "
                f"{now_result.get('steps')} steps into another output folder")
        differ = [f"{k} {saved_result.get(k)!r} -> {now_result.get(k)!r}"
                  for k in sorted(set(saved_result) | set(now_result)) if saved_result.get(k) != now_result.get(k)]
        differ += [f"task {k} {saved_task.get(k)!r} -> {run_config['task'].get(k)!r}"
                   for k in sorted(set(saved_task) | set(run_config["task"]))
                   if saved_task.get(k) != run_config["task"].get(k)]
        if differ:
            raise CnnlabError(f"{workdir} holds a run with another configuration ({path}: " + "; ".join(differ)
                              + "); resume with the saved settings or train into another output folder")
        if saved == run_config:
            return
    if write:
        atomic_write_text(path, json.dumps(run_config, indent=2) + "\n")
