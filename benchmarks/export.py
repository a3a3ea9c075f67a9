"""Inference speed of the exported files on the CPU: cnnlab's jit vs the exported StableHLO vs onnxruntime.

    python -m benchmarks.export [--rounds 5] [--calls 5] [--skip-facenet] [--skip-onnx]   (from the repo root)

Models: the Table 1 CNN at batch 1 and 64 (uint8 digits -> logits) and FaceNet v2.4 at 512² batch 1 (uint8
RGB -> boxes and scores after NMS), with random weights (speed does not depend on their values).
- ``cnnlab jit``: the task's own jitted inference (``grad="custom"``, the CPU patch-matrix convolutions for
  the CNN; ``cnnlab.facedet.detect.detect``);
- ``StableHLO``: the file ``cnnlab export --format stablehlo`` writes, deserialised and called under jit;
- ``onnxruntime``: the ``--format onnx`` file in an ``InferenceSession`` (CPU provider, default threads).
Each round times ``--calls`` calls of every runtime in turn (a busy machine slows all alike); the median
round counts. Prints the CPU model, the load and milliseconds per call.
"""

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.machine import cpu_model
from cnnlab.export import onnx as onnx_export, stablehlo
from cnnlab.export.tasks import facedet_functions, mnist_functions


def _timed(fn, calls: int) -> float:
    t = time.perf_counter()
    for _ in range(calls):
        jax.block_until_ready(fn())
    return 1000 * (time.perf_counter() - t) / calls


def runtimes(function, reference, inputs, folder: Path, skip_onnx: bool) -> dict:
    """``{name: zero-argument callable}`` for cnnlab's jit, the StableHLO file and the ONNX file."""
    out = {"cnnlab jit": reference}
    path = stablehlo.save(function, folder / "model.stablehlo", batch=inputs[0].shape[0])
    exported = jax.export.deserialize(path.read_bytes())
    call = jax.jit(exported.call)
    out["StableHLO"] = lambda: call(*inputs)
    if not skip_onnx:
        import onnxruntime

        t = time.perf_counter()
        onnx_export.save(function, folder / "model.onnx", batch=inputs[0].shape[0])
        print(f"  (ONNX conversion {time.perf_counter() - t:.0f} s)", flush=True)
        session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
        feed = {t.name: x for t, x in zip(function.inputs, inputs)}
        out["onnxruntime"] = lambda: session.run(None, feed)
    return out


def bench(name, function, reference, inputs, args) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        fns = runtimes(function, reference, inputs, Path(folder), args.skip_onnx)
        for fn in fns.values():  # compile / first run
            jax.block_until_ready(fn())
        rounds = {k: [] for k in fns}
        for _ in range(args.rounds):
            for k, fn in fns.items():
                rounds[k].append(_timed(fn, args.calls))
    result = {k: float(np.median(v)) for k, v in rounds.items()}
    print(f"{name}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in result.items()), flush=True)
    return result


def mnist_case(batch: int, args) -> dict:
    from cnnlab.mnist.model import make_model
    from cnnlab.mnist.train import inputs as mnist_inputs

    network = make_model("cnn", "custom")
    variables = jax.jit(lambda x: network.init(jax.random.key(0), x, train=False))(jnp.zeros((1, 28, 28, 1)))
    x = np.random.default_rng(0).integers(0, 256, (batch, 28, 28, 1)).astype(np.uint8)
    apply = jax.jit(lambda v, images: network.apply(v, *mnist_inputs({"x": images[..., 0]}), train=False))
    (function,) = mnist_functions("cnn", variables)
    return bench(f"Table 1 CNN, batch {batch}", function, lambda: apply(variables, x), [x], args)


def facenet_case(args) -> dict:
    from cnnlab.facedet.detect import detect
    from cnnlab.facedet.model import FaceNet
    from cnnlab.facedet.config import v2_4

    cfg = dataclasses.replace(v2_4(), image_size=512)
    variables = jax.jit(lambda x: FaceNet(cfg).init(jax.random.key(0), x))(jnp.zeros((1, 512, 512, 3)))
    x = np.random.default_rng(0).integers(0, 256, (1, 512, 512, 3)).astype(np.uint8)
    (function,) = facedet_functions(cfg, variables)
    return bench("FaceNet v2.4, 512x512, batch 1", function,
                 lambda: detect(variables, jnp.asarray(x, jnp.float32) / 255.0, config=cfg), [x], args)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--calls", type=int, default=5)
    p.add_argument("--skip-facenet", action="store_true")
    p.add_argument("--skip-onnx", action="store_true")
    args = p.parse_args(argv)
    began = time.perf_counter()
    cpu = f"{os.cpu_count()}-core {cpu_model()}"
    print(f"CPU: {cpu}; jax {jax.__version__}; load average at start {os.getloadavg()[0]:.2f}", flush=True)
    results = {f"cnn_batch{b}": mnist_case(b, args) for b in (1, 64)}
    if not args.skip_facenet:
        results["facenet_v2_4_512"] = facenet_case(args)
    print(json.dumps({"cpu": cpu, "load_average_end": os.getloadavg()[0],
                      "seconds": round(time.perf_counter() - began), "ms_per_call": results}, indent=1))


if __name__ == "__main__":
    main()
