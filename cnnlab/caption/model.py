"""Captioning models of §7.2: a ResNet-18 encoder and a TCN or GRU decoder, and the loss of Eq. (67).

The image's 512-d pooled ResNet-18 feature is the first input "word" (the start-of-string token); the
decoder then reads the embeddings (512-d) of the caption's words and predicts the next word at every step:

    inputs  = [feature, embed(w_1), ..., embed(w_{L-1})]      [N, L, 512]
    targets = [w_1, ..., w_{L-1} or <EOS>, <PAD>...]          [N, L]

Decoders (``decoder=``):
- ``"tcn"`` (§7.2.3): 18 Single residual blocks, kernel 2, dilation 1, 256 channels (``cnnlab.tcn``), then a
  projection to the vocabulary. At run time it reads one step at a time from ``cnnlab.tcn``'s streaming
  cache (``decode=True``).
- ``"gru"`` (§7.2.4): 3 GRU layers of 512; the feature is also every layer's initial hidden state, so the
  image stays in the recurrent memory for the whole caption.
- ``"tcn-concat"`` (§7.4's proposed fix): the TCN with the feature concatenated to the input at every
  step, because the plain TCN sees the image at one time step only.

``grad`` picks the backward of the encoder, the TCN and the output projection, all ``cnnlab.nn`` layers on
the paper's ops (``"custom"``: its equations, ``"autodiff"``: JAX's). The GRU cells and the word embedding
stay Flax's (``nn.GRUCell``, ``nn.Embed``): the paper derives no backward for them. ``dtype`` is the compute
dtype of all of them (``cnnlab.nn.layers``; Flax's ``dtype`` for the GRU and the embedding); the parameters
stay float32 and ``caption_loss`` is float32.
"""

from typing import Any

import jax.numpy as jnp
from flax import linen as nn

from cnnlab import ops
from cnnlab.caption.vocab import PAD_ID
from cnnlab.nn.layers import Dense
from cnnlab.nn.resnet import ResNet, normalize_imagenet
from cnnlab.tcn import TemporalConvNet

DECODERS = ("tcn", "gru", "tcn-concat")


class GRULayers(nn.Module):
    """One time step of stacked GRU cells: ``(hidden [N, layers, H], x_t [N, E]) -> (hidden, y_t [N, H])``."""
    hidden: int = 512
    layers: int = 3
    dtype: Any = None

    @nn.compact
    def __call__(self, hidden, x_t):
        new = []
        for i in range(self.layers):
            h, x_t = nn.GRUCell(self.hidden, dtype=self.dtype, name=f"cell{i}")(hidden[:, i], x_t)
            new.append(h)
        return jnp.stack(new, axis=1), x_t


# Scanned over time (axis 1) with shared parameters; the same module runs one step when T = 1.
ScanGRU = nn.scan(GRULayers, variable_broadcast="params", split_rngs={"params": False}, in_axes=1, out_axes=1)


