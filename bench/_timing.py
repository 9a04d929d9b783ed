"""Timing shared by the benchmark scripts (imported, never run by `make bench`)."""

import time
from collections.abc import Callable


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Best of ``repeats`` wall times of ``fn()``, after one untimed call (compilation, caches)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
