"""``cnnlab train seqmnist`` and ``cnnlab eval seqmnist``: the TCN of §6 on Sequential / Permuted MNIST."""

import json

from cnnlab import configs
from cnnlab.errors import CnnlabError
from cnnlab.tcn.config import PAPER_NUM_BLOCKS


def _dilation(text: str):
    if text in ("linear", "exponential"):
        return text
    try:
        return tuple(int(d) for d in text.split(","))
    except ValueError:
        raise CnnlabError(f"--dilation must be linear, exponential or a comma-separated list of ints, "
                          f"got {text!r}") from None


def config_from_args(args):
    from cnnlab.tcn.config import FAST_STEPS, fast_schedule, scaled_schedule

    def shorten(config, steps):
        if args.schedule == "scaled":
            return scaled_schedule(config, steps)
        if args.schedule == "fast":
            return fast_schedule(config, steps)
        return configs.replace(config, steps=steps)  # the paper's boundaries, wherever they fall

    shorthands = {"block": args.block, "permuted": True if args.permuted else None,
                  "dilation": None if args.dilation is None else _dilation(args.dilation),
                  "padding": args.padding, "num_blocks": args.num_blocks, "channels": args.channels,
                  "kernel_size": args.kernel_size, "dropout": args.dropout, "grad_clip_norm": args.grad_clip,
                  "microbatch_size": args.microbatch or None, "permutation_seed": args.permutation_seed,
                  "train_examples": args.train_examples}
    if args.schedule == "scaled" and args.steps is None:
        raise CnnlabError("cnnlab train seqmnist: --schedule scaled needs --steps")
    common = configs.common_shorthands(args)
    if args.schedule == "fast" and args.steps is None:
        common["steps"] = FAST_STEPS
    return configs.from_args("seqmnist", args, {**common, **shorthands}, shorten)


def train_main(args) -> int:
    from cnnlab.tcn.train import make_model, train

    config = config_from_args(args)
    model = make_model(config)
    print(f"TCN {config.block}: {model.num_blocks} blocks, dilations {model.dilations()}, k={model.kernel_size}, "
          f"{model.channels} channels, padding {model.padding}; receptive field (Eq. (66)) "
          f"{model.receptive_field()} steps; {'PMNIST' if config.permuted else 'SeqMNIST'}, "
          + (f"{config.steps} steps" if config.time_budget is None
             else f"at most {config.steps} steps in about {config.time_budget:g} minutes"))
    print(json.dumps(train(config, args.out, data_dir=args.data_dir), indent=1))
    return 0


def add_train_parser(train_commands) -> None:
    p = train_commands.add_parser("seqmnist", help="TCN on Sequential / Permuted MNIST (§6, Tables 5-6)")
    configs.add_arguments(p, "seqmnist")
    p.add_argument("--block", choices=sorted(PAPER_NUM_BLOCKS), default=None)
    p.add_argument("--permuted", action="store_true", help="PMNIST: one fixed pixel permutation (§6.3.2)")
    p.add_argument("--dilation", default=None,
                   help="linear (§6.3.3), exponential (2^(b-1), [33]) or a comma-separated list per block")
    p.add_argument("--padding", choices=("left", "symmetric"), default=None,
                   help="left-only (§6.2.1) or the original's symmetric pad + chomp")
    p.add_argument("--num-blocks", type=int, help="default: 12 (Single/Double) or 6 (Radical)")
    p.add_argument("--channels", type=int)
    p.add_argument("--kernel-size", type=int)
    p.add_argument("--dropout", type=float,
                   help="not given in the paper; default [33]'s 0.05 (0 under --schedule fast)")
    configs.add_common_flags(p)
    p.add_argument("--schedule", choices=("paper", "scaled", "fast"), default="paper",
                   help="paper: §6.3.3's fixed boundaries; scaled (with --steps): decays at the same fractions "
                        "of --steps (cnnlab.tcn.config.scaled_schedule); fast: not the paper's, AdamW 1.6e-2 "
                        "(weight decay 0.05) + warm-up + cosine + clipping, no dropout, default 6 000 steps "
                        "(fast_schedule), or as many of them as fit --time-budget MINUTES")
    p.add_argument("--grad-clip", type=float, metavar="NORM",
                   help="clip the gradient to this global norm (not in the paper; off by default)")
    p.add_argument("--microbatch", type=int, metavar="N",
                   help="compute each batch's gradient in micro-batches of N sequences, one call each (the same "
                        "update, less memory); default: whole batches")
    p.add_argument("--permutation-seed", type=int)
    p.add_argument("--train-examples", type=int, help="train on the first N sequences only (quick runs)")
    p.add_argument("--data-dir", help="folder with the MNIST IDX files (default: bundled)")
    p.add_argument("--out", required=True, help="run folder (results.json, metrics.jsonl, curves.png)")
    p.set_defaults(func=train_main)


def add_eval_parser(eval_commands) -> None:
    p = eval_commands.add_parser("seqmnist", help="evaluate a `cnnlab train seqmnist` run on validation and test")
    p.add_argument("--checkpoint", required=True, help="the run folder written by `cnnlab train seqmnist`")
    p.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files (default: bundled)")
    p.set_defaults(func=eval_main)


def eval_main(args) -> int:
    from cnnlab.tcn.train import evaluate
    print(json.dumps(evaluate(args.checkpoint, data_dir=args.data_dir), indent=2))
    return 0
