"""MNIST loading: the 55 000 / 5 000 / 10 000 split of §4.1 and clear errors on missing or corrupt files."""

import gzip
import shutil

import numpy as np
import pytest

from cnnlab.mnist import data


@pytest.fixture(scope="module")
def mnist():
    return data.load_mnist(data.BUNDLED_DIR)


def test_load_mnist_split_sizes_dtypes_and_order(mnist):
    sizes = {k: (x.shape, y.shape, x.dtype, y.dtype) for k, (x, y) in mnist.items()}
    assert sizes == {"train": ((55_000, 28, 28), (55_000,), np.uint8, np.int32),
                     "val": ((5_000, 28, 28), (5_000,), np.uint8, np.int32),
                     "test": ((10_000, 28, 28), (10_000,), np.uint8, np.int32)}
    # Independent reference: the well-known first labels of the training and test files.
    assert mnist["train"][1][:5].tolist() == [5, 0, 4, 1, 9]
    assert mnist["test"][1][:5].tolist() == [7, 2, 1, 0, 4]
    assert np.bincount(mnist["test"][1]).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_load_mnist_reads_uncompressed_files(tmp_path, mnist):
    for name in data.FILES:
        with gzip.open(data.BUNDLED_DIR / (name + ".gz")) as src, open(tmp_path / name, "wb") as dst:
            shutil.copyfileobj(src, dst)
    loaded = data.load_mnist(tmp_path)
    np.testing.assert_array_equal(loaded["val"][0], mnist["val"][0])


def test_load_mnist_prefers_env_setting_then_bundled(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_DATA_DIR", str(tmp_path))
    (tmp_path / "mnist").mkdir()
    assert data.load_mnist()["test"][0].shape == (10_000, 28, 28)  # empty env folder: the bundled copy
    _copy_bundled(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip")
    with pytest.raises(ValueError, match=str(tmp_path / "mnist")):  # the env folder is read first
        data.load_mnist()


def test_load_mnist_missing_files_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="looked in: " + str(tmp_path)):
        data.load_mnist(tmp_path)


def _copy_bundled(tmp_path):
    for name in data.FILES:
        shutil.copy(data.BUNDLED_DIR / (name + ".gz"), tmp_path)


def test_load_mnist_rejects_corrupted_byte_by_checksum(tmp_path):
    _copy_bundled(tmp_path)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[100] = (raw[100] + 1) % 10  # still a valid label, so only the checksum can catch it
    path.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(ValueError, match="checksum"):
        data.load_mnist(tmp_path)


def test_load_mnist_rejects_truncated_gzip(tmp_path):
    _copy_bundled(tmp_path)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ValueError, match="cannot read"):
        data.load_mnist(tmp_path)


def test_read_idx_checks_magic_and_size(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes((2049).to_bytes(4, "big") + (3).to_bytes(4, "big") + bytes([1, 2, 3]))
    np.testing.assert_array_equal(data.read_idx(path, 2049, (3,)), [1, 2, 3])
    with pytest.raises(ValueError, match="magic number 2049, expected 2051"):
        data.read_idx(path, 2051, (3,))
    with pytest.raises(ValueError, match=r"shape \(3,\), expected \(4,\)"):
        data.read_idx(path, 2049, (4,))
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match="2 data bytes, expected 3"):
        data.read_idx(path, 2049, (3,))


def test_load_mnist_rejects_unknown_source():
    with pytest.raises(ValueError, match="load_mnist: source"):
        data.load_mnist(source="web")
