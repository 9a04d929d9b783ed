"""Spectral measures of an empirical NTK: one function per measure, each with its formula.

Every measure takes either a kernel matrix ``K`` (the eNTK Θ, square, symmetric, positive
semi-definite) or its eigenvalues. Eigendecompositions are done once, in float64, by
:func:`eigensystem`; the measures that need a spectrum accept its eigenvalues so that a recorder
decomposes each kernel only once.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "Eigensystem",
    "eigensystem",
    "entropy",
    "trace",
    "effective_rank",
    "covariance_entropy",
    "self_entropy",
    "alignment_coefficients",
    "spectral_position_from_eigensystem",
]

# Relative size (to the largest eigenvalue) below which a negative eigenvalue is taken as
# round-off of a positive semi-definite kernel and clipped to zero. A kernel accumulated in
# float32 carries relative errors of order 1e-7·sqrt(N); anything more negative than this
# threshold means the matrix is not a kernel and must not be silently "fixed".
_NEGATIVE_TOLERANCE = {np.dtype(np.float16): 1e-2, np.dtype(np.float32): 1e-4}
_NEGATIVE_TOLERANCE_DEFAULT = 1e-9


class Eigensystem(NamedTuple):
    """Eigenvalues sorted descending, and the eigenvectors as aligned columns.

    ``eigenvectors[:, k]`` belongs to ``eigenvalues[k]``.
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray


def _as_square_kernel(kernel, name: str = "kernel") -> np.ndarray:
    matrix = np.asarray(kernel)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"{name} must be a square 2-D matrix, got shape {matrix.shape}")
    if matrix.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {matrix.shape})")
    if not np.all(np.isfinite(matrix)):
        bad = np.argwhere(~np.isfinite(matrix))[0]
        raise ValueError(
            f"{name} contains a non-finite value at index {tuple(int(i) for i in bad)}"
        )
    return matrix


def _as_spectrum(eigenvalues, name: str = "eigenvalues") -> np.ndarray:
    values = np.asarray(eigenvalues, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {values.shape}")
    if values.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} contains NaN or inf: {values[~np.isfinite(values)][:5]}")
    if np.any(values < 0):
        raise ValueError(
            f"{name} must be non-negative (a kernel spectrum); smallest is {values.min():.3e}. "
            "Use eigensystem() to clip round-off."
        )
    if values.sum() <= 0:
        raise ValueError(f"{name} sum to zero: the spectrum carries no weight")
    return values


def eigensystem(kernel, *, symmetry_tolerance: float = 1e-5) -> Eigensystem:
    """Eigendecomposition of a kernel in float64, sorted descending.

    ``K = Q diag(λ) Qᵀ`` with ``λ_0 ≥ λ_1 ≥ … ≥ 0``. The kernel is symmetrised as ``(K + Kᵀ)/2``
    after checking ``‖K − Kᵀ‖_max ≤ symmetry_tolerance · ‖K‖_max``. Negative eigenvalues that
    are round-off (``|λ| ≤ tol · λ_0``, tol from the input precision: 1e-4 for float32, 1e-9 for
    float64) are clipped to 0; a more negative eigenvalue raises, since the matrix is then not
    a positive semi-definite kernel.
    """
    matrix = _as_square_kernel(kernel)
    tolerance = _NEGATIVE_TOLERANCE.get(matrix.dtype, _NEGATIVE_TOLERANCE_DEFAULT)
    matrix64 = matrix.astype(np.float64)
    scale = float(np.max(np.abs(matrix64)))
    asymmetry = float(np.max(np.abs(matrix64 - matrix64.T)))
    if asymmetry > symmetry_tolerance * max(scale, np.finfo(np.float64).tiny):
        raise ValueError(
            f"kernel is not symmetric: max |K - K^T| = {asymmetry:.3e} vs max |K| = {scale:.3e}"
        )
    values, vectors = np.linalg.eigh(0.5 * (matrix64 + matrix64.T))
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    largest = max(float(values[0]), 0.0)
    if values[-1] < -tolerance * largest or (largest == 0.0 and values[-1] < 0):
        raise ValueError(
            f"kernel is not positive semi-definite: smallest eigenvalue {values[-1]:.3e} "
            f"against largest {largest:.3e} (round-off tolerance {tolerance:g})"
        )
    values = np.clip(values, 0.0, None)
    return Eigensystem(values, vectors)


def entropy(eigenvalues, effective: bool = False) -> float:
    """Spectral (von Neumann) entropy of a kernel spectrum, in nats.

    ``S = −Σ_k p_k ln p_k`` with ``p_k = λ_k / Σ_j λ_j`` and ``0 ln 0 = 0``. With
    ``effective=True`` the entropy is divided by its maximum ``ln n`` (``n`` eigenvalues), so it
    lies in ``[0, 1]``.
    """
    values = _as_spectrum(eigenvalues)
    weights = values / values.sum()
    positive = weights[weights > 0]
    value = float(-np.sum(positive * np.log(positive)))
    if effective:
        if values.size < 2:
            raise ValueError("effective entropy needs at least two eigenvalues (ln 1 = 0)")
        value /= np.log(values.size)
    return value


