"""``cnnlab export``: a trained run as a StableHLO or ONNX file that runs without cnnlab.

``export_run(checkpoint, fmt, out)`` writes one file per function of the task (``tasks.py``): ``out`` itself,
plus companions ``<stem>.<part><suffix>`` (the TCN's ``step``, the captioner's ``decoder_step``), each with a
JSON beside it (``<file>.json``) naming its inputs and outputs (shapes with ``N``, dtypes, meaning), and the
source run with its metrics. Formats: ``stablehlo.py`` (``jax.export``) and ``onnx.py`` (jax2onnx).
"""

from pathlib import Path

from cnnlab.errors import CnnlabError
from cnnlab.export import onnx, stablehlo
from cnnlab.export.signature import part_path, write_signature
from cnnlab.export.tasks import load_functions

FORMATS = {"stablehlo": stablehlo, "onnx": onnx}


def export_run(checkpoint, fmt: str, out, *, batch: int | None = 1, nms: bool = True) -> list[Path]:
    """Export the run folder ``checkpoint`` as ``fmt`` (``"stablehlo"`` | ``"onnx"``) to ``out``.

    batch: the fixed batch size of the inputs, or ``None`` for a symbolic one (``--dynamic-batch``).
    nms: FaceNet only: NMS inside the graph (default) or every anchor's box and score
        (``cnnlab.export.postprocess.nms`` then does it in NumPy).
    Returns the paths written (model files and their JSON).
    """
    if fmt not in FORMATS:
        raise CnnlabError(f"export: unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise CnnlabError(f"export: batch must be a positive int or None (dynamic), got {batch!r}")
    if not Path(checkpoint).is_dir():
        raise CnnlabError(f"export: run folder {checkpoint} not found")
    _, functions, run = load_functions(checkpoint, nms=nms)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    written = []
    for function in functions:
        path = FORMATS[fmt].save(function, part_path(out, function.part), batch)
        written += [path, write_signature(path, function, fmt=fmt, batch=batch, run=run)]
    return written


__all__ = ["FORMATS", "export_run"]
