"""Progress of long package loops (training sweeps, simulation grids, classifier fits).

Every loop that can run for more than about ten seconds takes a ``progress`` argument and passes
it to :func:`track`:

- ``False`` (the default): silent, as in tests;
- ``True``: a ``tqdm.auto`` bar (a widget in Jupyter when ipywidgets is installed, a text bar on
  standard error elsewhere);
- a callable ``progress(done, total, description)``: called after every finished item, for a
  caller that reports progress its own way.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar, Union

from tqdm import TqdmWarning

__all__ = ["Progress", "track"]

T = TypeVar("T")
#: What a ``progress`` argument may be.
Progress = Union[bool, Callable[[int, int | None, str], None]]  # noqa: UP007


def track(
    iterable: Iterable[T],
    *,
    total: int | None = None,
    description: str = "",
    progress: Progress = False,
) -> Iterator[T]:
    """Yield the items of ``iterable`` and report progress as ``progress`` asks.

    ``total`` defaults to ``len(iterable)`` where it has one. The callable form is called after
    each item has been processed by the caller (that is, when the next one is requested, and once
    more at the end), so ``done`` counts finished items.

    Raises:
        TypeError: ``progress`` is neither a bool nor a callable.
    """
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if progress is False or progress is None:
        yield from iterable
        return
    if progress is True:
        with warnings.catch_warnings():
            # Without ipywidgets, tqdm.auto warns "IProgress not found" and falls back to the
            # text bar, which is what a chapter executed by papermill should show anyway.
            warnings.simplefilter("ignore", category=TqdmWarning)
            from tqdm.auto import tqdm

        yield from tqdm(iterable, total=total, desc=description or None, mininterval=1.0)
        return
    if not callable(progress):
        raise TypeError(
            f"progress must be True, False or a callable (done, total, description), "
            f"got {progress!r}"
        )
    done = 0
    for item in iterable:
        yield item
        done += 1
        progress(done, total, description)
