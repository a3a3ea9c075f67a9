"""``Conv1D``: the TCN's weight-normalised causal convolution layer (§6.2, §6.3.3), on ``ops.conv1d``.

Two padding schemes give the same outputs (§6.2.1): ``"left"`` pads ``d(k-1)`` zeros at the start only
(the paper's "smart zero-padding", Eq. (64) with ``p_right = 0``); ``"symmetric"`` is the original TCN [33]:
pad ``d(k-1)`` on both sides, compute ``T + d(k-1)`` outputs and drop ("chomp") the last ``d(k-1)``.

With ``decode=True`` the layer consumes one time step per call and keeps the last ``d(k-1)`` inputs in a
ring buffer in the ``"cache"`` collection (the Flax decoding idiom), so a step costs ``O(k C_in C_out)``
whatever the position in the sequence.
"""

from typing import Any

import jax.numpy as jnp
from flax import linen as nn

from cnnlab.nn.layers import GRADS, add_bias, op

PADDINGS = ("left", "symmetric")


class Conv1D(nn.Module):
    """Causal dilated convolution ``x: [N, T, C_in] -> [N, T, features]``, Eq. (63) with ``s = 1``.

    weight_norm: kernel ``w = g * v / ||v||`` with the norm over ``(k, C_in)`` per output channel and ``g``
        initialised to ``||v||`` (Salimans & Kingma [6], as ``torch.nn.utils.weight_norm(dim=0)``).
    grad: ``"custom"`` differentiates through ``ops.conv1d``'s hand-written backward, ``"autodiff"``
        through ``ops.conv1d_autodiff`` (``cnnlab.nn.op``).
    dtype: the compute dtype (``cnnlab.nn.layers``): input and kernel are cast to it (the bias is
        added in float32, ``add_bias``); None: the input's.
        The weight norm is computed on the float32 parameters, before the cast.
    """
    features: int
    kernel_size: int
    dilation: int = 1
    padding: str = "left"
    weight_norm: bool = True
    grad: str = "custom"
    # The original TCN initialises every convolution with N(0, 0.01).
    kernel_init: nn.initializers.Initializer = nn.initializers.normal(0.01)
    dtype: Any = None

    @nn.compact
    def __call__(self, x, *, decode: bool = False):
        if self.padding not in PADDINGS:
            raise ValueError(f"Conv1D: padding must be one of {PADDINGS}, got {self.padding!r}")
        if self.grad not in GRADS:
            raise ValueError(f"Conv1D: grad must be one of {GRADS}, got {self.grad!r}")
        if x.ndim != 3:
            raise ValueError(f"Conv1D: x must be [N, T, C_in], got shape {x.shape}")
        k, d = self.kernel_size, self.dilation
        v = self.param("kernel", self.kernel_init, (k, x.shape[-1], self.features), jnp.float32)
        w = v
        if self.weight_norm:
            g = self.param("scale", lambda _: jnp.sqrt(jnp.sum(v * v, axis=(0, 1))))
            w = g * v / jnp.sqrt(jnp.sum(v * v, axis=(0, 1)))
        b = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        if self.dtype is not None:
            x = x.astype(self.dtype)
        w = w.astype(x.dtype)
        if decode:
            return add_bias(self._step(x, w), b)
        conv = op("conv1d", self.grad)
        if self.padding == "left":
            y = conv(x, w, dilation=d)
        else:
            # conv1d already pads d(k-1) on the left; the right-hand d(k-1) zeros and the chomp make the
            # original scheme, including the d(k-1) redundant outputs it computes (§6.2.1).
            t, pad = x.shape[1], d * (k - 1)
            y = conv(jnp.pad(x, ((0, 0), (0, pad), (0, 0))), w, dilation=d)[:, :t]
        return add_bias(y, b)

    def _step(self, x, w):
        """One time step ``x: [N, 1, C_in] -> [N, 1, features]`` from the ring buffer of past inputs."""
        if x.shape[1] != 1:
            raise ValueError(f"Conv1D: decode=True takes one time step, x: [N, 1, C_in], got shape {x.shape}")
        k, d = self.kernel_size, self.dilation
        size = d * (k - 1)  # the inputs t - d(k-1) .. t - 1 that output t still needs
        if size == 0:
            return jnp.einsum("ntc,co->nto", x, w[0])
        initialised = self.has_variable("cache", "inputs")
        inputs = self.variable("cache", "inputs", jnp.zeros, (x.shape[0], size, x.shape[2]), x.dtype)
        index = self.variable("cache", "index", lambda: jnp.zeros((), jnp.int32))
        # Slot `index` holds x[t - size]; tap i of the kernel reads x[t - (k-1-i) d] (left-padded Eq. (63)).
        taps = (index.value - d * jnp.arange(k - 1, 0, -1)) % size
        window = jnp.concatenate([inputs.value[:, taps], x], axis=1)  # [N, k, C_in]
        if initialised:  # Flax's init pass only creates the cache; it must not advance it
            inputs.value = inputs.value.at[:, index.value].set(x[:, 0])
            index.value = (index.value + 1) % size
        return jnp.einsum("nkc,kco->no", window, w)[:, None]
