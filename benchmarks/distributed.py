"""The same ``cnnlab train`` command on N processes x D CPU devices and on 1 process x N*D devices, compared.

    python -m benchmarks.distributed [--processes 2] [--devices 1] [--out runs/distributed] -- mnist --model cnn

Everything after ``--`` is the ``cnnlab train`` command line (task first). Both runs use the same global
device count, so they compute the same updates up to the order in which the devices' gradients are added
(XLA's in-process all-reduce vs gloo between processes). Prints the CPU, the wall time of each run, the test
accuracy of each (``results.json``) and the largest difference of the logged training losses.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.machine import cpu_model
from cnnlab import train


def launch(command: list[str], out: Path, processes: int, devices: int) -> float:
    """Run ``cnnlab train COMMAND --out OUT`` as ``processes`` processes of ``devices`` devices; wall seconds."""
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cluster = lambda i: ["--coordinator-address", f"127.0.0.1:{port}", "--num-processes",  # noqa: E731
                         str(processes), "--process-id", str(i)] if processes > 1 else []
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "cnnlab", "train", *command, "--no-progress",
                               "--out", str(out), *cluster(i)], env=env) for i in range(processes)]
    codes = [p.wait() for p in procs]
    if any(codes):
        sys.exit(f"a process failed: exit codes {codes}")
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--devices", type=int, default=1, help="CPU devices per process")
    parser.add_argument("--out", type=Path, default=Path("runs/distributed"))
    parser.add_argument("command", nargs="+", help="the cnnlab train command line after --, e.g. mnist --model cnn")
    args = parser.parse_args()
    n, d = args.processes, args.devices
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; load {os.getloadavg()[0]:.1f}; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", flush=True)
    runs = {f"1x{n * d}": (1, n * d), f"{n}x{d}": (n, d)}
    seconds, results, losses = {}, {}, {}
    for name, (processes, devices) in runs.items():
        out = args.out / name
        seconds[name] = launch(args.command, out, processes, devices)
        results[name] = json.loads((out / "results.json").read_text())
        losses[name] = [r["loss"] for r in train.MetricsLog(out / "metrics.jsonl").read() if r["split"] == "train"]
    (one, many) = runs
    print(json.dumps({name: {"processes x devices": name, "wall_s": round(seconds[name], 1),
                             "test_accuracy": results[name]["test_accuracy"], "best_step": results[name]["best_step"]}
                      for name in runs}, indent=1))
    diff = max((abs(a - b) for a, b in zip(losses[one], losses[many])), default=float("nan"))
    print(f"test accuracy difference {abs(results[one]['test_accuracy'] - results[many]['test_accuracy']):.4f}; "
          f"{len(losses[one])} logged training losses, largest difference {diff:.3g}; "
          f"identical: {losses[one] == losses[many]}")


if __name__ == "__main__":
    main()