def trace(kernel, per_sample: bool = False, n_outputs: int = 1) -> float:
    """Trace of a kernel, ``Tr Θ = Σ_i Θ_ii``; with ``per_sample=True``, ``Tr Θ / N``.

    ``N`` is the number of samples: the number of rows divided by ``n_outputs`` (pass the
    number of outputs ``O`` for a full ``(N·O, N·O)`` kernel).
    """
    matrix = _as_square_kernel(kernel)
    if n_outputs < 1 or matrix.shape[0] % n_outputs:
        raise ValueError(
            f"n_outputs={n_outputs} does not divide the kernel's {matrix.shape[0]} rows"
        )
    value = float(np.trace(matrix.astype(np.float64)))
    if per_sample:
        value /= matrix.shape[0] // n_outputs
    return value


def effective_rank(eigenvalues) -> float:
    """Effective rank (Roy & Vetterli 2007): ``exp(S)`` with ``S`` the spectral entropy in nats.

    Equals ``n`` for a flat spectrum of ``n`` equal eigenvalues and 1 for a rank-one kernel.
    """
    return float(np.exp(entropy(eigenvalues)))


def covariance_entropy(kernel, effective: bool = False) -> float:
    """Entropy of the kernel normalised to a correlation matrix.

    ``C_ij = K_ij / sqrt(K_ii K_jj)``; returns ``S(C) = −Σ p ln p`` over the eigenvalues of
    ``C`` (``p = λ/n`` since ``Tr C = n``). It measures the angular structure of the kernel,
    independent of the per-sample magnitudes. Zero diagonal entries raise.
    """
    matrix = _as_square_kernel(kernel).astype(np.float64)
    diagonal = np.diag(matrix)
    if np.any(diagonal <= 0):
        index = int(np.argmin(diagonal))
        raise ValueError(
            f"covariance_entropy needs K_ii > 0; K[{index},{index}] = {diagonal[index]}"
        )
    scale = np.sqrt(diagonal)
    correlation = matrix / np.outer(scale, scale)
    return entropy(eigensystem(correlation).eigenvalues, effective=effective)


def self_entropy(kernel, effective: bool = False) -> float:
    """Entropy of the per-sample gradient magnitudes ``sqrt(K_ii)``.

    ``p_i = sqrt(K_ii) / Σ_j sqrt(K_jj)``, ``S = −Σ_i p_i ln p_i`` (divided by ``ln n`` with
    ``effective=True``). ``sqrt(K_ii) = ‖∇_θ f(x_i)‖`` is how strongly sample ``i`` moves the
    parameters; a flat distribution means every sample contributes equally.
    """
    matrix = _as_square_kernel(kernel)
    diagonal = np.diag(matrix).astype(np.float64)
    if np.any(diagonal < 0):
        index = int(np.argmin(diagonal))
        raise ValueError(f"self_entropy needs K_ii >= 0; K[{index},{index}] = {diagonal[index]}")
    return entropy(np.sqrt(diagonal), effective=effective)


def alignment_coefficients(eigenvectors, loss_gradient) -> np.ndarray:
    """Alignment coefficients ``γ_k = ∇_f L · q_k / ‖∇_f L‖`` of a loss gradient on eigenmodes.

    ``loss_gradient`` is flattened in the kernel's row order (``i·O + a``). ``Σ_k γ_k² = 1``
    for a complete eigenbasis.
    """
    vectors = np.asarray(eigenvectors, dtype=np.float64)
    gradient = np.asarray(loss_gradient, dtype=np.float64).reshape(-1)
    if vectors.shape[0] != gradient.size:
        raise ValueError(
            f"loss gradient has {gradient.size} entries but the eigenvectors have "
            f"{vectors.shape[0]} rows"
        )
    norm = np.linalg.norm(gradient)
    if norm == 0:
        raise ValueError("loss gradient is zero: alignment coefficients are undefined")
    return vectors.T @ gradient / norm


def spectral_position_from_eigensystem(system: Eigensystem, loss_gradient) -> float:
    """Spectral position in its eigen form, ``χ_pos = Σ_k γ_k² λ_k / Tr Θ``.

    The reference form of the Spectral Reach decomposition; :func:`ntkbook.ntk.spectral_position`
    computes the same number without an eigendecomposition.
    """
    gamma = alignment_coefficients(system.eigenvectors, loss_gradient)
    values = _as_spectrum(system.eigenvalues)
    return float(np.sum(gamma**2 * values) / values.sum())
