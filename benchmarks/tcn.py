"""Training speed of the §6.3.3 Single-block TCN: cnnlab (left vs symmetric padding, custom vs autodiff
gradients) against a PyTorch CPU TCN written out below, all measured in one run.

    python benchmarks/tcn.py [--batch 16] [--steps 3] [--rounds 3] [--blocks 12] [--no-torch] [--microbatch M[,M...]]
                             [--dropout]

Each configuration runs ``steps`` training steps (forward, backward, SGD-momentum update) per round; the
configurations alternate round by round so that a shared machine's load hits them alike, and the median
round is reported. Also prints XLA's temporary-buffer size of each compiled cnnlab train step (the
activation memory that the padding scheme changes, §6.2.2).

``--dropout`` adds what the 24 dropout layers cost: the engine's step (whole batch and the first
``--microbatch``) with ``flax.linen.Dropout`` instead of ``cnnlab.nn.Dropout``, in micro-batches without
dropout, and the masks of one micro-batch drawn by ``flax.linen.Dropout``'s ``jax.random.bernoulli`` against
``cnnlab.nn.dropout.keep_mask`` (four 16-bit uniforms per Threefry block).
"""

import argparse
import dataclasses
import statistics
import time
import unittest.mock

import jax
import jax.numpy as jnp
import numpy as np
import optax
import flax.linen

import cnnlab.tcn.model
from cnnlab.nn.dropout import keep_mask
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


def engine_step(microbatch, args, dropout=0.05, cached=True):
    """The training engine's own step (``cnnlab.train.make_steps``, the task's loss and uint8 batches, as in
    ``cnnlab train seqmnist``) on the whole batch or in micro-batches of ``microbatch`` sequences.
    ``cached=False``: new compiled functions, not those that ``make_steps`` keeps for an equal model."""
    from cnnlab import train
    from cnnlab.tcn.config import single_seqmnist
    from cnnlab.tcn.train import inputs
    from cnnlab.train.tasks import CLASSIFICATION_LOSSES, accuracy, engine_config

    model = TCN(block="single", num_blocks=args.blocks, channels=args.channels, kernel_size=args.kernel_size,
                dropout=dropout)
    rng = np.random.default_rng(0)
    batch = {"x": rng.integers(0, 256, (args.batch, args.length), dtype=np.uint8),
             "y": rng.integers(0, 10, args.batch).astype(np.int32)}
    config = engine_config(dataclasses.replace(single_seqmnist(), batch_size=args.batch, microbatch_size=microbatch))
    state = [train.create_train_state(model, config, inputs(batch))]
    make_steps = train.make_steps if cached else train.make_steps.__wrapped__
    step, _ = make_steps(model, CLASSIFICATION_LOSSES["custom"], accuracy, inputs,
                         args.batch // (microbatch or args.batch))

    def run(n):
        for _ in range(n):
            state[0], _ = step(state[0], batch)
        jax.block_until_ready(state)
    return run


def mask_draws(draw, microbatch, args):
    """The dropout masks of one micro-batch of the Single TCN (two per block), drawn by ``draw(key, shape)``."""
    shape = (microbatch, args.length, args.channels)
    masks = jax.jit(lambda key: [draw(k, shape) for k in jax.random.split(key, 2 * args.blocks)])

    def run(n):
        for i in range(n):
            jax.block_until_ready(masks(jax.random.key(i)))
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
    p.add_argument("--dropout", action="store_true",
                   help="also time the engine step with flax.linen.Dropout and without dropout, and the masks alone")
    p.add_argument("--microbatch", type=lambda t: [int(m) for m in t.split(",")], default=[],
                   help="also time the engine's step on the whole batch and in micro-batches of these sizes "
                        "(comma-separated)")
    args = p.parse_args()
    if args.dropout and not args.microbatch:
        p.error("--dropout compares the engine's step in micro-batches: give --microbatch too")

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
    masks = {}  # timed like the steps, reported in ms per micro-batch
    if args.dropout:
        m = args.microbatch[0]
        runs[f"engine micro-batches of {m}, no dropout"] = engine_step(m, args, dropout=0.0)
        # The same step with flax.linen.Dropout, as cnnlab.tcn trained before cnnlab.nn.Dropout: patched in
        # while the step compiles (the first call), so the other rows keep cnnlab's module.
        with unittest.mock.patch.object(cnnlab.tcn.model, "Dropout", flax.linen.Dropout):
            for size, name in ((None, "engine whole batch"), (m, f"engine micro-batches of {m}")):
                runs[f"{name}, flax Dropout"] = engine_step(size, args, cached=False)
                runs[f"{name}, flax Dropout"](1)
        masks["flax bernoulli"] = mask_draws(lambda k, s: jax.random.bernoulli(k, 0.95, s), m, args)
        masks["cnnlab keep_mask"] = mask_draws(lambda k, s: keep_mask(k, 0.05, s), m, args)
    runs.update({f"masks: {name}": run for name, run in masks.items()})
    for run in runs.values():
        run(1)  # compile / warm up
    seconds = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run(args.steps)
            seconds[name].append(time.perf_counter() - start)
    mask_ms = {name[len("masks: "):]: 1000 * statistics.median(seconds.pop(name)) / args.steps
               for name in list(seconds) if name.startswith("masks: ")}
    speed = {name: args.batch * args.steps / statistics.median(s) for name, s in seconds.items()}
    print(f"Single TCN, {args.blocks} blocks x {args.channels} channels, k={args.kernel_size}, T={args.length}, "
          f"batch {args.batch}; median of {args.rounds} rounds of {args.steps} steps; jax {jax.__version__}")
    base = speed["cnnlab left custom"]
    for name, s in speed.items():
        extra = f"  XLA temp buffers {temp[name]:.0f} MiB" if name in temp else ""
        print(f"{name:38s} {s:8.1f} sequences/s  ({s / base:.2f}x cnnlab left custom){extra}")
    print(f"left / symmetric: cnnlab custom {speed['cnnlab left custom'] / speed['cnnlab symmetric custom']:.2f}x, "
          f"cnnlab autodiff {speed['cnnlab left autodiff'] / speed['cnnlab symmetric autodiff']:.2f}x"
          + ("" if args.no_torch else f", torch {speed['torch left'] / speed['torch symmetric']:.2f}x"))
    for m in args.microbatch:
        print(f"engine step, micro-batches of {m} / whole batch of {args.batch}: "
              f"{speed[f'engine micro-batches of {m}'] / speed['engine whole batch']:.2f}x")
    if args.dropout:
        m = args.microbatch[0]
        for name in ("engine whole batch", f"engine micro-batches of {m}"):
            print(f"{name}, cnnlab Dropout / flax Dropout: {speed[name] / speed[f'{name}, flax Dropout']:.2f}x")
        print(f"engine step in micro-batches of {m}, no dropout / cnnlab Dropout: "
              f"{speed[f'engine micro-batches of {m}, no dropout'] / speed[f'engine micro-batches of {m}']:.2f}x")
        print(f"the {2 * args.blocks} dropout masks of one micro-batch of {m}: flax bernoulli "
              f"{mask_ms['flax bernoulli']:.1f} ms, cnnlab keep_mask {mask_ms['cnnlab keep_mask']:.1f} ms "
              f"({mask_ms['flax bernoulli'] / mask_ms['cnnlab keep_mask']:.2f}x faster)")
    if not args.no_torch:
        import torch
        print(f"cnnlab left custom / torch left: {base / speed['torch left']:.2f}x (torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads)")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
