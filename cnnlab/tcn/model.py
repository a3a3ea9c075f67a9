"""The TCN of §6 as Flax Linen modules: Single / Double / Radical residual blocks (§6.3.3, Figure 19).

Every convolution is a weight-normalised causal ``Conv1D`` followed by ReLU and dropout (Figure 19). The
blocks differ only in their residual connections:

- **Single** (the original TCN [33]): ``h1 = a(x)``, ``h2 = a(h1)``, ``out = relu(h2 + skip(x))``.
- **Double**: as Single, plus the first convolutions of consecutive blocks are linked,
  ``h1_b = a(x_b) + h1_{b-1}``, so the first-layer activations form a second residual stream.
- **Radical**: four convolutions with the four connections of §6.3.3: input -> second convolution,
  first -> third convolution, second convolution -> output and input -> output:
  ``h2 = a(h1) + skip(x)``, ``h3 = a(h2) + h1``, ``h4 = a(h3)``, ``out = relu(h4 + h2 + skip(x))``.

``a(h) = dropout(relu(conv(h)))`` and ``skip`` is the identity, or a 1x1 convolution where the channel count
changes (the first block). The final ReLU after the addition follows the original TCN's ``TemporalBlock``.

``mask: [N, T, 1]`` (1 at real steps, 0 at left padding) zeroes the input of every convolution at the padded
steps. A sequence left-padded to length ``T`` then gives, at its real steps, exactly the outputs it gives alone:
a causal convolution sees the left padding of its own input as zeros, but after one layer the padded steps
hold ``relu(bias)`` and the residual sums, not zeros, so masking the network input alone is not enough.

``norm`` (not in §6; an option of ``cnnlab train sequence``) puts a normalization between every convolution
and its ReLU. ``"batch"``: batch normalization (Eq. (34)-(37)), as FCN/ResNet time-series classifiers use; its
training statistics run over the real steps only (the mask), and at inference it is the affine map of the
running statistics, the same at every step. ``"layer"``: layer normalization over the channels of each
step of each sequence (``GroupNorm`` with one group on ``[N*T, C]``), the same in training and inference.
Both keep masking and streaming exact.

``dtype`` is the compute dtype of every layer (``cnnlab.nn.layers``; e.g. ``jnp.bfloat16``); the parameters
stay float32. None: the input's dtype.
"""

from typing import Any

from flax import linen as nn

from cnnlab.nn import BatchNorm, Dense, Dropout, GroupNorm, op
from cnnlab.nn.conv1d import Conv1D
from cnnlab.tcn.receptive_field import CONVS_PER_BLOCK, block_dilations, tcn_receptive_field

NORMS = ("none", "batch", "layer")


class ResidualBlock(nn.Module):
    """One block ``x: [N, T, C] -> ([N, T, channels], first-conv activations [N, T, channels])``."""
    block: str
    channels: int
    kernel_size: int
    dilation: int
    dropout: float = 0.0
    padding: str = "left"
    grad: str = "custom"
    dtype: Any = None
    norm: str = "none"  # or "batch", "layer" (module docstring)

    @nn.compact
    def __call__(self, x, first=None, mask=None, *, train: bool = False, decode: bool = False):
        relu = op("relu", self.grad)

        def layer(i, h):
            if mask is not None:
                h = h * mask.astype(h.dtype)
            h = Conv1D(self.channels, self.kernel_size, self.dilation, self.padding, grad=self.grad,
                       dtype=self.dtype, name=f"conv{i}")(h, decode=decode)
            if self.norm == "batch":
                h = BatchNorm(grad=self.grad, dtype=self.dtype, name=f"norm{i}")(
                    h, use_running_average=not train, mask=mask)
            elif self.norm == "layer":
                n, t, c = h.shape
                h = GroupNorm(num_groups=1, grad=self.grad, dtype=self.dtype, name=f"norm{i}")(
                    h.reshape(n * t, c)).reshape(n, t, c)
            return Dropout(self.dropout, deterministic=not train)(relu(h))

        skip = x
        if x.shape[-1] != self.channels:
            skip = Conv1D(self.channels, 1, weight_norm=False, grad=self.grad, dtype=self.dtype,
                          name="skip")(x, decode=decode)
        h1 = layer(1, x)
        if self.block == "double" and first is not None:
            h1 = h1 + first
        if self.block in ("single", "double"):
            return relu(layer(2, h1) + skip), h1
        h2 = layer(2, h1) + skip
        h3 = layer(3, h2) + h1
        return relu(layer(4, h3) + h2 + skip), h1


class TemporalConvNet(nn.Module):
    """A stack of residual blocks ``x: [N, T, C_in] -> [N, T, channels]``; output ``t`` sees ``x[:t+1]``.

    block: ``"single"`` | ``"double"`` | ``"radical"``.
    dilation: ``"linear"`` (§6.3.3: ``d_b = 3b - 2``, Radical ``6b - 5``), ``"exponential"`` (``2^(b-1)``) or
        a tuple of one dilation per block.
    padding: ``"left"`` (§6.2.1) or ``"symmetric"`` (pad both sides and chomp, [33]); same outputs.
    mask: ``[N, T, 1]``, 1 at real steps and 0 at left padding (see the module docstring), or None.
    decode: ``x`` is one time step ``[N, 1, C_in]`` and the layers read and advance the ``"cache"``
        collection (see ``cnnlab.tcn.streaming``).
    """
    block: str = "single"
    num_blocks: int = 12
    channels: int = 32
    kernel_size: int = 6
    dropout: float = 0.05
    dilation: str | tuple = "linear"
    padding: str = "left"
    grad: str = "custom"
    dtype: Any = None
    norm: str = "none"  # "none", "batch" or "layer": a normalization after every convolution (module docstring)

    def dilations(self) -> tuple[int, ...]:
        """The dilation of each block."""
        return block_dilations(self.block, self.num_blocks, self.dilation)

    def receptive_field(self) -> int:
        """Eq. (66) for this network (input time steps seen by the last output)."""
        return tcn_receptive_field(self.block, self.num_blocks, self.kernel_size, self.dilation)

    @nn.compact
    def __call__(self, x, mask=None, *, train: bool = False, decode: bool = False):
        if self.block not in CONVS_PER_BLOCK:
            raise ValueError(f"TemporalConvNet: block must be one of {sorted(CONVS_PER_BLOCK)}, "
                             f"got {self.block!r}")
        if x.ndim != 3:
            raise ValueError(f"TemporalConvNet: x must be [N, T, C_in], got shape {x.shape}")
        if self.norm not in NORMS:
            raise ValueError(f"TemporalConvNet: norm must be one of {NORMS}, got {self.norm!r}")
        if self.dtype is not None:
            x = x.astype(self.dtype)
        first = None
        for d in self.dilations():
            x, first = ResidualBlock(self.block, self.channels, self.kernel_size, d, self.dropout,
                                     self.padding, self.grad, self.dtype, self.norm)(x, first, mask, train=train,
                                                                                     decode=decode)
        return x


class TCN(TemporalConvNet):
    """The sequence classifier of §6.3.3: ``x: [N, T, C_in] -> logits [N, num_classes]``.

    Trained and evaluated on the prediction at the last time step only, following [33] (§6.3.3); the
    classifier is a dense layer on the last step's features (equal to a 1x1 output convolution read at
    ``t = T``). With ``decode=True`` it returns the logits of the current step.
    """
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, mask=None, *, train: bool = False, decode: bool = False):
        h = TemporalConvNet.__call__(self, x, mask, train=train, decode=decode)
        return Dense(self.num_classes, grad=self.grad, dtype=self.dtype)(h[:, -1])
