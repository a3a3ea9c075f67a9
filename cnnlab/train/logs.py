"""Run records: metrics appended to ``metrics.jsonl``, curves drawn like the paper's Figure 13."""

import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: training runs on machines without a display
import matplotlib.pyplot as plt  # noqa: E402

from cnnlab.train.workdir import atomic_path, atomic_write_text  # noqa: E402


class MetricsLog:
    """``metrics.jsonl``: one JSON object per line, ``{"step", "split", <metric>: value, ...}``.

    Each record is appended by one ``write`` call; a last line without its newline (a writer stopped
    mid-line) is not a record: ``read`` skips it and ``truncate_after`` drops it.
    """

    def __init__(self, path):
        self.path = Path(path)

    def truncate_after(self, step: int) -> None:
        """Drop records later than ``step`` (replacing the file at once): a resumed run rewrites them as the
        killed run would have."""
        kept = [r for r in self.read() if r["step"] <= step]
        if self.path.exists() or kept:
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def append(self, record: dict) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (json.dumps(record) + "\n").encode())
        finally:
            os.close(fd)

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        lines = self.path.read_text().split("\n")[:-1]  # the part after the last newline is unfinished
        return [json.loads(line) for line in lines if line.strip()]


def plot_curves(records: list[dict], path, title: str = "") -> None:
    """Accuracy (a) and loss (b) against the iteration, training and validation, as in Figure 13."""
    metrics = [m for m in ("accuracy", "loss") if any(m in r for r in records)]
    if not metrics:
        return
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for split, style in (("train", "-"), ("val", "--")):
            points = [(r["step"], r[metric]) for r in records if r["split"] == split and metric in r]
            if points:
                ax.plot(*zip(*points), style, label=f"{split} {metric}")
        _style(ax, "iteration", metric, metric)
    _save(fig, path, title)


def _style(ax, xlabel: str, ylabel: str, metric: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if metric == "loss":
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend()


def _save(fig, path, title: str) -> None:
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format=Path(path).suffix[1:] or "png")
    plt.close(fig)


def plot_runs(runs: dict[str, list[dict]], path, metric: str = "accuracy", title: str = "") -> None:
    """The validation ``metric`` of several runs (``{label: metrics.jsonl records}``) in one figure, against the
    iteration (a) and against the run's wall-clock minutes (b, from the records' ``wall_seconds``; runs
    whose records lack it are left out of (b))."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for label, records in runs.items():
        val = [r for r in records if r["split"] == "val" and metric in r]
        (line,) = axes[0].plot([r["step"] for r in val], [r[metric] for r in val], ".-", label=label)
        timed = [r for r in val if "wall_seconds" in r]
        if timed:  # the same colour for the same run in both panels
            axes[1].plot([r["wall_seconds"] / 60 for r in timed], [r[metric] for r in timed], ".-", label=label,
                         color=line.get_color())
    for ax, xlabel in zip(axes, ("iteration", "wall-clock minutes")):
        _style(ax, xlabel, f"val {metric}", metric)
    _save(fig, path, title)


def plot_main(args) -> int:
    """``cnnlab plot RUN [RUN ...] --out PNG``: the runs' validation curves in one figure (``plot_runs``)."""
    from cnnlab.errors import CnnlabError

    labels = args.label or [Path(run).name for run in args.runs]
    if len(labels) != len(args.runs):
        raise CnnlabError(f"cnnlab plot: {len(labels)} --label values for {len(args.runs)} run folders")
    runs = {}
    for label, run in zip(labels, args.runs):
        path = Path(run) / "metrics.jsonl"
        if not path.is_file():
            raise CnnlabError(f"cnnlab plot: {run} is not a run folder (no metrics.jsonl)")
        try:
            records = MetricsLog(path).read()
        except ValueError as e:  # not JSON lines, or not text
            raise CnnlabError(f"cnnlab plot: {path} is not a metrics log: {e}") from None
        if not all(isinstance(r, dict) and "step" in r and "split" in r for r in records):
            raise CnnlabError(f"cnnlab plot: {path} is not a metrics log (records without step and split)")
        if not any(r["split"] == "val" and args.metric in r for r in records):
            raise CnnlabError(f"cnnlab plot: {path} has no validation {args.metric!r}")
        runs[label] = records
    plot_runs(runs, args.out, args.metric, args.title or "")
    print(f"wrote {args.out}")
    return 0


def add_parser(commands) -> None:
    p = commands.add_parser("plot", help="the validation curves of several runs in one PNG, against iterations "
                                         "and wall-clock minutes")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders (the --out of `cnnlab train`)")
    p.add_argument("--out", required=True, help="the PNG to write")
    p.add_argument("--label", action="append", help="a legend label per run, in order (default: folder names)")
    p.add_argument("--metric", default="accuracy", help="validation metric to plot (default accuracy)")
    p.add_argument("--title")
    p.set_defaults(func=plot_main)
