"""The download loader on small archives in the real formats, written here; nothing is fetched."""

import gzip
import hashlib
import io
import pickle
import tarfile

import numpy as np
import pytest

from ntkbook.data import download
from ntkbook.data.download import (
    ENV_VAR,
    MNIST_FILES,
    cache_dir,
    fetch,
    load_cifar10,
    load_mnist,
    read_idx,
)


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape
    )
    return header + array.astype(np.uint8).tobytes()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(download.urllib.request, "urlopen", refuse)


@pytest.fixture
def mnist_cache(tmp_path):
    """Four gzipped IDX files: 12 training and 5 test 28×28 images with labels."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (12, 28, 28)),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, 12),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (5, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, 5),
    }
    checksums = {}
    for name, array in arrays.items():
        data = gzip.compress(_idx(array))
        (tmp_path / name).write_bytes(data)
        checksums[name] = _sha(data)
    return tmp_path, arrays, checksums


def _cifar_archive(rng, rows=4):
    batches = {}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for member in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
            data = rng.integers(0, 256, (rows, 3072)).astype(np.uint8)
            labels = rng.integers(0, 10, rows).tolist()
            batches[member] = (data, labels)
            payload = pickle.dumps({b"data": data, b"labels": labels, b"batch_label": b"x"})
            info = tarfile.TarInfo(f"cifar-10-batches-py/{member}")
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    return buffer.getvalue(), batches


def test_read_idx_parses_header_and_rejects_bad_files():
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(read_idx(_idx(array)), array)
    with pytest.raises(ValueError, match="magic"):
        read_idx(b"\x01\x00\x08\x01" + _idx(array)[4:])
    with pytest.raises(ValueError, match="type code"):
        read_idx(b"\x00\x00\x0d" + _idx(array)[3:])
    with pytest.raises(ValueError, match="needs 24"):
        read_idx(_idx(array)[:-1])


def test_load_mnist_from_cache(mnist_cache):
    directory, arrays, checksums = mnist_cache
    data = load_mnist(directory, checksums=checksums, download=False)
    np.testing.assert_allclose(
        data.x_train, arrays["train-images-idx3-ubyte.gz"].astype(np.float32) / 255.0
    )
    np.testing.assert_array_equal(data.y_test, arrays["t10k-labels-idx1-ubyte.gz"])
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int32
    assert data.x_test.shape == (5, 28, 28) and data.n_classes == 10


def test_cache_directory_from_argument_then_environment(mnist_cache, monkeypatch):
    directory, _, checksums = mnist_cache
    monkeypatch.setenv(ENV_VAR, str(directory))
    assert cache_dir() == directory
    assert cache_dir(directory / "other") == directory / "other"
    assert load_mnist(checksums=checksums, download=False).x_train.shape == (12, 28, 28)


def test_checksum_mismatch_is_an_error_and_the_file_is_kept(mnist_cache):
    directory, _, checksums = mnist_cache
    wrong = dict(checksums, **{"t10k-labels-idx1-ubyte.gz": "0" * 64})
    before = (directory / "t10k-labels-idx1-ubyte.gz").read_bytes()
    with pytest.raises(ValueError, match="checksum mismatch.*t10k-labels"):
        load_mnist(directory, checksums=wrong, download=False)
    assert (directory / "t10k-labels-idx1-ubyte.gz").read_bytes() == before


def test_truncated_archive_is_a_clear_error(mnist_cache):
    directory, _, checksums = mnist_cache
    path = directory / "train-images-idx3-ubyte.gz"
    truncated = path.read_bytes()[:200]
    path.write_bytes(truncated)
    with pytest.raises(ValueError, match="not a complete gzip file"):
        load_mnist(directory, checksums=dict(checksums, **{path.name: _sha(truncated)}))


def test_missing_file_names_the_url_and_the_cache_path(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        load_mnist(tmp_path, download=False)
    message = str(error.value)
    assert (
        "https://storage.googleapis.com/cvdf-datasets/mnist/train-images-idx3-ubyte.gz" in message
    )
    assert str(tmp_path / "train-images-idx3-ubyte.gz") in message
    with pytest.raises(FileNotFoundError, match="network disabled"):
        load_cifar10(tmp_path)
    assert not list(tmp_path.iterdir())


def test_download_is_verified_before_it_is_written(tmp_path, monkeypatch):
    payload = b"archive bytes"

    class Response(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(download.urllib.request, "urlopen", lambda url, timeout: Response(payload))
    with pytest.raises(ValueError, match="nothing was written"):
        fetch("f.bin", "https://example.org/f.bin", "0" * 64, tmp_path)
    assert not (tmp_path / "f.bin").exists()
    assert fetch("f.bin", "https://example.org/f.bin", _sha(payload), tmp_path) == payload
    assert (tmp_path / "f.bin").read_bytes() == payload
    assert not [p for p in tmp_path.iterdir() if p.name != "f.bin"]  # no temporary left


def test_load_cifar10_from_cache(tmp_path):
    raw, batches = _cifar_archive(np.random.default_rng(1))
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(raw)
    data = load_cifar10(tmp_path, sha256=_sha(raw), download=False)
    assert data.x_train.shape == (20, 32, 32, 3) and data.x_test.shape == (4, 32, 32, 3)
    first, labels = batches["data_batch_1"]
    # Row layout: 1024 red, then green, then blue values; pixel (r, c) of channel k.
    assert data.x_train[0, 2, 5, 1] == pytest.approx(first[0, 1024 + 2 * 32 + 5] / 255.0)
    np.testing.assert_array_equal(data.y_train[:4], labels)
    np.testing.assert_array_equal(data.y_test, batches["test_batch"][1])


def test_cifar10_corrupt_archive_and_checksum_mismatch(tmp_path):
    raw, _ = _cifar_archive(np.random.default_rng(2))
    path = tmp_path / "cifar-10-python.tar.gz"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_cifar10(tmp_path, download=False)  # the official checksum, not this file's
    truncated = raw[: len(raw) // 2]
    path.write_bytes(truncated)
    with pytest.raises(ValueError, match="not a readable tar.gz|cannot be read"):
        load_cifar10(tmp_path, sha256=_sha(truncated))


def test_cifar10_batches_may_not_run_code(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        payload = pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [print]})
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))
    raw = buffer.getvalue()
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(raw)
    with pytest.raises(ValueError, match="not allowed"):
        load_cifar10(tmp_path, sha256=_sha(raw))


def test_official_checksums_are_sha256_hex():
    for digest in [*MNIST_FILES.values(), download.CIFAR10_FILE[1]]:
        assert len(digest) == 64 and int(digest, 16) >= 0
