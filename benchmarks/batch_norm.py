"""Forward+backward time of the custom-VJP batch_norm vs its autodiff twin, jit-compiled, in one run.

    python -m benchmarks.batch_norm [--repeats 20]   (from the repository root)

``time_batch_norm`` is the function benchmarks/ops.py can call for its batch_norm rows.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from cnnlab.ops import batch_norm, batch_norm_autodiff

# x shapes: the Table 1 MNIST CNN's first feature map at batch 50, a ResNet-18 conv2_x map at batch 8, and
# the (N, C) feature vectors of Table 2's BN after a dense layer.
SIZES = {"mnist [50,24,24,32]": (50, 24, 24, 32), "resnet [8,56,56,64]": (8, 56, 56, 64),
         "dense [128,512]": (128, 512)}


def _step(op):
    def loss(x, gamma, beta, u):
        y, _, _ = op(x, gamma, beta)
        return jnp.sum(y * u)
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))


def time_batch_norm(shape, repeats=20, dtype=jnp.float32, seed=0):
    """Median seconds of one jitted forward+backward (custom, autodiff) and their ratio custom / autodiff.

    The two are timed in alternation, so a busy machine slows both alike."""
    rng = np.random.default_rng(seed)
    x, u = (jnp.asarray(rng.standard_normal(shape), dtype) for _ in range(2))
    gamma, beta = (jnp.asarray(rng.standard_normal(shape[-1]), dtype) for _ in range(2))
    steps = {"custom": _step(batch_norm), "autodiff": _step(batch_norm_autodiff)}
    times = {name: [] for name in steps}
    for step in steps.values():
        jax.block_until_ready(step(x, gamma, beta, u))  # compile
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            jax.block_until_ready(step(x, gamma, beta, u))
            times[name].append(time.perf_counter() - start)
    custom, autodiff = (float(np.median(times[name])) for name in steps)
    return {"custom_s": custom, "autodiff_s": autodiff, "ratio": custom / autodiff}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    print(f"backend {jax.default_backend()}, {jax.device_count()} device(s), float32, median of {args.repeats}")
    print(f"{'x':<22} {'custom ms':>10} {'autodiff ms':>12} {'custom/autodiff':>16}")
    for name, shape in SIZES.items():
        r = time_batch_norm(shape, args.repeats)
        print(f"{name:<22} {1e3 * r['custom_s']:10.3f} {1e3 * r['autodiff_s']:12.3f} {r['ratio']:16.2f}")


if __name__ == "__main__":
    main()
