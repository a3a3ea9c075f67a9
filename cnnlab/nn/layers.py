"""Conv, Dense, BatchNorm, GroupNorm and MaxPool as Flax Linen modules on the ops of ``cnnlab.ops``.

Parameters use Flax's names and layouts (``kernel`` HWIO / [D_in, D_out], ``bias``, BatchNorm / GroupNorm
``scale``, ``bias`` and ``batch_stats`` ``mean``, ``var``), so checkpoints read like any Flax model's and a
``flax.linen`` layer's variables load unchanged. ``grad`` picks
the backward pass: ``"custom"`` (the paper's equations, ``jax.custom_vjp``) or ``"autodiff"`` (the twin
``<op>_autodiff`` whose gradient JAX derives). Forward values are the same either way.

``dtype`` is the compute dtype, as in ``flax.linen`` (``flax.linen.dtypes.promote_dtype``): the input and the
parameters are cast to it at use (None: their common dtype). Parameters are created and stored in float32
whatever ``dtype`` is, so with ``dtype=jnp.bfloat16`` the matmuls and convolutions run on bfloat16 while the
gradients reach the optimiser in float32 (the VJP of the cast). Normalisation layers compute their statistics
in float32 either way (``ops.batch_norm``, ``ops.group_norm``) and return ``dtype``.
"""

from typing import Any, Callable

import flax.linen as nn
from flax.linen.dtypes import promote_dtype
import jax
import jax.numpy as jnp

from cnnlab import ops

GRADS = ("custom", "autodiff")


def op(name: str, grad: str) -> Callable:
    """The op ``cnnlab.ops.<name>`` (``grad="custom"``) or its twin ``<name>_autodiff`` (``"autodiff"``)."""
    if grad not in GRADS:
        raise ValueError(f"cnnlab.nn: grad must be one of {GRADS}, got {grad!r}")
    return getattr(ops, name if grad == "custom" else f"{name}_autodiff")


def _pair(value, module: str, name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v >= 1 for v in pair):
        raise ValueError(f"{module}: {name} must be a positive int or a pair of them, got {value!r}")
    return pair


def add_bias(y, bias):
    """``y + bias`` over the last axis, added in float32 (or wider) and cast back to y's dtype: the bias
    gradient, a sum of the output gradient over every other axis (e.g. N H' W' terms), then accumulates in
    float32 for bfloat16 activations too (``cnnlab.ops._dtypes``); XLA's CPU backend also sums a
    bfloat16 tensor of that size many times slower than a float32 one."""
    dtype = jnp.promote_types(y.dtype, jnp.float32)
    return (y.astype(dtype) + bias.astype(dtype)).astype(y.dtype)


class Conv(nn.Module):
    """2-D convolution, Eq. (20)–(22), backward Eq. (24)–(25). x: [N, H, W, C_in] -> [N, H', W', features].

    Symmetric zero ``padding`` and ``stride`` as in ``ops.conv2d``; ``impl`` picks its implementation.
    """
    features: int
    kernel_size: int | tuple = 3
    stride: int = 1
    padding: int = 0
    use_bias: bool = True
    grad: str = "custom"
    impl: str = "auto"
    kernel_init: Callable = nn.initializers.lecun_normal()
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        kh, kw = _pair(self.kernel_size, "Conv", "kernel_size")
        kernel = self.param("kernel", self.kernel_init, (kh, kw, x.shape[-1], self.features))
        x, kernel = promote_dtype(x, kernel, dtype=self.dtype)
        y = op("conv2d", self.grad)(x, kernel, stride=self.stride, padding=self.padding, impl=self.impl)
        if self.use_bias:
            y = add_bias(y, self.param("bias", nn.initializers.zeros, (self.features,)))
        return y


class Dense(nn.Module):
    """Fully connected layer, Eq. (3), backward Eq. (15)–(18). x: [..., D_in] -> [..., features] (leading axes
    are flattened into the rows of Eq. (3), as ``flax.linen.Dense`` applies to the last axis)."""
    features: int
    use_bias: bool = True
    grad: str = "custom"
    kernel_init: Callable = nn.initializers.lecun_normal()
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features))
        bias = (self.param("bias", nn.initializers.zeros, (self.features,)) if self.use_bias
                else jnp.zeros((self.features,), x.dtype))
        x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
        y = op("dense", self.grad)(x.reshape(-1, x.shape[-1]), kernel, bias)
        return y.reshape(*x.shape[:-1], self.features)


