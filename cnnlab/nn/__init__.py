"""Flax Linen layers on ``cnnlab.ops``: each runs its gradient through the paper's custom VJPs
(``grad="custom"``) or through JAX's autodiff of the same forward (``grad="autodiff"``)."""

from cnnlab.nn.layers import GRADS, BatchNorm, Conv, Dense, GroupNorm, MaxPool, op
from cnnlab.nn.conv1d import Conv1D  # the TCN's causal convolution (owner tcn)
from cnnlab.nn.dropout import Dropout  # flax.linen.Dropout, a quarter of the Threefry blocks per mask

__all__ = ["GRADS", "BatchNorm", "Conv", "Dense", "GroupNorm", "MaxPool", "op"]
__all__ += ["Conv1D", "Dropout"]
