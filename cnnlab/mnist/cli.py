"""``cnnlab train mnist`` and ``cnnlab eval mnist``."""

import json
from pathlib import Path

from cnnlab.nn import GRADS

# Laptop defaults: a few minutes on a 2-core CPU (see docs/results.md); the paper's settings are in
# experiments/mnist_*.py.
DEFAULTS = {"steps": 600, "batch_size": 50, "lr": 0.05, "momentum": 0.9, "seed": 0}


def add_train_parser(train_subparsers) -> None:
    p = train_subparsers.add_parser("mnist", help="train the Table 1 CNN or Table 2 feed-forward net (§4)")
    p.add_argument("--model", choices=("cnn", "mlp"), default="cnn")
    p.add_argument("--grad", choices=GRADS, default="custom",
                   help="backward pass: the paper's custom VJPs or JAX autodiff (default custom)")
    p.add_argument("--steps", type=int, default=DEFAULTS["steps"])
    p.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    p.add_argument("--lr", type=float, default=DEFAULTS["lr"], help="initial learning rate")
    p.add_argument("--momentum", type=float, default=DEFAULTS["momentum"])
    p.add_argument("--lr-boundaries", type=int, nargs="*", default=None,
                   help="steps where the learning rate is divided by 10 (default: 70%% and 90%% of --steps)")
    p.add_argument("--eval-every", type=int, default=None, help="validate every N steps (default steps/5)")
    p.add_argument("--checkpoint-every", type=int, default=None, help="default: as --eval-every")
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    p.add_argument("--out", default=None, help="run folder (default runs/mnist-<model>-<grad>)")
    p.add_argument("--data-dir", default=None, help="folder with the four MNIST IDX files")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=train_main)


def config_from_args(args):
    from cnnlab.train import TrainConfig
    eval_every = args.eval_every or max(1, args.steps // 5)  # 5 000 validation images: not too often
    # §4.3 divides the learning rate by 10 at 70% and 90% of training (70 000 and 90 000 of 100 000).
    boundaries = (args.lr_boundaries if args.lr_boundaries is not None
                  else [int(args.steps * 0.7), int(args.steps * 0.9)])
    return TrainConfig(steps=args.steps, batch_size=args.batch_size, learning_rate=args.lr,
                       momentum=args.momentum, lr_boundaries=tuple(boundaries),
                       lr_scales=tuple(0.1 for _ in boundaries), eval_every=eval_every,
                       checkpoint_every=args.checkpoint_every or eval_every,
                       log_every=min(50, eval_every), select_metric="accuracy", select_mode="max",
                       seed=args.seed, progress=not args.no_progress)


def train_main(args) -> int:
    return run(config_from_args(args), args)


def run(config, args) -> int:
    """Train ``args.model`` with ``config``, print the layer table, the results and the test accuracy."""
    from cnnlab.mnist import models, train
    out = Path(args.out or f"runs/mnist-{args.model}-{args.grad}")
    print(models.format_layer_table(args.model))
    print(f"training {args.model} ({args.grad} gradients) for {config.steps} steps, batch {config.batch_size}, "
          f"lr {config.learning_rate}; run folder {out}")
    results = train.train_and_evaluate(config, out, model=args.model, grad=args.grad, data_dir=args.data_dir)
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
    results = train.evaluate_checkpoint(args.checkpoint, data_dir=args.data_dir)
    print(json.dumps(results, indent=2))
    return 0


def run_experiment(config_fn, argv=None, description=None) -> int:
    """Entry point of an ``experiments/mnist_*.py`` file: ``config_fn(model) -> TrainConfig`` holds the
    settings; the command line picks the model, gradient mode and run folder."""
    import argparse
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", choices=("cnn", "mlp"), default="cnn")
    p.add_argument("--grad", choices=GRADS, default="custom")
    p.add_argument("--out", required=True, help="run folder (rerun the same command to resume)")
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)
    return run(config_fn(args.model), args)
