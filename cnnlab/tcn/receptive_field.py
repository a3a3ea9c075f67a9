"""Dilation schedules and the receptive field of a TCN, Eq. (65)-(66) of §6.2.2.

A TCN is a stack of residual blocks (§6.3.3, Figure 19); every block applies its convolutions with one
dilation ``d_b``. The receptive field counts the input time steps that the last output can see: it grows by
``d(k - 1)`` at every convolution on the longest input-to-output path. In all three blocks that path runs
through every convolution of the block (the residual connections only add shorter paths), so the longest
path of a ``B``-block TCN holds ``B * CONVS_PER_BLOCK[block]`` convolutions.
"""

from collections.abc import Sequence

CONVS_PER_BLOCK = {"single": 2, "double": 2, "radical": 4}

# §6.3.3: d_b = 3b - 2 (Single, Double) and d_b = 6b - 5 (Radical), i.e. the dilation grows by one
# block's worth of convolutions at every block.
_LINEAR = {"single": (3, -2), "double": (3, -2), "radical": (6, -5)}


def _check_block(fn: str, block: str) -> None:
    if block not in CONVS_PER_BLOCK:
        raise ValueError(f"{fn}: block must be one of {sorted(CONVS_PER_BLOCK)}, got {block!r}")


def block_dilations(block: str, num_blocks: int, dilation="linear") -> tuple[int, ...]:
    """The dilation ``d_b`` of each block ``b = 1..num_blocks``.

    ``dilation`` is ``"linear"`` (the paper's ``3b - 2`` / ``6b - 5``, §6.3.3), ``"exponential"`` (``2^(b-1)``,
    the original TCN [33]) or an explicit sequence of ``num_blocks`` positive ints.
    """
    _check_block("block_dilations", block)
    if isinstance(num_blocks, bool) or not isinstance(num_blocks, int) or num_blocks < 1:
        raise ValueError(f"block_dilations: num_blocks must be a positive int, got {num_blocks!r}")
    if dilation == "linear":
        slope, offset = _LINEAR[block]
        return tuple(slope * b + offset for b in range(1, num_blocks + 1))
    if dilation == "exponential":
        return tuple(2 ** (b - 1) for b in range(1, num_blocks + 1))
    if isinstance(dilation, str) or not isinstance(dilation, Sequence):
        raise ValueError("block_dilations: dilation must be 'linear', 'exponential' or a sequence of ints, "
                         f"got {dilation!r}")
    if len(dilation) != num_blocks or not all(isinstance(d, int) and d >= 1 for d in dilation):
        raise ValueError(f"block_dilations: an explicit dilation list needs {num_blocks} positive ints, "
                         f"got {tuple(dilation)!r}")
    return tuple(dilation)


def conv_receptive_field(d: int, k: int) -> int:
    """Eq. (65): ``r(d, k) = d(k - 1) + 1``, the input steps one output of a dilated convolution sees."""
    if d < 1 or k < 1:
        raise ValueError(f"conv_receptive_field: d and k must be >= 1, got d={d}, k={k}")
    return d * (k - 1) + 1


def receptive_field(dilations: Sequence[int], kernel_size) -> int:
    """Eq. (66): ``R = 1 + sum_l (r(d_l, k_l) - 1)`` over the convolutions on the longest path.

    dilations: one dilation per convolution, in order from input to output.
    kernel_size: one int for every layer, or a sequence as long as ``dilations``.
    """
    if isinstance(kernel_size, int):
        kernel_size = [kernel_size] * len(dilations)
    if len(kernel_size) != len(dilations):
        raise ValueError(f"receptive_field: {len(dilations)} dilations but {len(kernel_size)} kernel sizes")
    return 1 + sum(conv_receptive_field(d, k) - 1 for d, k in zip(dilations, kernel_size))


def tcn_receptive_field(block: str, num_blocks: int, kernel_size: int, dilation="linear") -> int:
    """Receptive field of a whole TCN: every block's dilation repeated once per convolution of the block."""
    per_block = block_dilations(block, num_blocks, dilation)
    convs = CONVS_PER_BLOCK[block]
    return receptive_field([d for d in per_block for _ in range(convs)], kernel_size)
