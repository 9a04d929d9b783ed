"""Tests for RND and random selection (``ntkbook.data.selection``)."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ntkbook.data.selection import random_select, rnd_select
from ntkbook.models import CNN, MLP

NETWORK = MLP(hidden=(64, 64), n_outputs=16)
N_CLUSTER, N_OUTLIERS = 100, 6


@pytest.fixture(scope="module")
def clustered_pool() -> tuple[np.ndarray, np.ndarray]:
    """Three dense 2-D clusters of 100 points (σ = 0.1) and 6 outliers on a circle of radius 6."""
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    clusters = np.concatenate([c + 0.1 * rng.standard_normal((N_CLUSTER, 2)) for c in centres])
    angles = np.linspace(0.0, 2.0 * np.pi, N_OUTLIERS, endpoint=False)
    outliers = 1.5 + 6.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    pool = np.concatenate([clusters, outliers]).astype(np.float32)
    is_outlier = np.arange(pool.shape[0]) >= 3 * N_CLUSTER
    return pool, is_outlier


def test_rnd_indices_are_unique_and_in_range(clustered_pool):
    pool, _ = clustered_pool
    indices = rnd_select(jax.random.key(0), pool, 40, target=NETWORK).indices
    assert indices.shape == (40,)
    assert indices.dtype == np.int64
    assert np.unique(indices).size == 40
    assert indices.min() >= 0 and indices.max() < pool.shape[0]


def test_rnd_can_select_the_whole_pool():
    pool = np.random.default_rng(1).standard_normal((12, 3)).astype(np.float32)
    indices = rnd_select(jax.random.key(0), pool, 12, target=NETWORK).indices
    np.testing.assert_array_equal(np.sort(indices), np.arange(12))


def test_rnd_is_deterministic_under_a_key_and_differs_between_keys(clustered_pool):
    pool, _ = clustered_pool
    first = rnd_select(jax.random.key(3), pool, 40, target=NETWORK).indices
    again = rnd_select(jax.random.key(3), pool, 40, target=NETWORK).indices
    other = rnd_select(jax.random.key(4), pool, 40, target=NETWORK).indices
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_rnd_without_training_ranks_by_the_true_distance(clustered_pool):
    """With no predictor updates, the selection is the n largest ‖t(x) − p(x)‖₂, in order."""
    pool, _ = clustered_pool
    key = jax.random.key(5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # every fit stops at the cap of 0
        selection = rnd_select(key, pool, 25, target=NETWORK, max_predictor_steps=0)
    indices, distances = selection.indices, selection.distances
    assert np.all(selection.predictor_steps == 0)
    target_key, predictor_key, _ = jax.random.split(key, 3)
    target_out = np.asarray(NETWORK.apply(NETWORK.init(target_key, pool[:1]), pool), np.float64)
    predictor_out = np.asarray(
        NETWORK.apply(NETWORK.init(predictor_key, pool[:1]), pool), np.float64
    )
    reference = np.sqrt(np.sum((target_out - predictor_out) ** 2, axis=1))
    np.testing.assert_array_equal(indices, np.argsort(-reference, kind="stable")[:25])
    np.testing.assert_allclose(distances, reference[indices], rtol=1e-5)


def test_rnd_selection_is_nested(clustered_pool):
    """Greedy selection: the first k of a selection of n are the selection of size k."""
    pool, _ = clustered_pool
    short = rnd_select(jax.random.key(7), pool, 15, target=NETWORK).indices
    long = rnd_select(jax.random.key(7), pool, 40, target=NETWORK).indices
    np.testing.assert_array_equal(short, long[:15])


def test_rnd_retraining_lowers_the_distance_of_chosen_points(clustered_pool):
    """After its own points are learned, the distance at which later points are chosen drops."""
    pool, _ = clustered_pool
    distances = rnd_select(
        jax.random.key(0), pool, 40, target=NETWORK, predictor_tolerance=1e-3
    ).distances
    assert distances[-10:].mean() < 0.2 * distances[:3].mean()


def test_rnd_picks_rare_outliers_far_more_often_than_random(clustered_pool):
    pool, is_outlier = clustered_pool
    n = 10
    rnd_fraction = np.mean(
        [
            is_outlier[rnd_select(jax.random.key(s), pool, n, target=NETWORK).indices].sum()
            / N_OUTLIERS
            for s in range(3)
        ]
    )
    random_fraction = np.mean(
        [
            is_outlier[random_select(jax.random.key(s), pool.shape[0], n)].sum() / N_OUTLIERS
            for s in range(200)
        ]
    )
    # Random selection takes each point with probability n/306: expected fraction 0.033.
    assert random_fraction < 0.1
    assert rnd_fraction >= 0.8
    assert rnd_fraction - random_fraction > 0.7


def test_rnd_on_images_with_a_cnn():
    images = np.random.default_rng(2).uniform(size=(30, 8, 8)).astype(np.float32)
    images[7] += 3.0  # one image far brighter than the rest is the most novel
    network = CNN(conv_features=(4,), dense_features=(), n_outputs=8)
    indices = rnd_select(jax.random.key(0), images, 5, target=network).indices
    assert indices[0] == 7
    assert np.unique(indices).size == 5


def test_rnd_rejects_bad_input(clustered_pool):
    pool, _ = clustered_pool
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="n=307"):
        rnd_select(key, pool, 307, target=NETWORK)
    with pytest.raises(ValueError, match="n must be positive"):
        rnd_select(key, pool, 0, target=NETWORK)
    with pytest.raises(ValueError, match="n must be an integer"):
        rnd_select(key, pool, 2.5, target=NETWORK)
    bad = pool.copy()
    bad[4, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf \(first at index \(4, 1\)\)"):
        rnd_select(key, bad, 5, target=NETWORK)
    with pytest.raises(ValueError, match="pool is empty"):
        rnd_select(key, np.zeros((0, 2), np.float32), 1, target=NETWORK)
    with pytest.raises(ValueError, match="same D"):
        rnd_select(key, pool, 5, target=NETWORK, predictor=MLP(hidden=(8,), n_outputs=3))
    with pytest.raises(ValueError, match="unhashable"):
        rnd_select(key, pool, 5, target=MLP(hidden=[8], n_outputs=3))
    with pytest.raises(ValueError, match="learning_rate"):
        rnd_select(key, pool, 5, target=NETWORK, learning_rate=-1.0)
    with pytest.raises(ValueError, match="predictor_tolerance"):
        rnd_select(key, pool, 5, target=NETWORK, predictor_tolerance=0.0)
    with pytest.raises(ValueError, match="max_predictor_steps"):
        rnd_select(key, pool, 5, target=NETWORK, max_predictor_steps=-1)
    with pytest.raises(ValueError, match="diverged"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rnd_select(key, pool, 5, target=NETWORK, learning_rate=1e30)


def test_random_select_draws_unique_uniform_indices():
    indices = random_select(jax.random.key(0), 50, 50)
    np.testing.assert_array_equal(np.sort(indices), np.arange(50))
    np.testing.assert_array_equal(
        random_select(jax.random.key(1), 50, 10), random_select(jax.random.key(1), 50, 10)
    )
    assert not np.array_equal(
        random_select(jax.random.key(1), 50, 10), random_select(jax.random.key(2), 50, 10)
    )
    counts = np.bincount(
        np.concatenate([random_select(jax.random.key(s), 20, 5) for s in range(2000)]),
        minlength=20,
    )
    # Each index is drawn with probability 1/4 per draw: 500 ± 19 (binomial sd) times.
    assert np.all(np.abs(counts - 500) < 5 * np.sqrt(2000 * 0.25 * 0.75))


def test_random_select_rejects_bad_input():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="n=11"):
        random_select(key, 10, 11)
    with pytest.raises(ValueError, match="n must be positive"):
        random_select(key, 10, -1)
    with pytest.raises(ValueError, match="pool is empty"):
        random_select(key, 0, 1)


def test_rnd_trains_the_predictor_until_its_loss_reaches_the_tolerance(clustered_pool):
    """Every fit ends at or below the tolerance, and the first one matches a hand-run Adam loop
    on the first chosen point (loss: mean over points and outputs of the squared difference)."""
    pool, _ = clustered_pool
    key, tolerance = jax.random.key(11), 1e-3
    selection = rnd_select(key, pool, 12, target=NETWORK, predictor_tolerance=tolerance)
    assert selection.n_capped == 0 and not selection.capped.any()
    assert np.all(selection.predictor_loss[:-1] <= tolerance)
    assert selection.predictor_steps[0] > 0
    assert selection.predictor_steps[-1] == 0  # nothing is scored after the last point

    target_key, predictor_key, _ = jax.random.split(key, 3)
    target_params = NETWORK.init(target_key, pool[:1])
    params = NETWORK.init(predictor_key, pool[:1])
    targets = NETWORK.apply(target_params, pool)
    first = int(np.argmax(np.linalg.norm(targets - NETWORK.apply(params, pool), axis=1)))
    assert selection.indices[0] == first
    x, t = pool[first : first + 1], targets[first : first + 1]

    def loss(p):
        return jnp.mean(jnp.square(NETWORK.apply(p, x) - t))

    optimizer = optax.adam(1e-2)
    state, steps = optimizer.init(params), 0
    while float(loss(params)) > tolerance:
        updates, state = optimizer.update(jax.grad(loss)(params), state, params)
        params, steps = optax.apply_updates(params, updates), steps + 1
    assert selection.predictor_steps[0] == steps
    np.testing.assert_allclose(selection.predictor_loss[0], float(loss(params)), rtol=1e-4)


def test_rnd_reports_fits_that_stop_at_the_step_cap(clustered_pool):
    pool, _ = clustered_pool
    with pytest.warns(RuntimeWarning, match=r"max_predictor_steps=2 .* in 9 of 9 fits"):
        selection = rnd_select(
            jax.random.key(0),
            pool,
            10,
            target=NETWORK,
            predictor_tolerance=1e-9,
            max_predictor_steps=2,
        )
    assert selection.n_capped == 9 and selection.n_fits == 9
    np.testing.assert_array_equal(selection.capped, np.arange(10) < 9)
    np.testing.assert_array_equal(selection.predictor_steps, [2] * 9 + [0])
    assert np.all(selection.predictor_loss[:9] > 1e-9)


def test_rnd_random_first_starts_from_a_drawn_point(clustered_pool):
    pool, _ = clustered_pool
    starts = {
        int(rnd_select(jax.random.key(s), pool, 3, target=NETWORK, random_first=True).indices[0])
        for s in range(6)
    }
    selection = rnd_select(jax.random.key(0), pool, 3, target=NETWORK, random_first=True)
    assert np.isnan(selection.distances[0]) and np.all(np.isfinite(selection.distances[1:]))
    assert len(starts) >= 4  # six keys, 306 points: repeats are rare
