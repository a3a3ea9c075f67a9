"""StableHLO export through ``jax.export``: a serialised ``jax.export.Exported``, lowered for CPU and CUDA.

Load it in any process with JAX, without cnnlab::

    exported = jax.export.deserialize(open("model.stablehlo", "rb").read())
    outputs = exported.call(*inputs)

With ``batch=None`` the batch dimension is symbolic (``"N"``): one file serves every batch size.
"""

from pathlib import Path

import jax

from cnnlab.errors import CnnlabError
from cnnlab.export.signature import Function

PLATFORMS = ("cpu", "cuda")


def input_specs(function: Function, batch) -> list:
    """``jax.ShapeDtypeStruct`` of each input; ``batch=None``: the symbolic dimension ``N``."""
    n = jax.export.symbolic_shape("N")[0] if batch is None else batch
    return [jax.ShapeDtypeStruct(t.resolve(n), t.dtype) for t in function.inputs]


def export(function: Function, batch=None, platforms=PLATFORMS) -> jax.export.Exported:
    try:
        return jax.export.export(jax.jit(function.fn), platforms=platforms)(*input_specs(function, batch))
    except (NotImplementedError, ValueError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CnnlabError(f"export: jax.export cannot lower {function.description}: {first}") from e


def save(function: Function, path, batch=None) -> Path:
    """Write ``function`` as a serialised ``Exported`` (bytes) to ``path``."""
    path = Path(path)
    path.write_bytes(export(function, batch).serialize())
    return path
