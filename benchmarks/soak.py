"""Kill-anywhere soak test of the training engine: SIGKILL a short run at random moments, resume it each
time, and check that it ends exactly as an uninterrupted run; damage checkpoints and check what each gets.

The run: Table 2's feed-forward net (``cnnlab.mnist``, autodiff gradients, BatchNorm) on synthetic
MNIST-shaped images, 24 steps of batch 16, validation every 6 steps, a checkpoint every 4, the two newest
kept; its folder is an ordinary ``cnnlab train mnist`` folder, so ``cnnlab eval mnist --checkpoint`` reads it.
A killed run is the same run in a child process (``python benchmarks/soak.py child DIR``) that prints a
marker line at each phase (``step S``, ``save S``, ``eval``, ``write``); the driver picks a phase, a step
and a delay at random and kills the child (SIGKILL) that long after the marker: during compilation (the
first step of a process), mid-step, mid-checkpoint-write (Orbax writes in a background thread),
mid-validation or while the final outputs are written.

    python benchmarks/soak.py --kills 50 --out /tmp/soak    # 50 kills, then the damage cases

prints one JSON line per finished run and a summary (recorded in docs/reliability.md). ``tests/test_reliability.py``
runs a short version.
"""

import argparse
import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import orbax.checkpoint as ocp  # noqa: E402

from cnnlab import train  # noqa: E402
from cnnlab.mnist import train as mnist  # noqa: E402
from cnnlab.mnist.models import make_model  # noqa: E402
from cnnlab.train import checkpoint  # noqa: E402

TASK = {"task": "mnist", "model": "mlp", "grad": "autodiff"}  # what `cnnlab eval mnist` reads from config.json
TIMING = ("wall_seconds", "examples_per_second")
PHASES = ("compile", "step", "save", "eval", "write")
DELAYS = {"compile": 1.0, "step": 0.003, "save": 0.05, "eval": 0.01, "write": 0.05}  # longest delay, seconds
MARK = "@soak "


def config(**overrides) -> train.TrainConfig:
    settings = dict(steps=24, batch_size=16, learning_rate=0.05, lr_boundaries=(16,), lr_scales=(0.1,),
                    eval_every=6, checkpoint_every=4, eval_batch_size=64, log_every=2, select_metric="accuracy",
                    select_mode="max", max_to_keep=2, progress=False)
    return train.TrainConfig(**{**settings, **overrides})


