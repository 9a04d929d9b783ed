"""From a current trace to translocation events: denoise, baseline, threshold, cut, extract.

The steps follow the peptide paper's preprocessing:

1. **Wavelet denoising** (:func:`denoise`): discrete wavelet transform with ``bior1.5``, hard
   thresholding of the detail coefficients at ``t = k·σ̂·√(2 ln N)`` (``σ̂`` = median absolute
   finest-level detail / 0.6745, the universal threshold scaled by ``k``), inverse transform.
   This is the textbook rule for white noise, and it removes white noise well. On a trace that
   has passed the amplifier's Bessel filter, the finest level holds almost only the little
   noise the filter let through, so ``t`` is small and the step changes the trace little:
   it is kept to follow the paper's pipeline, not because it helps detection here. Thresholds
   estimated per level would remove more of the filtered noise, but they also zero the
   coarse-level details of short, slow-edged events and moved the detected boundaries of one
   event in twenty by ten samples or more on a test recording, so this book does not use them.
2. **Baseline** (:func:`baseline`): the open-pore level, a median per window linearly
   interpolated between window centres, recomputed with event samples masked; ``σ`` is the
   standard deviation of the open-pore samples around it.
3. **Detection** (:func:`detect_events`): samples whose drop ``b(t) − x(t)`` exceeds
   ``threshold_sigma·σ`` (3σ) form candidate runs; each run's edges move outward to the
   half-depth crossings (half of the run's median drop), so a boundary sits where a
   filtered step is half-way; runs shorter than ``min_dwell`` (80 µs) or whose mean drop is
   below ``min_mean_sigma·σ`` (4σ, a choice of this book) are dropped, and so are events
   closer than ``edge_margin`` to either end of the trace (no open pore to show around them).

An event reports ``start``/``end`` (samples, end exclusive), ``dwell = (end − start)/f_s``
(seconds), the baseline ``I_0`` under it, its mean current and ``blockade = 1 − Ī/I_0``.

The authors' scripts (SamTov/projects ``nanopore-lab/``) detect with other numbers:
:func:`authors_detection` gives them (start 4σ, mean 5σ, at least 80 samples, a baseline
window of 5,000 samples) and :func:`authors_cut` their cut, widened by 40 samples and then by
35% of the widened length on each side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pywt

from ntkbook.nanopore.trace import Trace, relative_drop

__all__ = [
    "Events",
    "denoise",
    "baseline",
    "detect_events",
    "match_events",
    "event_windows",
    "check_padding_inside",
    "authors_detection",
    "authors_cut",
]


@dataclass(frozen=True)
class Events:
    """Detected events of one trace (arrays of equal length)."""

    start: np.ndarray
    end: np.ndarray
    dwell: np.ndarray
    mean_current: np.ndarray
    open_current: np.ndarray
    blockade: np.ndarray
    sampling_rate: float
    noise_sigma: float
    polarity: int = 1
    n_rejected_short: int = 0
    n_rejected_shallow: int = 0
    n_rejected_edge: int = 0

    def __len__(self) -> int:
        return int(self.start.size)

    def select(self, mask: np.ndarray) -> Events:
        """The events where ``mask`` is true (rejection counts are kept)."""
        return Events(
            self.start[mask],
            self.end[mask],
            self.dwell[mask],
            self.mean_current[mask],
            self.open_current[mask],
            self.blockade[mask],
            self.sampling_rate,
            self.noise_sigma,
            self.polarity,
            self.n_rejected_short,
            self.n_rejected_shallow,
            self.n_rejected_edge,
        )


def denoise(
    current: np.ndarray,
    wavelet: str = "bior1.5",
    decomposition_levels: int = 4,
    threshold_scale: float = 1.0,
) -> np.ndarray:
    """Hard-thresholded wavelet denoising, one threshold from the finest level (see the module
    docstring); same length and units as the input. ``decomposition_levels`` levels of detail
    are thresholded; an input too short for them is an error."""
    x = np.asarray(current, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"current must be a non-empty 1-D array, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("current contains NaN or inf")
    if threshold_scale < 0:
        raise ValueError(f"threshold_scale must be >= 0, got {threshold_scale}")
    if not isinstance(decomposition_levels, int) or decomposition_levels < 1:
        raise ValueError(
            f"decomposition_levels must be a positive int, got {decomposition_levels!r}"
        )
    max_levels = pywt.dwt_max_level(x.size, pywt.Wavelet(wavelet).dec_len)
    if decomposition_levels > max_levels:
        raise ValueError(
            f"current of {x.size} samples is too short for {decomposition_levels} levels of "
            f"{wavelet} (at most {max_levels})"
        )
    coefficients = pywt.wavedec(x, wavelet, level=decomposition_levels)
    sigma = np.median(np.abs(coefficients[-1])) / 0.6745
    threshold = threshold_scale * sigma * np.sqrt(2 * np.log(x.size))
    coefficients[1:] = [pywt.threshold(c, threshold, mode="hard") for c in coefficients[1:]]
    return pywt.waverec(coefficients, wavelet)[: x.size].astype(np.float32)


def _window_median(x: np.ndarray, mask: np.ndarray, window: int) -> np.ndarray:
    n_windows = max(1, int(np.ceil(x.size / window)))
    centres, values = [], []
    for w in range(n_windows):
        lo, hi = w * window, min(x.size, (w + 1) * window)
        kept = x[lo:hi][mask[lo:hi]]
        if kept.size >= max(16, (hi - lo) // 10):
            centres.append(0.5 * (lo + hi - 1))
            values.append(np.median(kept))
    if not values:
        raise ValueError(
            "no open-pore window to estimate the baseline from (the trace is blocked "
            "almost everywhere, or baseline_window is too short)"
        )
    return np.interp(np.arange(x.size), centres, values).astype(np.float32)


def baseline(x: np.ndarray, window: int, threshold_sigma: float = 3.0) -> tuple[np.ndarray, float]:
    """Open-pore baseline (per-window medians, interpolated) and the open-pore noise ``σ``.

    Two passes: the first uses all samples, the second masks samples more than
    ``threshold_sigma·σ`` below the first baseline (and their neighbours within 16 samples).
    """
    everything = np.ones(x.size, bool)
    open_current = _window_median(x, everything, window)
    residual = x - open_current
    sigma = 1.4826 * np.median(np.abs(residual - np.median(residual)))
    blocked = residual < -threshold_sigma * max(sigma, 1e-12)
    blocked = np.convolve(blocked, np.ones(33), mode="same") > 0
    open_current = _window_median(x, ~blocked, window)
    sigma = float(np.std((x - open_current)[~blocked]))
    if not sigma > 0:
        raise ValueError("open-pore noise is zero: the trace is constant")
    return open_current, sigma


def detect_events(
    trace: Trace,
    *,
    threshold_sigma: float = 3.0,
    min_dwell: float = 80e-6,
    min_mean_sigma: float = 4.0,
    baseline_window: float = 0.05,
    denoise_wavelet: str | None = "bior1.5",
    edge_margin: float = 0.0,
) -> Events:
    """Detect blockades (current drops) in ``trace``; see the module docstring for each step.

    ``edge_margin`` (s): events starting less than this after the start of the trace or ending
    less than this before its end are dropped and counted in ``n_rejected_edge`` (pass the
    padding that will be cut out around each event).

    A trace whose median current is negative (the other polarity) is detected on its
    magnitude: ``polarity`` is −1 in the result, and ``mean_current``/``open_current`` are
    magnitudes. Errors: ``min_dwell`` shorter than one sample, a median current of 0, an
    open-pore baseline ≤ 0 under an event, and blockades outside (0, 1) (each names how many
    events)."""
    if not isinstance(trace, Trace):
        raise TypeError(f"trace must be a Trace, got {type(trace).__name__}")
    for name, value in (
        ("threshold_sigma", threshold_sigma),
        ("min_mean_sigma", min_mean_sigma),
        ("baseline_window", baseline_window),
    ):
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value}")
    fs = trace.sampling_rate
    if not min_dwell >= 1 / fs:
        raise ValueError(
            f"min_dwell {min_dwell:g} s is shorter than one sample ({1 / fs:g} s at {fs:g} Hz); "
            "an event needs at least one sample"
        )
    if not edge_margin >= 0:
        raise ValueError(f"edge_margin must be >= 0, got {edge_margin}")
    raw = np.asarray(trace.current, dtype=np.float32)
    # Open-pore current is positive by this module's convention; a recording of the other
    # polarity (negative holding potential) is detected on its magnitude.
    centre = float(np.median(raw))
    if centre == 0:
        raise ValueError(
            "the median current is 0 pA: no open-pore level to detect blockades against"
        )
    polarity = 1 if centre > 0 else -1
    raw = raw if polarity == 1 else -raw
    x = denoise(raw, denoise_wavelet) if denoise_wavelet else raw
    window = max(64, int(round(baseline_window * fs)))
    open_baseline, sigma = baseline(x, window, threshold_sigma)
    drop = open_baseline - x
    below = drop > threshold_sigma * sigma
    edges = np.diff(below.astype(np.int8), prepend=0, append=0)
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)

    refined_start = np.empty_like(starts)
    refined_end = np.empty_like(ends)
    for i, (s, e) in enumerate(zip(starts, ends, strict=True)):
        half = 0.5 * np.median(drop[s:e])
        lo = s
        while lo > 0 and drop[lo - 1] > half:
            lo -= 1
        while lo < e - 1 and drop[lo] < half:
            lo += 1
        hi = e
        while hi < x.size and drop[hi] > half:
            hi += 1
        while hi > lo + 1 and drop[hi - 1] < half:
            hi -= 1
        refined_start[i], refined_end[i] = lo, hi
    # Runs that meet after refinement (one event split by a noise spike) are merged.
    if refined_start.size:
        keep_start = [refined_start[0]]
        keep_end = [refined_end[0]]
        for s, e in zip(refined_start[1:], refined_end[1:], strict=True):
            if s <= keep_end[-1]:
                keep_end[-1] = max(keep_end[-1], e)
            else:
                keep_start.append(s)
                keep_end.append(e)
        starts, ends = np.asarray(keep_start), np.asarray(keep_end)
    else:
        starts, ends = refined_start, refined_end

    dwell = (ends - starts) / fs
    csum = np.concatenate([[0.0], np.cumsum(raw, dtype=np.float64)])
    mean_current = (csum[ends] - csum[starts]) / np.maximum(ends - starts, 1)
    open_current = open_baseline[starts].astype(np.float64)
    mean_drop = open_current - mean_current
    short = dwell < min_dwell
    shallow = ~short & (mean_drop < min_mean_sigma * sigma)
    margin = int(round(edge_margin * fs))
    edge = ~short & ~shallow & ((starts < margin) | (ends > x.size - margin))
    keep = ~short & ~shallow & ~edge
    not_positive = int(np.sum(open_current[keep] <= 0))
    if not_positive:
        raise ValueError(
            f"the open-pore baseline is <= 0 pA under {not_positive} of {int(keep.sum())} "
            "events: the trace does not hold one polarity of current (wrong channel, or an "
            "offset that crosses zero)"
        )
    blockade = relative_drop(mean_current, open_current)
    outside = int(np.sum((blockade[keep] <= 0) | (blockade[keep] >= 1)))
    if outside:
        raise ValueError(
            f"{outside} of {int(keep.sum())} events have a blockade 1 − I/I_0 outside (0, 1): "
            "the current crosses zero inside them, so the trace is not a current with a "
            "positive open-pore level in one polarity (wrong channel or units?)"
        )
    return Events(
        start=starts[keep].astype(np.int64),
        end=ends[keep].astype(np.int64),
        dwell=dwell[keep],
        mean_current=mean_current[keep],
        open_current=open_current[keep],
        blockade=blockade[keep],
        sampling_rate=fs,
        noise_sigma=sigma,
        polarity=polarity,
        n_rejected_short=int(short.sum()),
        n_rejected_shallow=int(shallow.sum()),
        n_rejected_edge=int(edge.sum()),
    )


def match_events(events: Events, true_start: np.ndarray, true_end: np.ndarray) -> np.ndarray:
    """Index of the true event overlapping each detected event most, or −1 if none overlaps."""
    true_start = np.asarray(true_start)
    true_end = np.asarray(true_end)
    order = np.argsort(true_start)
    ts, te = true_start[order], true_end[order]
    match = np.full(len(events), -1, dtype=np.int64)
    for i, (s, e) in enumerate(zip(events.start, events.end, strict=True)):
        j0 = max(0, np.searchsorted(ts, s, side="right") - 1)
        j1 = np.searchsorted(ts, e, side="left")
        best, best_overlap = -1, 0
        for j in range(j0, max(j1, j0 + 1)):
            if j >= ts.size:
                break
            overlap = min(e, te[j]) - max(s, ts[j])
            if overlap > best_overlap:
                best, best_overlap = j, overlap
        match[i] = order[best] if best >= 0 else -1
    return match


def check_padding_inside(events: Events, n_samples: int, pad: int) -> None:
    """Raise if an event with ``pad`` samples on each side does not fit in the trace."""
    outside = np.flatnonzero((events.start - pad < 0) | (events.end + pad > n_samples))
    if outside.size:
        i = int(outside[0])
        raise ValueError(
            f"{outside.size} event(s) with their padding of {pad} samples run past the start or "
            f"end of the trace of {n_samples} samples (first: event {i}, samples "
            f"{int(events.start[i])}-{int(events.end[i])}); detect with edge_margin >= padding"
        )


def event_windows(
    events: Events,
    n_samples: int,
    padding: float,
    buckets: tuple[int, ...] = (512, 2048, 8192, 32768),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Context windows for extraction: ``(window_start, bucket_length, crop)`` per event.

    Each event is shown with ``padding`` seconds of open pore on each side (the *crop*, in
    window coordinates ``[lo, hi)``); it is transformed inside a longer window of the smallest
    bucket length that holds the crop, centred on the event and shifted to stay inside the
    trace, so transforms run on a few fixed lengths and see real context instead of padding.
    """
    pad = int(round(padding * events.sampling_rate))
    lo = events.start - pad
    hi = events.end + pad
    length = hi - lo
    bucket = np.asarray(buckets)[np.minimum(np.searchsorted(buckets, length), len(buckets) - 1)]
    too_long = length > bucket
    if np.any(too_long):
        raise ValueError(
            f"{int(too_long.sum())} event(s) longer than the largest bucket {buckets[-1]} "
            f"samples (longest {int(length.max())}); add a bucket"
        )
    if np.any(bucket > n_samples):
        raise ValueError(f"trace of {n_samples} samples is shorter than a window of {bucket.max()}")
    centre = (lo + hi) // 2
    window_start = np.clip(centre - bucket // 2, 0, n_samples - bucket)
    crop = np.stack([lo - window_start, hi - window_start], axis=1)
    check_padding_inside(events, n_samples, pad)
    return window_start, bucket, crop


def authors_detection(sampling_rate: float) -> dict[str, float]:
    """Keyword arguments of :func:`detect_events` with the authors' numbers: start threshold
    4σ, mean threshold 5σ, at least 80 samples, baseline window 5,000 samples (their scripts
    count samples at 1 MHz; here the sample counts are kept at any rate)."""
    if not sampling_rate > 0:
        raise ValueError(f"sampling_rate must be positive, got {sampling_rate}")
    return {
        "threshold_sigma": 4.0,
        "min_mean_sigma": 5.0,
        "min_dwell": 80 / sampling_rate,
        "baseline_window": 5000 / sampling_rate,
    }


def authors_cut(
    events: Events, n_samples: int, extension: int = 40, fraction: float = 0.35
) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)`` sample ranges of the authors' cut: the event widened by ``extension``
    samples on each side, then by ``⌊fraction·L⌋`` on each side, ``L`` the widened length.

    A cut that runs past either end of the trace is an error naming how many."""
    if extension < 0 or fraction < 0:
        raise ValueError(f"extension and fraction must be >= 0, got {extension}, {fraction}")
    lo = events.start - extension
    hi = events.end + extension
    extra = np.floor(fraction * (hi - lo)).astype(np.int64)
    lo, hi = lo - extra, hi + extra
    outside = np.flatnonzero((lo < 0) | (hi > n_samples))
    if outside.size:
        raise ValueError(
            f"{outside.size} event(s) with the authors' widened cut run past the start or end "
            f"of the trace of {n_samples} samples (first: samples {int(lo[outside[0]])}-"
            f"{int(hi[outside[0]])}); detect with a larger edge_margin"
        )
    return lo.astype(np.int64), hi.astype(np.int64)
