"""ResNet-18 forward + backward (training mode, batch statistics): cnnlab custom VJPs vs cnnlab autodiff vs
PyTorch, in one run.

    python -m benchmarks.resnet [--batch-size 8] [--image-size 224] [--rounds 5]   (from the repo root)

Each round times one step of every implementation in turn, so a busy machine slows all alike; the median
round counts. A step is the gradient w.r.t. every parameter of a random linear read-out of the pooled
feature (``sum(probe * pooled)``), the running averages updated, no optimiser. cnnlab ``autodiff`` runs
``lax.conv`` / ``lax.reduce_window`` with JAX's gradient, as the ``flax.linen`` ResNet did. PyTorch
(``pip install torch==2.13.0``, the ``bench`` extra) is a torchvision-layout ResNet-18 written out below
(torchvision does not import beside torch 2.13), NCHW, its default (oneDNN) CPU kernels.
"""

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.machine import cpu_model
from cnnlab.nn.resnet import ResNet


def jitted_step(grad: str, batch_size: int, size: int):
    """(jitted step, its arguments): gradients of a random read-out of ResNet-18's pooled feature."""
    model = ResNet(18, grad=grad)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(batch_size, size, size, 3)), jnp.float32)
    variables = jax.jit(model.init)(jax.random.key(0), x)
    probe = jnp.asarray(rng.normal(size=(batch_size, 512)), jnp.float32)

    @jax.jit
    def step(params, batch_stats, x):
        def loss(p):
            out, new = model.apply({"params": p, "batch_stats": batch_stats}, x, train=True,
                                   mutable=["batch_stats"])
            return jnp.sum(out["pooled"] * probe), new["batch_stats"]
        return jax.grad(loss, has_aux=True)(params)
    return step, (variables["params"], variables["batch_stats"], x)


def cnnlab_step(grad: str, batch_size: int, size: int):
    step, args = jitted_step(grad, batch_size, size)

    def run():
        jax.block_until_ready(step(*args))
    return run


def torch_resnet18():
    """torchvision's resnet18 layout (BasicBlock, stride on the first 3x3, 1x1 projection shortcuts), NCHW
    ``x -> {"conv2": ..., "conv5": ..., "pooled": [N, 512]}`` like ``cnnlab.nn.resnet.ResNet``."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, c_in, c_out, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(c_out)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(c_out)
            self.downsample = None
            if stride != 1 or c_in != c_out:
                self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

        def forward(self, x):
            y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
            return torch.relu(y + (x if self.downsample is None else self.downsample(x)))

    class ResNet18(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            c_in, stages = 64, []
            for i, c in enumerate((64, 128, 256, 512)):
                stride = 1 if i == 0 else 2
                stages.append(nn.Sequential(Block(c_in, c, stride), Block(c, c, 1)))
                c_in = c
            self.layer1, self.layer2, self.layer3, self.layer4 = stages

        def forward(self, x):
            x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
            out = {}
            for i, layer in enumerate((self.layer1, self.layer2, self.layer3, self.layer4)):
                x = out[f"conv{i + 2}"] = layer(x)
            out["pooled"] = x.mean(dim=(2, 3))
            return out

    return ResNet18()


def torch_step(batch_size: int, size: int):
    import torch
    torch.set_num_threads(os.cpu_count())
    net = torch_resnet18().train()
    x = torch.randn(batch_size, 3, size, size)
    probe = torch.randn(batch_size, 512)

    def run():
        net.zero_grad(set_to_none=True)
        (net(x)["pooled"] * probe).sum().backward()
    return run


def _time(f) -> float:
    start = time.perf_counter()
    f()
    return time.perf_counter() - start


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--no-torch", action="store_true", help="leave the PyTorch row out (e.g. on a GPU)")
    p.add_argument("--json", default=None, help="also write the numbers to this file")
    args = p.parse_args(argv)
    print(f"{cpu_model()}, {os.cpu_count()} CPU threads, backend {jax.default_backend()}; ResNet-18 forward + "
          f"backward, batch {args.batch_size}, {args.image_size}x{args.image_size}, training mode")
    runners = {"cnnlab-custom": cnnlab_step("custom", args.batch_size, args.image_size),
               "cnnlab-autodiff": cnnlab_step("autodiff", args.batch_size, args.image_size)}
    if not args.no_torch:
        try:
            runners["pytorch"] = torch_step(args.batch_size, args.image_size)
        except ImportError:
            print("torch not installed: pip install torch==2.13.0 (the bench extra); PyTorch row left out")
    for run in runners.values():  # compile / warm up
        run(), run()
    seconds = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, run in runners.items():
            seconds[name].append(_time(run))
    ms = {name: 1000 * float(np.median(s)) for name, s in seconds.items()}
    rows = []
    for name, t in ms.items():
        rows.append({"implementation": name, "ms_per_step": round(t, 1),
                     "range_ms": [round(1000 * min(seconds[name]), 1), round(1000 * max(seconds[name]), 1)],
                     "pytorch_ms_over_this": round(ms["pytorch"] / t, 2) if "pytorch" in ms else None,
                     "autodiff_ms_over_this": round(ms["cnnlab-autodiff"] / t, 2)})
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_model(), "batch_size": args.batch_size, "image_size": args.image_size,
                       "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
