"""FaceNet speed on one machine, in one run: ``detect`` per image (jit-compiled forward + decode + NMS,
batch 1) and one training step (forward + backward), cnnlab ``grad="custom"`` vs ``grad="autodiff"`` vs a
PyTorch twin of v2.4.

The paper (§5.3.7): v2.3 22 ms, v2.4 24 ms per 512² image on a GTX 1080 Ti. Weights are random (speed does not
depend on them: NMS works on a fixed number of boxes). ``autodiff`` runs every layer's forward as ``lax.conv`` /
``lax.reduce_window`` / Flax-style normalisation, i.e. the forward of the ``flax.linen`` FaceNet; ``custom`` runs
``ops.conv2d``'s im2row path on the CPU. The training step is the gradient w.r.t. every parameter of a random
linear read-out of both outputs (the detection loss, anchor matching and the optimiser are left out, so the
PyTorch twin computes the same thing). Usage:
    python -m benchmarks.facedet [--configs v2_3 v2_4] [--image-size 512] [--train-size 256] [--no-torch]
"""

import argparse
import dataclasses
import functools
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.machine import cpu_model
from benchmarks.resnet import torch_resnet18
from cnnlab import configs
from cnnlab.facedet.anchors import anchors_per_position
from cnnlab.facedet.detect import time_detect
from cnnlab.facedet.model import FaceNet


def cnnlab_train_step(cfg, batch_size: int):
    model = FaceNet(cfg)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(0, 1, (batch_size, cfg.image_size, cfg.image_size, 3)), jnp.float32)
    variables = jax.jit(model.init)(jax.random.key(0), x)
    shapes = jax.eval_shape(lambda: model.apply(variables, x))
    probes = [jnp.asarray(rng.normal(size=s.shape), jnp.float32) for s in shapes]

    @jax.jit
    def step(params, batch_stats, x):
        def loss(p):
            out, new = model.apply({"params": p, "batch_stats": batch_stats}, x, train=True,
                                   mutable=["batch_stats"])
            return sum(jnp.sum(u * o) for u, o in zip(probes, out)), new["batch_stats"]
        return jax.grad(loss, has_aux=True)(params)

    def run():
        jax.block_until_ready(step(variables["params"], variables["batch_stats"], x))
    return run


