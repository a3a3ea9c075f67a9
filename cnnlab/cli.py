"""The ``cnnlab`` command: one sub-command per paper experiment.

Each task package adds its own sub-commands through ``add_<command>_parser(subparsers)`` functions that
set ``func`` on the parser, so this file only wires them together. Expected failures (``CnnlabError``, a
missing file) print one line ``cnnlab: error: <message>`` and exit with status 2; ``--debug`` or
``CNNLAB_DEBUG=1`` shows their traceback. Any other exception is a bug and keeps its traceback.
"""

import argparse
import os
import sys

from cnnlab.errors import CnnlabError

DEBUG_ENV = "CNNLAB_DEBUG"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cnnlab", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true",
                        help=f"show the traceback of expected errors too (or set {DEBUG_ENV}=1)")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a model of the paper").add_subparsers(
        dest="task", required=True)
    evaluate = commands.add_parser("eval", help="evaluate a checkpoint or predictions").add_subparsers(
        dest="task", required=True)

    # Task packages register here; imports are local so `cnnlab --help` stays fast.
    from cnnlab import configs
    configs.add_parser(commands)
    from cnnlab.ops import gradcheck
    gradcheck.add_parser(commands)
    from cnnlab.mnist import cli as mnist_cli
    mnist_cli.add_train_parser(train)
    mnist_cli.add_eval_parser(evaluate)
    from cnnlab.tcn import cli as tcn_cli
    tcn_cli.add_train_parser(train)
    tcn_cli.add_eval_parser(evaluate)
    from cnnlab.facedet import cli as facedet_cli
    facedet_cli.add_train_parser(train)
    facedet_cli.add_eval_parser(evaluate)
    facedet_cli.add_detect_parser(commands)
    from cnnlab.caption import cli as caption_cli
    caption_cli.add_train_parser(train)
    caption_cli.add_eval_parser(evaluate)
    caption_cli.add_caption_parser(commands)
    from cnnlab.sequence import cli as sequence_cli
    sequence_cli.add_parsers(commands, train, evaluate)
    from cnnlab.nn import resnet_weights
    resnet_weights.add_parser(commands)
    from cnnlab.export import cli as export_cli
    export_cli.add_parser(commands)
    from cnnlab.train import logs
    logs.add_parser(commands)
    from cnnlab.train import distributed
    for task_parser in train.choices.values():  # every `cnnlab train` command can run on several processes
        distributed.add_arguments(task_parser)
    return parser


def error_line(error: BaseException) -> str:
    """``cnnlab: error: <message>`` on one line (a message's further lines joined with "; ")."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return "cnnlab: error: " + ("; ".join(lines) or type(error).__name__)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        if args.command == "train":
            from cnnlab.train import distributed
            if distributed.initialize_from_args(args):  # before any JAX backend use
                distributed.quiet_other_processes()
        return int(args.func(args) or 0)
    except (CnnlabError, FileNotFoundError) as e:
        if debug:
            raise
        print(error_line(e), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
