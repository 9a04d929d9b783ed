"""The table of kernel measures against numpy's eigvalsh and hand-written formulas."""

import numpy as np
import pytest

from ntkbook.ntk.measures import (
    KERNEL_MEASURES,
    kernel_measures,
    kernel_measures_stack,
)


def _kernel(seed: int, n: int = 12, rank: int = 7) -> np.ndarray:
    features = np.random.default_rng(seed).normal(size=(n, rank))
    return features @ features.T + 0.05 * np.eye(n)


def _reference(kernel: np.ndarray, n_outputs: int = 1) -> dict:
    lam = np.sort(np.linalg.eigvalsh(kernel))[::-1]
    p = lam / lam.sum()
    entropy = -np.sum(p * np.log(p))
    d = np.diag(kernel)
    corr = kernel / np.sqrt(np.outer(d, d))
    pc = np.linalg.eigvalsh(corr) / len(d)
    w = np.sqrt(d) / np.sqrt(d).sum()
    return {
        "entropy": entropy,
        "effective_entropy": entropy / np.log(len(lam)),
        "effective_rank": np.exp(entropy),
        "eigenvalues": lam,
        "trace": np.trace(kernel),
        "trace_per_sample": np.trace(kernel) / (len(kernel) // n_outputs),
        "covariance_entropy": -np.sum(pc * np.log(pc)),
        "self_entropy": -np.sum(w * np.log(w)),
    }


def test_every_measure_matches_eigvalsh_and_hand_formulas():
    kernel = _kernel(0)
    values = kernel_measures(kernel, KERNEL_MEASURES)
    expected = _reference(kernel)
    assert set(values) == set(KERNEL_MEASURES)
    for name in KERNEL_MEASURES:
        np.testing.assert_allclose(values[name], expected[name], rtol=1e-10, err_msg=name)
    assert isinstance(values["entropy"], float)
    assert isinstance(values["eigenvalues"], list)


def test_flat_and_rank_one_spectra_have_known_entropies():
    n = 9
    flat = kernel_measures(3.0 * np.eye(n), ("entropy", "effective_entropy", "effective_rank"))
    assert flat["entropy"] == pytest.approx(np.log(n), rel=1e-12)
    assert flat["effective_entropy"] == pytest.approx(1.0, rel=1e-12)
    assert flat["effective_rank"] == pytest.approx(n, rel=1e-12)
    v = np.arange(1.0, n + 1)
    rank_one = kernel_measures(np.outer(v, v), ("entropy", "effective_rank"))
    assert rank_one["entropy"] == pytest.approx(0.0, abs=1e-9)
    assert rank_one["effective_rank"] == pytest.approx(1.0, abs=1e-8)


def test_trace_per_sample_divides_by_samples_not_rows():
    kernel = _kernel(1, n=12)
    values = kernel_measures(kernel, ("trace", "trace_per_sample"), n_outputs=3)
    assert values["trace_per_sample"] == pytest.approx(np.trace(kernel) / 4, rel=1e-12)
    assert values["trace"] == pytest.approx(np.trace(kernel), rel=1e-12)
    with pytest.raises(ValueError, match="n_outputs=5"):
        kernel_measures(kernel, ("trace",), n_outputs=5)


def test_stack_matches_one_kernel_at_a_time():
    kernels = np.stack([_kernel(s) for s in range(5)]).astype(np.float32)
    stacked = kernel_measures_stack(kernels, KERNEL_MEASURES)
    for m in range(5):
        one = kernel_measures(kernels[m], KERNEL_MEASURES)
        for name in KERNEL_MEASURES:
            np.testing.assert_allclose(stacked[name][m], one[name], rtol=1e-12, err_msg=name)
    assert stacked["eigenvalues"].shape == (5, 12)


def test_unknown_measure_is_named_with_the_valid_ones():
    with pytest.raises(ValueError, match=r"\['entropie'\].*trace_per_sample"):
        kernel_measures(_kernel(0), ("entropy", "entropie"))
    with pytest.raises(ValueError, match="string"):
        kernel_measures(_kernel(0), "entropy")
    with pytest.raises(ValueError, match="empty"):
        kernel_measures(_kernel(0), ())


def test_bad_kernels_raise():
    with pytest.raises(ValueError, match="square"):
        kernel_measures(np.ones((3, 4)))
    kernel = _kernel(0)
    kernel[2, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        kernel_measures(kernel)
    with pytest.raises(ValueError, match="not symmetric"):
        kernel_measures(np.array([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="positive semi-definite"):
        kernel_measures(np.array([[1.0, 0.0], [0.0, -1.0]]))


def test_round_off_below_zero_is_clipped():
    v = np.arange(1.0, 6.0)
    kernel = np.outer(v, v)
    values = kernel_measures(kernel - 1e-13 * np.eye(5), ("eigenvalues",))
    assert min(values["eigenvalues"]) == 0.0
