"""Nanopore peptide pipeline: synthetic signals → events → wavelet scaleograms → classes.

``simulate`` (synthetic traces with documented physics), ``io`` (ABF and ``.npz`` traces),
``events`` (denoising and detection), ``cwt`` (JAX continuous wavelet transform), ``classify``
(inputs, networks, training and metrics) and ``transfer`` (hardware shift and fine-tuning).
"""

from ntkbook.nanopore import classify, cwt, events, io, simulate, transfer
from ntkbook.nanopore.simulate import CLASS_NAMES, N_CLASSES, PoreParameters, Trace

__all__ = [
    "classify",
    "cwt",
    "events",
    "io",
    "simulate",
    "transfer",
    "CLASS_NAMES",
    "N_CLASSES",
    "PoreParameters",
    "Trace",
]
