"""Content-addressed results: a point of a sweep is computed once, wherever it ran.

An *experiment* is a plain function of one parameter dict, registered under a stable name with
:func:`experiment`. It returns a result made of arrays and JSON-able numbers (nested dicts, lists
and tuples of them). A :class:`Store` keeps each result under a *key*, the SHA-256 of

- the experiment's name,
- the package code it runs (:func:`ntkbook.book.provenance.source_tree_hash`, the same hash that
  keys the chapter runs),
- the versions of the numerical packages and the hash of ``requirements.lock``
  (:func:`ntkbook.book.provenance.package_versions`),
- the canonical JSON of the parameters (sorted keys, no whitespace; ``3`` and ``3.0`` differ),

so a result is reused exactly where these four are unchanged. An entry is one file,
``<store>/<experiment>/<key>.npz``: the result's arrays and one JSON member with the result's
structure, the parameters and the provenance (commit, versions, device, host, wall time, time).
It is written to a temporary name and renamed into place (:mod:`ntkbook.atomic` on a local disk),
so a reader never sees a partial entry; two writers of one key leave one valid entry.

Where results live: ``$NTKBOOK_STORE`` or an explicit URL (any fsspec URL: a cluster file
system path, ``memory://``, an object store for which the fsspec backend is installed), else
``.ntkbook/store`` in the project that holds the imported package, else in the working directory.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import math
import os
import re
import secrets
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ntkbook.book import provenance as prov

__all__ = [
    "STORE_ENV",
    "DEFAULT_STORE_DIR",
    "NAME_ATTRIBUTE",
    "experiment",
    "get_experiment",
    "registered",
    "canonical_parameters",
    "code_fingerprint",
    "Entry",
    "EntryInfo",
    "Store",
    "StoreError",
]

#: Environment variable with the store's URL (overridden by ``--store URL``).
STORE_ENV = "NTKBOOK_STORE"
#: The default store, relative to the project root.
DEFAULT_STORE_DIR = ".ntkbook/store"
ENTRY_SUFFIX = ".npz"
_META = "entry.json"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_FORMAT = 1


class StoreError(ValueError):
    """Bad input to the store: an unknown experiment, parameters that are not JSON, a bad URL."""


# --------------------------------------------------------------------------- experiments


#: Attribute that :func:`experiment` sets on a registered function: its name.
NAME_ATTRIBUTE = "experiment_name"

_REGISTRY: dict[str, Callable[[dict[str, Any]], Any]] = {}


def experiment(name: str) -> Callable[[Callable], Callable]:
    """Register ``fn(parameters) -> result`` as the experiment ``name``; returns ``fn`` itself.

    ``name`` is lower case (letters, digits, ``_ . -``), e.g. ``"chemotaxis.cell"``; it is part
    of every key, so renaming an experiment makes its results unreachable. The function stays a
    plain module-level function, so Dask sends it to workers by reference.

    Raises:
        StoreError: a bad name, or the name is taken by another function.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise StoreError(
            f"experiment name {name!r} must be lower case letters, digits and _ . - "
            "(starting with a letter or digit)"
        )

    def register(fn: Callable) -> Callable:
        current = _REGISTRY.get(name)
        if current is not None and _qualified(current) != _qualified(fn):
            raise StoreError(f"experiment {name!r} is already registered by {_qualified(current)}")
        setattr(fn, NAME_ATTRIBUTE, name)
        _REGISTRY[name] = fn
        return fn

    return register


def _qualified(fn: Callable) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def registered() -> dict[str, Callable]:
    """The registered experiments by name (those whose modules have been imported)."""
    return dict(_REGISTRY)


def get_experiment(name: str) -> Callable:
    """The experiment function registered as ``name``.

    Raises:
        StoreError: ``name`` is not registered; the message lists the registered names.
    """
    if name in _REGISTRY:
        return _REGISTRY[name]
    known = ", ".join(sorted(_REGISTRY)) or "none"
    raise StoreError(f"no experiment registered as {name!r}; registered: {known}")


# --------------------------------------------------------------------------- keys


def canonical_parameters(parameters: Mapping[str, Any]) -> str:
    """The canonical JSON text of a parameter dict: sorted keys, no whitespace, tuples as lists.

    Raises:
        StoreError: ``parameters`` is not a dict with string keys, or holds a value JSON cannot
            write exactly (NaN or infinity, an array, an object); the message names it.
    """
    if not isinstance(parameters, Mapping):
        raise StoreError(f"parameters must be a dict, got {type(parameters).__name__}")
    _check_json(dict(parameters), "parameters")
    return prov.canonical_json(dict(parameters))


