"""Captioning models: the masked loss of Eq. (67), and decoding checked against teacher-forced runs.

A small image encoder and small widths keep compiles short; the decoders are the real ones. Parameters
are drawn here from shapes alone (``jax.eval_shape``: Flax's ``init`` compiles for seconds) and larger
than usual, so that untrained models still emit varied, image-dependent words.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from cnnlab.caption import decode
from cnnlab.caption.model import CaptionModel, caption_loss
from cnnlab.caption.vocab import EOS_ID, PAD_ID, UKN_ID

VOCAB = 7  # <PAD>, <EOS>, <UKN> and four words


class TinyEncoder(nn.Module):
    """Stands in for ResNet-18: ``images -> {"pooled": [N, features]}``."""
    features: int = 16

    @nn.compact
    def __call__(self, x, train=False):
        h = nn.relu(nn.Conv(4, (3, 3), strides=2)(x))
        return {"conv2": h, "pooled": nn.Dense(self.features)(h.mean((1, 2)))}


def _model(decoder):
    return CaptionModel(vocab_size=VOCAB, decoder=decoder, encoder=TinyEncoder(), embed_dim=16,
                        tcn_blocks=3, tcn_channels=8, gru_hidden=16, gru_layers=2)


@pytest.fixture(scope="module", params=["tcn", "gru", "tcn-concat"])
def setup(request):
    model = _model(request.param)
    rng = np.random.default_rng(0)
    # Flat colours (plus noise) differ after pooling; pure noise images would all pool to the same feature.
    colours = rng.integers(0, 256, (4, 1, 1, 3)) + rng.integers(-20, 20, (4, 12, 12, 3))
    images = jnp.asarray(np.clip(colours, 0, 255), jnp.uint8)
    shapes = jax.eval_shape(model.init, jax.random.key(1), images, jnp.zeros((4, 5), jnp.int32))
    # Weights of ~2/sqrt(fan_in) make the decoder's choices depend on the image and the previous words.
    leaves, tree = jax.tree.flatten(shapes)
    values = [rng.normal(size=a.shape) * (2.0 / np.sqrt(np.prod(a.shape[:-1])) if len(a.shape) > 1 else 0.5)
              for a in leaves]
    variables = jax.tree.unflatten(tree, [jnp.asarray(v, jnp.float32) for v in values])
    return model, variables, images


def _teacher_forced_logp(model, variables, images, tokens):
    """log p(tokens | image) summed over the words up to <EOS>, from one full teacher-forced run."""
    logits = jax.jit(model.apply)(variables, images, tokens)
    logp = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(logp, tokens[..., None], axis=-1)[..., 0]
    return jnp.sum(jnp.where(tokens != PAD_ID, picked, 0.0), axis=-1)


def test_caption_loss_averages_over_unpadded_words_only():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 4, VOCAB)).astype(np.float32)
    tokens = np.array([[3, 4, EOS_ID, PAD_ID], [5, EOS_ID, PAD_ID, PAD_ID]])
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    words = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    expected = -np.mean([logp[i, t, tokens[i, t]] for i, t in words])
    per_caption = caption_loss(jnp.asarray(logits), jnp.asarray(tokens))
    assert per_caption.shape == (2,) and float(per_caption.mean()) == pytest.approx(expected, rel=1e-6)
    logits[0, 3] += 100.0  # padding positions do not count
    logits[1, 2:] = rng.normal(size=(2, VOCAB))
    assert float(caption_loss(jnp.asarray(logits), jnp.asarray(tokens)).mean()) == pytest.approx(expected, rel=1e-6)


def test_greedy_picks_teacher_forced_argmax_without_ukn(setup):
    model, variables, images = setup
    tokens = decode.greedy(model, variables, images, max_length=6)
    # Feeding the decoded caption back teacher-forced, each word must be that step's best word other
    # than <UKN>/<PAD>, up to <EOS>, with padding after it.
    logits = np.array(jax.jit(model.apply)(variables, images, tokens))
    logits[..., [UKN_ID, PAD_ID]] = -np.inf
    for i, row in enumerate(np.asarray(tokens)):
        ended = False
        for t, tok in enumerate(row):
            assert tok == (PAD_ID if ended else logits[i, t].argmax())
            ended = ended or tok == EOS_ID
    assert len({tuple(r) for r in np.asarray(tokens)}) > 1, "decoder too uniform for a meaningful test"


def test_incremental_decoding_equals_full_rerun(setup):
    model, variables, images = setup
    fast = decode.greedy(model, variables, images, max_length=6, incremental=True)
    slow = decode.greedy(model, variables, images, max_length=6, incremental=False)
    np.testing.assert_array_equal(np.asarray(fast), np.asarray(slow))


def test_beam_width_one_equals_greedy(setup):
    model, variables, images = setup
    np.testing.assert_array_equal(np.asarray(decode.beam_search(model, variables, images, width=1, max_length=6)),
                                  np.asarray(decode.greedy(model, variables, images, max_length=6)))


def test_exhaustive_beam_finds_most_probable_caption(setup):
    model, variables, images = setup
    length = 3
    words = [EOS_ID] + list(range(3, VOCAB))
    candidates = set()
    for seq in itertools.product(words, repeat=length):  # every caption, <PAD> after <EOS>
        seq = list(seq)
        if EOS_ID in seq:
            seq = seq[:seq.index(EOS_ID) + 1]
        candidates.add(tuple(seq + [PAD_ID] * (length - len(seq))))
    candidates = sorted(candidates)
    found = np.asarray(decode.beam_search(model, variables, images, width=len(candidates), max_length=length))
    n, c = images.shape[0], len(candidates)
    logp = _teacher_forced_logp(model, variables, jnp.repeat(images, c, axis=0),
                                jnp.tile(jnp.asarray(candidates, jnp.int32), (n, 1)))
    best = np.asarray(jnp.argmax(logp.reshape(n, c), axis=1))
    assert [tuple(r) for r in found] == [candidates[b] for b in best]


def test_caption_model_rejects_bad_shapes(setup):
    model, variables, images = setup
    with pytest.raises(ValueError, match="tokens must be"):
        model.apply(variables, images, jnp.zeros((3, 5), jnp.int32))
    with pytest.raises(ValueError, match="images must be"):
        decode.greedy(model, variables, images[..., 0], max_length=3)
    with pytest.raises(ValueError, match="decoder must be one of"):
        jax.eval_shape(_model("lstm").init, jax.random.key(0), images, jnp.zeros((4, 5), jnp.int32))
