"""The sequence classifier: ``cnnlab.tcn.TemporalConvNet`` features read out at the real steps, then a dense
layer (Eq. (3)). ``x: [N, T, C_in]`` left-padded, ``mask: [N, T, 1]`` -> logits ``[N, num_classes]``.

Both readouts ignore the left padding exactly (``TemporalConvNet``'s mask zeroes every convolution's input
there): ``"last"`` is the prediction at step ``T - 1`` (§6.3.3, as for SeqMNIST), ``"mean"`` averages the
features over the real steps, as global average pooling does in FCN-style time-series classifiers.

``crop < 1`` trains on random windows (window slicing, a data augmentation for small training sets): each
sequence is cut to a random ``[a, b)`` of between ``crop`` and all of its real steps, afresh at every step.
Causality makes the cut exact and free: the mask zeroes every convolution's input before ``a`` (the
network then computes what it computes for the window alone, left-padded), the outputs before ``b`` do not
depend on the inputs after it, and the readout reads the window's steps only. Evaluation sees whole sequences.
"""

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from cnnlab.errors import CnnlabError
from cnnlab.nn import Dense
from cnnlab.tcn.model import NORMS, TemporalConvNet
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
    crop: float = 1.0  # training only: random windows of at least this fraction of each sequence
    grad: str = "custom"
    dtype: Any = None  # compute dtype of every layer (cnnlab.nn.layers); None: the input's
    norm: str = "none"  # "batch" or "layer": a normalization after every convolution (cnnlab.tcn.model)

    def tcn(self, **kwargs) -> TemporalConvNet:
        """The feature network; called outside ``__call__`` it is a free module for ``params["tcn"]`` (and
        ``batch_stats["tcn"]``)."""
        return TemporalConvNet(self.block, self.num_blocks, self.channels, self.kernel_size, self.dropout,
                               self.dilation, grad=self.grad, dtype=self.dtype, norm=self.norm, **kwargs)

    def window(self, mask):
        """``mask`` [N, T, 1] cut to one random window per sequence (see the module docstring), drawn from the
        ``"dropout"`` RNG stream, the engine's one training stream."""
        n, t = mask.shape[:2]
        length = jnp.sum(mask[..., 0], axis=1)
        u = jax.random.uniform(self.make_rng("dropout"), (2, n))
        keep = jnp.clip(jnp.ceil(length * (self.crop + (1.0 - self.crop) * u[0])), 1, length)
        start = t - length + jnp.floor(u[1] * (length - keep + 1))
        steps = jnp.arange(t)[None, :]
        return ((steps >= start[:, None]) & (steps < (start + keep)[:, None])).astype(mask.dtype)[..., None]

    @nn.compact
    def __call__(self, x, mask, *, train: bool = False):
        if train and self.crop < 1.0:
            mask = self.window(mask)
        h = self.tcn(name="tcn")(x, mask, train=train)  # [N, T, channels]
        if self.readout == "last":
            # the window's last step: T - 1 for whole sequences
            end = mask.shape[1] - 1 - jnp.argmax(mask[:, ::-1, 0], axis=1)
            features = jnp.take_along_axis(h, end[:, None, None], axis=1)[:, 0]
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
    if not 0.0 < config.crop <= 1.0:
        raise CnnlabError(f"crop must be in (0, 1] (the shortest training window, as a fraction of the sequence), "
                          f"got {config.crop}")
    num_blocks = config.num_blocks or blocks_for(config.receptive_field or length, config.block,
                                                 config.kernel_size, config.dilation)
    if config.norm not in NORMS:
        raise CnnlabError(f"norm must be one of {NORMS}, got {config.norm!r}")
    return SequenceClassifier(num_classes, config.block, num_blocks, config.channels, config.kernel_size,
                              config.dilation, config.dropout, config.readout, config.crop, config.grad,
                              compute_dtype(config.precision), config.norm)
