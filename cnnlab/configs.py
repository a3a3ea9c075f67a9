"""The one config loader of every task: named configs, config files and ``--set key=value`` overrides.

Each task package keeps its settings in ``cnnlab/<task>/config.py``: one frozen dataclass (a subclass of
``cnnlab.train.TrainConfig``; ``sequence`` maps its own onto one), ``CONFIG_CLASS``, and one public function
without arguments per named setting, returning an instance; the first paragraph of its docstring names the
paper table and row.
``load`` finds those functions by package import (``importlib``), so they resolve wherever cnnlab is
installed. A path to a ``.py`` file works too: its ``get_config()`` must return the task's dataclass, e.g. ::

    from cnnlab.facedet.config import v2_4
    import dataclasses

    def get_config():
        return dataclasses.replace(v2_4(), image_size=256)

``override(config, ["steps=100", "levels=conv4,conv5", "ohem=none"])`` sets fields from text, typed by the
field's annotation (ints, floats, bools, strings, tuples as comma-separated items, ``none`` for optional
fields), the way Flax's examples and big_vision override their ``ml_collections`` configs.
"""

import dataclasses
import importlib
import importlib.util
import inspect
import types
import typing
from pathlib import Path

from cnnlab.errors import CnnlabError

# The command's task name -> the module holding its configs.
TASKS = {"mnist": "cnnlab.mnist.config", "seqmnist": "cnnlab.tcn.config", "facedet": "cnnlab.facedet.config",
         "caption": "cnnlab.caption.config", "sequence": "cnnlab.sequence.config"}


def _module(task: str):
    if task not in TASKS:
        raise CnnlabError(f"no task {task!r}; known: {', '.join(TASKS)}")
    return importlib.import_module(TASKS[task])


def named_configs(task: str) -> dict:
    """``{name: function}`` of the task's named configs, in the order they are written."""
    module = _module(task)
    functions = {name: f for name, f in vars(module).items() if inspect.isfunction(f)
                 and f.__module__ == module.__name__ and not name.startswith("_")
                 and not inspect.signature(f).parameters}
    return dict(sorted(functions.items(), key=lambda item: item[1].__code__.co_firstlineno))


def describe(function) -> str:
    """The first paragraph of a named config's docstring, on one line: its paper table and row."""
    return " ".join((inspect.getdoc(function) or "").split("\n\n")[0].split())


def default_name(task: str) -> str | None:
    """The config ``cnnlab train <task>`` uses without ``--config`` (None: ``--config`` is required)."""
    return getattr(_module(task), "DEFAULT", None)


def load(task: str, name: str):
    """The named config ``name`` of ``task`` (``v2.4`` reads as ``v2_4``), or a ``.py`` file's ``get_config()``."""
    config_class = _module(task).CONFIG_CLASS
    if name.endswith(".py"):
        path = Path(name)
        if not path.is_file():
            raise CnnlabError(f"config file {path} does not exist")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if not callable(getattr(module, "get_config", None)):
            raise CnnlabError(f"config file {path} defines no get_config() function")
        config = module.get_config()
    else:
        configs = named_configs(task)
        key = name.replace(".", "_").replace("-", "_")
        if key not in configs:
            raise CnnlabError(f"no {task} config {name!r}; known: {', '.join(configs)} (or a path to a .py file)")
        config = configs[key]()
    if not isinstance(config, config_class):
        raise CnnlabError(f"config {name!r} returned {type(config).__name__}, not {config_class.__name__}")
    return config


def _parse_bool(text: str) -> bool:
    if text.lower() in ("true", "yes", "1", "on"):
        return True
    if text.lower() in ("false", "no", "0", "off"):
        return False
    raise ValueError(text)


def _parse_item(text: str, like):
    if isinstance(like, bool):
        return _parse_bool(text)
    if isinstance(like, (int, float, str)):
        return type(like)(text)
    for kind in (int, float):  # no example to follow: the narrowest number, else text
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _parse_tuple(text: str, current) -> tuple:
    items = [t.strip() for t in text.strip().strip("()[]").split(",") if t.strip()]
    like = current[0] if isinstance(current, tuple) and current else None
    return tuple(_parse_item(t, like) for t in items)


def _parse(text: str, kind, current):
    if kind is bool:
        return _parse_bool(text)
    if kind in (int, float, str):
        return kind(text)
    if kind is tuple or typing.get_origin(kind) is tuple:
        return _parse_tuple(text, current)
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if type(None) in options and text.lower() in ("none", "null"):
            return None
        # A tuple only when the text lists items, so that "linear" stays a string in ``str | tuple``.
        ordered = sorted((k for k in options if k is not type(None)),
                         key=lambda k: (k is tuple) != ("," in text))
        for option in ordered:
            try:
                return _parse(text, option, current)
            except ValueError:
                pass
        raise ValueError(text)
    raise ValueError(text)


def _type_name(kind) -> str:
    return getattr(kind, "__name__", None) or str(kind).replace("typing.", "")


