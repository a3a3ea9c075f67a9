"""What an exported file computes: ``Function`` (a pure function of arrays with named, typed inputs and
outputs) and the JSON written beside each exported file.

Shapes use the string ``"N"`` for the batch dimension; ``--batch N`` fixes it, ``--dynamic-batch`` keeps it
symbolic in the exported file.
"""

import dataclasses
import json
import re
from pathlib import Path
from typing import Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class Tensor:
    """One input or output: ``shape`` with ``"N"`` for the batch, a NumPy dtype name and what it means."""
    name: str
    shape: tuple
    dtype: str
    meaning: str

    def resolve(self, batch):
        """The shape with ``"N"`` replaced by ``batch`` (an int or a symbolic dimension)."""
        return tuple(batch if d == "N" else d for d in self.shape)

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "meaning": self.meaning}


@dataclasses.dataclass(frozen=True)
class Function:
    """``fn(*inputs) -> tuple of outputs``, the trained weights closed over, preprocessing included.

    part: ``""`` for the file named by ``--out``, else the suffix of a companion file (``"step"`` ->
    ``model.step.onnx``). notes: extra documentation for the JSON (e.g. how to run the streaming step).
    """
    part: str
    fn: Callable
    inputs: tuple
    outputs: tuple
    description: str
    notes: dict = dataclasses.field(default_factory=dict)

    def example_inputs(self, batch: int = 1) -> list:
        """Zero arrays of the inputs' shapes and dtypes."""
        return [np.zeros(t.resolve(batch), t.dtype) for t in self.inputs]


def part_path(out, part: str) -> Path:
    """``model.onnx`` for the main part, ``model.<part>.onnx`` for a companion."""
    out = Path(out)
    return out if not part else out.with_name(f"{out.stem}.{part}{out.suffix}")


def write_signature(path, function: Function, *, fmt: str, batch, run: dict) -> Path:
    """Write ``<file>.json``: the format, the inputs and outputs, the notes and the source run."""
    path = Path(path)
    doc = {"file": path.name, "format": fmt, "description": function.description,
           "batch": "N (dynamic)" if batch is None else batch,
           "inputs": [t.to_dict() for t in function.inputs],
           "outputs": [t.to_dict() for t in function.outputs], **function.notes, "source_run": run}
    json_path = path.with_name(path.name + ".json")
    # Flat lists (shapes, the vocabulary, the pixel order) on one line each.
    text = re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]",
                  json.dumps(doc, indent=1, ensure_ascii=False))
    json_path.write_text(text + "\n", encoding="utf-8")
    return json_path
