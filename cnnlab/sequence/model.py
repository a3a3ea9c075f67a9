"""The sequence classifier: ``cnnlab.tcn.TemporalConvNet`` features read out at the real steps, then a dense
layer (Eq. (3)). ``x: [N, T, C_in]`` left-padded, ``mask: [N, T, 1]`` -> logits ``[N, num_classes]``.

Both readouts ignore the left padding exactly (``TemporalConvNet``'s mask zeroes every convolution's input
there): ``"last"`` is the prediction at step ``T - 1`` (§6.3.3, as for SeqMNIST), ``"mean"`` averages the
features over the real steps, as global average pooling does in FCN-style time-series classifiers.
"""

from typing import Any

import jax.numpy as jnp
from flax import linen as nn

from cnnlab.errors import CnnlabError
from cnnlab.nn import Dense
from cnnlab.tcn.model import TemporalConvNet
from cnnlab.train.state import compute_dtype
from cnnlab.tcn.receptive_field import tcn_receptive_field

READOUTS = ("mean", "last")
MAX_BLOCKS = 16


class SequenceClassifier(nn.Module):
    num_classes: int
    block: str = "single"
    num_blocks: int = 4
    channels: int = 32
    kernel_size: int = 5
    dilation: str = "exponential"
    dropout: float = 0.1
    readout: str = "mean"
    grad: str = "custom"
    dtype: Any = None  # compute dtype of every layer (cnnlab.nn.layers); None: the input's

    def tcn(self, **kwargs) -> TemporalConvNet:
        """The feature network; called outside ``__call__`` it is a free module for ``params["tcn"]``."""
        return TemporalConvNet(self.block, self.num_blocks, self.channels, self.kernel_size, self.dropout,
                               self.dilation, grad=self.grad, dtype=self.dtype, **kwargs)

    @nn.compact
    def __call__(self, x, mask, *, train: bool = False):
        h = self.tcn(name="tcn")(x, mask, train=train)  # [N, T, channels]
        if self.readout == "last":
            features = h[:, -1]
        else:  # the mean over the real steps, summed in float32
            total = jnp.sum(h * mask, axis=1, dtype=jnp.promote_types(h.dtype, jnp.float32))
            features = total / jnp.maximum(jnp.sum(mask, axis=1), 1.0)
        return Dense(self.num_classes, grad=self.grad, dtype=self.dtype, name="head")(features)


def blocks_for(receptive_field: int, block: str, kernel_size: int, dilation: str) -> int:
    """The fewest blocks whose receptive field (Eq. (66)) covers ``receptive_field`` steps."""
    for b in range(1, MAX_BLOCKS + 1):
        if tcn_receptive_field(block, b, kernel_size, dilation) >= receptive_field:
            return b
    raise CnnlabError(f"a receptive field of {receptive_field} steps needs more than {MAX_BLOCKS} {block} blocks "
                      f"with kernel {kernel_size} and {dilation} dilation; set num_blocks or receptive_field")


def classifier(config, num_classes: int, length: int) -> SequenceClassifier:
    """The model of ``config`` (a ``SequenceConfig``) for sequences up to ``length`` steps."""
    if config.readout not in READOUTS:
        raise CnnlabError(f"readout must be one of {READOUTS}, got {config.readout!r}")
    num_blocks = config.num_blocks or blocks_for(config.receptive_field or length, config.block,
                                                 config.kernel_size, config.dilation)
    return SequenceClassifier(num_classes, config.block, num_blocks, config.channels, config.kernel_size,
                              config.dilation, config.dropout, config.readout, config.grad,
                              compute_dtype(config.precision))
