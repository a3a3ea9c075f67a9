"""The two MNIST models of §4.2.1 exactly as Tables 1 and 2.

Both end in a layer whose output feeds the softmax: Table 1/2 write "BN + Convolution/Fully Connected +
ReLU" on that row too, but the text says "except the last layer which uses a softmax activation", so the
last layer has no ReLU (a ReLU before the softmax would forbid negative logits). The models return logits
[N, 10]; the softmax is part of the loss (``ops.cross_entropy``, Eq. (53)–(54)).

Kernel weights (biases and BN parameters excluded), the paper's "Parameters" column of Table 3:
CNN 153 792, feed-forward 167 168.

``dtype`` is the compute dtype of every layer (``cnnlab.nn.layers``): ``make_model("cnn", dtype=jnp.bfloat16)``
(or ``CNN(dtype=jnp.bfloat16)``) runs the activations, matmuls and convolutions in bfloat16, with float32
parameters, batch-norm statistics and (in the loss) softmax; None (the default) runs in the input's dtype.
"""

import math
from typing import Any

import flax.linen as nn
import jax

from cnnlab.nn import BatchNorm, Conv, Dense, MaxPool, op

# Table 1: (layer, kernel size, stride, output channels); convolutions 3x3, stride 1, no padding.
CNN_LAYERS = (("BN + Convolution + ReLU", 3, 1, 64), ("BN + Convolution + ReLU", 3, 1, 64),
              ("Maxpooling", 2, 2, 64),
              ("BN + Convolution + ReLU", 3, 1, 64), ("BN + Convolution + ReLU", 3, 1, 64),
              ("BN + Convolution + ReLU", 3, 1, 64),
              ("Maxpooling", 2, 2, 64),
              ("BN + Convolution", 3, 1, 10))
# Table 2: (layer, hidden size).
MLP_LAYERS = tuple(("BN + Fully Connected + ReLU", 128) for _ in range(5)) + (("BN + Fully Connected", 10),)


class CNN(nn.Module):
    """Table 1. x: [N, 28, 28, 1] (or [N, 28, 28]) float -> logits [N, 10] in ``dtype``."""
    grad: str = "custom"
    impl: str = "auto"
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool):
        x = x.reshape(x.shape[0], 28, 28, 1)
        for layer, kernel, stride, channels in CNN_LAYERS:
            if layer == "Maxpooling":
                x = MaxPool(window=kernel, stride=stride, grad=self.grad)(x)
                continue
            x = BatchNorm(use_running_average=not train, grad=self.grad, dtype=self.dtype)(x)
            x = Conv(channels, kernel, stride=stride, grad=self.grad, impl=self.impl, dtype=self.dtype)(x)
            if layer.endswith("ReLU"):
                x = op("relu", self.grad)(x)
        return x.reshape(x.shape[0], -1)  # [N, 1, 1, 10] -> [N, 10]


class MLP(nn.Module):
    """Table 2, the feed-forward network. x: [N, 28, 28] or [N, 784] float -> logits [N, 10] in ``dtype``."""
    grad: str = "custom"
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool):
        x = x.reshape(x.shape[0], -1)
        for layer, hidden in MLP_LAYERS:
            x = BatchNorm(use_running_average=not train, grad=self.grad, dtype=self.dtype)(x)
            x = Dense(hidden, grad=self.grad, dtype=self.dtype)(x)
            if layer.endswith("ReLU"):
                x = op("relu", self.grad)(x)
        return x


MODELS = {"cnn": CNN, "mlp": MLP}


def make_model(name: str, grad: str = "custom", dtype=None) -> nn.Module:
    """The ``"cnn"`` (Table 1) or ``"mlp"`` (Table 2) model; ``dtype``: compute dtype (e.g. ``jnp.bfloat16``)."""
    if name not in MODELS:
        raise ValueError(f"make_model: model must be one of {sorted(MODELS)}, got {name!r}")
    return MODELS[name](grad=grad, dtype=dtype)


def layer_table(name: str) -> list[tuple]:
    """Rows ``(layer, kernel, stride, activation size, kernel weights)`` like Tables 1–2 (R = batch size);
    sizes follow Eq. (20)–(21) (convolution, no padding) and Eq. (28)–(29) (max pooling)."""
    if name == "cnn":
        rows, (c, h) = [("Input", "", "", "R x 1 x 28 x 28", 0)], (1, 28)
        for layer, k, s, channels in CNN_LAYERS:
            weights = 0 if layer == "Maxpooling" else k * k * c * channels
            h, c = (h - k) // s + 1, channels
            rows.append((layer, k, s, f"R x {c} x {h} x {h}", weights))
        rows.append(("Softmax", "", "", "R x 10", 0))
    elif name == "mlp":
        rows, d = [("Input", "", "", "R x 784", 0)], 784
        for layer, hidden in MLP_LAYERS:
            rows.append((layer, hidden, "", f"R x {hidden}", d * hidden))
            d = hidden
        rows.append(("Softmax", "", "", "R x 10", 0))
    else:
        raise ValueError(f"layer_table: model must be one of {sorted(MODELS)}, got {name!r}")
    return rows


def format_layer_table(name: str) -> str:
    rows = layer_table(name)
    size = "Kernel Size" if name == "cnn" else "Hidden Size"
    header = ("Layer", size, "Stride", "Activation Size", "Weights")
    table = [header] + [tuple(str(v) if v != 0 else "" for v in row) for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(5)]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in table]
    total = sum(row[-1] for row in rows)
    return "\n".join(lines + [f"Total kernel weights: {total}"])


def count_kernel_weights(params) -> int:
    """Kernel weights in a parameter tree (every leaf named "kernel"; biases and BN scale/bias excluded)."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    return sum(math.prod(v.shape) for path, v in leaves if getattr(path[-1], "key", None) == "kernel")
