"""Labelled events of simulated runs: simulate, detect as on a measured trace, label, select.

:func:`simulated_events` records every class in its own runs
(:func:`~ntkbook.nanopore.simulate.simulate_runs`), detects events in each run as in a
measured trace, labels each detection with its run's class (as the measured peptides were
labelled from single-peptide runs) and keeps the detections that overlap a simulated event, so
that the level the simulator drew is known for each (``true_level``). Events whose cut, with
``padding`` or with the authors' widening, runs past an end of the run are dropped and counted.
:meth:`EventSet.stack` applies an input builder of :mod:`ntkbook.nanopore.inputs` run by run
and joins the results.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import numpy as np

from ntkbook.nanopore.events import Events, detect_events, match_events
from ntkbook.nanopore.simulate import PoreParameters, simulate_runs
from ntkbook.nanopore.trace import Trace

__all__ = ["EventSet", "simulated_events", "event_segment"]


@dataclass(frozen=True)
class EventSet:
    """Detected, labelled events of several runs; per-event arrays run in run order."""

    runs: tuple[tuple[Trace, Events], ...]
    label: np.ndarray
    run: np.ndarray
    true_level: np.ndarray
    n_simulated: int
    n_detected: int
    n_unmatched: int
    n_rejected_short: int
    n_rejected_shallow: int
    n_rejected_edge: int

    def __len__(self) -> int:
        return int(self.label.size)

    def stack(self, build: Callable[..., np.ndarray], **options) -> np.ndarray:
        """``build(trace, events, **options)`` for every run, joined along the first axis."""
        return np.concatenate([build(trace, events, **options) for trace, events in self.runs])

    def field(self, name: str) -> np.ndarray:
        """One per-event array of :class:`~ntkbook.nanopore.events.Events` (``blockade``,
        ``dwell``, ...) for all runs."""
        return np.concatenate([getattr(events, name) for _, events in self.runs])

    @property
    def noise_sigma(self) -> np.ndarray:
        """The open-pore noise ``σ`` (pA) that detection measured in each run."""
        return np.asarray([events.noise_sigma for _, events in self.runs])


def simulated_events(
    key: jax.Array,
    pore: PoreParameters,
    n_events_per_class: int,
    *,
    runs_per_class: int,
    detection: dict,
    padding: float,
    authors_extension: int = 40,
    authors_fraction: float = 0.35,
) -> EventSet:
    """Simulate every class in its own runs, detect, label by run and select (module
    docstring). ``detection`` holds keyword arguments of
    :func:`~ntkbook.nanopore.events.detect_events`; ``padding`` (s) is the open pore shown on
    each side of an event by the inputs."""
    recordings = simulate_runs(key, n_events_per_class, pore, runs_per_class=runs_per_class)
    runs, labels, run_index, levels = [], [], [], []
    counts = dict(detected=0, unmatched=0, short=0, shallow=0, edge=0, simulated=0)
    for r, recording in enumerate(recordings):
        trace = recording.trace
        detected = detect_events(trace, edge_margin=padding, **detection)
        counts["simulated"] += recording.label.size
        counts["detected"] += len(detected)
        counts["short"] += detected.n_rejected_short
        counts["shallow"] += detected.n_rejected_shallow
        counts["edge"] += detected.n_rejected_edge
        match = match_events(detected, recording.start, recording.end)
        extra = authors_extension + np.floor(
            authors_fraction * (detected.end - detected.start + 2 * authors_extension)
        )
        fits = (detected.start - extra >= 0) & (detected.end + extra <= trace.current.size)
        keep = (match >= 0) & fits
        counts["unmatched"] += int(np.sum(match < 0))
        counts["edge"] += int(np.sum((match >= 0) & ~fits))
        if not np.any(keep):
            continue
        runs.append((trace, detected.select(keep)))
        labels.append(recording.label[match[keep]])
        levels.append(recording.level[match[keep]])
        run_index.append(np.full(int(keep.sum()), r))
    if not runs:
        raise ValueError("no run kept a detected event; check the detection options")
    return EventSet(
        runs=tuple(runs),
        label=np.concatenate(labels),
        run=np.concatenate(run_index),
        true_level=np.concatenate(levels),
        n_simulated=counts["simulated"],
        n_detected=counts["detected"],
        n_unmatched=counts["unmatched"],
        n_rejected_short=counts["short"],
        n_rejected_shallow=counts["shallow"],
        n_rejected_edge=counts["edge"],
    )


def event_segment(event_set: EventSet, index: int, padding: float) -> tuple[np.ndarray, np.ndarray]:
    """``(time, current)`` of event ``index`` with ``padding`` seconds on each side: time in
    seconds from the event's start, current in pA (in the polarity detection used)."""
    if not 0 <= index < len(event_set):
        raise ValueError(f"index {index} not in [0, {len(event_set)})")
    for trace, events in event_set.runs:
        if index < len(events):
            fs = trace.sampling_rate
            pad = int(round(padding * fs))
            lo, hi = int(events.start[index]) - pad, int(events.end[index]) + pad
            current = events.polarity * trace.current[lo:hi]
            return (np.arange(lo, hi) - int(events.start[index])) / fs, current
        index -= len(events)
    raise AssertionError("unreachable: index checked against the number of events")
