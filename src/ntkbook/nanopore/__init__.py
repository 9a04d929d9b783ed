"""Nanopore peptide pipeline: synthetic signals → events → wavelet images → classes.

``trace`` (the :class:`Trace` and the relative drop ``1 − I/I_0``), ``simulate`` (synthetic
runs with documented physics), ``io`` (ABF and ``.npz`` traces, read safely), ``events``
(denoising and detection), ``cwt`` (JAX continuous wavelet transform), ``inputs`` (images,
features and raw events of detected events), ``training`` (fitting with early stopping),
``metrics`` (accuracy, calibration, pooling, the naive-Bayes level floor) and ``transfer``
(hardware shift and few-shot sets). The networks are in :mod:`ntkbook.models.nanopore`.
"""

from ntkbook.nanopore import (
    cwt,
    dataset,
    events,
    inputs,
    io,
    metrics,
    simulate,
    training,
    transfer,
)
from ntkbook.nanopore.simulate import CLASS_NAMES, N_CLASSES, PoreParameters
from ntkbook.nanopore.trace import Trace, relative_drop

__all__ = [
    "cwt",
    "dataset",
    "events",
    "inputs",
    "io",
    "metrics",
    "simulate",
    "training",
    "transfer",
    "CLASS_NAMES",
    "N_CLASSES",
    "PoreParameters",
    "Trace",
    "relative_drop",
]