def torch_facenet(cfg):
    """FaceNet v2.x written out in PyTorch (NCHW): ResNet backbone, conv6/conv7, 1x1 laterals, FPN (nearest
    up-sampling, 3x3 smoothing), shared heads of 4 GroupNorm bottlenecks with a x2 bilinear up-sampling after
    the second, and a 3x3 output convolution, as ``cnnlab.facedet.model``."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    def norm(kind, c):
        return nn.BatchNorm2d(c) if kind == "batch" else nn.GroupNorm(c // min(8, c), c, eps=1e-6)

    class Bottleneck(nn.Module):
        def __init__(self, c, kind):
            super().__init__()
            p = c // 4
            self.convs = nn.ModuleList([nn.Conv2d(c, p, 1, bias=False), nn.Conv2d(p, p, 3, 1, 1, bias=False),
                                        nn.Conv2d(p, c, 1, bias=False)])
            self.norms = nn.ModuleList([norm(kind, p), norm(kind, p), norm(kind, c)])

        def forward(self, x):
            y = x
            for i, (conv, bn) in enumerate(zip(self.convs, self.norms)):
                y = bn(conv(y))
                y = torch.relu(y) if i < 2 else y
            return torch.relu(x + y)

    class ExtraLevel(nn.Module):
        def __init__(self, c_in, c):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(c_in, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c)
            self.blocks = nn.Sequential(Bottleneck(c, "batch"), Bottleneck(c, "batch"))

        def forward(self, x):
            return self.blocks(torch.relu(self.bn(self.conv(x))))

    class Head(nn.Module):
        def __init__(self, c, outputs):
            super().__init__()
            self.blocks = nn.ModuleList([Bottleneck(c, "group") for _ in range(4)])
            self.out = nn.Conv2d(c, outputs, 3, 1, 1)

        def forward(self, x):
            for i, block in enumerate(self.blocks):
                if i == 2 and cfg.upsample:
                    x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
                x = block(x)
            return self.out(x)

    widths = {"conv2": 64, "conv3": 128, "conv4": 256, "conv5": 512, "conv6": cfg.channels, "conv7": cfg.channels}

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            c, a = cfg.channels, anchors_per_position(cfg.aspect_ratios)
            self.backbone = torch_resnet18()
            self.conv6, self.conv7 = ExtraLevel(512, c), ExtraLevel(c, c)
            self.laterals = nn.ModuleDict({lv: nn.Conv2d(widths[lv], c, 1) for lv in cfg.levels})
            self.smooth = nn.ModuleDict({lv: nn.Conv2d(c, c, 3, 1, 1) for lv in cfg.levels[:-1]})
            self.cls_head, self.reg_head = Head(c, a * cfg.num_classes), Head(c, a * 4)

        def forward(self, x):
            feats = self.backbone(x)
            feats["conv6"] = self.conv6(feats["conv5"])
            feats["conv7"] = self.conv7(feats["conv6"])
            maps = {lv: self.laterals[lv](feats[lv]) for lv in cfg.levels}
            for fine, coarse in reversed(list(zip(cfg.levels[:-1], cfg.levels[1:]))):
                up = F.interpolate(maps[coarse], size=maps[fine].shape[2:], mode="nearest")
                maps[fine] = self.smooth[fine](maps[fine] + up)
            n = x.shape[0]
            cls = torch.cat([self.cls_head(maps[lv]).permute(0, 2, 3, 1).reshape(n, -1) for lv in cfg.levels], 1)
            reg = torch.cat([self.reg_head(maps[lv]).permute(0, 2, 3, 1).reshape(n, -1) for lv in cfg.levels], 1)
            return cls, reg

    return Net()


def torch_train_step(cfg, batch_size: int):
    import torch
    torch.set_num_threads(os.cpu_count())
    net = torch_facenet(cfg).train()
    x = torch.rand(batch_size, 3, cfg.image_size, cfg.image_size)
    probes = [torch.randn(o.shape) for o in net(x)]

    def run():
        net.zero_grad(set_to_none=True)
        sum((u * o).sum() for u, o in zip(probes, net(x))).backward()
    return run


def _median_ms(runners: dict, rounds: int) -> dict:
    for run in runners.values():  # compile / warm up
        run()
    seconds = {name: [] for name in runners}
    names = list(runners)
    # Interleaved, so a busy machine slows all alike, in an order that rotates from round to round (as
    # benchmarks.mnist_step's), so that no implementation always runs first.
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            run = runners[name]
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)
    return {name: round(1000 * float(np.median(s)), 1) for name, s in seconds.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["v2_3", "v2_4"])
    parser.add_argument("--image-size", type=int, default=512, help="detect input size")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train-config", default="v2_4")
    parser.add_argument("--train-size", type=int, default=256, help="training-step input size (0: no step)")
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--no-torch", action="store_true", help="leave the PyTorch twin out")
    args = parser.parse_args(argv)
    print(f"{cpu_model()}, {os.cpu_count()} CPU threads, backend {jax.default_backend()}", flush=True)
    x = jnp.zeros((1, args.image_size, args.image_size, 3))
    for name in args.configs:
        runners = {}
        for grad in ("custom", "autodiff"):
            cfg = dataclasses.replace(configs.load("facedet", name), image_size=args.image_size, grad=grad)
            variables = jax.jit(lambda x: FaceNet(cfg).init(jax.random.key(0), x))(x)
            runners[grad] = functools.partial(time_detect, variables, cfg, repeats=1)  # one timed detect
        times = {grad: [] for grad in runners}
        for _ in range(args.repeats):  # interleaved, so a busy machine slows both alike
            for grad, run in runners.items():
                times[grad].append(run())
        ms = {grad: round(float(np.median(t)), 1) for grad, t in times.items()}
        print(json.dumps({"detect": name, "image_size": args.image_size, "ms_per_image": ms,
                          "custom_over_autodiff": round(ms["custom"] / ms["autodiff"], 2)}), flush=True)
    if args.train_size:
        cfg = dataclasses.replace(configs.load("facedet", args.train_config), image_size=args.train_size)
        runners = {grad: cnnlab_train_step(dataclasses.replace(cfg, grad=grad), args.train_batch)
                   for grad in ("custom", "autodiff")}
        if not args.no_torch:
            runners["pytorch"] = torch_train_step(cfg, args.train_batch)
        ms = _median_ms(runners, args.repeats)
        print(json.dumps({"train_step": args.train_config, "image_size": args.train_size,
                          "batch_size": args.train_batch, "ms_per_step": ms}), flush=True)


if __name__ == "__main__":
    main()
