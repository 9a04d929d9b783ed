"""Subset-averaged collective variables against a direct per-subset computation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkbook.models import MLP
from ntkbook.ntk import ntk_fn
from ntkbook.ntk.subsample import (
    SubsampleRecorder,
    draw_subsets,
    subsampled_measures,
)


@pytest.fixture(scope="module")
def network():
    with jax.enable_x64(True):
        model = MLP(hidden=(8,), n_outputs=3, activation="tanh", param_dtype=jnp.float64)
        x = jax.random.normal(jax.random.PRNGKey(0), (30, 5), jnp.float64)
        params = model.init(jax.random.PRNGKey(1), x)
        yield model, params, x


def direct(model, params, x, subsets):
    """Entropy and trace per sample of every subset's kernel, computed from scratch."""
    entropies, traces = [], []
    kernel_fn = ntk_fn(model.apply, method="jacobian")  # not the method under test
    for row in subsets:
        kernel = np.asarray(kernel_fn(params, x[row]))
        eigenvalues = np.clip(np.linalg.eigvalsh(kernel), 0, None)
        p = eigenvalues / eigenvalues.sum()
        p = p[p > 0]
        entropies.append(-np.sum(p * np.log(p)))
        traces.append(np.trace(kernel) / len(row))
    return np.array(entropies), np.array(traces)


def test_draw_subsets_shapes_uniqueness_and_determinism():
    key = jax.random.PRNGKey(3)
    subsets = draw_subsets(key, 50, n_subsets=40, subset_size=7)
    assert subsets.shape == (40, 7)
    assert all(len(set(row)) == 7 for row in subsets)
    assert subsets.min() >= 0 and subsets.max() < 50
    np.testing.assert_array_equal(subsets, draw_subsets(key, 50, n_subsets=40, subset_size=7))
    other = draw_subsets(jax.random.PRNGKey(4), 50, n_subsets=40, subset_size=7)
    assert not np.array_equal(subsets, other)
    # Every sample is about equally likely: 280 draws over 50 samples, ~5.6 each.
    counts = np.bincount(subsets.ravel(), minlength=50)
    assert counts.min() >= 1 and counts.max() <= 16
    with pytest.raises(ValueError, match="subset_size=60 exceeds the 50 available samples"):
        draw_subsets(key, 50, n_subsets=3, subset_size=60)
    with pytest.raises(ValueError, match="subset_size must be at least 2"):
        draw_subsets(key, 50, n_subsets=3, subset_size=1)
    with pytest.raises(ValueError, match="n_subsets must be a positive integer"):
        draw_subsets(key, 50, n_subsets=0, subset_size=4)


@pytest.mark.parametrize("max_union", [1024, 1])  # union kernel sliced / every subset alone
def test_subsampled_measures_match_direct_computation(network, max_union):
    with jax.enable_x64(True):
        model, params, x = network
        subsets = draw_subsets(jax.random.PRNGKey(7), x.shape[0], n_subsets=12, subset_size=6)
        result = subsampled_measures(
            ntk_fn(model.apply),
            params,
            x,
            subsets,
            measures=("entropy", "trace_per_sample", "effective_entropy", "effective_rank"),
            max_union=max_union,
        )
        entropies, traces = direct(model, params, x, subsets)
    np.testing.assert_allclose(result.values["entropy"], entropies, rtol=1e-10)
    np.testing.assert_allclose(result.values["trace_per_sample"], traces, rtol=1e-10)
    np.testing.assert_allclose(result.values["effective_entropy"], entropies / np.log(6))
    np.testing.assert_allclose(result.values["effective_rank"], np.exp(entropies))
    assert result.mean["entropy"] == pytest.approx(entropies.mean(), rel=1e-10)
    assert result.standard_error["entropy"] == pytest.approx(
        entropies.std(ddof=1) / np.sqrt(12), rel=1e-8
    )
    assert result.n_subsets == 12 and result.subset_size == 6


def test_standard_error_shrinks_like_one_over_root_m(network):
    """Over more subsets the estimate of the same mean gets ~√(M₂/M₁) more precise."""
    with jax.enable_x64(True):
        model, params, x = network
        kernel_fn = ntk_fn(model.apply)
        errors = {}
        for m in (16, 256):
            subsets = draw_subsets(jax.random.PRNGKey(m), x.shape[0], n_subsets=m, subset_size=5)
            errors[m] = subsampled_measures(kernel_fn, params, x, subsets).standard_error
    ratio = errors[16]["entropy"] / errors[256]["entropy"]
    assert 2.0 < ratio < 8.0  # √16 = 4


def test_subsampled_measures_errors(network):
    model, params, x = network
    kernel_fn = ntk_fn(model.apply)
    good = np.array([[0, 1, 2], [3, 4, 5]])
    with pytest.raises(ValueError, match="unknown \\['rank'\\]"):
        subsampled_measures(kernel_fn, params, x, good, measures=("rank",))
    with pytest.raises(ValueError, match="subset indices must lie in \\[0, 30\\)"):
        subsampled_measures(kernel_fn, params, x, np.array([[0, 1], [2, 30]]))
    with pytest.raises(ValueError, match="same sample twice"):
        subsampled_measures(kernel_fn, params, x, np.array([[0, 0], [1, 2]]))
    with pytest.raises(ValueError, match="must be \\(M, n\\) with M >= 2"):
        subsampled_measures(kernel_fn, params, x, np.array([[0, 1, 2]]))
    with pytest.raises(ValueError, match="integer indices"):
        subsampled_measures(kernel_fn, params, x, good.astype(float))


