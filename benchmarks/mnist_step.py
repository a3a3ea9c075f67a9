"""Training examples/s of the Table 1 CNN: cnnlab custom VJPs, cnnlab autodiff and PyTorch CPU, in one run.

    python -m benchmarks.mnist_step [--batch-sizes 50 128] [--rounds 7] [--steps 3] [--no-bf16]

First names the machine (``benchmarks.machine``: CPU model, family/model, ISA flags, caches, versions, load).
Then, per batch size, each round times ``--steps`` training steps (forward, backward, SGD-with-momentum
update) of every implementation, in an order that rotates from round to round, so a busy machine slows all
alike; the median round counts, and custom / PyTorch is also given per round (median and range). Columns:
float32, and bfloat16 where ``cnnlab.mnist.model.CNN`` takes a ``dtype`` (cnnlab custom and autodiff with
``dtype=jnp.bfloat16``, PyTorch under ``torch.autocast("cpu", dtype=torch.bfloat16)``). Also prints the FLOPs
of one training example (counted from Table 1: forward multiply-adds x 2, training = 3 x forward: forward,
input gradient, weight gradient) and the fraction of this machine's float32 2048 x 2048 matmul speed (best
of XLA's and PyTorch's) each step reaches. PyTorch: ``pip install torch==2.13.0`` (the ``bench`` extra), a
hand-written twin of the same network.
"""

import argparse
import contextlib
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.machine import describe, load, usable_cpus
from cnnlab import train
from cnnlab.mnist.model import CNN, CNN_LAYERS
from cnnlab.mnist.train import inputs
from cnnlab.train.tasks import CLASSIFICATION_LOSSES, accuracy


def train_flops_per_example() -> int:
    """3 x the forward FLOPs of Table 1's convolutions (BN, ReLU, pooling are < 1 % and left out)."""
    forward, c, h = 0, 1, 28
    for layer, k, s, channels in CNN_LAYERS:
        h_out = (h - k) // s + 1
        if layer != "Maxpooling":
            forward += 2 * k * k * c * channels * h_out * h_out
        h, c = h_out, channels
    return 3 * forward


def matmul_peak_gflops(n: int = 2048, repeats: int = 10, use_torch: bool = True) -> dict:
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    jax.block_until_ready(f(a))
    best = {"xla": min(_time(lambda: jax.block_until_ready(f(a))) for _ in range(repeats))}
    try:
        import torch
    except ImportError:
        use_torch = False
    if use_torch:
        t = torch.ones(n, n)
        t @ t
        best["torch"] = min(_time(lambda: t @ t) for _ in range(repeats))
    return {name: 2 * n ** 3 / seconds / 1e9 for name, seconds in best.items()}


def _time(f) -> float:
    start = time.perf_counter()
    f()
    return time.perf_counter() - start


def bf16_supported() -> bool:
    """Whether the Table 1 model takes ``dtype`` (the mixed-precision models)."""
    return "dtype" in getattr(CNN, "__dataclass_fields__", {})


