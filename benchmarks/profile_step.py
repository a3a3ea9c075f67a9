"""Where the Table 1 CNN's training step spends its time on this machine: a per-layer and per-XLA-op profile.

    python -m benchmarks.profile_step [--batch-size 50] [--grad custom] [--steps 10] [--top 25]

Traces ``--steps`` engine training steps with ``jax.profiler`` and reads the trace back in-process
(``jax.profiler.ProfileData``, no TensorBoard needed). Each XLA op is attributed to its model layer through the
compiled HLO's ``op_name`` metadata ("jvp" = forward, "transpose" = backward). Times are the ops' own spans on
XLA's CPU worker threads, per step; ops that run on both threads or finish asynchronously make these sums
differ from the wall time, which is printed beside them, as are the minor page faults per step.
"""

import argparse
import collections
import glob
import re
import resource
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from cnnlab import train
from cnnlab.mnist.model import make_model
from cnnlab.mnist.train import inputs
from cnnlab.train.tasks import CLASSIFICATION_LOSSES, accuracy

_SKIP = ("ThunkExecutor", "ThreadpoolListener", "SlinkyThreadPool", "end: ", "while")


def _op_names(hlo_text: str) -> dict:
    """HLO instruction name -> (layer, "fwd"|"bwd", shape) from the compiled module's metadata."""
    names = {}
    for m in re.finditer(r"^\s*(?:ROOT )?%(\S+) = (\S+) .*?op_name=\"([^\"]*)\"", hlo_text, re.M):
        name, shape, op = m.groups()
        layer = re.search(r"(Conv|BatchNorm|MaxPool|Dense)_\d+", op)
        names[name] = (layer.group(0) if layer else "other", "bwd" if "transpose(" in op else "fwd", shape)
    return names


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--grad", choices=("custom", "autodiff"), default="custom")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--top", type=int, default=25, help="how many single ops to list")
    args = p.parse_args(argv)

    model = make_model("cnn", args.grad)
    config = train.TrainConfig(steps=1, batch_size=args.batch_size, learning_rate=0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    batch = {"x": jnp.asarray(rng.integers(0, 256, (args.batch_size, 28, 28), np.uint8)),
             "y": jnp.asarray(rng.integers(0, 10, args.batch_size), jnp.int32)}
    state = train.create_train_state(model, config, inputs(batch))
    train_step, _ = train.make_steps(model, CLASSIFICATION_LOSSES[args.grad], accuracy, inputs)
    names = _op_names(train_step.lower(state, batch).compile().as_text())

    def run(n):
        nonlocal state
        for _ in range(n):
            state, out = train_step(state, batch)
        jax.block_until_ready(out["loss"])

    run(3)  # compile and warm up
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    run(args.steps)
    wall = (time.perf_counter() - start) / args.steps
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / args.steps
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir):
            run(args.steps)
        profile = jax.profiler.ProfileData.from_file(glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)[0])

    by_layer, by_op, count = collections.Counter(), collections.Counter(), collections.Counter()
    for plane in profile.planes:
        for line in plane.lines:
            if "XLAEigen" not in line.name:
                continue
            for event in line.events:
                if event.name.startswith(_SKIP):
                    continue
                layer, direction, shape = names.get(event.name, ("other", "fwd", ""))
                ms = event.duration_ns / 1e6 / args.steps
                by_layer[(layer, direction)] += ms
                by_op[(event.name, layer, direction, shape)] += ms
                count[event.name] += 1 / args.steps
    print(f"Table 1 CNN, batch {args.batch_size}, grad {args.grad}: {wall * 1e3:.1f} ms per step "
          f"({args.batch_size / wall:.0f} examples/s) untraced, {faults:.0f} minor page faults per step; "
          f"op spans sum to {sum(by_layer.values()):.1f} ms per step")
    print("\nms/step  layer")
    for (layer, direction), ms in sorted(by_layer.items(), key=lambda kv: -kv[1]):
        print(f"{ms:7.2f}  {layer} {direction}")
    print("\nms/step  calls/step  op (layer, shape)")
    for (name, layer, direction, shape), ms in by_op.most_common(args.top):
        print(f"{ms:7.2f}  {count[name]:10.0f}  {name} ({layer} {direction}, {shape})")


if __name__ == "__main__":
    main()
