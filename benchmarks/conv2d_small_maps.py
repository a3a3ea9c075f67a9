"""Why ``conv2d`` gains less than 2.5x over autodiff on Table 1's small maps, measured in one run.

    python -m benchmarks.conv2d_small_maps [--repeats 20]

For each 64->64 3x3 layer of Table 1 it times, in alternation (``benchmarks.ops.time_alternating``):
- ``patches``: cnnlab's ``conv2d(impl="patches")`` forward + backward (the CPU default);
- ``autodiff``: ``jax.vjp`` of ``lax.conv_general_dilated``;
- ``matmuls``: only the three matmuls of the patch method (forward P W, dx's delta W^T, dW's delta^T P) on
  ready-made matrices of the same shapes, nothing else. ``autodiff / matmuls`` is the most any
  im2row/row2im implementation built on XLA's matmul can reach on that layer;
- ``winograd fwd`` vs ``patches fwd``: the forward alone, by the patch method and by a Winograd
  F(2x2, 3x3) transform (2.25x fewer multiplications; a probe written here, not part of cnnlab).
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from benchmarks.ops import _jax_step, _normal, time_alternating
from cnnlab import ops

# (name, N, H): Table 1's 64->64 3x3 layers on small maps, and the 26x26 one for comparison.
LAYERS = [("T1 64->64 26x26 b50", 50, 26), ("T1 64->64 12x12 b50", 50, 12),
          ("T1 64->64 8x8 b50", 50, 8), ("T1 64->64 12x12 b128", 128, 12)]

# Winograd F(2x2, 3x3) (Lavin & Gray 2016): y = A^T [(G w G^T) * (B^T d B)] A on 4x4 input tiles, stride 2.
_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float32)


def _input_transform(x, axis, tiles):
    """B^T along ``axis`` for every 4-wide tile starting at 0, 2, 4, ...: four arrays of ``tiles`` rows."""
    tap = [lax.slice_in_dim(x, o, o + 2 * tiles - 1, 2, axis) for o in range(4)]
    return [tap[0] - tap[2], tap[1] + tap[2], tap[2] - tap[1], tap[1] - tap[3]]


def winograd_conv2d(x, w):
    """Valid 3x3 stride-1 convolution by F(2x2, 3x3): x [N, H, W, C], w [3, 3, C, K]."""
    n, h, wd, c = x.shape
    th, tw = (h - 1) // 2, (wd - 1) // 2  # 2x2 output tiles covering the (h-2) x (w-2) output
    x = jnp.pad(x, ((0, 0), (0, 2 * th + 2 - h), (0, 2 * tw + 2 - wd), (0, 0)))
    u = jnp.einsum("aj,jick,bi->abck", _G, w, _G).reshape(16, c, -1)
    v = jnp.stack([jnp.stack(_input_transform(r, 2, tw)) for r in _input_transform(x, 1, th)])
    m = jnp.einsum("spc,sck->spk", v.reshape(16, -1, c), u).reshape(4, 4, n, th, tw, -1)
    r0, r1 = m[0] + m[1] + m[2], m[1] - m[2] - m[3]  # A^T on the first tile axis, then on the second
    y = jnp.stack([jnp.stack([r[0] + r[1] + r[2], r[1] - r[2] - r[3]], 3) for r in (r0, r1)], 2)
    return y.reshape(n, 2 * th, 2 * tw, -1)[:, :h - 2, :wd - 2]


def layer_steps(n, h, rng):
    c = 64
    x, w, g = _normal(rng, (n, h, h, c), (3, 3, c, c), (n, h - 2, h - 2, c))
    p, wm, gm = _normal(rng, (n * (h - 2) ** 2, 9 * c), (9 * c, c), (n * (h - 2) ** 2, c))
    matmuls = jax.jit(lambda p, wm, gm: (p @ wm, gm @ wm.T, gm.T @ p))
    patches_fwd = jax.jit(lambda x, w: ops.conv2d(x, w, impl="patches"))
    winograd_fwd = jax.jit(winograd_conv2d)
    error = float(jnp.max(jnp.abs(winograd_fwd(x, w) - patches_fwd(x, w))) / jnp.max(jnp.abs(patches_fwd(x, w))))
    steps = {"patches": _jax_step(lambda x, w: ops.conv2d(x, w, impl="patches"), (x, w), g),
             "autodiff": _jax_step(ops.conv2d_autodiff, (x, w), g),
             "matmuls": lambda: matmuls(p, wm, gm),
             "patches fwd": lambda: patches_fwd(x, w),
             "winograd fwd": lambda: winograd_fwd(x, w)}
    return steps, error


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"backend {jax.default_backend()}, float32, median ms of {args.repeats} alternating calls")
    print(f"{'layer':24s} {'patches':>8s} {'autodiff':>8s} {'matmuls':>8s} {'ad/patch':>8s} {'ad/mm':>6s} "
          f"{'fwd':>6s} {'wino':>6s} {'wino/fwd':>8s} {'wino err':>8s}")
    for name, n, h in LAYERS:
        steps, error = layer_steps(n, h, rng)
        t, _ = time_alternating(steps, args.repeats)
        ms = {k: 1e3 * v for k, v in t.items()}
        print(f"{name:24s} {ms['patches']:8.2f} {ms['autodiff']:8.2f} {ms['matmuls']:8.2f} "
              f"{ms['autodiff'] / ms['patches']:8.2f} {ms['autodiff'] / ms['matmuls']:6.2f} "
              f"{ms['patches fwd']:6.2f} {ms['winograd fwd']:6.2f} "
              f"{ms['winograd fwd'] / ms['patches fwd']:8.2f} {error:8.1e}", flush=True)


if __name__ == "__main__":
    main()
