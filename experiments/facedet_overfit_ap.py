"""AP of a synthetic-composite FaceNet run before and after training, on its held-out composites.

Rebuilds the run's validation images exactly as ``cnnlab.facedet.train.train`` did (the run's config), and
scores the detector at its random initialisation (the engine's ``create_train_state`` seed) and with the run's
best weights, by the official WIDER protocol's steps (every face counting). ``--split train`` scores the
training composites instead (un-augmented): how far the run over-fits them. Usage:
    python experiments/facedet_overfit_ap.py RUN_DIR [--split val|train]
"""

import argparse
import json

import jax
import jax.numpy as jnp

from cnnlab.facedet.detect import average_precision
from cnnlab.facedet.train import FaceSource, load_trained, records


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("run")
    parser.add_argument("--split", choices=("val", "train"), default="val")
    args = parser.parse_args()
    model, trained, cfg = load_trained(args.run)
    train_records, val_records = records(cfg)
    chosen = train_records if args.split == "train" else val_records
    val = FaceSource(chosen, cfg, seed=cfg.seed, augment=False)
    init_key, _ = jax.random.split(jax.random.key(cfg.seed))  # as cnnlab.train.create_train_state
    x = jnp.zeros((1, cfg.image_size, cfg.image_size, 3))
    initial = model.init({"params": init_key, "dropout": init_key}, x, train=False)
    out = {"split": args.split, "images": len(val), "faces": int(sum(len(r["boxes"]) for r in chosen)),
           "ap_initial": average_precision(initial, cfg, val), "ap_trained": average_precision(trained, cfg, val)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
