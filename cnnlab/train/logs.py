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
        ax.set_xlabel("iteration")
        ax.set_ylabel(metric)
        if metric == "loss":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format=Path(path).suffix[1:] or "png")
    plt.close(fig)
