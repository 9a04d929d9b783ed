"""Inputs of the classifiers, computed from detected events: images, features, raw events.

Representations (all dimensionless, so the open-pore current of a device cancels):

- **scaleograms** (:func:`event_scaleograms`, this book's reading of the paper's text):
  ``log|W|`` of the ``hhhat`` (μ = 5) CWT of the relative drop ``b(t) = 1 − I(t)/I_0`` of the
  event with its padding, at scales whose wavelets peak on a log grid of frequencies (Hz), so
  rows mean the same frequency at any sampling rate; resized to ``image_size``;
- **the authors' images** (:func:`authors_scaleograms`, as in their scripts, SamTov/projects
  ``nanopore-lab/``): the ``gmw`` CWT of ``I(t)/I_0`` over the authors' widened cut
  (:func:`~ntkbook.nanopore.events.authors_cut`), real and imaginary parts as two channels,
  resized with an antialiasing (triangle) filter to a fixed size;
- **level channel** (:func:`with_level_channel`): any image with one more channel holding the
  event's blockade, so a network sees the level that a wavelet (zero response at zero
  frequency) removes;
- **features** (:func:`event_features`): catch22 (``pycatch22``) of ``b`` plus mean, standard
  deviation, skewness and excess kurtosis of ``b``, ``log10`` dwell and the blockade;
- **raw events** (:func:`raw_events`): ``b`` over the event and its padding, linearly
  resampled to a fixed length.

``standardize`` scales inputs with training-set statistics.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats

from ntkbook.nanopore.cwt import (
    cwt,
    padded_length,
    resize_taps,
    resize_weights,
    scaleogram,
    scales_for_frequencies,
)
from ntkbook.nanopore.events import (
    Events,
    authors_cut,
    check_padding_inside,
    event_windows,
)
from ntkbook.nanopore.trace import Trace, relative_drop

__all__ = [
    "event_scaleograms",
    "authors_scaleograms",
    "with_level_channel",
    "event_features",
    "raw_events",
    "standardize",
    "FEATURE_NAMES_MOMENTS",
]


def _current(trace: Trace, events: Events) -> np.ndarray:
    """The trace in the polarity detection used (its magnitude for a negative recording)."""
    return trace.current if events.polarity == 1 else -trace.current


def _as_runs(trace, events) -> list[tuple[Trace, Events]]:
    """``[(trace, events)]`` from one trace and its events, or the runs given as a sequence."""
    if isinstance(trace, Trace):
        if not isinstance(events, Events):
            raise TypeError(f"events must be Events for one trace, got {type(events).__name__}")
        runs = [(trace, events)]
    else:
        if events is not None:
            raise TypeError("give either (trace, events) or a sequence of runs, not both")
        runs = list(trace)
    if not runs or sum(len(e) for _, e in runs) == 0:
        raise ValueError("no events to transform")
    rates = {float(t.sampling_rate) for t, _ in runs}
    if len(rates) != 1:
        raise ValueError(f"runs are sampled at different rates {sorted(rates)} Hz")
    return runs


def _check_range(frequency_range) -> None:
    if not 0 < frequency_range[0] < frequency_range[1]:
        raise ValueError(
            f"frequency_range must be (lowest, highest) with 0 < lowest < highest Hz, got "
            f"{tuple(frequency_range)}"
        )


def event_scaleograms(
    trace,
    events: Events | None = None,
    *,
    image_size: tuple[int, int],
    frequency_range: tuple[float, float] = (500.0, 50e3),
    n_scales: int = 32,
    padding: float = 100e-6,
    batch_size: int = 64,
) -> np.ndarray:
    """Scaleograms ``(N, height, width)`` (float32) of every event; rows from high to low f
    (``frequency_range = (lowest, highest)`` in Hz).

    ``trace, events`` are one trace and its events, or ``trace`` is a sequence of
    ``(trace, events)`` runs (one sampling rate) whose events are transformed together, in
    batches across runs; the images come in run order."""
    runs = _as_runs(trace, events)
    _check_range(frequency_range)
    height, width = _check_size(image_size)
    frequencies = np.geomspace(frequency_range[1], frequency_range[0], n_scales)
    scales = scales_for_frequencies(frequencies, runs[0][0].sampling_rate)
    windows, crops, lengths = [], [], []
    for run_trace, run_events in runs:
        if len(run_events) == 0:
            continue
        window_start, bucket, crop = event_windows(run_events, run_trace.current.size, padding)
        current = _current(run_trace, run_events)
        for i in range(len(run_events)):
            segment = current[window_start[i] : window_start[i] + bucket[i]]
            windows.append(relative_drop(segment, run_events.open_current[i]))
        crops.append(crop)
        lengths.append(bucket)
    crops, lengths = np.concatenate(crops), np.concatenate(lengths)
    images = np.empty((lengths.size, height, width), np.float32)
    for length in np.unique(lengths):
        members = np.flatnonzero(lengths == length)
        for lo in range(0, members.size, batch_size):
            chunk = members[lo : lo + batch_size]
            # Every batch has the same shape (the last one padded by repetition), so each
            # bucket length compiles once.
            padded = np.resize(chunk, batch_size) if chunk.size < batch_size else chunk
            signals = np.stack([windows[i] for i in padded])
            out = scaleogram(signals, scales, (height, width), columns=crops[padded])
            images[chunk] = np.asarray(out)[: chunk.size]
    return images


def raw_events(
    trace: Trace, events: Events, *, length: int = 128, padding: float = 100e-6
) -> np.ndarray:
    """Relative drop over each event and its padding, resampled to ``length`` points.

    An event whose padding runs past either end of the trace is an error, as in
    :func:`event_scaleograms` (detect with ``edge_margin >= padding``)."""
    if len(events) == 0:
        raise ValueError("no events to resample")
    pad = int(round(padding * trace.sampling_rate))
    check_padding_inside(events, trace.current.size, pad)
    current = _current(trace, events)
    out = np.empty((len(events), length), np.float32)
    for i in range(len(events)):
        lo = int(events.start[i]) - pad
        hi = int(events.end[i]) + pad
        segment = relative_drop(current[lo:hi], events.open_current[i])
        out[i] = np.interp(
            np.linspace(0, segment.size - 1, length), np.arange(segment.size), segment
        )
    return out


def authors_scaleograms(
    trace,
    events: Events | None = None,
    *,
    image_size: tuple[int, int],
    frequency_range: tuple[float, float] = (500.0, 50e3),
    n_scales: int = 32,
    wavelet=("gmw", {"gamma": 3.0, "beta": 60.0}),
    batch_size: int = 32,
) -> np.ndarray:
    """The authors' images ``(N, height, width, 2)`` (float32): real and imaginary part of the
    CWT of ``I(t)/I_0`` over each event's widened cut
    (:func:`~ntkbook.nanopore.events.authors_cut`).

    As in ssqueezepy, each cut of ``L`` samples is reflect-padded to
    ``N_up = 2^(1 + round(log2 L))`` and transformed alone; the ``(n_scales, L)`` result is
    resized to ``image_size`` with a triangle (antialiased bilinear) filter. Rows run from the
    highest frequency of ``frequency_range`` (Hz) to the lowest, log-spaced. ``trace, events``
    are one trace and its events, or a sequence of runs as in :func:`event_scaleograms`."""
    runs = _as_runs(trace, events)
    _check_range(frequency_range)
    height, width = _check_size(image_size)
    frequencies = np.geomspace(frequency_range[1], frequency_range[0], n_scales)
    scales = scales_for_frequencies(frequencies, runs[0][0].sampling_rate, wavelet)
    segments = []
    for run_trace, run_events in runs:
        if len(run_events) == 0:
            continue
        lo, hi = authors_cut(run_events, run_trace.current.size)
        current = _current(run_trace, run_events)
        for i in range(len(run_events)):
            segments.append(current[lo[i] : hi[i]] / np.float32(run_events.open_current[i]))
    n_up = np.asarray([padded_length(s.size)[0] for s in segments])
    row_weights = resize_weights(n_scales, height, 0.0, float(n_scales))
    images = np.empty((len(segments), height, width, 2), np.float32)
    for bucket in np.unique(n_up):
        members = np.flatnonzero(n_up == bucket)
        for start in range(0, members.size, batch_size):
            chunk = members[start : start + batch_size]
            # Batches are padded (by repetition) to a power of two: few shapes to compile,
            # little wasted work on a bucket with few events.
            padded = np.resize(chunk, min(batch_size, 1 << (chunk.size - 1).bit_length()))
            longest = max(segments[i].size for i in padded)
            n_taps = int(np.ceil(2 * max(longest / width, 1.0))) + 2
            signals = np.empty((padded.size, int(bucket)), np.float32)
            indices = np.empty((padded.size, width, n_taps), np.int32)
            weights = np.empty((padded.size, width, n_taps), np.float32)
            for row, i in enumerate(padded):
                segment = segments[i]
                _, left = padded_length(segment.size)
                signals[row] = np.pad(
                    segment, (left, int(bucket) - segment.size - left), mode="reflect"
                )
                indices[row], weights[row] = resize_taps(
                    int(bucket), width, float(left), float(left + segment.size), n_taps
                )
            coefficients = cwt(signals, scales, wavelet, padtype=None)
            out = _resize_complex(coefficients, row_weights, indices, weights)
            images[chunk] = np.asarray(out)[: chunk.size]
    return images


@jax.jit
def _resize_complex(coefficients, row_weights, indices, weights):
    """Real and imaginary part of each ``(S, N)`` transform resized to ``(H, W)``: rows by the
    dense ``row_weights`` ``(H, S)``, columns by the sparse taps ``(W, K)`` of each event."""

    def one(transform, taps, tap_weights):
        resized = []
        for part in (jnp.real(transform), jnp.imag(transform)):
            columns = jnp.sum(part[:, taps] * tap_weights[None], axis=-1)  # (S, W)
            resized.append(row_weights @ columns)
        return jnp.stack(resized, axis=-1)

    return jax.lax.map(lambda args: one(*args), (coefficients, indices, weights))


def _check_size(size) -> tuple[int, int]:
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(v, int) and v >= 2 for v in size)
    ):
        raise ValueError(f"image_size must be (height, width) with integers >= 2, got {size!r}")
    return int(size[0]), int(size[1])


def with_level_channel(images: np.ndarray, blockade: np.ndarray) -> np.ndarray:
    """``images`` (``(N, H, W)`` or ``(N, H, W, C)``) with one more channel, constant over each
    image, holding the event's blockade ``1 − Ī/I_0``."""
    images = np.asarray(images, np.float32)
    blockade = np.asarray(blockade, np.float32)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or blockade.shape != (images.shape[0],):
        raise ValueError(
            f"images must be (N, H, W[, C]) and blockade (N,), got {images.shape} and "
            f"{blockade.shape}"
        )
    level = np.broadcast_to(blockade[:, None, None, None], (*images.shape[:3], 1))
    return np.concatenate([images, level], axis=-1)


