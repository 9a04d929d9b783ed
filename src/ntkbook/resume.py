"""Settings keys for resumable state: a resumed file must have been made by the same settings.

Kernel records (:class:`ntkbook.ntk.KernelRecorder`) and training checkpoints
(:func:`ntkbook.train.train`) are resumed from disk. Each carries the *settings* that produced it,
a flat ``{name: value}`` dict of JSON values, and their hash; a resume compares the stored settings
with the current ones and refuses, naming every setting that differs.

Most settings are compared exactly (sizes, fingerprints of data, names). A few describe floating
point state through a :func:`signature`, ``{"signature": [...]}``: a short vector of norms and
fixed random projections. Signatures are compared with the relative tolerance :data:`RTOL`, so
that the round-off of a different reduction order does not count as "other settings", while a
different learning rate, initialisation or model function does.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "RTOL",
    "fingerprint",
    "signature",
    "params_signature",
    "structure",
    "optimizer_signature",
    "key_fingerprint",
    "callable_name",
    "settings_hash",
    "differences",
]

#: Relative tolerance of a signature comparison (of the vector's norm).
RTOL = 1e-3
#: Optimizer steps at which :func:`optimizer_signature` probes the update (schedules change
#: with the step).
PROBE_STEPS = (0, 1, 100, 10_000)


def fingerprint(array: Any) -> str:
    """First 16 hex digits of the SHA-256 of an array's bytes, shape and dtype."""
    data = np.ascontiguousarray(np.asarray(array))
    digest = hashlib.sha256(data.tobytes())
    digest.update(str((data.shape, data.dtype.str)).encode())
    return digest.hexdigest()[:16]


_PER_ARRAY = 3


@functools.lru_cache(maxsize=64)
def _projections(size: int) -> np.ndarray:
    """Two fixed ±1 vectors of length ``size`` (the same in every process)."""
    return np.random.default_rng(size).choice([-1.0, 1.0], size=(2, size))


def signature(*arrays: Any) -> dict[str, list[float]]:
    """``{"signature": [‖a‖, ⟨a, r₁⟩, ⟨a, r₂⟩, ...]}`` for each array ``a`` (float64; ``r`` fixed
    ±1 vectors): a change of ``a`` by ``δ`` moves the projections by about ``‖δ‖``."""
    values: list[float] = []  # _PER_ARRAY numbers per array
    for array in arrays:
        flat = np.asarray(array, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(flat)):
            flat = np.nan_to_num(flat, nan=0.0, posinf=0.0, neginf=0.0)
        values.append(float(np.linalg.norm(flat)))
        values.extend(float(v) for v in _projections(flat.size) @ flat)
    return {"signature": values}


def params_signature(params: Any) -> dict[str, list[float]]:
    """:func:`signature` of every leaf of a parameter pytree."""
    return signature(*jax.tree_util.tree_leaves(params))


def _dtype(leaf: Any) -> np.dtype:
    return leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype


def structure(tree: Any) -> str:
    """The pytree's paths with their shapes and dtypes, one ``path shape dtype`` per leaf."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return "; ".join(
        f"{jax.tree_util.keystr(path) or '<root>'} {tuple(np.shape(leaf))} {_dtype(leaf)}"
        for path, leaf in leaves
    )


def _with_count(state: Any, step: int) -> Any:
    """``state`` with every integer scalar (optax's step counters) set to ``step``."""

    def replace(leaf):
        if (
            hasattr(leaf, "dtype")
            and np.ndim(leaf) == 0
            and jnp.issubdtype(leaf.dtype, jnp.integer)
        ):
            return jnp.asarray(step, dtype=leaf.dtype)
        return leaf

    return jax.tree_util.tree_map(replace, state)


def optimizer_signature(optimizer: Any, params: Any) -> dict[str, Any]:
    """What the optimizer does: :func:`signature` of its update for a fixed gradient at the steps
    :data:`PROBE_STEPS` and for a zero gradient (which shows weight decay apart from Adam's
    normalised step), plus the structure of its state.

    Two optimizers with a different learning rate, schedule, momentum or weight decay give
    different updates; optax transformations cannot be compared otherwise (they are closures).
    An optimizer whose ``update`` needs more arguments is described by its state alone.
    """
    state = optimizer.init(params)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    gradient = jax.tree_util.tree_unflatten(
        treedef,
        [
            jnp.asarray(
                np.cos(np.arange(np.size(leaf)) * 0.7 + k).reshape(np.shape(leaf)),
                dtype=leaf.dtype,
            )
            for k, leaf in enumerate(leaves)
        ],
    )
    values: list[float] = []
    try:
        zero = jax.tree_util.tree_map(jnp.zeros_like, gradient)
        probes = [(gradient, step) for step in PROBE_STEPS] + [(zero, 100)]
        for probe, step in probes:
            updates, _ = optimizer.update(probe, _with_count(state, step), params)
            values.extend(params_signature(updates)["signature"])
    except Exception:  # noqa: BLE001 - an exotic optimizer: fall back to its state's structure
        values = []
    return {"state": structure(state), "updates": {"signature": values}}


def key_fingerprint(key: jax.Array) -> str:
    """:func:`fingerprint` of a ``jax.random`` key's data (typed or raw ``uint32`` keys)."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return fingerprint(key)


def callable_name(fn: Callable) -> str:
    """``module.qualname`` of a function (through ``functools.partial``), for the settings."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    module = getattr(fn, "__module__", None) or ""
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}.{name}" if module else name


