"""A recorded current trace, shared by the simulator, the readers and the detector.

``relative_drop`` is the one place where a current is turned into the dimensionless drop
``b = 1 − I/I_0`` (``I_0`` the open-pore current), so that the blockade of an event, the input
of the networks and the features all use the same formula.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Trace", "relative_drop"]


@dataclass(frozen=True)
class Trace:
    """A current trace in pA sampled at ``sampling_rate`` Hz."""

    current: np.ndarray
    sampling_rate: float
    synthetic: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        current = np.asarray(self.current)
        if current.ndim != 1:
            raise ValueError(f"trace current must be 1-D, got shape {current.shape}")
        if current.size == 0:
            raise ValueError("trace is empty (0 samples)")
        if not np.issubdtype(current.dtype, np.floating):
            raise ValueError(f"trace current must be floating point, got {current.dtype}")
        bad = np.flatnonzero(~np.isfinite(current))
        if bad.size:
            raise ValueError(
                f"trace contains {bad.size} NaN/inf sample(s), first at index {bad[0]}"
            )
        if not (math.isfinite(self.sampling_rate) and self.sampling_rate > 0):
            raise ValueError(f"sampling_rate must be positive, got {self.sampling_rate}")

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.current.size / self.sampling_rate


def relative_drop(current, open_current):
    """``b = 1 − I/I_0``: 0 for the open pore, 1 for a fully blocked one (dimensionless).

    ``open_current`` broadcasts against ``current`` (one ``I_0`` per event as a column, say);
    the result is float32 for float32 input."""
    current = np.asarray(current)
    return 1.0 - current / np.asarray(open_current, dtype=current.dtype)
