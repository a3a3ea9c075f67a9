"""Caption generation (§7.2.3, §7.2.4): greedy decoding and beam search.

Decoding starts from the image feature as the first input and feeds back the embedding of each chosen
word until ``<EOS>`` or ``max_length`` words. §7.2.1: "if <UKN> were to be picked, it is replaced by the
word prediction with the second highest probability" -- the same as never picking it, which is what the
mask below does (``<PAD>`` is never a target either, so it is masked too).

``incremental=True`` (default) runs the decoder one step at a time from its state: the GRU's hidden
state, or for the TCN ``cnnlab.tcn``'s streaming cache (each layer keeps its last ``d(k-1)`` inputs), so a
step costs ``O(layers)``. ``incremental=False`` re-runs the whole (causal) sequence at every step, ``O(t *
layers)`` per step: the reference the streaming cache must match, and the slow way it replaces.
"""

import functools

import jax
import jax.numpy as jnp

from cnnlab.caption.model import CaptionModel
from cnnlab.caption.vocab import EOS_ID, PAD_ID, UKN_ID

_NEG = -1e30  # a log-probability no word can win with (finite, so beam sums never give inf - inf)


def _allowed(logits):
    """Log-probabilities ``[..., V]`` with ``<UKN>`` and ``<PAD>`` excluded from the choice (§7.2.1)."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    return logp.at[..., UKN_ID].set(_NEG).at[..., PAD_ID].set(_NEG)


def _start(model, variables, images):
    """Image feature ``[N, E]`` and the decoder's initial state (hidden / empty streaming cache)."""
    feature = model.apply(variables, images, method=CaptionModel.features)
    state = model.apply(variables, feature, method=CaptionModel.initial_state)
    # Applying a decode step to a stored-nothing model only creates the cache (zeros = the left padding).
    _, created = model.apply(variables, feature[:, None], feature, state, decode=True,
                             method=CaptionModel.decode, mutable=["cache"])
    return feature, state, created.get("cache", {})


def _step(model, variables, cache, x_t, feature, state):
    """One incremental step: ``x_t: [N, E]`` -> (logits ``[N, V]``, state, cache)."""
    (logits, state), new = model.apply({**variables, "cache": cache}, x_t[:, None], feature, state,
                                       decode=True, method=CaptionModel.decode, mutable=["cache"])
    return logits[:, 0], state, new.get("cache", {})


def _embed(model, variables, tokens):
    return model.apply(variables, tokens, method=CaptionModel.embed_tokens)


def _check(images, max_length):
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"decode: images must be uint8 [N, H, W, 3], got shape {images.shape}")
    if max_length < 1:
        raise ValueError(f"decode: max_length must be >= 1, got {max_length}")


@functools.partial(jax.jit, static_argnames=("model", "max_length", "incremental"))
def greedy(model, variables, images, *, max_length: int = 20, incremental: bool = True):
    """Most probable word at each step; tokens ``[N, max_length]``, ``<PAD>`` after ``<EOS>``.

    variables: ``{"params", "batch_stats"}`` of ``model`` (a ``CaptionModel``); images: uint8 ``[N, H, W, 3]``.
    """
    _check(images, max_length)
    feature, state, cache = _start(model, variables, images)
    n = images.shape[0]
    done = jnp.zeros((n,), bool)
    if incremental:
        def body(carry, _):
            x_t, state, cache, done = carry
            logits, state, cache = _step(model, variables, cache, x_t, feature, state)
            token = jnp.where(done, PAD_ID, jnp.argmax(_allowed(logits), axis=-1))
            return (_embed(model, variables, token), state, cache, done | (token == EOS_ID)), token

        _, tokens = jax.lax.scan(body, (feature, state, cache, done), None, length=max_length)
        return tokens.T

    # Re-run: a fixed [N, max_length, E] input buffer; causality makes step t's output ignore the later
    # (still zero) slots, so one compiled shape serves every step.
    def body(carry, t):
        x, done = carry
        logits, _ = model.apply(variables, x, feature, state, method=CaptionModel.decode)
        token = jnp.where(done, PAD_ID, jnp.argmax(_allowed(logits[:, t]), axis=-1))
        x = jax.lax.dynamic_update_slice_in_dim(x, _embed(model, variables, token)[:, None], t + 1, axis=1)
        return (x, done | (token == EOS_ID)), token

    x = jnp.zeros((n, max_length + 1, feature.shape[-1]), feature.dtype).at[:, 0].set(feature)
    _, tokens = jax.lax.scan(body, (x, done), jnp.arange(max_length))
    return tokens.T


@functools.partial(jax.jit, static_argnames=("model", "max_length", "width", "length_penalty"))
def beam_search(model, variables, images, *, width: int = 3, max_length: int = 20, length_penalty: float = 0.0):
    """The ``width`` most probable partial captions kept at each step; the best finished one per image.

    Beams are ranked by summed log-probabilities, so ``width=1`` is exactly ``greedy``. Summed
    log-probabilities favour short captions; ``length_penalty`` = alpha picks the final caption by
    ``score / length**alpha`` instead (GNMT's normalisation; 0 = none). Returns tokens ``[N, max_length]``.
    """
    _check(images, max_length)
    if width < 1:
        raise ValueError(f"beam_search: width must be >= 1, got {width}")
    feature, state, cache = _start(model, variables, jnp.repeat(images, width, axis=0))  # [N*W, ...]
    n = images.shape[0]
    scores = jnp.tile(jnp.array([0.0] + [_NEG] * (width - 1)), (n, 1))  # all beams start equal: keep one
    tokens = jnp.zeros((n, width, max_length), jnp.int32)
    done = jnp.zeros((n, width), bool)
    # A finished caption can only be extended by <PAD>, at no cost, so it keeps its score.
    finished = jnp.full((model.vocab_size,), _NEG).at[PAD_ID].set(0.0)

    def body(carry, t):
        x_t, state, cache, scores, tokens, done = carry
        logits, state, cache = _step(model, variables, cache, x_t, feature, state)
        logp = _allowed(logits).reshape(n, width, -1)
        logp = jnp.where(done[..., None], finished, logp)
        total = (scores[..., None] + logp).reshape(n, -1)  # [N, W*V]
        scores, best = jax.lax.top_k(total, width)
        beam, token = best // model.vocab_size, best % model.vocab_size
        rows = (jnp.arange(n)[:, None] * width + beam).reshape(-1)
        state, cache = jax.tree.map(lambda a: a[rows] if a.ndim else a, (state, cache))
        tokens = jnp.take_along_axis(tokens, beam[..., None], axis=1).at[:, :, t].set(token)
        done = jnp.take_along_axis(done, beam, axis=1) | (token == EOS_ID) | (token == PAD_ID)
        x_t = _embed(model, variables, token.reshape(-1))
        return (x_t, state, cache, scores, tokens, done), None

    carry = (feature, state, cache, scores, tokens, done)
    (_, _, _, scores, tokens, _), _ = jax.lax.scan(body, carry, jnp.arange(max_length))
    lengths = jnp.sum(tokens != PAD_ID, axis=-1)  # words + <EOS>
    scores = scores / jnp.maximum(lengths, 1) ** length_penalty
    return jnp.take_along_axis(tokens, jnp.argmax(scores, axis=1)[:, None, None], axis=1)[:, 0]
