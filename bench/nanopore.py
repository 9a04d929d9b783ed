"""Benchmark of the JAX continuous wavelet transform against ssqueezepy and PyWavelets.

All three transform the same batch of signals at the same scales in one run, and the ratios
printed are measured in that run:

- ``ntkbook.nanopore.cwt.cwt`` (``hhhat``, μ = 5; jitted, after one compiling call);
- ``ssqueezepy.cwt`` with the same wavelet and scales (2-D input: one call for the batch);
- ``pywt.cwt`` with a complex Morlet (``cmor1.5-1.0``, ``method="fft"``): PyWavelets has no
  ``hhhat``, so it is the nearest established CPU transform of the same size.

Run: ``python bench/nanopore.py`` (about a minute on 2 CPU cores). Timings are the best of
``--repeats`` runs.
"""

from __future__ import annotations

import argparse

import numpy as np
import pywt
from _timing import best_time

from ntkbook.nanopore.cwt import cwt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import ssqueezepy

    rng = np.random.default_rng(0)
    print("== CWT throughput, float32, best of", args.repeats, "(signals per second)")
    print(
        f"{'case':>28} {'ntkbook':>10} {'ssqueezepy':>11} {'pywt':>10} {'vs ssq':>7} {'vs pywt':>8}"
    )
    for batch, n, n_scales in ((256, 512, 32), (128, 1024, 64), (32, 4096, 64)):
        x = rng.standard_normal((batch, n)).astype(np.float32)
        scales = np.geomspace(2.0, n / 4, n_scales).astype(np.float32)
        ours = np.asarray(cwt(x, scales))
        reference, _ = ssqueezepy.cwt(x, wavelet=("hhhat", {"mu": 5}), scales=scales)
        error = np.max(np.abs(ours - reference)) / np.max(np.abs(reference))
        t_ours = best_time(lambda x=x, s=scales: cwt(x, s).block_until_ready(), args.repeats)
        t_ssq = best_time(
            lambda x=x, s=scales: ssqueezepy.cwt(x, wavelet=("hhhat", {"mu": 5}), scales=s),
            args.repeats,
        )
        t_pywt = best_time(
            lambda x=x, s=scales: pywt.cwt(x, s, "cmor1.5-1.0", method="fft", axis=-1),
            args.repeats,
        )
        case = f"{batch}×{n} samples, {n_scales} scales"
        print(
            f"{case:>28} {batch / t_ours:10.0f} {batch / t_ssq:11.0f} {batch / t_pywt:10.0f} "
            f"{t_ssq / t_ours:6.2f}× {t_pywt / t_ours:7.2f}×   (max rel. diff to ssq {error:.1e})"
        )


if __name__ == "__main__":
    main()
