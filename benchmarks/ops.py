"""Forward+backward time of cnnlab's ops against autodiff of the lax op and PyTorch CPU, in one run.

    python -m benchmarks.ops [--repeats 20] [--only conv2d|conv1d|max_pool2d|batch_norm]

Each row times, in alternation (so a busy machine slows all alike), one jit-compiled forward + backward
(the VJP of the op for a fixed random output gradient, w.r.t. every input) of: cnnlab's custom VJP (each
``impl`` for conv2d), the autodiff twin, and the same layer in PyTorch (``torch==2.13.0``, the ``bench``
extra; left out if not installed). It prints medians and the ratios autodiff / custom and custom / torch,
of the medians and (in brackets) of the fastest calls.
"""

import argparse
import os
import time

# PyTorch's OpenMP threads spin for a while after each op by default, stealing the 2 cores from whatever is
# timed next; passive waiting keeps the alternating timings independent (set before torch is imported).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import jax
import jax.numpy as jnp
import numpy as np

from cnnlab import ops

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # the bench extra is optional: rows then have no PyTorch column
    torch = None

# (name, N, H, C_in, C_out, k, stride, padding). Table 1: the MNIST CNN's 3x3 convs at batch 50 and 128;
# ResNet-18: conv2_x (56x56x64, stride 1) and the stride-2 3x3 convs opening conv3_x / conv4_x.
CONV2D = [
    ("T1 1->64 28x28 b50", 50, 28, 1, 64, 3, 1, 0),
    ("T1 64->64 26x26 b50", 50, 26, 64, 64, 3, 1, 0),
    ("T1 64->64 12x12 b50", 50, 12, 64, 64, 3, 1, 0),
    ("T1 64->64 8x8 b50", 50, 8, 64, 64, 3, 1, 0),
    ("T1 64->64 26x26 b128", 128, 26, 64, 64, 3, 1, 0),
    ("T1 64->64 12x12 b128", 128, 12, 64, 64, 3, 1, 0),
    ("R18 56x56 64->64 s1 b8", 8, 56, 64, 64, 3, 1, 1),
    ("R18 56x56 64->128 s2 b8", 8, 56, 64, 128, 3, 2, 1),
    ("R18 28x28 128->256 s2 b8", 8, 28, 128, 256, 3, 2, 1),
]
# (name, N, T, C_in, C_out, k, dilation): the TCN's causal convs (32 channels, T = 784 pixels of sMNIST).
CONV1D = [
    ("TCN 32->32 k6 d1 b16", 16, 784, 32, 32, 6, 1),
    ("TCN 32->32 k8 d8 b16", 16, 784, 32, 32, 8, 8),
    ("TCN 32->32 k7 d4 b100", 100, 784, 32, 32, 7, 4),
]
# (name, N, H, C, window, stride): Table 1's two 2x2 pools, ResNet-18's 3x3 stride-2 stem pool.
MAX_POOL2D = [
    ("T1 24x24x64 b50", 50, 24, 64, 2, 2),
    ("T1 6x6x64 b128", 128, 6, 64, 2, 2),
    ("R18 112x112x64 3/2 b8", 8, 112, 64, 3, 2),
]
BATCH_NORM = [("T1 [50,26,26,64]", (50, 26, 26, 64)), ("R18 [8,56,56,64]", (8, 56, 56, 64))]


def _jax_step(fn, args, g):
    """jit of (output, VJP w.r.t. every input) for the cotangent ``g``, passed as an argument (a closed-over
    ``g`` would be a constant that XLA folds into the program at compile time)."""
    def step(args, g):
        out, vjp = jax.vjp(fn, *args)
        return out, vjp(g)
    step = jax.jit(step)
    return lambda: step(args, g)


def _torch_step(fn, arrays, g):
    """The same in PyTorch (eager): forward, then backward of ``sum(g * y)`` (NCHW / NCT layouts)."""
    tensors = [torch.tensor(np.asarray(a)).requires_grad_() for a in arrays]
    g = torch.tensor(np.asarray(g))

    def step():
        for t in tensors:
            t.grad = None
        out = fn(*tensors)
        out.backward(g)
        return [t.grad for t in tensors]
    return step


def time_alternating(steps, repeats):
    """Median seconds per call of each step, timed in alternation after one warm-up (compile) call; the
    order rotates every round, so no step always runs right after the same other one."""
    for step in steps.values():
        jax.block_until_ready(step())
    times = {name: [] for name in steps}
    names = list(steps)
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            step = steps[name]
            start = time.perf_counter()
            jax.block_until_ready(step())
            times[name].append(time.perf_counter() - start)
    return ({name: float(np.median(t)) for name, t in times.items()},
            {name: float(np.min(t)) for name, t in times.items()})


def _normal(rng, *shapes):
    return [jnp.asarray(rng.standard_normal(s), jnp.float32) for s in shapes]