def _check_json(value: Any, where: str) -> None:
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise StoreError(f"{where} = {value!r} is not JSON-able (not finite)")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]")
        return
    if isinstance(value, Mapping):
        for name, item in value.items():
            if not isinstance(name, str):
                raise StoreError(f"{where} has a key {name!r} that is not a string")
            _check_json(item, f"{where}[{name!r}]")
        return
    raise StoreError(
        f"{where} = {value!r} is not JSON-able ({type(value).__name__}); use int, float, str, "
        "bool, None, lists and dicts"
    )


def code_fingerprint() -> dict[str, Any]:
    """What a key takes from the environment: the package code hash and the versions.

    Computed afresh at each call (it takes milliseconds), so an edit of the code between two
    sweeps gives new keys.
    """
    return {"code": prov.source_tree_hash(), "versions": prov.package_versions()}


def make_key(name: str, parameters: Mapping[str, Any], fingerprint: Mapping[str, Any]) -> str:
    """The key (64 hex digits) of experiment ``name`` at ``parameters`` under ``fingerprint``."""
    text = prov.canonical_json(
        {
            "experiment": name,
            "code": fingerprint["code"],
            "versions": fingerprint["versions"],
            "parameters": json.loads(canonical_parameters(parameters)),
        }
    )
    return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------- encoding


def _encode(value: Any, arrays: dict[str, np.ndarray], where: str) -> Any:
    """The JSON structure of a result; arrays go to ``arrays`` and are referenced by name."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for name, item in value.items():
            if not isinstance(name, str):
                raise StoreError(f"result {where} has a key {name!r} that is not a string")
            out[name] = _encode(item, arrays, f"{where}[{name!r}]")
        if "__array__" in out or "__tuple__" in out or "__float__" in out:
            raise StoreError(f"result {where} uses a reserved key (__array__/__tuple__/__float__)")
        return out
    if isinstance(value, np.ndarray | np.generic) or hasattr(value, "__array__"):
        array = np.asarray(value)
        if array.dtype == object:
            raise StoreError(f"result {where} is an object array, which cannot be stored")
        name = f"a{len(arrays)}"
        arrays[name] = array
        return {"__array__": name}
    raise StoreError(
        f"result {where} = {value!r} ({type(value).__name__}) is neither an array nor JSON"
    )


def _decode(value: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    if isinstance(value, dict):
        if set(value) == {"__array__"}:
            return arrays[value["__array__"]]
        if set(value) == {"__tuple__"}:
            return tuple(_decode(v, arrays) for v in value["__tuple__"])
        if set(value) == {"__float__"}:
            return float(value["__float__"])
        return {name: _decode(item, arrays) for name, item in value.items()}
    return value


def encode_entry(result: Any, meta: dict[str, Any]) -> bytes:
    """One entry's bytes: an uncompressed ``.npz`` of the arrays and a JSON member."""
    arrays: dict[str, np.ndarray] = {}
    structure = _encode(result, arrays, "")
    document = {"format": _FORMAT, "result": structure, **meta}
    text = json.dumps(document, sort_keys=True, allow_nan=False).encode()
    buffer = io.BytesIO()
    np.savez(buffer, **arrays, **{_META: np.frombuffer(text, dtype=np.uint8)})
    return buffer.getvalue()


def decode_meta(archive: Any) -> dict[str, Any]:
    return json.loads(archive[_META].tobytes().decode())


# --------------------------------------------------------------------------- entries


@dataclass(frozen=True)
class Entry:
    """A stored result: the result as the experiment returned it (arrays as NumPy) and its
    metadata (``experiment``, ``key``, ``parameters``, ``provenance``)."""

    key: str
    result: Any
    meta: dict[str, Any]

    @property
    def parameters(self) -> dict[str, Any]:
        return self.meta["parameters"]

    @property
    def provenance(self) -> dict[str, Any]:
        return self.meta["provenance"]


@dataclass(frozen=True)
class EntryInfo:
    """One entry as ``ntkbook store ls`` shows it (without loading its arrays)."""

    key: str
    experiment: str
    path: str
    size_bytes: int
    meta: dict[str, Any] | None  # None: the file cannot be read as an entry


def run_provenance() -> dict[str, Any]:
    """Provenance of the process that computes a point: host, device, commit, versions."""
    import jax

    root = prov.package_dir().parents[1]
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "jax_backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "git": prov.git_state(root) if (root / "pyproject.toml").is_file() else None,
        "versions": prov.package_versions(),
    }


def default_url() -> str:
    """``$NTKBOOK_STORE``, else ``<project>/.ntkbook/store`` (the checkout that holds the
    imported ``ntkbook``), else ``./.ntkbook/store``."""
    configured = os.environ.get(STORE_ENV)
    if configured:
        return configured
    root = prov.package_dir().parents[1]
    if (root / "pyproject.toml").is_file():
        return str(root / DEFAULT_STORE_DIR)
    return str(Path.cwd() / DEFAULT_STORE_DIR)