def override(config, assignments):
    """``config`` with ``key=value`` texts applied in order (typed by the dataclass fields, then validated)."""
    hints = typing.get_type_hints(type(config))
    fields = [f.name for f in dataclasses.fields(config)]
    changes = {}
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        key = key.strip()
        if not sep:
            raise CnnlabError(f"--set {assignment!r}: expected key=value")
        if key not in fields:
            raise CnnlabError(f"--set: {type(config).__name__} has no field {key!r}; known: {', '.join(fields)}")
        try:
            changes[key] = _parse(text.strip(), hints[key], getattr(config, key))
        except ValueError:
            raise CnnlabError(f"--set {key}={text}: {key} is {_type_name(hints[key])}, "
                              f"cannot read {text!r} as one") from None
    return replace(config, **changes)


def replace(config, **changes):
    """``dataclasses.replace`` whose validation errors are ``CnnlabError``."""
    try:
        return dataclasses.replace(config, **changes)
    except CnnlabError:
        raise
    except (TypeError, ValueError) as e:
        raise CnnlabError(str(e)) from None


def add_arguments(parser, task: str) -> None:
    """``--config NAME|FILE.py`` and repeatable ``--set key=value`` on a ``cnnlab train <task>`` parser."""
    default = default_name(task)
    parser.add_argument("--config", default=default, required=default is None,
                        help=f"a named config (`cnnlab configs {task}`) or a .py file with get_config()"
                             + (f" (default {default})" if default else ""))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="set a config field, e.g. --set steps=100 (repeatable; applied after the other flags)")


def add_common_flags(parser) -> None:
    """The shorthand flags every ``cnnlab train`` command has, each setting one config field."""
    from cnnlab.nn import GRADS

    parser.add_argument("--grad", choices=GRADS, default=None,
                        help="backward pass: the paper's custom VJPs or JAX autodiff (default: the config's)")
    add_precision_flag(parser)
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps; the learning-rate boundaries, validation and checkpoint intervals "
                             "keep their fractions of the run")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--learning-rate", "--lr", type=float, default=None, dest="learning_rate",
                        help="initial learning rate")
    parser.add_argument("--eval-every", type=int, default=None, help="validate and checkpoint every N steps")
    add_time_budget_flag(parser)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_time_budget_flag(parser) -> None:
    """``--time-budget MINUTES``, the ``time_budget`` field (``cnnlab.train.TrainConfig``)."""
    parser.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                        help="end the run after about this many minutes on this machine, compilation and "
                             "evaluation included: the cosine schedule is fitted to it after the warm-up, "
                             "and shortened at a validation if the machine slows down; --steps is then the "
                             "most steps (cosine schedules only, e.g. --schedule fast)")


def add_precision_flag(parser) -> None:
    """``--precision float32|bfloat16``, the ``precision`` field (``cnnlab.train.TrainConfig``)."""
    from cnnlab.train.state import PRECISIONS

    parser.add_argument("--precision", choices=sorted(PRECISIONS), default=None,
                        help="bfloat16: activations, matmuls and convolutions in bfloat16; parameters, optimiser "
                             "state, batch-norm statistics and the loss in float32 (default: the config's, float32)")


def common_shorthands(args) -> dict:
    """``{field: value}`` of the flags of ``add_common_flags`` (None: not given)."""
    return {"grad": args.grad, "precision": args.precision, "steps": args.steps, "batch_size": args.batch_size,
            "learning_rate": args.learning_rate, "eval_every": args.eval_every,
            "checkpoint_every": args.eval_every, "seed": args.seed, "time_budget": args.time_budget,
            "progress": False if args.no_progress else None}


def from_args(task: str, args, shorthands: dict, shorten=None):
    """The config of a ``cnnlab train <task>`` command: ``args.config``, then the task's shorthand flags
    (``{field: value or None}``; ``steps`` goes through ``shorten(config, steps)``, by default
    ``cnnlab.train.tasks.shorten``), then ``args.overrides``."""
    from cnnlab.train import tasks

    config = load(task, args.config)
    shorthands = {k: v for k, v in shorthands.items() if v is not None}
    if "steps" in shorthands:
        config = (shorten or tasks.shorten)(config, shorthands.pop("steps"))
    return override(replace(config, **shorthands), args.overrides)


def list_configs(task: str | None = None) -> list[str]:
    """One line per named config: ``task  name  paper table and row``."""
    rows = [(t, name, describe(f)) for t in ([task] if task else TASKS) for name, f in named_configs(t).items()]
    width = max(len(name) for _, name, _ in rows)
    return [f"{t:8}  {name:{width}}  {text}" for t, name, text in rows]


def add_parser(commands) -> None:
    p = commands.add_parser("configs", help="list the named configs (paper table and row) of every task")
    p.add_argument("task", nargs="?", choices=sorted(TASKS), help="only this task's")
    p.set_defaults(func=lambda args: print("\n".join(list_configs(args.task))))
