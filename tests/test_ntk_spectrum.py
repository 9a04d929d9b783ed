"""Spectral measures of a kernel against closed forms and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from ntkbook.ntk import spectrum


def kernel_with_spectrum(values, seed: int = 0, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """``K = Q diag(values) Qᵀ`` with a random orthogonal ``Q`` (returned with it)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(len(values), len(values))))
    kernel = (q * np.asarray(values, dtype=np.float64)) @ q.T
    kernel = 0.5 * (kernel + kernel.T)
    return kernel.astype(dtype), q


# ------------------------------------------------------------------------------------------
# eigensystem
# ------------------------------------------------------------------------------------------


def test_eigensystem_sorted_descending_and_aligned():
    values = np.array([0.3, 5.0, 1.0, 2.5, 0.0, 4.0, 0.7])  # unsorted on purpose
    kernel, q = kernel_with_spectrum(values)
    system = spectrum.eigensystem(kernel)
    order = np.argsort(values)[::-1]
    np.testing.assert_allclose(system.eigenvalues, values[order], rtol=0, atol=1e-12)
    assert np.all(np.diff(system.eigenvalues) <= 0)
    vectors = system.eigenvectors
    # K q_k = λ_k q_k for every column, and the columns are the construction's eigenvectors.
    np.testing.assert_allclose(kernel @ vectors, vectors * system.eigenvalues, atol=1e-12)
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(len(values)), atol=1e-12)
    overlaps = np.abs(np.sum(vectors * q[:, order], axis=0))
    np.testing.assert_allclose(overlaps, 1.0, atol=1e-10)


def test_eigensystem_float64_from_float32_input():
    values = np.array([3.0, 2.0, 1.0, 0.5, 0.25])
    kernel32, _ = kernel_with_spectrum(values, seed=1, dtype=np.float32)
    assert kernel32.dtype == np.float32
    system = spectrum.eigensystem(kernel32)
    assert system.eigenvalues.dtype == np.float64
    assert system.eigenvectors.dtype == np.float64
    np.testing.assert_allclose(system.eigenvalues, values, rtol=1e-5)


def test_negative_round_off_is_clipped():
    values = np.array([4.0, 1.0, 0.5, -1e-13])
    kernel, _ = kernel_with_spectrum(values, seed=2)
    assert np.linalg.eigvalsh(kernel).min() < 0  # the input really has a negative eigenvalue
    system = spectrum.eigensystem(kernel)
    assert system.eigenvalues.min() == 0.0
    np.testing.assert_allclose(system.eigenvalues[:3], values[:3], atol=1e-12)
    # float32 round-off (relative 1e-6) is within that precision's tolerance.
    kernel32, _ = kernel_with_spectrum([4.0, 1.0, -4e-6], seed=3, dtype=np.float32)
    assert spectrum.eigensystem(kernel32).eigenvalues.min() == 0.0


def test_indefinite_and_non_symmetric_matrices_raise():
    with pytest.raises(ValueError, match="not positive semi-definite: smallest eigenvalue"):
        spectrum.eigensystem(np.diag([1.0, 0.5, -0.1]))
    kernel, _ = kernel_with_spectrum([4.0, 1.0, -1e-6], seed=4)  # float64: too negative
    with pytest.raises(ValueError, match="not positive semi-definite"):
        spectrum.eigensystem(kernel)
    with pytest.raises(ValueError, match="not positive semi-definite"):
        spectrum.eigensystem(-np.eye(3))
    with pytest.raises(ValueError, match="kernel is not symmetric"):
        spectrum.eigensystem(np.array([[1.0, 0.5], [0.0, 1.0]]))


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        (np.array([[1.0, np.nan], [np.nan, 1.0]]), r"non-finite value at index \(0, 1\)"),
        (np.zeros((0, 0)), "empty"),
        (np.ones((3, 4)), "square 2-D matrix"),
        (np.ones(3), "square 2-D matrix"),
    ],
)
def test_bad_kernels_raise(matrix, message):
    for measure in (
        spectrum.eigensystem,
        spectrum.trace,
        spectrum.covariance_entropy,
        spectrum.self_entropy,
    ):
        with pytest.raises(ValueError, match=message):
            measure(matrix)


