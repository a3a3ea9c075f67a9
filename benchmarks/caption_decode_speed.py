"""Greedy TCN captioning: streaming-cache decoding vs re-running the whole sequence at every step (§7.2.3).

The paper-size TCN decoder (18 Single blocks, kernel 2, 256 channels, 512-d embeddings, 10 000 words) on a
ResNet-18 feature, random weights (speed does not depend on them). Both decoders produce the same tokens
(tests/test_caption_model.py); this measures how long each takes after compilation.

    python -m benchmarks.caption_decode_speed [--batch 8] [--max-length 20] [--image-size 64]  # repository root
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from cnnlab.caption import decode
from cnnlab.caption.model import CaptionModel


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--max-length", type=int, default=20)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--vocab", type=int, default=10_000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    model = CaptionModel(vocab_size=args.vocab, decoder="tcn")
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (args.batch, args.image_size, args.image_size, 3)),
                         jnp.uint8)
    variables = jax.jit(model.init)(jax.random.key(0), images, jnp.zeros((args.batch, args.max_length), jnp.int32))
    print(f"device {jax.devices()[0].device_kind}, batch {args.batch}, max_length {args.max_length}, "
          f"image {args.image_size}px, vocab {args.vocab}")
    tokens = {}
    for incremental in (True, False):
        run = lambda: jax.block_until_ready(decode.greedy(model, variables, images, max_length=args.max_length,
                                                          incremental=incremental))
        start = time.perf_counter()
        tokens[incremental] = run()
        compile_s = time.perf_counter() - start
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        name = "streaming cache" if incremental else "full re-run"
        print(f"{name:16s} first call (compile + run) {compile_s:6.2f} s, then median {np.median(times):.3f} s "
              f"per batch = {args.batch / np.median(times):.1f} captions/s")
    print("same tokens:", bool(np.array_equal(tokens[True], tokens[False])))


if __name__ == "__main__":
    main()
