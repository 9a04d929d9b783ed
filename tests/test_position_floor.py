"""The label-noise floor of χ_pos, the self/cross split of δL, the two-batch estimator with
disjoint batches and the spectral recorder.

References are independent of the code under test: a model whose eNTK is the identity (so
χ_pos = 1/(N·O) for every gradient), an exact expectation by enumerating every label vector,
per-sample gradients in a Python loop, and Monte Carlo over many replicates.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ntkbook import ntk
from ntkbook.models import MLP
from ntkbook.train import Recorder, cross_entropy_loss, mse_loss, train

F64 = jnp.float64


@pytest.fixture(autouse=True, scope="module")
def _float64():
    with jax.enable_x64(True):
        yield


def one_hot_readout(params, x):
    """``f(x_i) = W[i]`` for one-hot inputs ``x_i = e_i``: every sample has its own
    parameters, so ``Θ = I`` on the ``N·O`` outputs."""
    return x @ params["w"]


@pytest.fixture(scope="module")
def identity_kernel_problem(_float64):
    n, o = 6, 4
    params = {"w": jax.random.normal(jax.random.key(0), (n, o), F64)}
    return params, jnp.eye(n, dtype=F64), n, o


@pytest.fixture(scope="module")
def mlp_problem(_float64):
    model = MLP(hidden=(7,), n_outputs=3, activation="tanh", param_dtype=F64)
    x = jax.random.normal(jax.random.key(1), (12, 4), F64)
    params = model.init(jax.random.key(2), x[:1])
    y = jax.random.randint(jax.random.key(3), (12,), 0, 3)
    return model.apply, params, x, y


def test_floor_of_an_identity_kernel_is_one_over_n_outputs(identity_kernel_problem):
    params, x, n, o = identity_kernel_problem
    floor = ntk.chi_pos_floor(
        one_hot_readout, params, x, key=jax.random.key(4), n_draws=5, cross=True
    )
    assert floor.reference == pytest.approx(1 / (n * o))
    assert floor.value == pytest.approx(1 / (n * o), rel=1e-10)
    assert floor.standard_error == pytest.approx(0.0, abs=1e-12)
    # Samples share no parameter, so δL has no cross-sample part at all.
    assert floor.cross_rms == pytest.approx(0.0, abs=1e-12)
    assert floor.n_draws == 5


def test_floor_matches_the_exact_expectation_over_every_label_vector(mlp_problem):
    apply_fn, params, x, _ = mlp_problem
    x = x[:2]
    probabilities = np.asarray(jax.nn.softmax(apply_fn(params, x), axis=-1))
    exact = 0.0
    for labels in itertools.product(range(3), repeat=2):
        weight = probabilities[0, labels[0]] * probabilities[1, labels[1]]
        position = ntk.spectral_position(apply_fn, params, x, jnp.array(labels), cross_entropy_loss)
        exact += weight * position.chi_pos
    floor = ntk.chi_pos_floor(apply_fn, params, x, key=jax.random.key(5), n_draws=4000)
    assert abs(floor.value - exact) < 4 * floor.standard_error
    assert floor.standard_error < 0.05 * exact  # the test can tell a wrong mean apart


def test_floor_rejects_bad_input(mlp_problem):
    apply_fn, params, x, _ = mlp_problem
    with pytest.raises(ValueError, match="n_draws must be an integer of at least 2, got 1"):
        ntk.chi_pos_floor(apply_fn, params, x, key=jax.random.key(0), n_draws=1)
    with pytest.raises(ValueError, match="chi_net must be positive, got 0.0"):
        ntk.chi_pos_floor(apply_fn, params, x, key=jax.random.key(0), chi_net=0.0)


@pytest.mark.parametrize("loss_name", ["cross_entropy", "mse"])
def test_self_term_is_the_sum_of_per_sample_gradient_norms(mlp_problem, loss_name):
    apply_fn, params, x, y = mlp_problem
    loss_fn = cross_entropy_loss
    if loss_name == "mse":
        y = jax.random.normal(jax.random.key(6), (12, 3), F64)
        loss_fn = mse_loss
    total = 0.0
    for i in range(x.shape[0]):
        grad = jax.grad(lambda p, i=i: loss_fn(apply_fn(p, x[i : i + 1]), y[i : i + 1]))(params)
        total += sum(float(jnp.sum(g**2)) for g in jax.tree_util.tree_leaves(grad))
    assert ntk.self_delta_loss(apply_fn, params, x, y, loss_fn) == pytest.approx(
        total / x.shape[0] ** 2, rel=1e-10
    )


@pytest.mark.parametrize("block_size", [None, 5])
def test_kernel_trace_is_the_sum_of_the_diagonal(mlp_problem, block_size):
    apply_fn, params, x, _ = mlp_problem
    reference = float(jnp.sum(ntk.ntk_diagonal(apply_fn, params, x)))
    assert ntk.kernel_trace(apply_fn, params, x, block_size=block_size) == pytest.approx(
        reference, rel=1e-10
    )


def test_two_batch_estimator_is_unbiased_for_the_cross_sample_part(mlp_problem):
    apply_fn, params, x, y = mlp_problem
    n = x.shape[0]
    full = ntk.spectral_position(apply_fn, params, x, y, cross_entropy_loss)
    own = ntk.self_delta_loss(apply_fn, params, x, y, cross_entropy_loss)
    cross = n / (n - 1) * (full.delta_loss - own)
    estimate = ntk.two_batch_chi_pos(
        apply_fn,
        params,
        x,
        y,
        cross_entropy_loss,
        key=jax.random.key(7),
        batch_size=3,
        n_pairs=600,
    )
    assert abs(estimate.delta_loss - cross) < 4 * estimate.delta_loss_standard_error
    # The self term is large here: a wrong (overlapping) estimator would be far off.
    assert abs(full.delta_loss - cross) > 10 * estimate.delta_loss_standard_error
    target = cross / (full.chi_loss * full.chi_net)
    assert abs(estimate.chi_pos - target) < 4 * estimate.chi_pos_standard_error + 0.05 * target


def test_two_batch_estimator_rejects_overlapping_sizes(mlp_problem):
    apply_fn, params, x, y = mlp_problem
    with pytest.raises(ValueError, match="two disjoint batches of 7 need 14 samples; x has 12"):
        ntk.two_batch_chi_pos(
            apply_fn,
            params,
            x,
            y,
            cross_entropy_loss,
            key=jax.random.key(0),
            batch_size=7,
            n_pairs=4,
        )
    with pytest.raises(ValueError, match="n_pairs must be an integer of at least 2, got 1"):
        ntk.two_batch_chi_pos(
            apply_fn,
            params,
            x,
            y,
            cross_entropy_loss,
            key=jax.random.key(0),
            batch_size=2,
            n_pairs=1,
        )


def test_ratio_of_means_standard_error_matches_monte_carlo():
    rng = np.random.default_rng(0)
    mean = np.array([2.0, 1.5, 3.0])
    covariance = np.array([[1.0, 0.3, -0.2], [0.3, 0.5, 0.1], [-0.2, 0.1, 0.8]])
    m = 200
    ratios, errors = [], []
    for _ in range(2000):
        samples = rng.multivariate_normal(mean, covariance, size=m)
        ratio, error = ntk.ratio_of_means(samples)
        ratios.append(ratio)
        errors.append(error)
    assert np.mean(ratios) == pytest.approx(2.0 / 4.5, rel=0.01)
    assert np.mean(errors) == pytest.approx(np.std(ratios), rel=0.1)
    with pytest.raises(ValueError, match="samples must have shape"):
        ntk.ratio_of_means(np.ones((1, 3)))


def test_spectral_recorder_follows_the_recorder_protocol(mlp_problem):
    apply_fn, params, x, y = mlp_problem
    snapshots = {}
    recorder = ntk.spectral_recorder(
        apply_fn,
        x,
        y,
        cross_entropy_loss,
        every=[0, 2],
        floor_key=jax.random.key(8),
        floor_draws=3,
        cross=True,
        snapshots=snapshots,
    )
    assert isinstance(recorder, Recorder)
    train(
        apply_fn,
        params,
        optax.sgd(0.1),
        cross_entropy_loss,
        (x, y),
        epochs=3,
        batch_size=4,
        key=jax.random.key(9),
        recorders=[recorder],
    )
    assert [r["epoch"] for r in recorder.records] == [0, 2, 3]
    assert sorted(snapshots) == [0, 2, 3]
    for record in recorder.records:
        position = ntk.spectral_position(
            apply_fn, snapshots[record["epoch"]], x, y, cross_entropy_loss
        )
        assert record["chi_pos"] == pytest.approx(position.chi_pos, rel=1e-10)
        own = ntk.self_delta_loss(apply_fn, snapshots[record["epoch"]], x, y, cross_entropy_loss)
        assert record["chi_pos_cross"] == pytest.approx(
            position.chi_pos - own / (position.chi_loss * position.chi_net), rel=1e-8
        )
        assert record["chi_pos_floor"] > 0 and record["chi_pos_cross_noise"] >= 0
    series = recorder.series("chi_pos_floor")
    assert list(series.epochs) == [0, 2, 3]
    assert series.standard_error is not None and np.all(series.standard_error >= 0)
