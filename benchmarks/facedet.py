"""Milliseconds per image of the jit-compiled FaceNet ``detect`` (forward + decode + NMS), batch 1.

The paper (§5.3.7): v2.3 22 ms, v2.4 24 ms per 512² image on a GTX 1080 Ti. Weights are random (speed does not
depend on them: NMS works on a fixed number of boxes). Usage:
    python -m benchmarks.facedet --configs v2_3 v2_4 --image-size 512
"""

import argparse
import dataclasses
import json

import jax
import jax.numpy as jnp

from cnnlab.facedet.detect import time_detect
from cnnlab.facedet.model import FaceNet
from cnnlab import configs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["v2_3", "v2_4"])
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    rows = []
    for name in args.configs:
        cfg = dataclasses.replace(configs.load("facedet", name), image_size=args.image_size)
        x = jnp.zeros((1, args.image_size, args.image_size, 3))
        variables = jax.jit(lambda x: FaceNet(cfg).init(jax.random.key(0), x))(x)
        rows.append({"config": name, "image_size": args.image_size, "backend": jax.default_backend(),
                     "ms_per_image": round(time_detect(variables, cfg, repeats=args.repeats), 1)})
        print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
