"""Training speed of the §6.3.3 Single-block TCN: cnnlab (left vs symmetric padding, custom vs autodiff
gradients) against a PyTorch CPU TCN written out below, all measured in one run.

    python benchmarks/tcn.py [--batch 16] [--steps 3] [--rounds 3] [--blocks 12] [--no-torch] [--microbatch M[,M...]]

Each configuration runs ``steps`` training steps (forward, backward, SGD-momentum update) per round; the
configurations alternate round by round so that a shared machine's load hits them alike, and the median
round is reported. Also prints XLA's temporary-buffer size of each compiled cnnlab train step (the
activation memory that the padding scheme changes, §6.2.2).
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cnnlab.tcn import TCN


def cnnlab_step(padding, grad, args):
    model = TCN(block="single", num_blocks=args.blocks, channels=args.channels, kernel_size=args.kernel_size,
                dropout=0.05, padding=padding, grad=grad)
    x = jax.random.normal(jax.random.key(0), (args.batch, args.length, 1))
    y = jnp.arange(args.batch) % 10
    params = model.init(jax.random.key(1), x)["params"]
    opt = optax.sgd(0.01, momentum=0.9)

    @jax.jit
    def step(params, opt_state, key):
        def loss(params):
            logits = model.apply({"params": params}, x, train=True, rngs={"dropout": key})
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        grads = jax.grad(loss)(params)
        updates, opt_state = opt.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state

    state = [params, opt.init(params)]
    temp_mb = step.lower(*state, jax.random.key(2)).compile().memory_analysis().temp_size_in_bytes / 2**20

    def run(n):
        for i in range(n):
            state[:] = step(*state, jax.random.key(i))
        jax.block_until_ready(state)
    return run, temp_mb


def engine_step(microbatch, args):
    """The training engine's own step (``cnnlab.train.make_steps``, the task's loss and uint8 batches, as in
    ``cnnlab train seqmnist``) on the whole batch or in micro-batches of ``microbatch`` sequences."""
    from cnnlab import train
    from cnnlab.tcn.train import LOSSES, inputs, metrics, paper_config

    model = TCN(block="single", num_blocks=args.blocks, channels=args.channels, kernel_size=args.kernel_size)
    rng = np.random.default_rng(0)
    batch = {"x": rng.integers(0, 256, (args.batch, args.length), dtype=np.uint8),
             "y": rng.integers(0, 10, args.batch).astype(np.int32)}
    config = paper_config(batch_size=args.batch, microbatch_size=microbatch)
    state = [train.create_train_state(model, config, inputs(batch))]
    step, _ = train.make_steps(model, LOSSES["custom"], metrics, inputs, args.batch // (microbatch or args.batch))

    def run(n):
        for _ in range(n):
            state[0], _ = step(state[0], batch)
        jax.block_until_ready(state)
    return run


def torch_step(padding, args):
    import torch
    from torch import nn
    from torch.nn.utils.parametrizations import weight_norm

    class CausalConv(nn.Module):
        def __init__(self, c_in, c_out, k, d):
            super().__init__()
            self.pad = d * (k - 1)
            self.conv = weight_norm(nn.Conv1d(c_in, c_out, k, dilation=d,
                                              padding=self.pad if padding == "symmetric" else 0))

        def forward(self, x):  # x: [N, C, T]
            if padding == "symmetric":  # the original TCN: pad both sides, then chomp the last d(k-1)
                return self.conv(x)[:, :, :-self.pad] if self.pad else self.conv(x)
            return self.conv(nn.functional.pad(x, (self.pad, 0)))

    class Block(nn.Module):
        def __init__(self, c_in, c_out, k, d):
            super().__init__()
            self.net = nn.Sequential(CausalConv(c_in, c_out, k, d), nn.ReLU(), nn.Dropout(0.05),
                                     CausalConv(c_out, c_out, k, d), nn.ReLU(), nn.Dropout(0.05))
            self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

        def forward(self, x):
            return torch.relu(self.net(x) + self.skip(x))

    blocks = [Block(1 if b == 1 else args.channels, args.channels, args.kernel_size, 3 * b - 2)
              for b in range(1, args.blocks + 1)]
    net, head = nn.Sequential(*blocks), nn.Linear(args.channels, 10)
    params = list(net.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    x = torch.randn(args.batch, 1, args.length)
    y = torch.arange(args.batch) % 10

    def run(n):
        for _ in range(n):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(head(net(x)[:, :, -1]), y)
            loss.backward()
            opt.step()
    return run


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--length", type=int, default=784)
    p.add_argument("--blocks", type=int, default=12)
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--kernel-size", type=int, default=6)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--microbatch", type=lambda t: [int(m) for m in t.split(",")], default=[],
                   help="also time the engine's step on the whole batch and in micro-batches of these sizes "
                        "(comma-separated)")
    args = p.parse_args()

    runs, temp = {}, {}
    for padding in ("left", "symmetric"):
        for grad in ("custom", "autodiff"):
            runs[f"cnnlab {padding} {grad}"], temp[f"cnnlab {padding} {grad}"] = cnnlab_step(padding, grad, args)
        if not args.no_torch:
            runs[f"torch {padding}"] = torch_step(padding, args)
    if args.microbatch:
        runs["engine whole batch"] = engine_step(None, args)
    for m in args.microbatch:
        runs[f"engine micro-batches of {m}"] = engine_step(m, args)
    for run in runs.values():
        run(1)  # compile / warm up
    seconds = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run(args.steps)
            seconds[name].append(time.perf_counter() - start)
    speed = {name: args.batch * args.steps / statistics.median(s) for name, s in seconds.items()}
    print(f"Single TCN, {args.blocks} blocks x {args.channels} channels, k={args.kernel_size}, T={args.length}, "
          f"batch {args.batch}; median of {args.rounds} rounds of {args.steps} steps; jax {jax.__version__}")
    base = speed["cnnlab left custom"]
    for name, s in speed.items():
        extra = f"  XLA temp buffers {temp[name]:.0f} MiB" if name in temp else ""
        print(f"{name:28s} {s:8.1f} sequences/s  ({s / base:.2f}x cnnlab left custom){extra}")
    print(f"left / symmetric: cnnlab custom {speed['cnnlab left custom'] / speed['cnnlab symmetric custom']:.2f}x, "
          f"cnnlab autodiff {speed['cnnlab left autodiff'] / speed['cnnlab symmetric autodiff']:.2f}x"
          + ("" if args.no_torch else f", torch {speed['torch left'] / speed['torch symmetric']:.2f}x"))
    for m in args.microbatch:
        print(f"engine step, micro-batches of {m} / whole batch of {args.batch}: "
              f"{speed[f'engine micro-batches of {m}'] / speed['engine whole batch']:.2f}x")
    if not args.no_torch:
        import torch
        print(f"cnnlab left custom / torch left: {base / speed['torch left']:.2f}x (torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads)")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