def sources() -> dict:
    """Synthetic MNIST-shaped examples: uint8 images [N, 28, 28], labels the arg-max of 10 fixed projections."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(768, 28, 28), dtype=np.uint8)
    labels = np.argmax(images.reshape(len(images), -1) @ rng.normal(size=(784, 10)), -1).astype(np.int32)
    parts = {"train": slice(0, 512), "val": slice(512, 640), "test": slice(640, 768)}
    return {split: train.ArraySource(image=images[s], label=labels[s]) for split, s in parts.items()}


def run(workdir, train_source=None, **overrides) -> dict:
    data = sources()
    return train.train_and_evaluate(config(**overrides), workdir, model=make_model("mlp", "autodiff"),
                                    loss_fn=mnist.LOSSES["autodiff"], metrics_fn=mnist.metrics,
                                    inputs_fn=mnist.inputs, train_source=train_source or data["train"],
                                    val_source=data["val"],
                                    test_source=data["test"], task_config=TASK)


def final_record(workdir) -> dict:
    """What must equal an uninterrupted run's: results and log without timings, the last state, the best
    weights (host arrays; loaded through the verified loaders)."""
    workdir = Path(workdir)
    cfg = config()
    example = (np.zeros((1, 28, 28, 1), np.float32),)
    state = jax.eval_shape(lambda: train.create_train_state(make_model("mlp", "autodiff"), cfg, example))
    results = json.loads((workdir / "results.json").read_text())
    log = train.MetricsLog(workdir / "metrics.jsonl").read()
    return {"results": {k: v for k, v in results.items() if k not in TIMING},
            "log": [{k: v for k, v in r.items() if k not in TIMING} for r in log],
            "state": jax.device_get(train.load_last_state(workdir, state)[0]),
            "best": jax.device_get(train.load_best_variables(workdir, {"params": state.params,
                                                                       "batch_stats": state.batch_stats})[0])}


def differences(a: dict, b: dict) -> list[str]:
    """Names of what differs between two ``final_record``s (exact comparison)."""
    out = [name for name in ("results", "log") if a[name] != b[name]]
    for name in ("state", "best"):
        pairs = zip(jax.tree_util.tree_flatten_with_path(a[name])[0], jax.tree.leaves(b[name]))
        out += [f"{name}{jax.tree_util.keystr(path)}" for (path, x), y in pairs
                if not np.array_equal(np.asarray(x), np.asarray(y))]
    return out


def child_main(workdir) -> None:
    """Run in a child process, printing a marker before each phase the driver may kill in."""
    from cnnlab.train import loop

    def mark(text):
        print(MARK + text, flush=True)

    def marked(name, fn, label):
        def wrapper(*args, **kwargs):
            mark(label(*args, **kwargs))
            return fn(*args, **kwargs)
        setattr(*name, wrapper)

    marked((loop, "train_indices"), loop.train_indices, lambda n, b, seed, step: f"step {step}")
    marked((loop, "evaluate"), loop.evaluate, lambda *a, **k: "eval")
    marked((loop, "plot_curves"), loop.plot_curves, lambda *a, **k: "write")
    marked((checkpoint, "save"), checkpoint.save, lambda mngr, step, *a, **k: f"save {step}")
    run(workdir)
    mark("done")


def child_env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "JAX_PLATFORMS": "cpu"}


def kill_once(workdir, rng, phase=None) -> dict:
    """Start the child, SIGKILL it at a random (or the given) phase, step and delay (``rng`` None: let it
    finish); ``{"phase", "step", "delay", "killed"}``."""
    phase = phase or (str(rng.choice(PHASES)) if rng is not None else None)
    target = int(rng.integers(0, config().steps)) if rng is not None else 0
    delay = float(rng.uniform(0, DELAYS[phase])) if rng is not None else 0.0
    proc = subprocess.Popen([sys.executable, __file__, "child", str(workdir)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=child_env())
    seen, step, hit = 0, None, False
    for line in proc.stdout:
        if not line.startswith(MARK):
            continue
        words = line[len(MARK):].split()
        if words[0] in ("step", "save"):
            step = int(words[1])
        seen += words[0] == "step"
        hit = (phase == "compile" and words[0] == "step" and seen == 1 or phase == "step" and words[0] == "step"
               and step >= target or phase == "save" and words[0] == "save" and step >= target
               or phase == "eval" and words[0] == "eval" and (config().steps if step is None else step) >= target
               or phase == "write" and words[0] == "write")
        if hit:
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            break
    stderr = proc.communicate()[1]
    if proc.returncode not in (0, -signal.SIGKILL):
        raise RuntimeError(f"soak child failed (exit {proc.returncode}):\n{stderr[-3000:]}")
    return {"phase": phase, "step": step, "delay": round(delay, 4), "killed": proc.returncode == -signal.SIGKILL}


def soak(out, kills: int, rng, reference: dict, phases=None) -> dict:
    """SIGKILL runs in ``out/run<i>`` until ``kills`` kills are done: each kill is followed by a resume; a run
    that reaches its end (before its next chosen moment, or resumed after the last kill) is compared with
    ``reference`` (a ``final_record``) and the next run starts in a fresh folder. ``phases`` (optional):
    the phase of each kill in turn, else random."""
    figures = {"kills": [], "runs": []}
    workdir, run_kills = Path(out) / "run0", []
    while len(figures["kills"]) < kills or run_kills:
        done = len(figures["kills"])
        attempt = (kill_once(workdir, rng, phases[done % len(phases)] if phases else None) if done < kills
                   else kill_once(workdir, None))
        if attempt["killed"]:
            figures["kills"].append(attempt)
            run_kills.append(attempt)
            continue
        diff = differences(final_record(workdir), reference)
        figures["runs"].append({"folder": workdir.name, "kills": len(run_kills), "differences": diff})
        print(json.dumps({"run": workdir.name, "kills": run_kills, "differences": diff}), flush=True)
        workdir, run_kills = Path(out) / f"run{len(figures['runs'])}", []
    return figures


def newest_checkpoint(workdir) -> Path:
    steps = [int(p.name) for p in (Path(workdir) / "checkpoints").iterdir() if p.name.isdigit()]
    return Path(workdir) / "checkpoints" / str(max(steps))


def damage(workdir, how: str, item: str = "best", leaf: str = "params.Dense_0.kernel") -> Path:
    """Damage the newest checkpoint of ``workdir``: ``how`` = "flip" (7 bytes inverted in the middle of the
    file holding ``leaf``'s chunk), "truncate" (that file cut to half), "delete" (that file removed) or
    "remove" (the whole checkpoint folder removed). Returns the file or folder damaged."""
    path = newest_checkpoint(workdir)
    if how == "remove":
        shutil.rmtree(path)
        return path
    file = checkpoint.leaf_file(path / item, leaf)
    data = bytearray(file.read_bytes())
    if how == "flip":
        middle = len(data) // 2
        data[middle:middle + 7] = bytes(b ^ 0xFF for b in data[middle:middle + 7])
        file.write_bytes(data)
    elif how == "truncate":
        file.write_bytes(data[:len(data) // 2])
    elif how == "delete":
        file.unlink()
    else:
        raise ValueError(f"damage: how must be flip, truncate, delete or remove, got {how!r}")
    return file


@contextlib.contextmanager
def full_disk(step: int):
    """Within: writing checkpoint ``step`` fails as on a full disk (``OSError(ENOSPC)`` from the write of its
    JSON item, in Orbax's background writer)."""
    handler = ocp.handlers.JsonCheckpointHandler
    write = handler._save_fn

    async def no_space(self, x, directory):
        if Path(directory).parent.name.split(".")[0] == str(step):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(directory))
        return await write(self, x, directory)
    handler._save_fn = no_space
    try:
        yield
    finally:
        handler._save_fn = write


def full_disk_case(out, reference) -> dict:
    """A full disk at the step-12 checkpoint: the error, then a rerun with space again."""
    workdir = out / "full-disk"
    try:
        with full_disk(12):
            run(workdir)
        message = "no error"
    except Exception as e:
        message = f"{type(e).__name__}: {e}"
    run(workdir)
    equal = not differences(final_record(workdir), reference)
    return {"damage": "full disk at step 12", "train_error": message[:400], "resumed_equal": equal,
            "ok": "No space left" in message and equal}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=50, help="SIGKILLs in all")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="scratch folder (emptied first)")
    args = p.parse_args(argv)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    began = time.time()
    run(out / "reference")
    reference = final_record(out / "reference")
    figures = soak(out, args.kills, np.random.default_rng(args.seed), reference)
    summary = {"kills": len(figures["kills"]),
               "kills_by_phase": {p: sum(k["phase"] == p for k in figures["kills"]) for p in PHASES},
               "runs": len(figures["runs"]), "runs_equal": sum(not r["differences"] for r in figures["runs"])}
    summary["damage"] = damage_cases(out, reference) + [full_disk_case(out, reference)]
    summary["seconds"] = round(time.time() - began)
    print(json.dumps(summary, indent=1))
    return 0 if summary["runs_equal"] == summary["runs"] and all(d["ok"] for d in summary["damage"]) else 1


