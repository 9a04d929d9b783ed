"""Benchmarks of the JAX continuous wavelet transform against ssqueezepy and PyWavelets.

Every ratio printed is measured in the same run against its baseline:

1. **Fixed-size batches**: ``ntkbook.nanopore.cwt.cwt`` (``hhhat``, μ = 5; jitted, after one
   compiling call) against ``ssqueezepy.cwt`` with the same wavelet and scales (one call for
   the batch) and ``pywt.cwt`` with a complex Morlet (``cmor1.5-1.0``, ``method="fft"``;
   PyWavelets has no ``hhhat``).
2. **The authors' representation at event length**: the events of a synthetic 1 MHz recording
   detected with the authors' thresholds and cut with their widening (hundreds to thousands
   of samples each). ``ntkbook.nanopore.inputs.authors_scaleograms`` (``gmw`` CWT, real and
   imaginary channels, resized to 224 × 224, batched by padded length) against what the
   authors' script calls per event, ``ssqueezepy.ssq_cwt`` with ``gmw`` and the same number of
   scales (which also computes the synchrosqueezed transform), and against
   ``ssqueezepy.cwt`` alone. The ssqueezepy timings leave out the resize, which favours them.

Run: ``python bench/nanopore.py`` (a few minutes on 2 CPU cores). Timings are the best of
``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import warnings

import jax
import numpy as np
import pywt
from _timing import best_time

from ntkbook.nanopore.cwt import cwt, scales_for_frequencies
from ntkbook.nanopore.events import authors_cut, authors_detection, detect_events
from ntkbook.nanopore.inputs import authors_scaleograms
from ntkbook.nanopore.simulate import PoreParameters, simulate


def fixed_batches(repeats: int) -> None:
    import ssqueezepy

    rng = np.random.default_rng(0)
    print("== CWT throughput, float32, best of", repeats, "(signals per second)")
    print(
        f"{'case':>28} {'ntkbook':>10} {'ssqueezepy':>11} {'pywt':>10} {'vs ssq':>7} {'vs pywt':>8}"
    )
    for batch, n, n_scales in ((256, 512, 32), (128, 1024, 64), (32, 4096, 64)):
        x = rng.standard_normal((batch, n)).astype(np.float32)
        scales = np.geomspace(2.0, n / 4, n_scales).astype(np.float32)
        ours = np.asarray(cwt(x, scales))
        reference, _ = ssqueezepy.cwt(x, wavelet=("hhhat", {"mu": 5}), scales=scales)
        error = np.max(np.abs(ours - reference)) / np.max(np.abs(reference))
        t_ours = best_time(lambda x=x, s=scales: cwt(x, s).block_until_ready(), repeats)
        t_ssq = best_time(
            lambda x=x, s=scales: ssqueezepy.cwt(x, wavelet=("hhhat", {"mu": 5}), scales=s),
            repeats,
        )
        t_pywt = best_time(
            lambda x=x, s=scales: pywt.cwt(x, s, "cmor1.5-1.0", method="fft", axis=-1),
            repeats,
        )
        case = f"{batch}×{n} samples, {n_scales} scales"
        print(
            f"{case:>28} {batch / t_ours:10.0f} {batch / t_ssq:11.0f} {batch / t_pywt:10.0f} "
            f"{t_ssq / t_ours:6.2f}× {t_pywt / t_ours:7.2f}×   (max rel. diff to ssq {error:.1e})"
        )


def authors_representation(repeats: int, n_events: int, n_scales: int, size: int) -> None:
    import ssqueezepy

    recording = simulate(jax.random.key(0), 1, PoreParameters(), classes=tuple(range(42)))
    trace = recording.trace
    fs = trace.sampling_rate
    events = detect_events(trace, edge_margin=3e-3, **authors_detection(fs))
    events = events.select(np.arange(len(events)) < n_events)
    lo, hi = authors_cut(events, trace.current.size)
    segments = [
        (trace.current[a:b] / np.float32(i0)).astype(np.float32)
        for a, b, i0 in zip(lo, hi, events.open_current, strict=True)
    ]
    frequency_range = (1e3, 200e3)
    frequencies = np.geomspace(frequency_range[1], frequency_range[0], n_scales)
    scales = scales_for_frequencies(frequencies, fs, "gmw").astype(np.float32)
    lengths = np.array([s.size for s in segments])
    print(
        f"\n== The authors' representation: {len(segments)} events of {lengths.min()}–"
        f"{lengths.max()} samples (median {int(np.median(lengths))}) at 1 MHz, "
        f"{n_scales} gmw scales, images {size}×{size}×2; best of {repeats} (events per second)"
    )

    def ours():
        return authors_scaleograms(
            trace,
            events,
            image_size=(size, size),
            frequency_range=frequency_range,
            n_scales=n_scales,
            wavelet="gmw",
        )

    def ssq_cwt_per_event():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for s in segments:
                ssqueezepy.ssq_cwt(s, wavelet="gmw", scales=scales, fs=fs)

    def cwt_per_event():
        for s in segments:
            ssqueezepy.cwt(s, wavelet="gmw", scales=scales)

    t_ours = best_time(ours, repeats)
    t_ssq = best_time(ssq_cwt_per_event, repeats)
    t_cwt = best_time(cwt_per_event, repeats)
    n = len(segments)
    print(f"{'ntkbook authors_scaleograms (CWT + resize)':>46} {n / t_ours:10.0f}")
    print(
        f"{'ssqueezepy.ssq_cwt per event (authors)':>46} {n / t_ssq:10.0f}   ntkbook is "
        f"{t_ssq / t_ours:.2f}× faster"
    )
    print(
        f"{'ssqueezepy.cwt per event (CWT only)':>46} {n / t_cwt:10.0f}   ntkbook is "
        f"{t_cwt / t_ours:.2f}× faster"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--events", type=int, default=64, help="events for part 2")
    parser.add_argument("--scales", type=int, default=224, help="gmw scales for part 2")
    parser.add_argument("--size", type=int, default=224, help="image side for part 2")
    args = parser.parse_args()
    fixed_batches(args.repeats)
    authors_representation(args.repeats, args.events, args.scales, args.size)


if __name__ == "__main__":
    main()
