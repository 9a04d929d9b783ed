"""Full MNIST and CIFAR-10 from their official archives, checksummed and cached.

Nothing in the smoke or book presets uses this module; the paper preset of a chapter can. An
archive is looked for in the cache directory first (argument, else ``$NTKBOOK_DATA_DIR``, else
``~/.cache/ntkbook``); if it is missing it is downloaded (unless ``download=False``), its SHA-256
checksum is verified BEFORE it is written, and it is moved into place atomically, so the cache
never holds a partial or unverified file. A cached file whose checksum does not match is an
error, never silently replaced. Without network access the error names the URL and the path to
fill by hand.

Checksums (SHA-256 of the archives as served): the MNIST values are those listed by many public
loaders for the four ``*-ubyte.gz`` files (e.g. the resources tables of torchvision-style
loaders and of TensorFlow's mirror ``storage.googleapis.com/cvdf-datasets/mnist``); the CIFAR-10
value is the ``file_hash`` that Keras's ``cifar10.load_data`` verifies for
``cifar-10-python.tar.gz`` (MD5 ``c58f30108f718f92721af3b95e74349a`` on the official page).

Formats: MNIST is IDX (big-endian header: two zero bytes, type code ``0x08`` for unsigned bytes,
the number of dimensions, one uint32 per dimension, then the data), gzip-compressed. CIFAR-10's
python version is a tar.gz of pickled dicts ``{b"data": uint8 (10000, 3072), b"labels": [...]}``
(channel-major rows: 1024 red, 1024 green, 1024 blue values of a 32×32 image); they are read
with an unpickler that admits only the numpy array constructors, after the checksum matched.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import tarfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from ntkbook.atomic import write_bytes_atomic
from ntkbook.data.datasets import Dataset

__all__ = [
    "MNIST_FILES",
    "CIFAR10_FILE",
    "ENV_VAR",
    "cache_dir",
    "fetch",
    "read_idx",
    "load_mnist",
    "load_cifar10",
]

ENV_VAR = "NTKBOOK_DATA_DIR"

MNIST_URLS = (
    "http://yann.lecun.com/exdb/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
#: file name -> SHA-256 of the gzip archive.
MNIST_FILES: dict[str, str] = {
    "train-images-idx3-ubyte.gz": (
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"
    ),
    "train-labels-idx1-ubyte.gz": (
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
    ),
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
#: (file name, SHA-256 of the archive).
CIFAR10_FILE: tuple[str, str] = (
    "cifar-10-python.tar.gz",
    "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
)

_TIMEOUT_SECONDS = 60


def cache_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder: ``path`` if given, else ``$NTKBOOK_DATA_DIR``, else
    ``~/.cache/ntkbook``."""
    if path is not None and str(path) != "":
        return Path(path).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return Path.home() / ".cache" / "ntkbook"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch(
    filename: str,
    urls: str | tuple[str, ...],
    sha256: str,
    directory: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
) -> bytes:
    """The verified bytes of ``filename``, from the cache or downloaded from ``urls`` in order.

    Raises ``ValueError`` when a cached or downloaded file's SHA-256 differs from ``sha256``
    (the cached file is left as it is, for inspection), and ``FileNotFoundError`` naming every
    URL and the cache path when the file is not cached and cannot be downloaded (or
    ``download=False``).
    """
    target = cache_dir(directory) / filename
    urls = (urls,) if isinstance(urls, str) else tuple(urls)
    if target.exists():
        data = target.read_bytes()
        digest = _sha256(data)
        if digest != sha256:
            raise ValueError(
                f"checksum mismatch for {target}: SHA-256 {digest}, expected {sha256}; the file "
                "is corrupt, truncated or a different version — delete it and fetch it again"
            )
        return data
    failures = []
    if download:
        for url in urls:
            try:
                with urllib.request.urlopen(url, timeout=_TIMEOUT_SECONDS) as response:
                    data = response.read()
            except (urllib.error.URLError, OSError) as error:
                failures.append(f"{url} ({error})")
                continue
            digest = _sha256(data)
            if digest != sha256:
                raise ValueError(
                    f"checksum mismatch for {filename} downloaded from {url}: SHA-256 {digest}, "
                    f"expected {sha256}; nothing was written to {target}"
                )
            write_bytes_atomic(target, data)
            return data
    how = "download=False" if not download else "download failed: " + "; ".join(failures)
    raise FileNotFoundError(
        f"{filename} is not in the cache and could not be fetched ({how}). Download it from "
        f"{' or '.join(urls)} and save it as {target} (or point {ENV_VAR} or the cache "
        "argument at a folder that holds it)"
    )