def _rounded(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"signature"}:
        return {"signature": [float(f"{v:.2g}") for v in value["signature"]]}
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def settings_hash(settings: dict[str, Any]) -> str:
    """``sha256:<hex>`` of the settings as canonical JSON (signatures rounded to 2 digits)."""
    text = json.dumps(_rounded(settings), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _signature_close(a: list[float], b: list[float]) -> bool:
    """Each array's ``[norm, projections]`` within :data:`RTOL` of its norm."""
    if len(a) != len(b):
        return False
    for start in range(0, len(a), _PER_ARRAY):
        block_a, block_b = a[start : start + _PER_ARRAY], b[start : start + _PER_ARRAY]
        distance = math.dist(block_a, block_b)
        if distance > RTOL * max(abs(block_a[0]), abs(block_b[0])):
            return False
    return True


def _same(stored: Any, current: Any) -> bool:
    if isinstance(stored, dict) and isinstance(current, dict):
        if set(stored) == {"signature"} and set(current) == {"signature"}:
            return _signature_close(stored["signature"], current["signature"])
        return set(stored) == set(current) and all(_same(stored[k], current[k]) for k in stored)
    if isinstance(stored, float) or isinstance(current, float):
        return (
            isinstance(stored, int | float)
            and isinstance(current, int | float)
            and (math.isclose(stored, current, rel_tol=1e-12, abs_tol=0.0))
        )
    return stored == current


def _show(value: Any, width: int = 60) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= width else text[: width - 1] + "…"


def _describe(name: str, stored: Any, current: Any) -> str:
    if stored is _MISSING:
        return f"{name} (not recorded before; now {_show(current)})"
    if current is _MISSING:
        return f"{name} (was {_show(stored)}; not given now)"
    if isinstance(stored, dict) and set(stored) == {"signature"}:
        return f"{name} (its values differ by more than {RTOL:g} relative)"
    if isinstance(stored, dict) and isinstance(current, dict):
        inner = [
            _describe(f"{name}.{k}", stored.get(k, _MISSING), current.get(k, _MISSING))
            for k in sorted(set(stored) | set(current))
            if not _same(stored.get(k, _MISSING), current.get(k, _MISSING))
        ]
        return "; ".join(inner)
    if isinstance(stored, str) and isinstance(current, str) and "; " in stored:
        old, new = stored.split("; "), current.split("; ")
        changed = [f"{a} -> {b}" for a, b in zip(old, new, strict=False) if a != b]
        if len(old) != len(new):
            changed.append(f"{len(old)} -> {len(new)} entries")
        return f"{name} ({', '.join(changed[:3])})"
    return f"{name} ({_show(stored, 40)} -> {_show(current, 40)})"


_MISSING = object()


def differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """One line per setting that differs between ``stored`` and ``current``, naming it and
    (for exact settings) its old and new value; empty when they agree."""
    names = list(current) + [name for name in stored if name not in current]
    return [
        _describe(name, stored.get(name, _MISSING), current.get(name, _MISSING))
        for name in names
        if not _same(stored.get(name, _MISSING), current.get(name, _MISSING))
    ]