def engine_step(grad: str, batch_size: int, dtype=None):
    """(the engine's jitted training step of the Table 1 CNN, its state, a fixed random batch)."""
    model = CNN(grad=grad) if dtype is None else CNN(grad=grad, dtype=dtype)
    config = train.TrainConfig(steps=1, batch_size=batch_size, learning_rate=0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    batch = {"x": jnp.asarray(rng.integers(0, 256, (batch_size, 28, 28), np.uint8)),
             "y": jnp.asarray(rng.integers(0, 10, batch_size), jnp.int32)}
    state = train.create_train_state(model, config, inputs(batch))
    train_step, _ = train.make_steps(model, CLASSIFICATION_LOSSES[grad], accuracy, inputs)
    return train_step, state, batch


def cnnlab_step(grad: str, batch_size: int, dtype=None):
    """A closure running one engine training step of the Table 1 CNN on a fixed random batch."""
    train_step, state, batch = engine_step(grad, batch_size, dtype)
    holder = [state]

    def step():
        holder[0], out = train_step(holder[0], batch)
        jax.block_until_ready(out["loss"])
    return step


def torch_step(batch_size: int, bf16: bool = False):
    """The same network, loss and optimiser written by hand in PyTorch (NCHW); ``bf16``: forward and loss
    under CPU autocast to bfloat16 (parameters and their update stay float32)."""
    import torch
    from torch import nn
    torch.set_num_threads(usable_cpus())
    layers, c = [], 1
    for layer, k, s, channels in CNN_LAYERS:
        if layer == "Maxpooling":
            layers.append(nn.MaxPool2d(k, s))
            continue
        layers += [nn.BatchNorm2d(c, momentum=0.1, eps=1e-5), nn.Conv2d(c, channels, k, s)]
        layers += [nn.ReLU()] if layer.endswith("ReLU") else []
        c = channels
    net = nn.Sequential(*layers, nn.Flatten())
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = torch.randint(0, 256, (batch_size, 1, 28, 28), dtype=torch.uint8)
    y = torch.randint(0, 10, (batch_size,))
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast():
            loss = nn.functional.cross_entropy(net(x.float() / 255.0), y)
        loss.backward()
        opt.step()
        loss.item()
    return step


def runners(batch_size: int, use_torch: bool, bf16: bool) -> dict:
    """name -> step closure; names "<implementation> <dtype>"."""
    out = {"cnnlab-custom float32": cnnlab_step("custom", batch_size),
           "cnnlab-autodiff float32": cnnlab_step("autodiff", batch_size)}
    if bf16:
        out["cnnlab-custom bfloat16"] = cnnlab_step("custom", batch_size, jnp.bfloat16)
        out["cnnlab-autodiff bfloat16"] = cnnlab_step("autodiff", batch_size, jnp.bfloat16)
    if use_torch:
        try:
            out["pytorch float32"] = torch_step(batch_size)
            if bf16:
                out["pytorch bfloat16"] = torch_step(batch_size, bf16=True)
        except ImportError:
            print("torch not installed: pip install torch==2.13.0 (the bench extra); PyTorch left out")
    return out


def benchmark(batch_size: int, rounds: int, steps: int, use_torch: bool = True, bf16: bool = False) -> dict:
    """name -> seconds per step of each round, implementations interleaved in a rotating order."""
    steps_by_name = runners(batch_size, use_torch, bf16)
    for run in steps_by_name.values():  # compile / warm up
        run(), run()
    seconds = {name: [] for name in steps_by_name}
    names = list(steps_by_name)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            run = steps_by_name[name]
            seconds[name].append(_time(lambda: [run() for _ in range(steps)]) / steps)
    return seconds


def _ratio(seconds: dict, a: str, b: str) -> str:
    """speed of a / speed of b: of the median rounds, then the median and range of the per-round ratios."""
    if a not in seconds or b not in seconds:
        return "-"
    per_round = np.array(seconds[b]) / np.array(seconds[a])
    return (f"{np.median(seconds[b]) / np.median(seconds[a]):.2f}x (rounds {np.median(per_round):.2f}, "
            f"{per_round.min():.2f}-{per_round.max():.2f})")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[50, 128])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--json", default=None, help="also write the numbers to this file")
    p.add_argument("--no-torch", action="store_true", help="leave the PyTorch CPU row out (e.g. on a GPU)")
    p.add_argument("--no-bf16", action="store_true", help="float32 only")
    args = p.parse_args(argv)
    started = time.perf_counter()
    bf16 = not args.no_bf16 and bf16_supported()
    print("\n".join(describe()))
    if not args.no_bf16 and not bf16:
        print("bfloat16 columns left out: cnnlab.mnist.model.CNN takes no dtype in this version")
    flops = train_flops_per_example()
    peak = matmul_peak_gflops(use_torch=not args.no_torch)
    best_peak = max(peak.values())
    print(f"backend {jax.default_backend()}, {jax.device_count()} device(s); Table 1 CNN training FLOPs/example "
          f"{flops / 1e6:.1f} M; float32 2048^2 matmul GFLOP/s " + ", ".join(f"{k} {v:.0f}" for k, v in peak.items()))
    print(f"median of {args.rounds} interleaved rounds of {args.steps} steps; examples/s (GFLOP/s, % of the "
          "matmul peak)")
    out = {"machine": describe(), "flops_per_example": flops, "matmul_peak_gflops": peak, "rows": []}
    dtypes = ("float32", "bfloat16") if bf16 else ("float32",)
    for batch_size in args.batch_sizes:
        seconds = benchmark(batch_size, args.rounds, args.steps, use_torch=not args.no_torch, bf16=bf16)
        for dtype in dtypes:
            cells = []
            for impl in ("cnnlab-custom", "cnnlab-autodiff", "pytorch"):
                name = f"{impl} {dtype}"
                if name not in seconds:
                    continue
                speed = batch_size / float(np.median(seconds[name]))
                gflops = speed * flops / 1e9
                cells.append(f"{impl} {speed:6.0f} ({gflops:5.1f}, {100 * gflops / best_peak:4.1f}%)")
                out["rows"].append({"batch_size": batch_size, "implementation": impl, "dtype": dtype,
                                    "examples_per_second": speed, "gflops": gflops,
                                    "seconds_per_round": seconds[name]})
            print(f"batch {batch_size:>3} {dtype:<8}  " + "  ".join(cells))
            print(f"{'':22}custom / pytorch {_ratio(seconds, f'cnnlab-custom {dtype}', f'pytorch {dtype}')}; "
                  f"custom / autodiff {_ratio(seconds, f'cnnlab-custom {dtype}', f'cnnlab-autodiff {dtype}')}")
        if bf16:
            print(f"{'':22}bfloat16 / float32: custom "
                  f"{_ratio(seconds, 'cnnlab-custom bfloat16', 'cnnlab-custom float32')}, pytorch "
                  f"{_ratio(seconds, 'pytorch bfloat16', 'pytorch float32')}")
    print(f"{time.perf_counter() - started:.0f} s; load average at the end {load()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
