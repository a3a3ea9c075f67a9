"""The user's own sequences: ``.npz`` arrays or UCR/UEA ``.ts`` files, checked, left-padded and standardised.

Every split becomes ``Sequences``: ``x: float32 [N, T, C]`` with each sequence's ``lengths[i]`` real steps at
the *end* (``x[i, T - lengths[i]:]``) and zeros before them (left padding), so the causal TCN reads its
prediction at step ``T - 1`` for every sequence and ``mask`` marks the real steps.

Inputs
- ``.npz``: ``x [N, T, C]`` (or ``[N, T]``, one channel) float, ``y [N]`` int, optional ``lengths [N]``
  (``x[i, :lengths[i]]`` are the real steps, whatever follows them is ignored), optional ``x_test``,
  ``y_test``, ``lengths_test``. Ragged data is one padded array plus ``lengths``, not an object array.
- ``.ts`` (UCR/UEA format, univariate or multivariate, equal or unequal lengths), read with aeon's
  ``load_from_ts_file`` (``pip install 'cnnlab[sequence]'``). ``NAME_TRAIN.ts`` brings ``NAME_TEST.ts``
  beside it as its test split.
"""

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from cnnlab.errors import CnnlabError


@dataclasses.dataclass(frozen=True)
class Sequences:
    """One split. x: float32 [N, T, C], left-padded; lengths: int32 [N]; y: labels [N] as read, or None."""
    x: np.ndarray
    lengths: np.ndarray
    y: np.ndarray | None

    @property
    def mask(self) -> np.ndarray:
        """float32 [N, T, 1]: 1 at the real steps, 0 at the left padding."""
        t = np.arange(self.x.shape[1])
        return (t[None, :] >= self.x.shape[1] - self.lengths[:, None]).astype(np.float32)[..., None]

    def take(self, indices) -> "Sequences":
        return Sequences(self.x[indices], self.lengths[indices], None if self.y is None else self.y[indices])