class CaptionModel(nn.Module):
    """``images: uint8 [N, H, W, 3]``, ``tokens: int [N, L]`` -> next-word logits ``[N, L, vocab_size]``.

    encoder: a module ``x, train -> {..., "pooled": [N, 512]}`` on ImageNet-normalised images, like
        ``cnnlab.nn.resnet.ResNet``; ``None`` is ``ResNet(depth=18, grad=grad)`` (tests pass a small one,
        which brings its own ``grad``).
    grad: ``"custom"`` | ``"autodiff"``, the backward of the default encoder, the TCN and the projection.
    """
    vocab_size: int
    decoder: str = "tcn"
    encoder: nn.Module | None = None
    embed_dim: int = 512  # §7.2.3 / §7.2.4: word embeddings of 512
    # §7.2.3: 18 Single blocks (36 convolutions), kernel 2, dilation 1. Eq. (66) gives a receptive field of 37
    # steps (cnnlab.tcn.tcn_receptive_field); the paper states 39.
    tcn_blocks: int = 18
    tcn_channels: int = 256
    tcn_kernel: int = 2
    gru_hidden: int = 512  # §7.2.4: 3 hidden layers of 512
    gru_layers: int = 3
    dropout: float = 0.0  # §7 gives no dropout rate for captioning
    grad: str = "custom"
    dtype: Any = None

    def setup(self):
        if self.decoder not in DECODERS:
            raise ValueError(f"CaptionModel: decoder must be one of {DECODERS}, got {self.decoder!r}")
        dt = self.dtype
        self.image_encoder = ResNet(depth=18, grad=self.grad, dtype=dt) if self.encoder is None else self.encoder
        self.embed = nn.Embed(self.vocab_size, self.embed_dim, dtype=dt)
        if self.decoder == "gru":
            self.gru = ScanGRU(self.gru_hidden, self.gru_layers, dt)
        else:
            self.tcn = TemporalConvNet(block="single", num_blocks=self.tcn_blocks, channels=self.tcn_channels,
                                       kernel_size=self.tcn_kernel, dilation=(1,) * self.tcn_blocks,
                                       dropout=self.dropout, grad=self.grad, dtype=dt)
        self.head = Dense(self.vocab_size, grad=self.grad, dtype=dt)

    def features(self, images, train: bool = False):
        """``images: uint8 [N, H, W, 3]`` -> pooled feature ``[N, 512]``, the start-of-string token."""
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"CaptionModel: images must be [N, H, W, 3], got shape {images.shape}")
        x = normalize_imagenet(images.astype(jnp.result_type(float)) / 255.0)  # float32 unless x64 is on
        feature = self.image_encoder(x, train=train)["pooled"]
        if feature.shape[-1] != self.embed_dim:
            raise ValueError(f"CaptionModel: encoder feature {feature.shape} must have embed_dim "
                             f"{self.embed_dim} channels: it is fed as the first word")
        return feature

    def initial_state(self, feature):
        """Decoder state before the first step: the GRU's hidden ``[N, layers, H]`` (feature, §7.2.4)."""
        if self.decoder != "gru":
            return jnp.zeros((feature.shape[0], 0), feature.dtype)  # the TCN's lives in the "cache" collection
        if self.gru_hidden != feature.shape[-1]:
            raise ValueError(f"CaptionModel: gru_hidden {self.gru_hidden} must equal the feature size "
                             f"{feature.shape[-1]} (the feature is the initial hidden state)")
        return jnp.broadcast_to(feature[:, None], (feature.shape[0], self.gru_layers, feature.shape[1]))

    def embed_tokens(self, tokens):
        return self.embed(tokens)

    def decode(self, x, feature, state, *, train: bool = False, decode: bool = False):
        """Decoder on inputs ``x: [N, T, E]`` -> (logits ``[N, T, V]``, state).

        ``decode=True`` runs one step (``T = 1``) from the state / streaming cache left by the previous one.
        """
        if self.decoder == "gru":
            state, h = self.gru(state, x)
        else:
            if self.decoder == "tcn-concat":
                x = jnp.concatenate([x, jnp.broadcast_to(feature[:, None], (*x.shape[:2], feature.shape[-1]))], -1)
            h = self.tcn(x, train=train, decode=decode)
        return self.head(h), state

    def __call__(self, images, tokens, *, train: bool = False):
        """Teacher-forced logits ``[N, L, V]``: step ``t`` predicts ``tokens[:, t]`` from the feature and
        ``tokens[:, :t]``."""
        if tokens.ndim != 2 or tokens.shape[0] != images.shape[0]:
            raise ValueError(f"CaptionModel: tokens must be [N, L] with N = {images.shape[0]} images, "
                             f"got shape {tokens.shape}")
        feature = self.features(images, train=train)
        x = jnp.concatenate([feature[:, None], self.embed(tokens[:, :-1])], axis=1)
        logits, _ = self.decode(x, feature, self.initial_state(feature), train=train)
        return logits


def caption_loss(logits, tokens):
    """Eq. (67) as a per-caption loss ``[N]`` whose batch mean is the cross-entropy averaged over ``S``.

    ``S`` is every predicted word of the batch (padding excluded), so caption ``i`` contributes
    ``N * sum_t ce[i, t] / |S|``: long captions weigh more, as in Eq. (67), and the engine's mean over the
    batch gives exactly ``-(1/|S|) sum_S p log p_hat``.
    logits: ``[N, L, V]``; tokens: int ``[N, L]`` targets, ``<PAD>`` (id 0) masked out.
    """
    if logits.ndim != 3 or logits.shape[:2] != tokens.shape:
        raise ValueError(f"caption_loss: logits [N, L, V] {logits.shape} and tokens [N, L] {tokens.shape} "
                         "must agree on [N, L]")
    mask = (tokens != PAD_ID).astype(jnp.float32)  # float32 under either precision: the counts exceed bf16's 256
    ce = ops.cross_entropy(logits, tokens) * mask
    return tokens.shape[0] * jnp.sum(ce, axis=1) / jnp.maximum(jnp.sum(mask), 1.0)
