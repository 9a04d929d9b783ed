"""Model transfer under a simulated hardware shift.

A classifier trained on one (synthetic) setup is deployed on another whose amplifier and pore
differ: open-pore current, noise spectrum, filter cutoff and sampling rate
(:func:`hardware_shift`). Four ways to deploy it are compared on the shifted recording:
*zero-shot* (use as is), *head* fine-tuning (retrain only the final layer), *full*
fine-tuning (all layers, from the source weights) and training from *scratch*, each with ``k``
labelled events per class from the new setup (:func:`few_shot_indices`).
"""

from __future__ import annotations

import jax
import numpy as np

from ntkbook.nanopore.simulate import PoreParameters

__all__ = ["hardware_shift", "few_shot_indices"]


def hardware_shift(
    pore: PoreParameters,
    *,
    open_pore_factor: float = 0.8,
    noise_factor: float = 3.0,
    filter_cutoff: float = 5e3,
    sampling_rate: float = 500e3,
) -> PoreParameters:
    """The same peptides on a different setup: ``I_0 → factor·I_0``, every noise PSD term ×
    ``noise_factor``, a new Bessel cutoff and a new sampling rate (Hz)."""
    for name, value in (("open_pore_factor", open_pore_factor), ("noise_factor", noise_factor)):
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value}")
    return pore.with_changes(
        open_pore_current=pore.open_pore_current * open_pore_factor,
        flicker=pore.flicker * noise_factor,
        white=pore.white * noise_factor,
        dielectric=pore.dielectric * noise_factor,
        capacitive=pore.capacitive * noise_factor,
        filter_cutoff=filter_cutoff,
        sampling_rate=sampling_rate,
    )


def few_shot_indices(labels: np.ndarray, shots: int, key: jax.Array) -> np.ndarray:
    """Indices of ``shots`` events drawn at random (without replacement) from every class."""
    labels = np.asarray(labels)
    if not isinstance(shots, int) or shots < 1:
        raise ValueError(f"shots must be a positive int, got {shots!r}")
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if members.size < shots:
            raise ValueError(f"class {c} has {members.size} events, fewer than shots={shots}")
        chosen.append(rng.choice(members, size=shots, replace=False))
    return np.sort(np.concatenate(chosen))