def left_pad(series, length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``[T_i, C]`` arrays -> (``x [N, T, C]`` with the steps at the end and zeros before, ``lengths [N]``)."""
    lengths = np.array([len(s) for s in series], np.int32)
    length = max(int(lengths.max()), length or 0)
    x = np.zeros((len(series), length, series[0].shape[1]), np.float32)
    for i, s in enumerate(series):
        x[i, length - len(s):] = s
    return x, lengths


def read(path, split: str = "train") -> Sequences | None:
    """The ``split`` ("train" or "test") of the data at ``path``; ``None`` if it has no test split.

    A ``.npz``'s "train" split is ``x``/``y``, its "test" split ``x_test``/``y_test``. A ``.ts`` file is its
    own "train" split; its "test" split is ``NAME_TEST.ts`` beside ``NAME_TRAIN.ts``.
    """
    path = Path(path)
    if not path.is_file():
        raise CnnlabError(f"sequence data {path} does not exist (give an .npz or a .ts file)")
    if path.suffix == ".npz":
        return _read_npz(path, split)
    if path.suffix == ".ts":
        if split == "test":
            if not path.name.endswith("_TRAIN.ts"):
                return None
            path = path.with_name(path.name[:-len("_TRAIN.ts")] + "_TEST.ts")
            if not path.is_file():
                return None
        return _read_ts(path)
    raise CnnlabError(f"sequence data {path}: unknown format {path.suffix!r}; give an .npz or a UCR/UEA .ts file")


def _check_finite(path, key, x, lengths) -> None:
    bad = ~np.isfinite(x) & (np.arange(x.shape[1])[None, :, None] >= x.shape[1] - lengths[:, None, None])
    if bad.any():
        i, t, c = np.argwhere(bad)[0]
        raise CnnlabError(f"{path}: {key} holds NaN or inf (example {i}, step {t - (x.shape[1] - lengths[i])}, "
                          f"channel {c}); fill or drop missing values first")


def _read_npz(path, split):
    keys = ("x", "y", "lengths") if split == "train" else ("x_test", "y_test", "lengths_test")
    with np.load(path) as f:
        if keys[0] not in f:
            if split == "train":
                raise CnnlabError(f"{path}: no array 'x' (expected x [N, T, C], y [N], optional lengths)")
            return None
        try:
            arrays = {k: f[k] for k in keys if k in f}
        except ValueError:
            raise CnnlabError(f"{path}: {'/'.join(k for k in keys if k in f)} include an object (ragged) array; "
                              f"save sequences of unequal length as one array x [N, T, C] padded at the end, with "
                              f"'{keys[2]}' [N] giving each sequence's length") from None
    x = arrays[keys[0]]
    if x.dtype.kind not in "fiu" or x.ndim not in (2, 3):
        raise CnnlabError(f"{path}: {keys[0]} must be a float array [N, T, C] or [N, T], got {x.dtype} {x.shape}")
    x = (x[..., None] if x.ndim == 2 else x).astype(np.float32)
    lengths = arrays.get(keys[2])
    if lengths is None:
        lengths = np.full(len(x), x.shape[1], np.int32)
    elif (lengths.shape != (len(x),) or lengths.dtype.kind not in "iu" or lengths.min(initial=1) < 1
          or lengths.max(initial=1) > x.shape[1]):
        raise CnnlabError(f"{path}: {keys[2]} must be {len(x)} ints in 1..{x.shape[1]}, "
                          f"got {lengths.dtype} {lengths.shape}")
    else:
        lengths = lengths.astype(np.int32)
        x, _ = left_pad([x[i, :n] for i, n in enumerate(lengths)], x.shape[1])
    _check_finite(path, keys[0], x, lengths)
    y = arrays.get(keys[1])
    if y is not None:
        y = integer_labels(y, f"{path}: {keys[1]}")
        if y.shape != (len(x),):
            raise CnnlabError(f"{path}: {keys[1]} must have shape ({len(x)},) like {keys[0]}, got {y.shape}")
    return Sequences(x, lengths, y)


def integer_labels(y, what: str) -> np.ndarray:
    """``y`` as int64, if it holds integers (an int array, or floats with integral values)."""
    y = np.asarray(y)
    if y.dtype.kind in "iu":
        return y.astype(np.int64)
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        return y.astype(np.int64)
    bad = y.ravel()
    if y.dtype.kind == "f":
        bad = bad[~(np.isfinite(bad) & (bad == np.round(bad)))]
    example = f" (e.g. {bad[0].item()!r})" if len(bad) else ""
    raise CnnlabError(f"{what} must hold integer class labels, got {y.dtype}{example}")


def _load_from_ts_file():
    try:
        from aeon.datasets import load_from_ts_file
    except ImportError:
        raise CnnlabError("reading .ts files needs aeon: pip install 'cnnlab[sequence]'") from None
    return load_from_ts_file


def _read_ts(path):
    load_from_ts_file = _load_from_ts_file()
    try:
        x, y = load_from_ts_file(str(path))
    except (ValueError, OSError, IndexError) as e:
        line = bad_ts_line(path)
        where = f"{path}:{line}" if line else str(path)
        reason = str(e).split(">. ", 1)[-1]  # aeon's OSError starts with the repr of the open file
        raise CnnlabError(f"{where}: not a valid .ts file ({reason})") from None
    series = [np.asarray(s, np.float32).T for s in x]  # aeon: [C, T_i] per case
    if not series:
        raise CnnlabError(f"{path}: no series after @data")
    x, lengths = left_pad(series)
    _check_finite(path, "a series", x, lengths)
    return Sequences(x, lengths, np.asarray(y) if y is not None and len(y) else None)


def bad_ts_line(path) -> int | None:
    """The 1-based number of the first data line of a .ts file that does not parse, if one can be found.

    aeon names the case, or only the value, that failed; this finds the line: values that are not numbers
    (``?`` and ``NaN`` are missing values) or a channel count unlike the first case's.
    """
    lines = Path(path).read_text(errors="replace").splitlines()
    start = next((i + 1 for i, s in enumerate(lines) if s.strip().lower() == "@data"), None)
    if start is None:
        return None
    labelled = any(s.strip().lower().startswith("@classlabel true") for s in lines[:start])
    channels = None
    for number, line in enumerate(lines[start:], start + 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        dims = parts[:-1] if labelled else parts
        try:
            [float(v) for d in dims for v in d.split(",") if v.strip() not in ("?", "")]
        except ValueError:
            return number
        if not dims or (channels is not None and len(dims) != channels):
            return number
        channels = len(dims)
    return None


TRANSFORMS = ("none", "signed_log")


def transform(x, name: str):
    """The pointwise transform of the raw inputs before standardising (``SequenceConfig.transform``):
    ``"signed_log"`` is ``sign(x) log(1 + |x|)``, for heavy-tailed data such as counts (Covid3Month_disc:
    81 % zeros, a few series in the thousands), whose large values would otherwise dominate the channel's
    statistics; it keeps zeros and signs. Pointwise, so left padding stays exact and streaming applies it to
    each step. NumPy arrays stay NumPy; JAX arrays (``stream_step``) stay JAX. Not in the paper (§6 reads
    MNIST pixels)."""
    if name == "none":
        return x
    xp = jnp if isinstance(x, jax.Array) else np
    return xp.sign(x) * xp.log1p(xp.abs(x))


def channel_stats(seqs: Sequences, transformed: str = "none") -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation ``[C]`` over the real steps of ``seqs`` (std 1 if constant),
    after ``transform(x, transformed)``."""
    x, mask = transform(seqs.x, transformed), seqs.mask
    count = mask.sum()
    mean = (x * mask).sum((0, 1)) / count
    std = np.sqrt((((x - mean) * mask) ** 2).sum((0, 1)) / count)
    return mean.astype(np.float32), np.where(std > 1e-8, std, 1.0).astype(np.float32)


def standardise(seqs: Sequences, mean, std, transformed: str = "none") -> np.ndarray:
    """``(transform(x) - mean) / std`` at the real steps, 0 at the padding: float32 [N, T, C]."""
    x = transform(seqs.x, transformed)
    return ((x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32) * seqs.mask).astype(np.float32)


def validation_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices): ``fraction`` of every class (at least one of each class that has
    two or more examples), drawn with ``seed``; stratified, so small sets keep every class on both sides."""
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        take = min(len(members) - 1, max(1, round(fraction * len(members)))) if fraction > 0 else 0
        val.extend(members[:take])
    val = np.sort(np.array(val, np.int64))
    return np.setdiff1d(np.arange(len(y)), val), val
