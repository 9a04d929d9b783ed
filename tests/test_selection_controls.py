"""Tests for the controls and the training engine of ``ntkbook.data.selection``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ntkbook import stats
from ntkbook.data.selection import (
    class_coverage,
    fit_and_test,
    mean_squared_norm,
    norm_matched_select,
    random_select,
)
from ntkbook.models import CNN
from ntkbook.train import accuracy, cross_entropy_loss, train


@pytest.fixture(scope="module")
def image_pool() -> np.ndarray:
    """400 8×8 'images' whose squared norms spread over a factor of ~10, like digits do."""
    rng = np.random.default_rng(0)
    brightness = rng.uniform(0.3, 1.0, size=(400, 1, 1))
    return (brightness * rng.uniform(size=(400, 8, 8))).astype(np.float32)


def _mean_square(pool, indices):
    return float(np.mean([np.sum(np.asarray(pool[i], np.float64) ** 2) for i in indices]))


@pytest.mark.parametrize("n", [10, 40, 90])
@pytest.mark.parametrize("shift", [0.75, 1.0, 1.3])
def test_norm_matched_sets_match_the_mean_squared_norm_within_2_percent(image_pool, n, shift):
    target = shift * mean_squared_norm(image_pool)
    for seed in range(3):
        indices = norm_matched_select(jax.random.key(seed), image_pool, n, target)
        assert indices.shape == (n,) and np.unique(indices).size == n
        assert abs(_mean_square(image_pool, indices) / target - 1.0) <= 0.02


def test_norm_matched_sets_are_random(image_pool):
    target = 1.2 * mean_squared_norm(image_pool)
    draws = [set(norm_matched_select(jax.random.key(s), image_pool, 30, target)) for s in range(5)]
    overlaps = [len(a & b) for i, a in enumerate(draws) for b in draws[i + 1 :]]
    assert max(overlaps) < 20  # different keys give mostly different sets


def test_norm_matched_at_the_pool_mean_is_close_to_uniform(image_pool):
    """At the pool's own mean the tilt is ~0: every point is drawn about equally often."""
    target = mean_squared_norm(image_pool)
    counts = np.bincount(
        np.concatenate(
            [norm_matched_select(jax.random.key(s), image_pool, 40, target) for s in range(300)]
        ),
        minlength=400,
    )
    norms = np.sum(image_pool.reshape(400, -1).astype(np.float64) ** 2, axis=1)
    low, high = norms < np.quantile(norms, 0.25), norms > np.quantile(norms, 0.75)
    # Uniform: 30 draws per point on average. The quartiles differ by less than 20%.
    assert abs(counts[high].mean() / counts[low].mean() - 1.0) < 0.2


def test_norm_matched_rejects_an_unreachable_mean(image_pool):
    norms = np.sort(np.sum(image_pool.reshape(400, -1).astype(np.float64) ** 2, axis=1))
    with pytest.raises(ValueError, match="cannot be matched"):
        norm_matched_select(jax.random.key(0), image_pool, 20, 1.1 * norms[-20:].mean())
    with pytest.raises(ValueError, match="target_mean"):
        norm_matched_select(jax.random.key(0), image_pool, 20, -1.0)


def test_mean_squared_norm_and_class_coverage():
    x = np.array([[3.0, 4.0], [0.0, 1.0]])
    assert mean_squared_norm(x) == pytest.approx(13.0)
    labels = np.array([0, 1, 1, 2, 2, 2])
    assert class_coverage(labels, [1, 2]) == 1
    assert class_coverage(labels, [0, 2, 5]) == 3
    with pytest.raises(ValueError, match="indices"):
        class_coverage(labels, [6])


