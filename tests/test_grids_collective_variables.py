"""The collective-variables grid: its points, their keys, and tiny runs through the store."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkbook import store as st
from ntkbook import sweep
from ntkbook.experiments import dense_run
from ntkbook.grids import collective_variables as cv
from ntkbook.ntk import log_spaced_epochs

TINY = {
    "dataset": "digits",
    "n_train": 40,
    "n_test": 30,
    "n_probe": 8,
    "epochs": 2,
    "batch_size": 16,
    "learning_rate": 1e-3,
    "n_records": 3,
    "seeds": 2,
    "activation_width": 6,
    "activation_depth": 1,
    "narrow_wide": [3, 8],
    "narrow_wide_depth": 2,
    "shallow_deep": [1, 2],
    "shallow_deep_width": 5,
    "phase_widths": [3, 5],
    "phase_depths": [1, 2],
    "phase_seeds": 2,
    "fuel_widths": [3, 5],
    "fuel_depths": [1],
    "fuel_epochs": 2,
    "fuel_batch_size": 32,
    "seed": 0,
}


def keys(points):
    fingerprint = st.code_fingerprint()
    return [st.make_key("collective_variables.dense", p, fingerprint) for p in points]


def test_grid_has_every_configuration_in_order_with_its_seeds():
    figure1, phase, fuel = cv.grid(TINY)
    assert {g.experiment for g in (figure1, phase, fuel)} == {cv.dense}
    assert [(p["hidden"], p["activation"]) for p in figure1.points] == [
        (hidden, activation)
        for members in cv.comparisons(TINY).values()
        for _, hidden, activation in members
    ]
    assert [(p["hidden"], p["activation"]) for p in figure1.points] == [
        ([6], "relu"), ([6], "tanh"), ([3, 3], "relu"), ([8, 8], "relu"), ([5], "relu"),
        ([5, 5], "relu"),
    ]  # fmt: skip
    assert all(p["probes"] == ["train", "test"] and p["data"] == "digits" for p in figure1.points)
    assert [p["hidden"] for p in phase.points] == [[3], [5], [3, 3], [5, 5]]
    assert all(p["probes"] == ["train"] and p["epochs"] == 2 for p in phase.points)
    assert [p["hidden"] for p in fuel.points] == [[3], [5]]
    assert all(
        p["data"] == "auto_mpg" and p["epochs"] == 2 and "n_train" not in p for p in fuel.points
    )
    assert [p["n_seeds"] for g in (figure1, phase, fuel) for p in g.points] == [2] * 12
    assert set(cv.PARAMETERS) == set(TINY)


def test_a_configuration_under_two_labels_is_computed_once():
    # "depth 1, width 6" of the depth comparison is "ReLU, width 6" of the activation one
    shared = {**TINY, "shallow_deep_width": 6, "shallow_deep": [1, 2]}
    figure1 = cv.grid(shared)[0]
    labels = [label for members in cv.comparisons(shared).values() for label, _, _ in members]
    assert len(figure1.points) == len(set(labels)) == 6  # one point per label, in order
    assert figure1.points[0] == figure1.points[4] and len(set(keys(figure1.points))) == 5


def test_adding_a_width_leaves_every_other_point_key_unchanged():
    before = [set(keys(g.points)) for g in cv.grid(TINY)]
    wider = [set(keys(g.points)) for g in cv.grid({**TINY, "phase_widths": [3, 4, 5]})]
    assert before[1] < wider[1] and len(wider[1] - before[1]) == 2  # one new width × 2 depths
    assert before[0] == wider[0] and before[2] == wider[2]


def test_the_run_key_depends_on_the_run_not_on_its_place():
    def data(key):
        return np.asarray(jax.random.key_data(key))

    a = cv.run_key(0, "digits", [5, 5], "relu", 1)
    assert np.array_equal(data(a), data(cv.run_key(0, "digits", (5, 5), "relu", 1)))
    others = [
        cv.run_key(1, "digits", [5, 5], "relu", 1),
        cv.run_key(0, "mnist", [5, 5], "relu", 1),
        cv.run_key(0, "digits", [5], "relu", 1),
        cv.run_key(0, "digits", [5, 5], "tanh", 1),
        cv.run_key(0, "digits", [5, 5], "relu", 0),
    ]
    assert all(not np.array_equal(data(a), data(other)) for other in others)


def test_a_point_is_the_runs_the_package_functions_give(tmp_path):
    point = cv.grid(TINY)[1].points[1]  # phase diagram: depth 1, width 5, two seeds
    result = sweep.map(cv.dense, [point], client=sweep.SERIAL, store=str(tmp_path))
    [seeds] = cv.runs(result)
    # The same runs done with the package functions, as the chapter did before its runs became
    # points of a sweep (cv.adam is optax.adam, one object per rate: compiled once).
    data = cv.load("digits", 0, 40, 30)
    x_train, x_test = data.flat()
    for s, run in enumerate(seeds):
        direct = dense_run(
            (jnp.asarray(x_train), jnp.asarray(data.y_train)),
            (jnp.asarray(x_test), jnp.asarray(data.y_test)),
            hidden=[5],
            n_outputs=10,
            key=cv.run_key(0, "digits", [5], "relu", s),
            epochs=2,
            batch_size=16,
            optimizer=cv.adam(1e-3),
            every=log_spaced_epochs(2, 3),
            n_probe=8,
            probes=("train",),
        )
        assert run.n_parameters == direct.n_parameters == 64 * 5 + 5 + 5 * 10 + 10
        assert run.history == direct.history
        assert run.records == direct.records and list(run.records) == ["train"]
        assert run.series("entropy").epochs.tolist() == [0, 1, 2]
        assert run.regime(min_slope=0.01) == direct.regime(min_slope=0.01)
    assert seeds[0].history["test_loss"] != seeds[1].history["test_loss"]
    # Seed 0 is the same run in a point of one seed (a new point: n_seeds is a parameter).
    [[alone]] = cv.runs([cv.dense({**point, "n_seeds": 1})])
    assert alone.history == seeds[0].history and alone.records == seeds[0].records


def test_a_point_is_computed_once_and_then_read_from_the_store(tmp_path):
    (_, _, fuel) = cv.grid(TINY)
    points = fuel.points[:1]  # Auto-MPG, depth 1, width 3, two seeds
    first = sweep.map(cv.dense, points, client=sweep.SERIAL, store=str(tmp_path))
    again = sweep.map(cv.dense, points, client=sweep.SERIAL, store=str(tmp_path))
    assert (first.computed, again.computed, again.from_store) == (1, 0, 1)
    [seeds] = cv.runs(again)
    assert [run.n_parameters for run in seeds] == [9 * 3 + 3 + 3 + 1] * 2
    # train first (the default probe of the series) although a store sorts "test" first
    assert list(seeds[0].records) == ["train", "test"]
    assert "test_accuracy" not in seeds[0].history  # a regression: squared error only
    assert seeds[0].history["test_loss"] != seeds[1].history["test_loss"]  # two seeds differ
    for computed, read in zip(cv.runs(first)[0], seeds, strict=True):
        assert computed.history == read.history and computed.records == read.records


def test_a_missing_or_bad_parameter_is_named():
    with pytest.raises(KeyError, match="phase_seeds"):
        cv.grid({k: v for k, v in TINY.items() if k != "phase_seeds"})
    (_, phase, fuel) = cv.grid(TINY)
    point = phase.points[0]
    with pytest.raises(ValueError, match="misses \\['n_probe'\\]"):
        cv.dense({k: v for k, v in point.items() if k != "n_probe"})
    with pytest.raises(ValueError, match="unknown \\['n_train'\\]"):
        cv.dense({**fuel.points[0], "n_train": 10})
    with pytest.raises(ValueError, match="unknown data set 'cifar'"):
        cv.load("cifar", 0, 10, 10)
    with pytest.raises(ValueError, match="n_seeds must be a positive integer, got 0"):
        cv.dense({**point, "n_seeds": 0})
    with pytest.raises(ValueError, match="hidden must be a list of positive integers"):
        cv.dense({**point, "hidden": [4, 0]})