def damage_cases(out, reference) -> list[dict]:
    """Each damage of the newest checkpoint of a finished run: what ``cnnlab eval mnist`` says, and whether
    training resumes from the previous checkpoint to the reference result."""
    cases = []
    for how in ("flip", "truncate", "delete", "remove"):
        workdir = out / f"damaged-{how}"
        shutil.copytree(out / "reference", workdir)
        damaged = damage(workdir, how)
        evaluated = None if how == "remove" else subprocess.run(
            [sys.executable, "-m", "cnnlab", "eval", "mnist", "--checkpoint", str(workdir)],
            capture_output=True, text=True, env=child_env(), cwd=ROOT)
        message = (evaluated.stderr.strip().splitlines() or [""])[-1] if evaluated else ""
        resumed = subprocess.run([sys.executable, __file__, "child", str(workdir)], capture_output=True, text=True,
                                 env=child_env())
        warning = next((line for line in resumed.stderr.splitlines() if "CheckpointWarning" in line), "")
        equal = resumed.returncode == 0 and not differences(final_record(workdir), reference)
        detected = evaluated is None or evaluated.returncode != 0
        cases.append({"damage": how, "file": str(damaged.relative_to(workdir)),
                      "eval_exit": evaluated and evaluated.returncode,
                      "eval_message": message[:400], "resume_warning": warning[:400], "resumed_equal": equal,
                      "ok": detected and equal})
    return cases


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        child_main(sys.argv[2])
    else:
        sys.exit(main())