def test_pooled_correlation_is_the_partial_correlation_given_the_group():
    rng = np.random.default_rng(3)
    groups = np.repeat([10, 30, 50], 40)
    x = groups / 10 + rng.standard_normal(120)
    y = 0.5 * x + groups / 5 + rng.standard_normal(120)
    pooled = stats.pooled_correlation(x, y, groups)
    # Reference: residuals of a least-squares fit on one indicator per group.
    design = (groups[:, None] == np.unique(groups)[None, :]).astype(float)
    residual = [v - design @ np.linalg.lstsq(design, v, rcond=None)[0] for v in (x, y)]
    reference = np.corrcoef(*residual)[0, 1]
    assert pooled.coefficient == pytest.approx(reference, rel=1e-10)
    se = 1.0 / np.sqrt(120 - 3 - 2)
    assert pooled.low == pytest.approx(np.tanh(np.arctanh(reference) - 1.959964 * se), rel=1e-5)
    assert pooled.high == pytest.approx(np.tanh(np.arctanh(reference) + 1.959964 * se), rel=1e-5)
    # One group: the plain Pearson correlation with its Fisher interval.
    single = stats.pooled_correlation(x[:40], y[:40], groups[:40])
    plain = stats.pearson(x[:40], y[:40])
    assert (single.coefficient, single.low, single.high) == pytest.approx(
        (plain.coefficient, plain.low, plain.high), rel=1e-10
    )
    assert single.p_value == pytest.approx(plain.p_value, rel=1e-8)


def test_pooled_correlation_rejects_bad_input():
    with pytest.raises(ValueError, match="too few"):
        stats.pooled_correlation([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0], [0, 0, 1, 1])
    with pytest.raises(ValueError, match="NaN"):
        stats.pooled_correlation([1.0, np.nan, 3, 4, 5], [1.0, 2, 3, 4, 5], [0] * 5)


def test_fit_and_test_trains_each_set_exactly_as_train_does():
    """Against ntkbook.train.train, one set at a time, including a smaller last batch."""
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(60, 8, 8)).astype(np.float32)
    y = rng.integers(0, 3, size=60)
    test_x, test_y = x[:20], y[:20]
    model = CNN(conv_features=(4,), dense_features=(8,), n_outputs=3)
    optimizer = optax.adam(1e-2)
    sets = np.stack([random_select(jax.random.key(s), 60, 13) for s in range(3)])
    keys = jax.random.split(jax.random.key(9), 3)
    stacked = [model.init(jax.random.key(s), x[:1]) for s in range(3)]
    params = jax.tree.map(lambda *leaves: jnp.stack(leaves), *stacked)
    common = dict(epochs=4, batch_size=5, keys=keys, params_per_set=True)
    result = fit_and_test(
        model.apply,
        params,
        optimizer,
        cross_entropy_loss,
        (x[sets], y[sets]),
        (test_x, test_y),
        **common,
    )
    together = fit_and_test(
        model.apply,
        params,
        optimizer,
        cross_entropy_loss,
        (x[sets], y[sets]),
        (test_x, test_y),
        parallel=3,
        **common,
    )
    for m in range(3):
        reference = train(
            model.apply,
            stacked[m],
            optimizer,
            cross_entropy_loss,
            (x[sets[m]], y[sets[m]]),
            epochs=4,
            batch_size=5,
            key=keys[m],
        )
        logits = model.apply(reference.params, test_x)
        assert result["test_accuracy"][m] == pytest.approx(float(accuracy(logits, test_y)))
        assert result["test_loss"][m] == pytest.approx(
            float(cross_entropy_loss(logits, test_y)), rel=1e-4
        )
    np.testing.assert_allclose(together["test_loss"], result["test_loss"], rtol=1e-4)


def test_fit_and_test_rejects_bad_input():
    model = CNN(conv_features=(2,), dense_features=(), n_outputs=2)
    x = np.zeros((2, 4, 8, 8), np.float32)
    y = np.zeros((2, 4), np.int32)
    params = model.init(jax.random.key(0), x[0, :1])
    keys = jax.random.split(jax.random.key(0), 2)
    test = (x[0], y[0])
    run = dict(epochs=1, batch_size=2)
    with pytest.raises(ValueError, match="one key per set"):
        fit_and_test(
            model.apply,
            params,
            optax.sgd(0.1),
            cross_entropy_loss,
            (x, y),
            test,
            keys=keys[:1],
            **run,
        )
    with pytest.raises(ValueError, match="params_per_set"):
        fit_and_test(
            model.apply,
            params,
            optax.sgd(0.1),
            cross_entropy_loss,
            (x, y),
            test,
            keys=keys,
            params_per_set=True,
            **run,
        )
    with pytest.raises(ValueError, match="batch_size"):
        fit_and_test(
            model.apply,
            params,
            optax.sgd(0.1),
            cross_entropy_loss,
            (x, y),
            test,
            keys=keys,
            epochs=1,
            batch_size=0,
        )