# ------------------------------------------------------------------------------------------
# entropy, effective rank
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 7, 50])
def test_entropy_of_flat_spectrum(n):
    flat = np.full(n, 3.7)
    assert spectrum.entropy(flat) == pytest.approx(np.log(n), rel=1e-12)
    assert spectrum.entropy(flat, effective=True) == pytest.approx(1.0, rel=1e-12)
    assert spectrum.effective_rank(flat) == pytest.approx(n, rel=1e-12)


def test_entropy_of_rank_one_spectrum():
    rank_one = np.array([5.0, 0.0, 0.0, 0.0])
    assert spectrum.entropy(rank_one) == 0.0
    assert spectrum.entropy(rank_one, effective=True) == 0.0
    assert spectrum.effective_rank(rank_one) == pytest.approx(1.0, abs=1e-15)


def test_entropy_of_two_values_by_hand():
    # p = (3/4, 1/4): S = -(0.75 ln 0.75 + 0.25 ln 0.25) = ln 4 - 0.75 ln 3 = 0.5623351446188083
    assert spectrum.entropy([3.0, 1.0]) == pytest.approx(0.5623351446188083, abs=1e-14)
    assert spectrum.entropy([30.0, 10.0]) == pytest.approx(0.5623351446188083, abs=1e-14)
    assert spectrum.entropy([3.0, 1.0], effective=True) == pytest.approx(
        0.5623351446188083 / 0.6931471805599453, abs=1e-14
    )
    assert spectrum.effective_rank([3.0, 1.0]) == pytest.approx(
        np.exp(0.5623351446188083), abs=1e-14
    )
    # With a zero eigenvalue (0 ln 0 = 0) the value is unchanged, the effective one is not.
    assert spectrum.entropy([3.0, 1.0, 0.0]) == pytest.approx(0.5623351446188083, abs=1e-14)
    assert spectrum.entropy([3.0, 1.0, 0.0], effective=True) == pytest.approx(
        0.5623351446188083 / np.log(3), abs=1e-14
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([1.0, -0.5], "must be non-negative"),
        ([1.0, np.nan], "NaN or inf"),
        ([], "is empty"),
        ([0.0, 0.0], "sum to zero"),
        ([[1.0, 2.0]], "must be 1-D"),
    ],
)
def test_entropy_rejects_bad_spectra(values, message):
    with pytest.raises(ValueError, match=message):
        spectrum.entropy(values)
    with pytest.raises(ValueError, match=message):
        spectrum.effective_rank(values)


def test_effective_entropy_needs_two_values():
    with pytest.raises(ValueError, match="at least two eigenvalues"):
        spectrum.entropy([2.0], effective=True)


# ------------------------------------------------------------------------------------------
# trace, covariance entropy, self entropy
# ------------------------------------------------------------------------------------------


def test_trace_raw_and_per_sample():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(6, 6))
    kernel = a @ a.T
    raw = float(sum(kernel[i, i] for i in range(6)))
    assert spectrum.trace(kernel) == pytest.approx(raw, rel=1e-14)
    assert spectrum.trace(kernel, per_sample=True) == pytest.approx(raw / 6, rel=1e-14)
    # A full kernel of N = 3 samples with O = 2 outputs: per sample divides by 3.
    assert spectrum.trace(kernel, per_sample=True, n_outputs=2) == pytest.approx(raw / 3)
    assert spectrum.trace(kernel, per_sample=True, n_outputs=6) == pytest.approx(raw)
    # n_outputs only matters per sample.
    assert spectrum.trace(kernel, n_outputs=3) == pytest.approx(raw)
    for bad in (4, 0):
        with pytest.raises(ValueError, match=f"n_outputs={bad} does not divide"):
            spectrum.trace(kernel, n_outputs=bad)


