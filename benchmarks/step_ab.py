"""A/B of implementation variants of ``cnnlab.ops.conv2d`` in the Table 1 training step, in one process.

    python -m benchmarks.step_ab [--batch-size 50] [--rounds 30] [--variants current dw-folded ...]
    taskset -c 0 python -m benchmarks.step_ab ...   (one core: the load of a shared machine matters less)

Each variant is the current code with some of ``cnnlab.ops.conv``'s internals swapped while the step is
traced and compiled (``VARIANTS``); the compiled steps are then timed one call each per round, in an order
that rotates from round to round. Prints, relative to the first variant (> 1 = faster), the ratio of the
median wall times, of the fastest calls, and of the median CPU time (``time.process_time``: all threads
summed, so time spent waiting for a busy machine drops out). ``--layer`` times Conv_1's backward alone
(``_conv2d_bwd_patches`` on [N, 26, 26, 64] -> [N, 24, 24, 64]) instead of the whole step.
"""

import argparse
import contextlib
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from benchmarks.machine import describe
from benchmarks.mnist_step import engine_step
from cnnlab.ops import conv


def _dw_folded(delta, patches):
    """Eq. (25) as ``patches.T @ delta``, the transpose left for XLA to fold into the dot."""
    return conv.matmul(patches.T, delta)


def _resolve_xla_forward(impl, x_shape, w_shape, stride, padding):
    """XLA's convolution forward for every kernel larger than 1x1 (the backward as ``impl="auto"`` picks)."""
    fwd, bwd = _RESOLVE(impl, x_shape, w_shape, stride, padding)
    return ("xla", bwd) if w_shape[0] * w_shape[1] > 1 else (fwd, bwd)


def _im2row_runs(x, index, taps):
    """im2row of a stride-1, unpadded 3x3 layer as a gather of kw C-long runs (3 taps per index)."""
    b, h, w, c = x.shape
    rows = np.arange(h - 2)[:, None, None] + np.arange(3)[None, None, :]
    starts = (rows * w + np.arange(w - 2)[None, :, None]).reshape(-1)
    starts = (np.arange(b)[:, None] * h * w + starts[None, :]).reshape(-1, 1).astype(np.int32)
    dims = lax.GatherDimensionNumbers(offset_dims=(1, 2), collapsed_slice_dims=(), start_index_map=(0,))
    out = lax.gather(x.reshape(b * h * w, c), jnp.asarray(starts), dims, slice_sizes=(3, c),
                     mode=lax.GatherScatterMode.PROMISE_IN_BOUNDS)
    return out.reshape(-1, taps * c)


_RESOLVE = conv._resolve


def _rule(name):
    """``impl="auto"``'s choice under the named CPU rule (``conv._PATCH_LIMITS``), whatever this CPU is."""
    def resolve(impl, x_shape, w_shape, stride, padding):
        rule = conv._cpu_rule
        conv._cpu_rule = lambda: name
        try:
            return _RESOLVE(impl, x_shape, w_shape, stride, padding)
        finally:
            conv._cpu_rule = rule
    return resolve
# name -> attributes of cnnlab.ops.conv to replace while tracing
VARIANTS = {
    "current": {},
    "dw-folded": {"_dw": _dw_folded},
    "xla-forward": {"_resolve": _resolve_xla_forward},
    "barrier-transpose": {"transposed": lambda a: lax.optimization_barrier(a.T)},  # the dot sees a transpose
    **{f"rule-{name}": {"_resolve": _rule(name)} for name in conv._PATCH_LIMITS},
    "blocks-x0.28": {"_BLOCK_ENTRIES": conv._BLOCK_ENTRIES * 576 // 2048},  # 1 example of the 26x26 layer
    "blocks-x2": {"_BLOCK_ENTRIES": conv._BLOCK_ENTRIES * 2},
    "blocks-x4": {"_BLOCK_ENTRIES": conv._BLOCK_ENTRIES * 4},
    "im2row-runs": {"_im2row": _im2row_runs},  # Table 1's convolutions only (3x3, stride 1, no padding)
}


@contextlib.contextmanager
def swapped(name):
    old = {k: getattr(conv, k) for k in VARIANTS[name]}
    for k, v in VARIANTS[name].items():
        setattr(conv, k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            setattr(conv, k, v)


def step_runner(name, batch_size, dtype=None):
    with swapped(name):
        train_step, state, batch = engine_step("custom", batch_size, dtype)
        compiled = train_step.lower(state, batch).compile()
    holder = [state]

    def run():
        holder[0], out = compiled(holder[0], batch)
        jax.block_until_ready(out["loss"])
    return run


def layer_runner(name, batch_size, dtype=None):
    rng = np.random.default_rng(0)
    x, w, g = (jnp.asarray(rng.standard_normal(s), dtype or jnp.float32)
               for s in ((batch_size, 26, 26, 64), (3, 3, 64, 64), (batch_size, 24, 24, 64)))
    with swapped(name):
        bwd = jax.jit(lambda x, w, g: conv._conv2d_bwd_patches(1, 0, x, w, g)).lower(x, w, g).compile()
    return lambda: jax.block_until_ready(bwd(x, w, g))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--variants", nargs="+", default=["dw-folded", "current"], choices=sorted(VARIANTS))
    p.add_argument("--layer", action="store_true", help="Conv_1's backward alone instead of the whole step")
    p.add_argument("--precision", choices=("float32", "bfloat16"), default="float32",
                   help="activation dtype (parameters stay float32)")
    args = p.parse_args(argv)
    print("\n".join(describe()))
    make = layer_runner if args.layer else step_runner
    dtype = None if args.precision == "float32" else jnp.bfloat16
    runs = {name: make(name, args.batch_size, dtype) for name in args.variants}
    for run in runs.values():  # warm up
        run(), run()
    wall = {name: [] for name in runs}
    cpu = {name: [] for name in runs}
    names = list(runs)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start, start_cpu = time.perf_counter(), time.process_time()
            runs[name]()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    what = "Conv_1 backward" if args.layer else "Table 1 step"
    print(f"{what}, {args.precision}, batch {args.batch_size}, {args.rounds} rounds; "
          f"ms and speed relative to {names[0]}")
    base = [np.median(wall[names[0]]), np.min(wall[names[0]]), np.median(cpu[names[0]])]
    for name in names:
        ms = [np.median(wall[name]), np.min(wall[name]), np.median(cpu[name])]
        print(f"{name:14s} median {1e3 * ms[0]:7.1f} ({base[0] / ms[0]:.3f})  min {1e3 * ms[1]:7.1f} "
              f"({base[1] / ms[1]:.3f})  CPU {1e3 * ms[2]:7.1f} ({base[2] / ms[2]:.3f})")


if __name__ == "__main__":
    main()
