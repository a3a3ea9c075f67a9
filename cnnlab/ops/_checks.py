"""Argument checks shared by the ops: raised at call (trace) time, before any work is done.

Every message names the op, the argument and the offending shape or value, so a user sees at once which
call was wrong.
"""

import jax.numpy as jnp


def check_rank(op: str, name: str, x, rank: int, layout: str) -> None:
    """Raise ``ValueError`` unless ``x`` has ``rank`` dimensions (``layout`` spells them, e.g. "NHWC")."""
    if jnp.ndim(x) != rank:
        raise ValueError(f"{op}: {name} must have rank {rank} ({layout}), got shape {jnp.shape(x)}")


def check_floating(op: str, name: str, x) -> None:
    """Raise ``TypeError`` unless ``x`` has a floating-point dtype (float16/bfloat16/float32/float64)."""
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{op}: {name} must be a floating-point array, got dtype {dtype}")


def check_int_at_least(op: str, name: str, value, minimum: int) -> None:
    """Raise ``ValueError`` unless ``value`` is a Python int ``>= minimum`` (stride, window, dilation...)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{op}: {name} must be a Python int, got {value!r} of type {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value}")


def check_integer(op: str, name: str, x) -> None:
    """Raise ``TypeError`` unless ``x`` has an integer dtype (class labels)."""
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.integer):
        raise TypeError(f"{op}: {name} must be an integer array, got dtype {dtype}")


def check_shape(op: str, name: str, x, shape: tuple, layout: str) -> None:
    """Raise ``ValueError`` unless ``x`` has exactly ``shape`` (``layout`` spells it, e.g. "[C]")."""
    if tuple(jnp.shape(x)) != tuple(shape):
        raise ValueError(f"{op}: {name} must have shape {layout} = {tuple(shape)}, got shape {jnp.shape(x)}")