def test_covariance_entropy_is_invariant_under_diagonal_rescaling():
    rng = np.random.default_rng(6)
    a = rng.normal(size=(8, 5))
    kernel = a @ a.T + 0.1 * np.eye(8)
    d = np.diag(rng.uniform(0.1, 10.0, size=8))
    value = spectrum.covariance_entropy(kernel)
    assert spectrum.covariance_entropy(d @ kernel @ d) == pytest.approx(value, abs=1e-10)
    # ... while the plain spectral entropy does change under the rescaling.
    plain = spectrum.entropy(spectrum.eigensystem(kernel).eigenvalues)
    rescaled = spectrum.entropy(spectrum.eigensystem(d @ kernel @ d).eigenvalues)
    assert abs(plain - rescaled) > 1e-2
    # Reference: the entropy of the correlation matrix, written out here.
    scale = np.sqrt(np.diag(kernel))
    p = np.linalg.eigvalsh(kernel / np.outer(scale, scale)) / 8
    p = p[p > 0]
    assert value == pytest.approx(-np.sum(p * np.log(p)), abs=1e-10)


def test_covariance_entropy_closed_forms():
    # Any diagonal kernel has the identity as correlation matrix: S = ln n.
    assert spectrum.covariance_entropy(np.diag([1.0, 4.0, 9.0, 0.5])) == pytest.approx(np.log(4))
    assert spectrum.covariance_entropy(np.diag([1.0, 4.0, 9.0]), effective=True) == (
        pytest.approx(1.0)
    )
    # Perfectly correlated samples (rank one, v vᵀ with v > 0): S = 0.
    v = np.array([1.0, 2.0, 3.0])
    assert spectrum.covariance_entropy(np.outer(v, v)) == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match=r"K_ii > 0; K\[1,1\] = 0.0"):
        spectrum.covariance_entropy(np.diag([1.0, 0.0, 2.0]))


def test_self_entropy():
    assert spectrum.self_entropy(2.5 * np.eye(6)) == pytest.approx(np.log(6), rel=1e-12)
    assert spectrum.self_entropy(2.5 * np.eye(6), effective=True) == pytest.approx(1.0)
    # K_ii = 1, 4, 9: p ∝ sqrt(K_ii) = (1, 2, 3)/6; off-diagonal entries do not enter.
    kernel = np.array([[1.0, 0.5, 0.2], [0.5, 4.0, 1.0], [0.2, 1.0, 9.0]])
    p = np.array([1.0, 2.0, 3.0]) / 6.0
    assert spectrum.self_entropy(kernel) == pytest.approx(-np.sum(p * np.log(p)), rel=1e-12)
    with pytest.raises(ValueError, match=r"K_ii >= 0; K\[1,1\] = -1.0"):
        spectrum.self_entropy(np.diag([1.0, -1.0]))


# ------------------------------------------------------------------------------------------
# alignment and spectral position in eigen form
# ------------------------------------------------------------------------------------------


def test_alignment_and_eigen_form_of_spectral_position():
    values = np.array([6.0, 3.0, 1.0, 0.0])
    kernel, _ = kernel_with_spectrum(values, seed=7)
    system = spectrum.eigensystem(kernel)
    rng = np.random.default_rng(8)
    gradient = rng.normal(size=4)
    gamma = spectrum.alignment_coefficients(system.eigenvectors, gradient)
    assert np.sum(gamma**2) == pytest.approx(1.0, rel=1e-12)
    # χ_pos = gᵀ K g / (‖g‖² Tr K), and = λ_k / Tr K for g along an eigenvector q_k.
    chi_pos = spectrum.spectral_position_from_eigensystem(system, gradient)
    assert chi_pos == pytest.approx(
        gradient @ kernel @ gradient / (gradient @ gradient * 10.0), rel=1e-12
    )
    for k in range(4):
        along = -2.0 * system.eigenvectors[:, k]
        position = spectrum.spectral_position_from_eigensystem(system, along)
        assert position == pytest.approx(values[k] / 10.0, abs=1e-12)
    with pytest.raises(ValueError, match="loss gradient is zero"):
        spectrum.alignment_coefficients(system.eigenvectors, np.zeros(4))
    with pytest.raises(ValueError, match="loss gradient has 3 entries"):
        spectrum.alignment_coefficients(system.eigenvectors, np.ones(3))
