"""``cnnlab train mnist`` and ``cnnlab eval mnist``."""

import json
from pathlib import Path

from cnnlab import configs
from cnnlab.mnist.config import MODELS


def add_train_parser(train_subparsers) -> None:
    p = train_subparsers.add_parser("mnist", help="train the Table 1 CNN or Table 2 feed-forward net (§4)")
    configs.add_arguments(p, "mnist")
    p.add_argument("--model", choices=MODELS, default=None, help="the config's model (default cnn)")
    configs.add_common_flags(p)
    p.add_argument("--momentum", type=float, default=None)
    p.add_argument("--lr-boundaries", type=int, nargs="*", default=None,
                   help="steps where the learning rate is divided by 10 (default: the config's, at the same fractions "
                        "of --steps)")
    p.add_argument("--out", default=None, help="run folder (default runs/mnist-<model>-<grad>)")
    p.add_argument("--data-dir", default=None, help="folder with the four MNIST IDX files")
    p.set_defaults(func=train_main)


def config_from_args(args):
    shorthands = {"model": args.model, "momentum": args.momentum}
    if args.lr_boundaries is not None:
        shorthands.update(lr_boundaries=tuple(args.lr_boundaries), lr_scales=(0.1,) * len(args.lr_boundaries))
    return configs.from_args("mnist", args, {**configs.common_shorthands(args), **shorthands})


def train_main(args) -> int:
    from cnnlab.mnist import model, train
    config = config_from_args(args)
    out = Path(args.out or f"runs/mnist-{config.model}-{config.grad}")
    print(model.format_layer_table(config.model))
    print(f"training {config.model} ({config.grad} gradients, {config.precision}) for {config.steps} steps, batch "
          f"{config.batch_size}, "
          f"lr {config.learning_rate}; run folder {out}")
    results = train.train(config, out, data_dir=args.data_dir)
    print(json.dumps(results, indent=2))
    print(f"test accuracy: {results['test_accuracy']:.4f} (best validation step {results['best_step']}, "
          f"{results['wall_seconds']:.0f} s); results in {out / 'results.json'}")
    return 0


def add_eval_parser(eval_subparsers) -> None:
    p = eval_subparsers.add_parser("mnist", help="evaluate a `cnnlab train mnist` run on validation and test")
    p.add_argument("--checkpoint", required=True, help="the run folder written by `cnnlab train mnist`")
    p.add_argument("--data-dir", default=None, help="folder with the four MNIST IDX files")
    p.set_defaults(func=eval_main)


def eval_main(args) -> int:
    from cnnlab.mnist import train
    print(json.dumps(train.evaluate(args.checkpoint, data_dir=args.data_dir), indent=2))
    return 0