class BatchNorm(nn.Module):
    """Batch normalization, Eq. (34)–(37), backward Eq. (48)–(50). x: [N, H, W, C], [N, T, C] or [N, C]; ``mask``
    (x's shape with a last axis of 1, or None) limits the batch statistics to the entries where it is 1.

    Training (``use_running_average=False``) normalises with the batch statistics and updates the running
    averages in ``batch_stats`` by Eq. (38)–(39) (call ``apply`` with ``mutable=["batch_stats"]``);
    inference normalises with the running averages. Under data parallelism the batch statistics are those
    of the whole (global) batch, since ``jit`` computes the mean over the sharded axis.
    """
    use_running_average: bool | None = None
    momentum: float = 0.9
    eps: float = 1e-5
    grad: str = "custom"
    dtype: Any = None  # the output's; the statistics (batch and running) are float32 for any dtype

    @nn.compact
    def __call__(self, x, use_running_average: bool | None = None, mask=None):
        use_running_average = nn.merge_param("use_running_average", self.use_running_average,
                                             use_running_average)
        if self.dtype is not None:
            x = x.astype(self.dtype)
        channels = (x.shape[-1],)
        scale = self.param("scale", nn.initializers.ones, channels)
        bias = self.param("bias", nn.initializers.zeros, channels)
        stat_dtype = jnp.promote_types(x.dtype, jnp.float32)
        mean = self.variable("batch_stats", "mean", jnp.zeros, channels, stat_dtype)
        var = self.variable("batch_stats", "var", jnp.ones, channels, stat_dtype)
        if use_running_average:
            return op("batch_norm_inference", self.grad)(x, scale, bias, mean.value, var.value, eps=self.eps)
        y, batch_mean, batch_var = op("batch_norm", self.grad)(x, scale, bias, mask, eps=self.eps)
        # As Flax: init leaves the statistics at (0, 1); an apply without mutable=["batch_stats"] (e.g. a
        # gradient check) normalises with the batch statistics and leaves the averages alone.
        if not self.is_initializing() and self.is_mutable_collection("batch_stats"):
            mean.value, var.value = ops.ewma_update(
                (mean.value, var.value), jax.lax.stop_gradient((batch_mean, batch_var)), momentum=self.momentum)
        return y


class GroupNorm(nn.Module):
    """Group normalization (not in the paper), backward Eq. (48)–(50) over each example's channel groups
    (docs/derivations.md). x: [N, ..., C] -> like x. Same parameters (``scale``, ``bias``), group options and
    default ``eps`` (Flax's ``epsilon``, 1e-6) as ``flax.linen.GroupNorm``: give ``num_groups`` or
    ``group_size`` (channels per group), not both."""
    num_groups: int | None = 32
    group_size: int | None = None
    eps: float = 1e-6
    grad: str = "custom"
    dtype: Any = None  # the output's; the group statistics are float32 for any dtype

    @nn.compact
    def __call__(self, x):
        if self.dtype is not None:
            x = x.astype(self.dtype)
        c = x.shape[-1]
        if (self.num_groups is None) == (self.group_size is None):
            raise ValueError(f"GroupNorm: give exactly one of num_groups and group_size, got "
                             f"num_groups={self.num_groups}, group_size={self.group_size}")
        num_groups = self.num_groups if self.group_size is None else c // self.group_size
        if self.group_size is not None and c % self.group_size:
            raise ValueError(f"GroupNorm: group_size={self.group_size} does not divide the {c} channels")
        scale = self.param("scale", nn.initializers.ones, (c,))
        bias = self.param("bias", nn.initializers.zeros, (c,))
        return op("group_norm", self.grad)(x, scale, bias, num_groups=num_groups, eps=self.eps)


class MaxPool(nn.Module):
    """Max pooling, Eq. (31), backward Eq. (32)–(33) (gradient to the first arg-max of each window), over
    the input padded with ``padding`` rows and columns of -inf. x: [N, H, W, C] -> [N, H', W', C]."""
    window: int = 2
    stride: int = 2
    padding: int = 0
    grad: str = "custom"

    @nn.compact
    def __call__(self, x):
        return op("max_pool2d", self.grad)(x, window=self.window, stride=self.stride, padding=self.padding)
