"""``cnnlab train seqmnist``: the TCN of §6 on Sequential / Permuted MNIST, the paper's schedule by default."""

import json

from cnnlab.tcn.data import PERMUTATION_SEED

# §6.3.3: 12 Single/Double blocks or 6 Radical blocks (24 convolutions each), 32 channels, k = 6.
PAPER_NUM_BLOCKS = {"single": 12, "double": 12, "radical": 6}


def _dilation(text: str):
    if text in ("linear", "exponential"):
        return text
    try:
        return tuple(int(d) for d in text.split(","))
    except ValueError:
        raise ValueError(f"--dilation must be linear, exponential or a comma-separated list of ints, "
                         f"got {text!r}") from None


def run(args) -> int:
    from cnnlab.tcn.model import TCN
    from cnnlab.tcn.train import fast_config, paper_config, scaled_config, train_and_evaluate

    model = TCN(block=args.block, num_blocks=args.num_blocks or PAPER_NUM_BLOCKS[args.block],
                channels=args.channels, kernel_size=args.kernel_size, dropout=args.dropout,
                dilation=_dilation(args.dilation), padding=args.padding, grad=args.grad)
    overrides = {k: v for k, v in {"batch_size": args.batch_size, "learning_rate": args.lr,
                                   "eval_every": args.eval_every, "checkpoint_every": args.eval_every,
                                   "grad_clip_norm": args.grad_clip, "seed": args.seed,
                                   "microbatch_size": args.microbatch or None,
                                   "progress": not args.no_progress}.items()
                 if v is not None}
    if args.schedule == "scaled":
        if args.steps is None:
            raise ValueError("cnnlab train seqmnist: --schedule scaled needs --steps")
        config = scaled_config(args.steps, args.permuted, **overrides)
    elif args.schedule == "fast":
        config = fast_config(args.steps or 3_000, args.permuted, **overrides)
    else:
        config = paper_config(args.permuted, **overrides, **({"steps": args.steps} if args.steps else {}))
    print(f"TCN {args.block}: {model.num_blocks} blocks, dilations {model.dilations()}, k={model.kernel_size}, "
          f"{model.channels} channels, padding {model.padding}; receptive field (Eq. (66)) "
          f"{model.receptive_field()} steps; {'PMNIST' if args.permuted else 'SeqMNIST'}, {config.steps} steps")
    results = train_and_evaluate(config, args.out, model, permuted=args.permuted,
                                 permutation_seed=args.permutation_seed, data_dir=args.data_dir,
                                 train_examples=args.train_examples)
    print(json.dumps(results, indent=1))
    return 0


def add_seqmnist_parser(train_commands) -> None:
    p = train_commands.add_parser("seqmnist", help="TCN on Sequential / Permuted MNIST (§6, Tables 5-6)")
    p.add_argument("--block", choices=sorted(PAPER_NUM_BLOCKS), default="single")
    p.add_argument("--permuted", action="store_true", help="PMNIST: one fixed pixel permutation (§6.3.2)")
    p.add_argument("--dilation", default="linear",
                   help="linear (§6.3.3), exponential (2^(b-1), [33]) or a comma-separated list per block")
    p.add_argument("--padding", choices=("left", "symmetric"), default="left",
                   help="left-only (§6.2.1) or the original's symmetric pad + chomp")
    p.add_argument("--grad", choices=("custom", "autodiff"), default="custom")
    p.add_argument("--num-blocks", type=int, help="default: 12 (Single/Double) or 6 (Radical)")
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--kernel-size", type=int, default=6)
    p.add_argument("--dropout", type=float, default=0.05, help="not given in the paper; [33]'s value")
    p.add_argument("--steps", type=int, help="default: the paper's 100 000 (PMNIST 200 000)")
    p.add_argument("--schedule", choices=("paper", "scaled", "fast"), default="paper",
                   help="paper: §6.3.3's fixed boundaries; scaled: decays at the same fractions of --steps; "
                        "fast: not the paper's, AdamW 2e-3 + warm-up + cosine + clipping (default 3 000 steps)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="initial learning rate (default 0.001; fast: 0.002)")
    p.add_argument("--grad-clip", type=float, metavar="NORM",
                   help="clip the gradient to this global norm (not in the paper; off by default)")
    p.add_argument("--microbatch", type=int, metavar="N",
                   help="compute each batch's gradient in micro-batches of N sequences, one call each (the same "
                        "update, less memory); default: whole batches, as fast on the CPU since cnnlab.nn.Dropout")
    p.add_argument("--eval-every", type=int, help="validate and checkpoint every N steps (default 1000)")
    p.add_argument("--seed", type=int)
    p.add_argument("--permutation-seed", type=int, default=PERMUTATION_SEED)
    p.add_argument("--train-examples", type=int, help="train on the first N sequences only (quick runs)")
    p.add_argument("--data-dir", help="folder with the MNIST IDX files (default: bundled)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", required=True, help="run folder (results.json, metrics.jsonl, curves.png)")
    p.set_defaults(func=run)