FEATURE_NAMES_MOMENTS = (
    "mean",
    "std",
    "skewness",
    "kurtosis",
    "log10_dwell",
    "blockade",
)


def event_features(trace: Trace, events: Events) -> tuple[np.ndarray, list[str]]:
    """catch22 features plus moments of each event, ``(N, 28)``, and their names.

    A feature that is NaN or infinite for an event is an error naming both (nothing is
    silently replaced)."""
    import pycatch22

    if len(events) == 0:
        raise ValueError("no events to compute features of")
    rows, names = [], None
    current = _current(trace, events)
    for i in range(len(events)):
        b = relative_drop(current[events.start[i] : events.end[i]], events.open_current[i])
        catch = pycatch22.catch22_all(b.astype(np.float64).tolist())
        names = names or list(catch["names"])
        moments = [
            float(b.mean()),
            float(b.std()),
            float(scipy.stats.skew(b)) if b.std() > 0 else 0.0,
            float(scipy.stats.kurtosis(b)) if b.std() > 0 else 0.0,
            float(np.log10(events.dwell[i])),
            float(events.blockade[i]),
        ]
        rows.append(list(catch["values"]) + moments)
    names = names + list(FEATURE_NAMES_MOMENTS)
    features = np.asarray(rows, dtype=np.float64)
    bad_event, bad_feature = np.nonzero(~np.isfinite(features))
    if bad_event.size:
        i, j = int(bad_event[0]), int(bad_feature[0])
        raise ValueError(
            f"feature {names[j]!r} is {features[i, j]} for event {i} (samples "
            f"{int(events.start[i])}-{int(events.end[i])}); {bad_event.size} non-finite value(s)"
        )
    return features.astype(np.float32), names


