"""Where the Table 1 CNN's (or ResNet-18's) training step spends its time: a per-layer and per-XLA-op profile.

    python -m benchmarks.profile_step [--model cnn|resnet18] [--batch-size 50] [--grad custom] [--steps 10]
                                      [--top 25] [--torch]

Traces ``--steps`` engine training steps with ``jax.profiler`` and reads the trace back in-process
(``jax.profiler.ProfileData``, no TensorBoard needed). Each XLA op is attributed to its model layer through the
compiled HLO's ``op_name`` metadata ("jvp" = forward, "transpose" = backward). Times are the ops' own spans on
XLA's CPU worker threads, per step; ops that run on both threads or finish asynchronously make these sums
differ from the wall time, which is printed beside them, as are the minor page faults per step.
``--model resnet18`` profiles ``benchmarks.resnet``'s step (forward + backward, 224² unless ``--image-size``);
``--torch`` also profiles the PyTorch twin of the same step (``torch.profiler``, its ops' self CPU time).
"""

import argparse
import collections
import glob
import re
import resource
import tempfile
import time

import jax

from benchmarks import mnist_step, resnet
from benchmarks.machine import describe

# Path components of an op_name that are JAX's (loop bodies, calls), not Flax module names.
_NOT_MODULES = ("while", "body", "cond", "closed_call", "checkpoint", "remat", "scan", "pjit")
_SKIP = ("ThunkExecutor", "ThreadpoolListener", "SlinkyThreadPool", "end: ", "while")


def _op_names(hlo_text: str) -> dict:
    """HLO instruction name -> (layer, "fwd"|"bwd", shape) from the compiled module's metadata; the layer is the
    op's Flax module path (e.g. ``Conv_1``, ``layer2_0/conv1``)."""
    names = {}
    for m in re.finditer(r"^\s*(?:ROOT )?%(\S+) = (\(.*?\)|\S+) (.*)$", hlo_text, re.M):
        name, shape, rest = m.groups()
        op = re.search(r'op_name="([^"]*)"', rest)
        if op is None:  # XLA emitted it without metadata (e.g. a convolution of the backward)
            names[name] = ("no metadata", "?", shape)
            continue
        path = "/".join(c for c in op.group(1).split("/")[:-1] if "(" not in c and c not in _NOT_MODULES)
        names[name] = (path or "other", "bwd" if "transpose(" in op.group(1) else "fwd", shape)
    return names


def torch_profile(model: str, batch_size: int, size: int, steps: int, top: int):
    """Self CPU time per PyTorch op of the twin's step (``torch.profiler``), ms per step."""
    import torch
    run = mnist_step.torch_step(batch_size) if model == "cnn" else resnet.torch_step(batch_size, size)
    for _ in range(3):
        run()
    start = time.perf_counter()
    for _ in range(steps):
        run()
    wall = (time.perf_counter() - start) / steps
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            run()
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events) / 1e3 / steps
    print(f"\nPyTorch {torch.__version__} twin: {wall * 1e3:.1f} ms per step untraced ({batch_size / wall:.0f} "
          f"examples/s); op self times sum to {total:.1f} ms per step")
    print("ms/step  calls/step  op")
    for e in events[:top]:
        print(f"{e.self_cpu_time_total / 1e3 / steps:7.2f}  {e.count / steps:10.0f}  {e.key}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=("cnn", "resnet18"), default="cnn")
    p.add_argument("--batch-size", type=int, default=None, help="default 50 (cnn), 8 (resnet18)")
    p.add_argument("--image-size", type=int, default=224, help="resnet18 only")
    p.add_argument("--torch", action="store_true", help="also profile the PyTorch twin")
    p.add_argument("--grad", choices=("custom", "autodiff"), default="custom")
    p.add_argument("--precision", choices=("float32", "bfloat16"), default="float32",
                   help="cnn only: the CNN's activation dtype (parameters stay float32)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--top", type=int, default=25, help="how many single ops to list")
    args = p.parse_args(argv)
    if args.batch_size is None:
        args.batch_size = 50 if args.model == "cnn" else 8

    print("\n".join(describe()))
    if args.model == "cnn":
        dtype = None if args.precision == "float32" else jax.numpy.bfloat16
        step, *state = mnist_step.engine_step(args.grad, args.batch_size, dtype)
    else:
        step, state = resnet.jitted_step(args.grad, args.batch_size, args.image_size)
        state = list(state)
    names = _op_names(step.lower(*state).compile().as_text())

    def run(n):
        for _ in range(n):
            out = step(*state)
            if args.model == "cnn":  # the engine step returns the next state
                state[0] = out[0]
        jax.block_until_ready(out)

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
    title = (f"Table 1 CNN ({args.precision})" if args.model == "cnn"
             else f"ResNet-18 {args.image_size}x{args.image_size}")
    print(f"{title}, batch {args.batch_size}, grad {args.grad}: {wall * 1e3:.1f} ms per step "
          f"({args.batch_size / wall:.0f} examples/s) untraced, {faults:.0f} minor page faults per step; "
          f"op spans sum to {sum(by_layer.values()):.1f} ms per step")
    print("\nms/step  layer")
    for (layer, direction), ms in sorted(by_layer.items(), key=lambda kv: -kv[1]):
        print(f"{ms:7.2f}  {layer} {direction}")
    print("\nms/step  calls/step  op (layer, shape)")
    for (name, layer, direction, shape), ms in by_op.most_common(args.top):
        print(f"{ms:7.2f}  {count[name]:10.0f}  {name} ({layer} {direction}, {shape})")
    if args.torch:
        torch_profile(args.model, args.batch_size, args.image_size, args.steps, args.top)


if __name__ == "__main__":
    main()
