"""Training examples/s of the Table 1 CNN: cnnlab (custom VJPs), cnnlab (autodiff), PyTorch CPU, in one run.

    python -m benchmarks.mnist_step [--batch-sizes 50 128] [--rounds 5] [--steps 5]   (from the repo root)

Each round times ``--steps`` training steps (forward, backward, SGD-with-momentum update) of every
implementation in turn, so a busy machine slows all alike; the median round counts. Also prints the FLOPs
of one training example (counted from Table 1: forward multiply-adds x 2, training = 3 x forward: forward,
input gradient, weight gradient) and the fraction of this machine's measured float32 matmul peak (best of
XLA's and PyTorch's 2048 x 2048 matmul) that each step reaches. PyTorch: ``pip install torch==2.13.0``
(the ``bench`` extra), a hand-written twin of the same network.
"""

import argparse
import json
import os
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np

from cnnlab import train
from cnnlab.mnist.model import CNN_LAYERS, make_model
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


def cnnlab_step(grad: str, batch_size: int):
    """A closure running one engine training step of the Table 1 CNN on a fixed random batch."""
    model = make_model("cnn", grad)
    config = train.TrainConfig(steps=1, batch_size=batch_size, learning_rate=0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    batch = {"x": jnp.asarray(rng.integers(0, 256, (batch_size, 28, 28), np.uint8)),
             "y": jnp.asarray(rng.integers(0, 10, batch_size), jnp.int32)}
    state = train.create_train_state(model, config, inputs(batch))
    train_step, _ = train.make_steps(model, CLASSIFICATION_LOSSES[grad], accuracy, inputs)
    holder = [state]

    def step():
        holder[0], out = train_step(holder[0], batch)
        jax.block_until_ready(out["loss"])
    return step


def torch_step(batch_size: int):
    """The same network, loss and optimiser written by hand in PyTorch (NCHW)."""
    import torch
    from torch import nn
    torch.set_num_threads(os.cpu_count())
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

    def step():
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(net(x.float() / 255.0), y)
        loss.backward()
        opt.step()
        loss.item()
    return step


def benchmark(batch_size: int, rounds: int, steps: int, use_torch: bool = True) -> dict:
    runners = {"cnnlab-custom": cnnlab_step("custom", batch_size),
               "cnnlab-autodiff": cnnlab_step("autodiff", batch_size)}
    try:
        if use_torch:
            runners["pytorch"] = torch_step(batch_size)
    except ImportError:
        print("torch not installed: pip install torch==2.13.0 (the bench extra); PyTorch row left out")
    for run in runners.values():  # compile / warm up
        run(), run()
    seconds = {name: [] for name in runners}
    faults = {name: 0 for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            seconds[name].append(_time(lambda: [run() for _ in range(steps)]) / steps)
            faults[name] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    return {name: (batch_size / float(np.median(s)), faults[name] / (rounds * steps))
            for name, s in seconds.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[50, 128])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--json", default=None, help="also write the numbers to this file")
    p.add_argument("--no-torch", action="store_true", help="leave the PyTorch CPU row out (e.g. on a GPU)")
    args = p.parse_args(argv)
    flops = train_flops_per_example()
    peak = matmul_peak_gflops(use_torch=not args.no_torch)
    best_peak = max(peak.values())
    print(f"backend {jax.default_backend()}, {jax.device_count()} device(s), {os.cpu_count()} CPU threads; "
          f"Table 1 CNN training FLOPs/example {flops / 1e6:.1f} M; matmul peak GFLOP/s "
          + ", ".join(f"{k} {v:.0f}" for k, v in peak.items()))
    out = {"flops_per_example": flops, "matmul_peak_gflops": peak, "rows": []}
    print(f"{'batch':>5}  {'implementation':<16} {'examples/s':>10} {'GFLOP/s':>8} {'% peak':>7} "
          f"{'vs pytorch':>10} {'vs autodiff':>11} {'page faults/step':>16}")
    for batch_size in args.batch_sizes:
        measured = benchmark(batch_size, args.rounds, args.steps, use_torch=not args.no_torch)
        speeds = {name: speed for name, (speed, _) in measured.items()}
        for name, (speed, faults) in measured.items():
            gflops = speed * flops / 1e9
            row = {"batch_size": batch_size, "implementation": name, "examples_per_second": speed,
                   "gflops": gflops, "fraction_of_peak": gflops / best_peak,
                   "vs_pytorch": speed / speeds["pytorch"] if "pytorch" in speeds else None,
                   "vs_autodiff": speed / speeds["cnnlab-autodiff"], "page_faults_per_step": faults}
            out["rows"].append(row)
            vs_torch = f"{row['vs_pytorch']:.2f}x" if row["vs_pytorch"] else "-"
            print(f"{batch_size:>5}  {name:<16} {speed:>10.0f} {gflops:>8.1f} {100 * row['fraction_of_peak']:>6.1f}% "
                  f"{vs_torch:>10} {row['vs_autodiff']:>10.2f}x {faults:>16.0f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