def standardize(
    train: np.ndarray, *others: np.ndarray, per_feature: bool | None = None
) -> list[np.ndarray]:
    """``(a − μ)/σ`` with the training mean ``μ`` and standard deviation ``σ``, applied to
    ``train`` and to ``others``.

    ``per_feature=True`` takes ``μ, σ`` per column of a 2-D table (statistical features, each
    in its own unit); ``False`` takes one ``μ, σ`` over all values (images and raw events,
    whose positions share one unit, so relative amplitudes are kept: the open-pore padding of
    a raw event stays near zero instead of being blown up to unit variance). The default is
    per column for 2-D ``train`` and one number otherwise.
    """
    train = np.asarray(train)
    if train.shape[0] == 0:
        raise ValueError("no training samples to standardize with")
    if per_feature is None:
        per_feature = train.ndim == 2
    if per_feature and train.ndim != 2:
        raise ValueError(f"per_feature standardisation needs a 2-D table, got shape {train.shape}")
    axis = 0 if per_feature else None
    mean = train.mean(axis=axis, keepdims=per_feature)
    std = train.std(axis=axis, keepdims=per_feature)
    std = np.where(std > 0, std, 1.0)
    return [((np.asarray(a) - mean) / std).astype(np.float32) for a in (train, *others)]