def _filesystem(url: str):
    import fsspec
    from fsspec.registry import known_implementations

    protocol = url.split("://", 1)[0] if "://" in url else "file"
    try:
        fs, root = fsspec.core.url_to_fs(url)
    except ImportError as err:
        package = known_implementations.get(protocol, {}).get("err") or str(err)
        raise StoreError(
            f"store URL {url!r} needs a package that is not installed: {package}"
        ) from None
    except ValueError as err:
        raise StoreError(f"store URL {url!r}: {err}") from None
    return fs, root.rstrip("/") or "/"


class Store:
    """A results store at ``url`` (default :func:`default_url`)."""

    def __init__(self, url: str | os.PathLike[str] | None = None) -> None:
        text = os.fspath(url) if url is not None else default_url()
        if not text:
            raise StoreError("store URL is empty")
        self.url = text
        self.fs, self.root = _filesystem(text)
        self.local = "file" in _protocols(self.fs)

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def __reduce__(self):
        return (Store, (self.url,))

    def path(self, name: str, key: str) -> str:
        return f"{self.root}/{name}/{key}{ENTRY_SUFFIX}"

    def contains(self, name: str, key: str) -> bool:
        return bool(self.fs.exists(self.path(name, key)))

    def put(self, name: str, key: str, result: Any, meta: dict[str, Any]) -> str:
        """Write an entry atomically and return its path; an existing entry is kept as it is
        (the same key means the same inputs, so the first valid result stands)."""
        target = self.path(name, key)
        if self.fs.exists(target):
            return target
        data = encode_entry(result, meta)
        if self.local:
            from ntkbook.atomic import write_bytes_atomic

            write_bytes_atomic(target, data)
            return target
        self.fs.makedirs(f"{self.root}/{name}", exist_ok=True)
        temporary = f"{self.root}/{name}/.{key}.{secrets.token_hex(4)}.tmp"
        self.fs.pipe_file(temporary, data)
        self.fs.mv(temporary, target)
        return target

    def get(self, name: str, key: str) -> Entry | None:
        """The entry of ``key``, or ``None`` when there is none."""
        try:
            data = self.fs.cat_file(self.path(name, key))
        except FileNotFoundError:
            return None
        return _read(key, data)

    def entries(self) -> Iterator[EntryInfo]:
        """Every entry, by experiment then key (metadata read, arrays not loaded)."""
        if not self.fs.exists(self.root):
            return
        for found in sorted(self.fs.find(self.root, detail=True).values(), key=_name):
            path = found["name"]
            base = path.rsplit("/", 1)[-1]
            if not base.endswith(ENTRY_SUFFIX) or base.startswith("."):
                continue
            key = base[: -len(ENTRY_SUFFIX)]
            experiment_name = path.rsplit("/", 2)[-2]
            try:
                with self.fs.open(path, "rb") as handle, np.load(handle) as archive:
                    meta = decode_meta(archive)
            except (OSError, ValueError, KeyError):
                meta = None
            yield EntryInfo(key, experiment_name, path, int(found.get("size") or 0), meta)

    def find(self, prefix: str) -> EntryInfo:
        """The one entry whose key starts with ``prefix``.

        Raises:
            StoreError: no entry or several entries match.
        """
        if not re.fullmatch(r"[0-9a-f]{4,64}", prefix or ""):
            raise StoreError(f"key {prefix!r} must be 4 to 64 hex digits")
        matches = [info for info in self.entries() if info.key.startswith(prefix)]
        if not matches:
            raise StoreError(f"no entry with key {prefix!r} in {self.url}")
        if len(matches) > 1:
            raise StoreError(f"key {prefix!r} matches {len(matches)} entries; give more digits")
        return matches[0]

    def load(self, info: EntryInfo) -> Entry:
        return _read(info.key, self.fs.cat_file(info.path))

    def remove(self, info: EntryInfo) -> None:
        self.fs.rm_file(info.path)

    def temporary_files(self) -> list[str]:
        """Temporary files of writers (``.<key>...tmp``) found in the store."""
        if not self.fs.exists(self.root):
            return []
        return sorted(
            path
            for path in self.fs.find(self.root)
            if path.rsplit("/", 1)[-1].startswith(".") and path.endswith(".tmp")
        )


def _name(found: dict[str, Any]) -> str:
    return found["name"]


def _protocols(fs) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def _read(key: str, data: bytes) -> Entry:
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        meta = decode_meta(archive)
        arrays = {name: archive[name] for name in archive.files if name != _META}
    result = _decode(meta.pop("result"), arrays)
    return Entry(key=key, result=result, meta=meta)


def now_utc() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
