"""Relative kernel change and kernel–target alignment against direct numpy formulas."""

import numpy as np
import pytest

from ntkbook.ntk.feature_learning import kernel_target_alignment, relative_kernel_change


def _psd(rng, n, rank=None):
    factor = rng.normal(size=(n, rank or n))
    return factor @ factor.T


def _direct_alignment(kernel, target_gram, centered):
    """The textbook form with explicit centring matrices H = I − 11ᵀ/n."""
    n = kernel.shape[0]
    if centered:
        h = np.eye(n) - np.ones((n, n)) / n
        kernel, target_gram = h @ kernel @ h, h @ target_gram @ h
    return np.sum(kernel * target_gram) / (
        np.sqrt(np.sum(kernel**2)) * np.sqrt(np.sum(target_gram**2))
    )


def test_relative_kernel_change_matches_frobenius_formula():
    rng = np.random.default_rng(0)
    k0, k1 = _psd(rng, 7), _psd(rng, 7)
    expected = np.sqrt(np.sum((k1 - k0) ** 2)) / np.sqrt(np.sum(k0**2))
    assert relative_kernel_change(k0, k1) == pytest.approx(expected, rel=1e-12)
    assert relative_kernel_change(k0, k0) == 0.0
    assert relative_kernel_change(k0, 3.0 * k0) == pytest.approx(2.0, rel=1e-12)


@pytest.mark.parametrize("centered", [True, False])
def test_alignment_matches_explicit_centring(centered):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, size=30)
    one_hot = np.eye(4)[labels]
    kernel = _psd(rng, 30, rank=10) + 5.0  # a large constant mode, which centring removes
    expected = _direct_alignment(kernel, one_hot @ one_hot.T, centered)
    assert kernel_target_alignment(kernel, one_hot, centered=centered) == pytest.approx(
        expected, rel=1e-10
    )


def test_alignment_of_the_target_gram_itself_is_one_and_centring_matters():
    rng = np.random.default_rng(2)
    one_hot = np.eye(3)[rng.integers(0, 3, size=20)]
    assert kernel_target_alignment(one_hot @ one_hot.T, one_hot) == pytest.approx(1.0)
    constant = np.ones((20, 20)) + 1e-3 * _psd(rng, 20)
    uncentred = kernel_target_alignment(constant, one_hot, centered=False)
    centred = kernel_target_alignment(constant, one_hot, centered=True)
    assert uncentred > 0.5 and abs(centred) < 0.5


def test_alignment_of_a_full_kernel_uses_the_flattened_targets():
    rng = np.random.default_rng(3)
    y = rng.normal(size=(6, 2))
    kernel = _psd(rng, 12)
    flat = y.reshape(-1)
    expected = _direct_alignment(kernel, np.outer(flat, flat), centered=True)
    assert kernel_target_alignment(kernel, y) == pytest.approx(expected, rel=1e-10)


def test_bad_input_raises():
    k = np.eye(4)
    with pytest.raises(ValueError, match="shapes differ"):
        relative_kernel_change(k, np.eye(5))
    with pytest.raises(ValueError, match="zero"):
        relative_kernel_change(np.zeros((4, 4)), k)
    with pytest.raises(ValueError, match="NaN"):
        relative_kernel_change(k, np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match="square"):
        kernel_target_alignment(np.ones((3, 4)), np.ones(3))
    with pytest.raises(ValueError, match="does not match"):
        kernel_target_alignment(k, np.ones(5))
    with pytest.raises(ValueError, match="target Gram matrix is zero"):
        kernel_target_alignment(k, np.ones(4))
    with pytest.raises(ValueError, match="NaN"):
        kernel_target_alignment(k, np.array([1.0, np.nan, 0.0, 1.0]))
