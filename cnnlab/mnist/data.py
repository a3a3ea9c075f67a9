"""MNIST from the four standard IDX files, verified, split 55 000 / 5 000 / 10 000 as the paper (§4.1).

The paper (like the TensorFlow tutorial it follows) trains on the first 55 000 training images, picks the
model on the last 5 000 ("the weights which performed best on the validation set were picked", §4.3) and
reports accuracy on the untouched 10 000 test images.

Sources, in order: an explicit ``data_dir``, ``$CNNLAB_DATA_DIR/mnist``, the copy bundled with the package
(``cnnlab/mnist/data/``); tensorflow-datasets only when asked for (``source="tfds"``, needs TensorFlow and
the network). Nothing is downloaded implicitly.
"""

import gzip
import hashlib
from pathlib import Path

import numpy as np

from cnnlab.errors import CnnlabError
from cnnlab.paths import data_dir as _data_dir

BUNDLED_DIR = Path(__file__).parent / "data"
NUM_TRAIN = 55_000  # §4.1: 55 000 training images, the remaining 5 000 for validation
FILES = {  # name -> (IDX magic number, shape of the data, MD5 of the uncompressed bytes)
    "train-images-idx3-ubyte": (2051, (60_000, 28, 28), "6bbc9ace898e44ae57da46a324031adb"),
    "train-labels-idx1-ubyte": (2049, (60_000,), "a25bea736e30d166cdddb491f175f624"),
    "t10k-images-idx3-ubyte": (2051, (10_000, 28, 28), "2646ac647ad5339dbf082846283269ea"),
    "t10k-labels-idx1-ubyte": (2049, (10_000,), "27ae3e4e09519cfbb04c329615203637"),
}


def read_idx(path, magic: int, shape: tuple, md5: str | None = None) -> np.ndarray:
    """Read one IDX file (gzipped or not) of unsigned bytes, checking magic number, shape and MD5.

    Args:
      path: the ``.gz`` or uncompressed file.
      magic: the expected magic number (2049 labels, 2051 images).
      shape: the expected array shape, e.g. ``(60000, 28, 28)``.
      md5: the expected MD5 of the uncompressed bytes, or ``None`` to skip that check.
    Returns:
      ``uint8`` array of ``shape``.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:  # truncated or not really gzip
        raise CnnlabError(f"read_idx: cannot read {path}: {e}") from e
    header = 4 + 4 * len(shape)
    if len(raw) < header:
        raise CnnlabError(f"read_idx: {path} is truncated ({len(raw)} bytes, header needs {header})")
    found_magic = int.from_bytes(raw[:4], "big")
    if found_magic != magic:
        raise CnnlabError(f"read_idx: {path} has magic number {found_magic}, expected {magic}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(len(shape)))
    if dims != tuple(shape):
        raise CnnlabError(f"read_idx: {path} holds shape {dims}, expected {tuple(shape)}")
    if len(raw) != header + int(np.prod(shape)):
        raise CnnlabError(f"read_idx: {path} has {len(raw) - header} data bytes, expected {int(np.prod(shape))}")
    if md5 is not None and hashlib.md5(raw).hexdigest() != md5:
        raise CnnlabError(f"read_idx: {path} fails its checksum (MD5 of the uncompressed bytes is "
                          f"{hashlib.md5(raw).hexdigest()}, expected {md5}): the file is corrupt")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / (name + ".gz"), folder / name):
        if candidate.is_file():
            return candidate
    return None


def _candidate_dirs(data_dir) -> list[Path]:
    if data_dir is not None:
        return [Path(data_dir).expanduser()]  # an explicit folder is never silently replaced
    dirs = [_data_dir("mnist")]
    return [d for d in dirs if d is not None] + [BUNDLED_DIR]


def _split(train_x, train_y, test_x, test_y) -> dict:
    train_y, test_y = train_y.astype(np.int32), test_y.astype(np.int32)
    return {"train": (train_x[:NUM_TRAIN], train_y[:NUM_TRAIN]),
            "val": (train_x[NUM_TRAIN:], train_y[NUM_TRAIN:]),
            "test": (test_x, test_y)}


def _load_tfds() -> dict:
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise CnnlabError("load_mnist: source='tfds' needs tensorflow-datasets and TensorFlow "
                          "(pip install 'cnnlab[tfds]') and a network connection") from e
    arrays = tfds.as_numpy(tfds.load("mnist", batch_size=-1))
    (train_x, train_y), (test_x, test_y) = [(arrays[s]["image"][..., 0], arrays[s]["label"])
                                            for s in ("train", "test")]
    return _split(train_x, train_y, test_x, test_y)


def load_mnist(data_dir=None, source: str = "files") -> dict:
    """Load MNIST as ``{"train": (x, y), "val": (x, y), "test": (x, y)}``.

    ``x`` is ``uint8 [N, 28, 28]``, ``y`` is ``int32 [N]``, with N = 55 000 / 5 000 / 10 000.

    Args:
      data_dir: folder with the four IDX files (``.gz`` or uncompressed). Default: ``$CNNLAB_DATA_DIR/mnist``
        if present, else the bundled copy.
      source: ``"files"`` (the local IDX files) or ``"tfds"`` (tensorflow-datasets; online users only).
    Raises:
      FileNotFoundError: no folder holds all four files (the message lists where it looked).
      ValueError: a file is corrupt (bad magic number, size or checksum).
    """
    if source == "tfds":
        return _load_tfds()
    if source != "files":
        raise CnnlabError(f"load_mnist: source must be 'files' or 'tfds', got {source!r}")
    looked = _candidate_dirs(data_dir)
    for folder in looked:
        paths = {name: _find(folder, name) for name in FILES}
        if all(paths.values()):
            train_x, train_y, test_x, test_y = (read_idx(paths[name], *spec) for name, spec in FILES.items())
            return _split(train_x, train_y, test_x, test_y)
    raise FileNotFoundError(
        "load_mnist: the four MNIST IDX files (" + ", ".join(FILES) + ", optionally .gz) were not found; "
        "looked in: " + ", ".join(str(d) for d in looked)
        + ". Pass data_dir, set CNNLAB_DATA_DIR, or use source='tfds' when online.")
