"""ONNX export through jax2onnx (the optional ``export`` extra: ``pip install "cnnlab[export]"``), run with
onnxruntime::

    session = onnxruntime.InferenceSession("model.onnx")
    outputs = session.run(None, {"images": images})

Inputs and outputs carry the names of the JSON beside the file; with ``batch=None`` their first dimension
is the symbolic ``N``.

The function is first traced to a jaxpr by JAX itself, and jax2onnx converts that jaxpr replayed primitive by
primitive (``portable``): jax2onnx replaces ``jax.numpy`` functions while it traces (``jnp.shape`` returns an
array there), which would break the models' Python-level shape checks. On the way, max-pooling over the
spatial axes of ``[N, H, W, C]`` is rewritten on ``[N * C, H, W]``: jax2onnx maps a rank-r window onto an
r-dimensional ONNX MaxPool, and onnxruntime's MaxPool takes at most 3 spatial dimensions.
"""

import contextlib
import re
from pathlib import Path

import jax
import jax.core
from jax import lax
from jax.extend import core as jex_core

from cnnlab.errors import CnnlabError
from cnnlab.export.signature import Function
from cnnlab.export.stablehlo import input_specs

OPSET = 21
_CALLS = {"jit": "jaxpr", "pjit": "jaxpr", "closed_call": "call_jaxpr", "custom_jvp_call": "call_jaxpr",
          "custom_vjp_call": "call_jaxpr"}


def _jax2onnx():
    try:
        import jax2onnx
        from jax2onnx.plugins import plugin_system
    except ImportError as e:
        raise CnnlabError('export: --format onnx needs jax2onnx and onnx: pip install "cnnlab[export]"') from e
    # The converted function is a plain jaxpr, so the converters of JAX's own primitives (plugins/jax) are all
    # it needs; jax2onnx's default discovery also imports its Flax/Equinox examples, which compile dozens of
    # models at import (~30 s on 2 cores against ~5 s).
    if not getattr(plugin_system, "_already_imported_plugins", True) and hasattr(plugin_system, "_import_tree"):
        root = Path(plugin_system.__file__).parent
        plugin_system._import_tree(root / "jax", "jax2onnx.plugins.jax")
        plugin_system._already_imported_plugins = True
    return jax2onnx


def _spatial_max_pool(x, params):
    """``reduce_window_max`` over H, W of ``x: [N, H, W, C]`` computed on ``[N * C, H, W]``."""
    n, h, w, c = x.shape
    y = x.transpose(0, 3, 1, 2).reshape(n * c, h, w)
    y = lax.reduce_window(y, -jax.numpy.inf, lax.max, (1, *params["window_dimensions"][1:3]),
                          (1, *params["window_strides"][1:3]), ((0, 0), *params["padding"][1:3]))
    return y.reshape(n, c, *y.shape[1:]).transpose(0, 2, 3, 1)


def _is_spatial_pool(eqn) -> bool:
    p = eqn.params
    return (eqn.primitive.name == "reduce_window_max" and len(p["window_dimensions"]) == 4
            and p["window_dimensions"][0] == p["window_dimensions"][3] == 1
            and p["window_strides"][0] == p["window_strides"][3] == 1
            and tuple(p["padding"][0]) == tuple(p["padding"][3]) == (0, 0)
            and set(p["base_dilation"]) == set(p["window_dilation"]) == {1})


def _foldable(eqn, ins) -> bool:
    """An equation on weights and constants only, of static shape: computed once here instead of in the graph."""
    return (not eqn.effects and not any(isinstance(x, jax.core.Tracer) for x in ins)
            and all(isinstance(d, int) for v in eqn.outvars for d in v.aval.shape))


def portable(jaxpr, consts, *args) -> list:
    """Evaluate ``jaxpr`` as ``jax.core.eval_jaxpr`` does, inlining calls, rewriting spatial max-pools and
    folding constants (weight normalisation, index arithmetic of the streaming buffers): jax2onnx's time
    grows with the square of the graph's size."""
    env = {}

    def read(v):
        return v.val if isinstance(v, jex_core.Literal) else env[v]

    env.update(zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, args))
    for eqn in jaxpr.eqns:
        ins = [read(v) for v in eqn.invars]
        name = eqn.primitive.name
        if name in _CALLS and _CALLS[name] in eqn.params:
            inner = eqn.params[_CALLS[name]]
            outs = portable(inner.jaxpr, inner.consts, *ins)
        elif _is_spatial_pool(eqn):
            outs = [_spatial_max_pool(ins[0], eqn.params)]
        else:
            with jax.ensure_compile_time_eval() if _foldable(eqn, ins) else contextlib.nullcontext():
                outs = eqn.primitive.bind(*ins, **eqn.primitive.get_bind_params(eqn.params))
            outs = outs if eqn.primitive.multiple_results else [outs]
        env.update(zip(eqn.outvars, outs))
    return [read(v) for v in jaxpr.outvars]


def _unsupported(error) -> str:
    """The primitive jax2onnx names in its error, else the error's first line."""
    text = str(error).strip()
    match = re.search(r"primitive[s]?\W+'?([A-Za-z_][\w.]*)", text, re.IGNORECASE)
    return f"op {match.group(1)!r} has no ONNX conversion" if match else (text.splitlines() or [repr(error)])[0]


def save(function: Function, path, batch=None) -> Path:
    """Convert ``function`` to ONNX and write it to ``path`` (weights inside the file)."""
    jax2onnx = _jax2onnx()
    import onnx

    path = Path(path)
    specs = input_specs(function, batch)
    closed = jax.make_jaxpr(function.fn)(*specs)
    try:
        model = jax2onnx.to_onnx(lambda *xs: tuple(portable(closed.jaxpr, closed.consts, *xs)), specs,
                                 model_name=path.stem.replace(".", "_"), opset=OPSET,
                                 input_names=[t.name for t in function.inputs],
                                 output_names=[t.name for t in function.outputs])
    except (NotImplementedError, ValueError, TypeError, KeyError) as e:
        raise CnnlabError(f"export: jax2onnx cannot convert {function.description}: {_unsupported(e)}") from e
    onnx.save_model(model, str(path))
    return path
