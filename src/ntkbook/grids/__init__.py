"""Chapters' sweeps as registered experiments: how a chapter's parameters become its points.

Each module here registers its chapter's experiments (:func:`ntkbook.store.experiment`) and
defines ``grid(parameters) -> list[ntkbook.sweep.Grid]``, which the chapter's notebook and
``ntkbook sweep CHAPTER`` both call, so that both compute (and find) the same points.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

__all__ = ["point_key", "stack"]


def point_key(seed: int, /, **values: Any):
    """The random key of one point: ``seed``'s key folded with a 31-bit hash of ``values``.

    The key depends on the point's own values (a width, a radius, a seed index), not on its place
    in the grid, so adding a width or a radius leaves every other point's key, hence its stored
    result, unchanged. ``values`` are compared by ``repr`` after sorting by name; ``seed`` is
    positional, so a value may be named ``seed`` too (a seed index).
    """
    import jax

    text = repr(sorted(values.items())).encode()
    tag = int.from_bytes(hashlib.sha256(text).digest()[:4], "little") & 0x7FFFFFFF
    return jax.random.fold_in(jax.random.key(seed), tag)


def stack(results: Sequence[Any]) -> Any:
    """The points' results joined along their first axis (runs), in the order of the points:
    dicts key by key, lists concatenated, arrays along axis 0.

    Raises:
        ValueError: ``results`` is empty (there is nothing to join).
    """
    import numpy as np

    if not results:
        raise ValueError("stack needs at least one result, got none")
    first = results[0]
    if isinstance(first, dict):
        return {name: stack([r[name] for r in results]) for name in first}
    if isinstance(first, list):
        return [item for r in results for item in r]
    return np.concatenate([np.asarray(r) for r in results])
