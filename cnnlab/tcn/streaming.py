"""Streaming inference: run a TCN one time step at a time, exactly equal to the full-sequence model.

A causal convolution's output at step ``t`` needs only the inputs ``t - d(k-1) .. t`` (Eq. (63) with left
padding), so every ``Conv1D`` keeps its last ``d(k-1)`` inputs in a ring buffer (the ``"cache"`` collection,
zeros = the left padding). A step then costs the same at ``t = 1`` and ``t = 10 000``: one kernel
application per layer, ``O(layers)``, against ``O(t * layers)`` for re-running the whole prefix.

Usage (``model`` is a ``TCN`` or a ``TemporalConvNet``, ``params`` its trained ``"params"``)::

    cache = init_cache(model, params, batch_size=8, in_channels=1)
    for t in range(T):
        y_t, cache = step(model, params, cache, x[:, t])   # x[:, t]: [N, C_in]
"""

import jax
import jax.numpy as jnp


def _variables(params, batch_stats):
    return {"params": params, **({"batch_stats": batch_stats} if batch_stats else {})}


def init_cache(model, params, batch_size: int, in_channels: int, dtype=jnp.float32, batch_stats=None):
    """The empty cache (every ring buffer zero, every index 0) for ``batch_size`` sequences: a pytree.
    ``batch_stats``: the running statistics of a model with batch normalization (``norm="batch"``)."""
    x = jnp.zeros((batch_size, 1, in_channels), dtype)
    _, variables = model.apply(_variables(params, batch_stats), x, decode=True, mutable=["cache"])
    return variables["cache"]


def step(model, params, cache, x_t, batch_stats=None):
    """Consume one time step ``x_t: [N, C_in]``; return ``(y_t, new_cache)``.

    ``y_t`` is the model's output for step ``t``: logits ``[N, num_classes]`` for a ``TCN``, features
    ``[N, channels]`` for a ``TemporalConvNet``. Pure, so it can be jitted with ``model`` static.
    """
    if x_t.ndim != 2:
        raise ValueError(f"step: x_t must be one time step [N, C_in], got shape {x_t.shape}")
    y, variables = model.apply({**_variables(params, batch_stats), "cache": cache}, x_t[:, None], decode=True,
                               mutable=["cache"])
    return (y[:, 0] if y.ndim == 3 else y), variables["cache"]


def stream(model, params, x):
    """Run ``x: [N, T, C_in]`` step by step (``lax.scan`` over ``step``); outputs stacked on axis 1."""
    if x.ndim != 3:
        raise ValueError(f"stream: x must be [N, T, C_in], got shape {x.shape}")
    cache = init_cache(model, params, x.shape[0], x.shape[2], x.dtype)

    def body(cache, x_t):
        y_t, cache = step(model, params, cache, x_t)
        return cache, y_t

    _, ys = jax.lax.scan(body, cache, jnp.swapaxes(x, 0, 1))
    return jnp.swapaxes(ys, 0, 1)
