"""Timing shared by the benchmark scripts (imported, never run by `make bench`)."""

import time
from collections.abc import Callable, Sequence


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Best of ``repeats`` wall times of ``fn()``, after one untimed call (compilation, caches)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def best_times_interleaved(fns: Sequence[Callable[[], object]], repeats: int) -> list[float]:
    """Best of ``repeats`` wall times of each of ``fns``, timed in turns (``f1, f2, …, f1, …``)
    after one untimed call of each, so that a change of load on a shared machine affects all of
    them alike and their ratios stay fair. Returns the best time of each, in the given order."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, record in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            record.append(time.perf_counter() - start)
    return [min(record) for record in times]