def conv2d_steps(n, h, c_in, c_out, k, s, p, rng):
    ho = (h + 2 * p - k) // s + 1
    x, w, g = _normal(rng, (n, h, h, c_in), (k, k, c_in, c_out), (n, ho, ho, c_out))
    conv = lambda impl: lambda x, w: ops.conv2d(x, w, stride=s, padding=p, impl=impl)
    steps = {"patches": _jax_step(conv("patches"), (x, w), g), "xla": _jax_step(conv("xla"), (x, w), g),
             "autodiff": _jax_step(lambda x, w: ops.conv2d_autodiff(x, w, stride=s, padding=p), (x, w), g)}
    if torch is not None:
        steps["torch"] = _torch_step(lambda x, w: F.conv2d(x, w, stride=s, padding=p),
                                     (x.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1)), g.transpose(0, 3, 1, 2))
    return steps, 3 * 2 * n * ho * ho * k * k * c_in * c_out  # forward, dx and dW: one matmul's FLOPs each


def conv1d_steps(n, t, c_in, c_out, k, d, rng):
    x, w, g = _normal(rng, (n, t, c_in), (k, c_in, c_out), (n, t, c_out))
    conv = lambda impl: lambda x, w: ops.conv1d(x, w, dilation=d, impl=impl)
    steps = {"patches": _jax_step(conv("patches"), (x, w), g), "xla": _jax_step(conv("xla"), (x, w), g),
             "autodiff": _jax_step(lambda x, w: ops.conv1d_autodiff(x, w, dilation=d, impl="xla"), (x, w), g)}
    if torch is not None:  # left-only padding, as the TCN of §6.2.1
        steps["torch"] = _torch_step(lambda x, w: F.conv1d(F.pad(x, (d * (k - 1), 0)), w, dilation=d),
                                     (x.transpose(0, 2, 1), w.transpose(2, 1, 0)), g.transpose(0, 2, 1))
    return steps, 3 * 2 * n * t * k * c_in * c_out


def max_pool2d_steps(n, h, c, window, s, rng):
    ho = (h - window) // s + 1
    x, g = _normal(rng, (n, h, h, c), (n, ho, ho, c))
    steps = {"custom": _jax_step(lambda x: ops.max_pool2d(x, window=window, stride=s), (x,), g),
             "autodiff": _jax_step(lambda x: ops.max_pool2d_autodiff(x, window=window, stride=s), (x,), g)}
    if torch is not None:
        steps["torch"] = _torch_step(lambda x: F.max_pool2d(x, window, s), (x.transpose(0, 3, 1, 2),),
                                     g.transpose(0, 3, 1, 2))
    return steps, None


def batch_norm_steps(shape, rng):
    x, gamma, beta, g = _normal(rng, shape, shape[-1:], shape[-1:], shape)
    first = lambda op: lambda x, gamma, beta: op(x, gamma, beta)[0]  # y; the batch statistics get no gradient
    steps = {"custom": _jax_step(first(ops.batch_norm), (x, gamma, beta), g),
             "autodiff": _jax_step(first(ops.batch_norm_autodiff), (x, gamma, beta), g)}
    if torch is not None:
        steps["torch"] = _torch_step(lambda x, gamma, beta: F.batch_norm(x, None, None, gamma, beta, True, 0.0,
                                                                         1e-5),
                                     (x.transpose(0, 3, 1, 2), gamma, beta), g.transpose(0, 3, 1, 2))
    return steps, None


def report(name, steps, flops, repeats):
    """One row: median ms of each step, then for each custom implementation the ratios autodiff / it and
    it / torch, of medians and (in brackets) of the fastest calls, the latter less disturbed when other
    jobs share the CPU; GFLOP/s of the fastest custom implementation."""
    t, t_min = time_alternating(steps, repeats)
    customs = [k for k in t if k not in ("autodiff", "torch")]
    cols = " ".join(f"{k} {1e3 * v:8.2f}" for k, v in t.items())
    ratio = lambda a, b: f"{t[a] / t[b]:5.2f} ({t_min[a] / t_min[b]:5.2f})"
    ratios = "  ".join(f"autodiff/{c} {ratio('autodiff', c)}" for c in customs)
    if "torch" in t:
        ratios += "  " + "  ".join(f"{c}/torch {ratio(c, 'torch')}" for c in customs)
    fastest = min(customs, key=t.get)
    gflops = f"  {fastest} {flops / t[fastest] / 1e9:5.1f} GFLOP/s" if flops else ""
    print(f"{name:<26} ms: {cols} | {ratios}{gflops}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--only", choices=["conv2d", "conv1d", "max_pool2d", "batch_norm"], default=None)
    parser.add_argument("--no-torch", action="store_true", help="leave the PyTorch CPU column out (e.g. on a GPU)")
    args = parser.parse_args()
    if args.no_torch:
        global torch
        torch = None
    rng = np.random.default_rng(0)
    print(f"backend {jax.default_backend()}, jax {jax.__version__}, "
          f"torch {torch.__version__ if torch else 'not installed'} ({torch.get_num_threads() if torch else 0} "
          f"threads), float32, forward+backward, median of {args.repeats} alternating calls "
          f"(ratios of medians, and of minima in brackets)")
    groups = {"conv2d": (CONV2D, conv2d_steps), "conv1d": (CONV1D, conv1d_steps),
              "max_pool2d": (MAX_POOL2D, max_pool2d_steps), "batch_norm": (BATCH_NORM, batch_norm_steps)}
    for op, (sizes, make) in groups.items():
        if args.only not in (None, op):
            continue
        print(f"-- {op}")
        for name, *size in sizes:
            steps, flops = make(*size, rng)
            report(name, steps, flops, args.repeats)


if __name__ == "__main__":
    main()
