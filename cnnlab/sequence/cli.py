"""``cnnlab train sequence``, ``cnnlab eval sequence`` and ``cnnlab predict sequence``."""

import json

from cnnlab import configs


def config_from_args(args):
    """``--config`` (default ``default``), then the named flags, then ``--set key=value`` overrides."""
    flags = {"data": args.data, "steps": args.steps, "num_blocks": args.num_blocks,
             "receptive_field": args.receptive_field, "seed": args.seed, "precision": args.precision,
             "time_budget": args.time_budget, "progress": False if args.no_progress else None}
    return configs.from_args("sequence", args, flags, shorten=shorten)


def shorten(config, steps: int):
    """``--steps``: the warm-up keeps its fraction of the run."""
    return configs.replace(config, steps=steps, warmup_steps=config.warmup_steps * steps // config.steps)


def train_main(args) -> int:
    from cnnlab.sequence.train import train
    results = train(config_from_args(args), args.out)
    print(json.dumps(results, indent=1))
    return 0


def eval_main(args) -> int:
    from cnnlab.sequence.evaluation import evaluate
    print(json.dumps(evaluate(args.checkpoint, args.data), indent=1))
    return 0


def predict_main(args) -> int:
    from cnnlab.sequence.evaluation import load_run, predict, write_predictions
    labels, probs = predict(args.checkpoint, args.data)
    write_predictions(args.out, labels, probs, load_run(args.checkpoint[0]).classes)
    print(f"{len(labels)} predictions written to {args.out}")
    return 0


def add_parsers(commands, train, evaluate) -> None:
    """Register ``train sequence``, ``eval sequence`` and ``predict sequence`` (creating ``predict``)."""
    data_help = ".npz (x [N, T, C], y [N], optional lengths, x_test, y_test) or a UCR/UEA NAME_TRAIN.ts"
    p = train.add_parser("sequence", help="TCN classifier on your own sequences (.npz or .ts)")
    p.add_argument("--data", required=True, help=data_help)
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--steps", type=int)
    p.add_argument("--receptive-field", type=int, help="steps the model must see (default: the longest sequence)")
    p.add_argument("--num-blocks", type=int, help="TCN blocks (default: the fewest covering the receptive field)")
    p.add_argument("--seed", type=int)
    configs.add_precision_flag(p)
    configs.add_time_budget_flag(p)
    configs.add_arguments(p, "sequence")  # --config, --set KEY=VALUE (any SequenceConfig field)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=train_main)

    ensemble = "the run folder; given more than once, an ensemble (its runs' class probabilities averaged)"
    p = evaluate.add_parser("sequence", help="evaluate a `cnnlab train sequence` run")
    p.add_argument("--checkpoint", required=True, action="append", help=ensemble)
    p.add_argument("--data", required=True, help="its test split (x_test, NAME_TEST.ts) if it has one, else all")
    p.set_defaults(func=eval_main)

    predict = commands.add_parser("predict", help="predict with a trained model").add_subparsers(
        dest="task", required=True)
    p = predict.add_parser("sequence", help="class predictions of a `cnnlab train sequence` run, as CSV")
    p.add_argument("--checkpoint", required=True, action="append", help=ensemble)
    p.add_argument("--data", required=True, help="its test split if it has one, else all of it; labels optional")
    p.add_argument("--out", required=True, help="CSV: index, prediction, p_<class>...")
    p.set_defaults(func=predict_main)