def read_idx(data: bytes, name: str = "IDX data") -> np.ndarray:
    """Parse an IDX file (already decompressed) into a numpy array; only unsigned bytes."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{name} is not an IDX file (bad magic number)")
    if data[2] != 0x08:
        raise ValueError(f"{name}: IDX type code {data[2]:#04x} is not 0x08 (unsigned byte)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise ValueError(f"{name}: truncated IDX header ({ndim} dimensions)")
    shape = tuple(int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise ValueError(
            f"{name}: IDX body holds {len(data) - header} bytes, shape {shape} needs {expected}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _gunzip(data: bytes, name: str) -> bytes:
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as error:
        raise ValueError(f"{name} is not a complete gzip file ({error})") from error


def load_mnist(
    directory: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    checksums: dict[str, str] | None = None,
) -> Dataset:
    """Full MNIST: 60,000 training and 10,000 test digits, 28×28 in ``[0, 1]``, labels int32.

    ``checksums`` replaces :data:`MNIST_FILES` (file name -> SHA-256), e.g. for a test archive.
    """
    checksums = MNIST_FILES if checksums is None else checksums
    arrays = {}
    for filename in MNIST_FILES:
        if filename not in checksums:
            raise ValueError(f"checksums lacks {filename}; it needs all of {list(MNIST_FILES)}")
        raw = fetch(
            filename,
            tuple(base + filename for base in MNIST_URLS),
            checksums[filename],
            directory,
            download=download,
        )
        arrays[filename] = read_idx(_gunzip(raw, filename), filename)
    split = {}
    for prefix in ("train", "t10k"):
        images = arrays[f"{prefix}-images-idx3-ubyte.gz"]
        labels = arrays[f"{prefix}-labels-idx1-ubyte.gz"]
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"MNIST {prefix}: images of shape {images.shape} do not match labels of shape "
                f"{labels.shape}"
            )
        if labels.max() > 9:
            raise ValueError(f"MNIST {prefix}: label {labels.max()} is not a digit")
        split[prefix] = (images.astype(np.float32) / 255.0, labels.astype(np.int32))
    return Dataset(
        name="mnist_full",
        x_train=split["train"][0],
        y_train=split["train"][1],
        x_test=split["t10k"][0],
        y_test=split["t10k"][1],
        n_classes=10,
        description=(
            f"full MNIST ({split['train'][0].shape[0]:,} training and "
            f"{split['t10k'][0].shape[0]:,} test digits), checksummed download"
        ),
    )


class _ArrayUnpickler(pickle.Unpickler):
    """Admits only what numpy arrays need: a pickle cannot run arbitrary code through it."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"CIFAR-10 batch refers to {module}.{name}, not allowed")


def _read_cifar_batch(archive: tarfile.TarFile, member: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        handle = archive.extractfile(f"cifar-10-batches-py/{member}")
    except KeyError:
        raise ValueError(f"CIFAR-10 archive lacks cifar-10-batches-py/{member}") from None
    try:
        batch = _ArrayUnpickler(io.BytesIO(handle.read()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
        raise ValueError(f"CIFAR-10 batch {member} cannot be read ({error})") from error
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ValueError(f"CIFAR-10 batch {member} lacks b'data' or b'labels'")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(
            f"CIFAR-10 batch {member}: data {data.dtype} {data.shape}, not uint8 (N, 3072)"
        )
    if labels.shape != (data.shape[0],) or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"CIFAR-10 batch {member}: labels do not match its {data.shape[0]} rows")
    # Rows are channel-major (R, G, B planes of 32×32); images are returned as (N, 32, 32, 3).
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels.astype(np.int32)


def load_cifar10(
    directory: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    sha256: str | None = None,
) -> Dataset:
    """CIFAR-10: 50,000 training and 10,000 test images ``(N, 32, 32, 3)`` in ``[0, 1]``.

    ``sha256`` replaces the archive checksum of :data:`CIFAR10_FILE`, e.g. for a test archive.
    """
    filename, expected = CIFAR10_FILE
    raw = fetch(filename, CIFAR10_URL, sha256 or expected, directory, download=download)
    try:
        archive = tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz")
        with archive:
            train = [_read_cifar_batch(archive, f"data_batch_{k}") for k in range(1, 6)]
            test = _read_cifar_batch(archive, "test_batch")
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        raise ValueError(f"{filename} is not a readable tar.gz archive ({error})") from error
    x_train = np.concatenate([images for images, _ in train]).astype(np.float32) / 255.0
    y_train = np.concatenate([labels for _, labels in train])
    return Dataset(
        name="cifar10",
        x_train=x_train,
        y_train=y_train,
        x_test=test[0].astype(np.float32) / 255.0,
        y_test=test[1],
        n_classes=10,
        description=(
            f"CIFAR-10 ({x_train.shape[0]:,} training and {test[0].shape[0]:,} test images of "
            "32×32×3), checksummed download"
        ),
    )