def test_recorder_records_at_the_requested_epochs_with_fixed_subsets(network):
    with jax.enable_x64(True):
        model, params, x = network
        recorder = SubsampleRecorder(
            model.apply, x, key=jax.random.PRNGKey(2), n_subsets=8, subset_size=5, every=[0, 3]
        )
        assert recorder(0, params) is not None
        assert recorder(1, params) is None
        scaled = jax.tree_util.tree_map(lambda a: 2.0 * a, params)
        recorder(3, scaled)
        epochs, traces, errors = recorder.series("trace_per_sample")
        expected = subsampled_measures(ntk_fn(model.apply), scaled, x, recorder.subsets)
    np.testing.assert_array_equal(epochs, [0, 3])
    assert [r["epoch"] for r in recorder.records] == [0, 3]
    assert traces[1] == pytest.approx(expected.mean["trace_per_sample"], rel=1e-10)
    assert errors[1] == pytest.approx(expected.standard_error["trace_per_sample"], rel=1e-8)
    assert traces[1] > traces[0]
    with pytest.raises(ValueError, match="'loss' is not recorded"):
        recorder.series("loss")


def test_paired_change_is_the_mean_of_per_subset_differences(network):
    with jax.enable_x64(True):
        model, params, x = network
        recorder = SubsampleRecorder(
            model.apply, x, key=jax.random.PRNGKey(9), n_subsets=10, subset_size=6
        )
        with pytest.raises(ValueError, match="needs two recorded epochs"):
            recorder.paired_change("entropy")
        recorder(0, params)
        moved = jax.tree_util.tree_map(lambda a: a + 0.3 * jnp.sin(7.0 * a), params)
        recorder(5, moved)
        delta, error = recorder.paired_change("entropy")
        before, _ = direct(model, params, x, recorder.subsets)
        after, _ = direct(model, moved, x, recorder.subsets)
    assert delta == pytest.approx(np.mean(after - before), rel=1e-9)
    assert error == pytest.approx(np.std(after - before, ddof=1) / np.sqrt(10), rel=1e-8)
    _, means, _ = recorder.series("entropy")
    assert delta == pytest.approx(means[1] - means[0], rel=1e-9)


def test_paired_differences_between_chosen_epochs(network):
    with jax.enable_x64(True):
        model, params, x = network
        recorder = SubsampleRecorder(
            model.apply, x, key=jax.random.PRNGKey(5), n_subsets=8, subset_size=5
        )
        states = [
            jax.tree_util.tree_map(lambda a, k=k: (1.0 + 0.2 * k) * a, params) for k in range(3)
        ]
        for epoch, state in zip((0, 2, 7), states, strict=True):
            recorder(epoch, state)
        late = recorder.paired_differences("entropy", start=2)
        middle = direct(model, states[1], x, recorder.subsets)[0]
        last = direct(model, states[2], x, recorder.subsets)[0]
    assert late.shape == (8,)
    np.testing.assert_allclose(late, last - middle, rtol=1e-9, atol=1e-12)
    delta, error = recorder.paired_change("entropy", start=2, end=7)
    assert delta == pytest.approx(late.mean(), rel=1e-12)
    assert error == pytest.approx(late.std(ddof=1) / np.sqrt(8), rel=1e-12)
    with pytest.raises(ValueError, match="start epoch 3 was not recorded"):
        recorder.paired_differences("entropy", start=3)
    with pytest.raises(ValueError, match="must come before"):
        recorder.paired_differences("entropy", start=7, end=2)


def test_every_scalar_kernel_measure_of_the_shared_table_is_averaged(network):
    from ntkbook.ntk.measures import KERNEL_MEASURES, kernel_measures
    from ntkbook.ntk.subsample import SUBSAMPLE_MEASURES

    assert set(SUBSAMPLE_MEASURES) == set(KERNEL_MEASURES) - {"eigenvalues"}
    with jax.enable_x64(True):
        model, params, x = network
        subsets = draw_subsets(jax.random.PRNGKey(6), len(x), n_subsets=5, subset_size=6)
        result = subsampled_measures(
            ntk_fn(model.apply), params, x, subsets, measures=SUBSAMPLE_MEASURES
        )
        kernel_fn = ntk_fn(model.apply, method="jacobian")
        one_by_one = [
            kernel_measures(kernel_fn(params, x[row]), SUBSAMPLE_MEASURES) for row in subsets
        ]
    for name in SUBSAMPLE_MEASURES:
        expected = np.array([values[name] for values in one_by_one])
        np.testing.assert_allclose(result.values[name], expected, rtol=1e-8, err_msg=name)
    with pytest.raises(ValueError, match="unknown \\['eigenvalues'\\]"):
        subsampled_measures(ntk_fn(model.apply), params, x, subsets, measures=("eigenvalues",))
