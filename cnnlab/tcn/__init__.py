"""Temporal convolutional networks of §6: model, receptive field, streaming inference, Sequential MNIST."""

from cnnlab.tcn.model import TCN, ResidualBlock, TemporalConvNet
from cnnlab.tcn.receptive_field import (CONVS_PER_BLOCK, block_dilations, conv_receptive_field,
                                        receptive_field, tcn_receptive_field)
from cnnlab.tcn.streaming import init_cache, step, stream

__all__ = ["CONVS_PER_BLOCK", "ResidualBlock", "TCN", "TemporalConvNet", "block_dilations",
           "conv_receptive_field", "init_cache", "receptive_field", "step", "stream", "tcn_receptive_field"]
