"""Headline numbers of a chapter: ``summary.json``.

A chapter notebook ends with ``write_summary({...})``. The file it writes beside the executed
notebook is the only place tests and the book read a chapter's numbers from, so no number is ever
typed into prose. The driver later adds a ``"provenance"`` section to the same file.

Layout of ``summary.json``::

    {
      "chapter_results": {...},            # the numbers, plain JSON
      "claims": [{"id": "A1", ...}, ...],  # the claims ledger (ntkbook.book.claims)
      "runtime": {"jax_backend": "cpu", "devices": [...], "python": "3.11.7"},
      "provenance": {...}                  # added by the driver after a successful run
    }
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ntkbook.atomic import atomic_write_json
from ntkbook.book.claims import check_claims
from ntkbook.book.errors import SummaryError

SUMMARY_FILE = "summary.json"


def to_json_value(value: Any, key: str) -> Any:
    """Convert ``value`` to plain JSON data (``dict``/``list``/``float``/``int``/``bool``/``str``).

    NumPy and JAX scalars become Python numbers, arrays become nested lists. ``key`` is the dotted
    path of the value inside the summary and is named in every error, so that a NaN deep inside a
    list of losses reads ``'losses[3]' is nan``.

    Raises:
        SummaryError: a number is NaN or infinite, or a value has no JSON equivalent.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, float | np.floating):
        return _finite_float(float(value), key)
    if isinstance(value, Mapping):
        out = {}
        for sub_key, sub_value in value.items():
            if not isinstance(sub_key, str):
                raise SummaryError(
                    f"summary key {sub_key!r} under {key!r} is a {type(sub_key).__name__}; "
                    "keys must be strings"
                )
            out[sub_key] = to_json_value(sub_value, f"{key}.{sub_key}")
        return out
    if isinstance(value, list | tuple):
        return [to_json_value(item, f"{key}[{i}]") for i, item in enumerate(value)]
    # JAX arrays (and anything else array-like) expose __array__; checking for it instead of
    # importing jax keeps this module usable in chapters that never touch jax.
    if isinstance(value, np.ndarray) or hasattr(value, "__array__"):
        array = np.asarray(value)
        if array.dtype.kind in "biuf":
            if array.dtype.kind == "f":
                bad = ~np.isfinite(array)
                if bad.any():
                    index = tuple(int(i) for i in np.argwhere(bad)[0])
                    where = key + "".join(f"[{i}]" for i in index)
                    raise SummaryError(
                        f"summary value {where!r} is {array[index]}; headline numbers must be "
                        "finite"
                    )
            return array.tolist()
        if array.dtype.kind in "US":
            return array.tolist()
        if array.dtype.kind == "O":
            return to_json_value(array.tolist(), key)
        raise SummaryError(
            f"summary value {key!r} is an array of dtype {array.dtype}, which has no JSON form"
        )
    raise SummaryError(
        f"summary value {key!r} has type {type(value).__name__}, which has no JSON form; "
        "convert it to a number, string, list or dict"
    )


def _finite_float(value: float, key: str) -> float:
    if not math.isfinite(value):
        raise SummaryError(f"summary value {key!r} is {value}; headline numbers must be finite")
    return value


def runtime_info() -> dict[str, Any]:
    """Describe where the numbers were computed: Python version, JAX backend and devices.

    Called inside the notebook kernel, so it reports the devices the chapter actually ran on,
    not those of the process that started the kernel.
    """
    info: dict[str, Any] = {"python": platform.python_version(), "jax_backend": None, "devices": []}
    try:
        import jax
    except ImportError:
        return info
    info["jax_backend"] = jax.default_backend()
    info["devices"] = [f"{device} ({device.device_kind})" for device in jax.devices()]
    return info


def write_summary(
    numbers: Mapping[str, Any],
    path: str | os.PathLike[str] = SUMMARY_FILE,
    *,
    claims: Any = None,
) -> None:
    """Write a chapter's headline numbers and claims to ``summary.json`` (atomically).

    It returns nothing, so that the last cell of a chapter shows no output (the run directory's
    path would be stale once the driver publishes the run).

    Call it once at the end of a chapter notebook::

        from ntkbook.book import write_summary
        write_summary({"final_loss": loss, "entropy": entropies}, claims=ledger)

    ``path`` is relative to the working directory, which ``ntkbook run`` sets to the chapter's
    output directory, so the file lands beside the executed notebook.

    Args:
        numbers: mapping from a name to a number, string, list, dict, NumPy or JAX value.
        path: where to write; the default is what the driver reads.
        claims: the chapter's :class:`ntkbook.book.claims.Ledger` (or a list of its claims);
            ``ntkbook run`` requires them.

    Raises:
        SummaryError: a value is NaN/inf (the error names its key) or has no JSON form, or a
            claim is invalid: a verdict that does not follow from its interval, a NaN, a
            duplicate id (the error names the claim id).
        TypeError: ``numbers`` is not a mapping.
    """
    if not isinstance(numbers, Mapping):
        raise TypeError(f"write_summary expects a dict of numbers, got {type(numbers).__name__}")
    results = {}
    for key, value in numbers.items():
        if not isinstance(key, str):
            raise SummaryError(f"summary key {key!r} is a {type(key).__name__}; keys must be str")
        results[key] = to_json_value(value, key)
    payload: dict[str, Any] = {"chapter_results": results}
    if claims is not None:
        payload["claims"] = check_claims(claims)
    payload["runtime"] = runtime_info()
    target = Path(path)
    atomic_write_json(target, payload)


def load_summary_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a ``summary.json`` file and check that it has ``chapter_results``."""
    target = Path(path)
    try:
        data = json.loads(target.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise SummaryError(f"{target} is not valid JSON: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("chapter_results"), dict):
        raise SummaryError(f"{target} has no 'chapter_results' mapping")
    if "claims" in data:
        try:
            data["claims"] = check_claims(data["claims"])
        except SummaryError as err:
            raise SummaryError(f"{target}: {err}") from err
    return data


def read_summary(
    chapter: str,
    root: str | os.PathLike[str] | None = None,
    output_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Return the ``summary.json`` of an executed chapter.

    Args:
        chapter: chapter name (the notebook's stem, e.g. ``"ntk_methods"``).
        root: project root; by default the nearest directory above the working directory that
            holds ``_toc.yml``.
        output_dir: the run's output directory; by default ``<root>/executed/<chapter>``.

    Raises:
        FileNotFoundError: the chapter has not been run successfully in that directory.
        SummaryError: the file is not a finished run's summary (no provenance).
    """
    from ntkbook.book.project import Project

    if output_dir is None:
        project = Project.find(root)
        directory = project.default_output_dir(chapter)
    else:
        directory = Path(output_dir)
    target = directory / SUMMARY_FILE
    if not target.is_file():
        raise FileNotFoundError(
            f"no summary for chapter {chapter!r} at {target}; run `ntkbook run {chapter}` first"
        )
    data = load_summary_file(target)
    if "provenance" not in data:
        # The notebook wrote its numbers but the driver never finished the run.
        raise SummaryError(f"{target} has no provenance: the run that wrote it did not finish")
    return data
