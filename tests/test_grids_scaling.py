"""The scaling sweep's grid: its points, their keys, one tiny run against the chapter's old
path through the package functions, and one run through the store."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkbook import store as st
from ntkbook import sweep
from ntkbook.data import load_dataset
from ntkbook.experiments import dense_run, initial_mlp, kernel_learning_rate, run_measures
from ntkbook.grids import point_key, scaling
from ntkbook.train import mse_loss

TINY = {
    "dataset": "digits",
    "data_dir": "",
    "n_test": 20,
    "n_probe": 10,
    "depth": 1,
    "activation": "tanh",
    "data_sizes": [10, 20],
    "data_width": 8,
    "widths": [4, 8, 16],
    "n_train": 20,
    "steps": 4,
    "batch_size": 10,
    "fixed_eta": 1.0,
    "eta": 0.5,
    "n_seeds": 2,
    "seed": 0,
}


def keys(parameters, arm=None):
    fingerprint = st.code_fingerprint()
    (runs,) = scaling.grid(parameters)
    return {
        st.make_key("scaling.run", p, fingerprint)
        for p in runs.points
        if arm is None or p["arm"] == arm
    }


def test_grid_has_every_run_in_arm_axis_value_seed_order():
    (runs,) = scaling.grid(TINY)
    assert runs.experiment is scaling.run
    expected = [
        (arm, n, width, s, axis == "width")
        for arm in ("fixed", "kernel")
        for axis, values in (("n", [10, 20]), ("width", [4, 8, 16]))
        for value in values
        for n, width in [(value, 8) if axis == "n" else (20, value)]
        for s in range(2)
    ]
    assert len(runs.points) == 2 * (2 + 3) * 2
    assert [
        (p["arm"], p["n"], p["width"], p["seed_index"], p["linearised"]) for p in runs.points
    ] == expected
    fixed, kernel = runs.points[0], runs.points[-1]
    assert (fixed["eta"], fixed["rate_width"]) == (1.0, 16)
    assert kernel["eta"] == 0.5 and "rate_width" not in kernel
    assert all(p["pool_size"] == 20 and p["steps"] == 4 for p in runs.points)
    assert set(scaling.PARAMETERS) == set(TINY)


def test_adding_a_width_or_a_seed_leaves_every_other_key_unchanged():
    before = keys(TINY)
    wider_grid = keys({**TINY, "widths": [4, 8, 12, 16]})
    assert before < wider_grid and len(wider_grid - before) == 2 * 2  # arms x seeds
    more_seeds = keys({**TINY, "n_seeds": 3})
    assert before < more_seeds and len(more_seeds - before) == 2 * 5  # arms x values


def test_a_new_widest_width_or_fixed_eta_rekeys_the_fixed_arm_only():
    # The fixed arm's rate is set by the widest network and fixed_eta: its points change with
    # them, the kernel arm's do not.
    for change in ({"widths": [4, 8, 16, 32]}, {"fixed_eta": 0.5}):
        assert keys({**TINY, **change}, "kernel") >= keys(TINY, "kernel")
        assert not keys({**TINY, **change}, "fixed") & keys(TINY, "fixed")


def test_every_run_of_a_seed_index_has_one_key_folded_from_its_value():
    a, b = scaling.run_key(3, 1), point_key(3, seed_index=1)
    assert np.array_equal(jax.random.key_data(a), jax.random.key_data(b))
    assert not np.array_equal(jax.random.key_data(a), jax.random.key_data(scaling.run_key(3, 0)))


def _old_path(point, arm):
    # The chapter's notebook before the sweep, through the package functions directly.
    data = load_dataset(
        "digits", n_train=20, n_test=20, key=jax.random.split(jax.random.key(0), 3)[0]
    )
    x_pool, x_test = (np.asarray(a) for a in data.flat())
    n_classes = int(data.y_train.max()) + 1
    targets_pool = np.eye(n_classes, dtype=np.float32)[data.y_train]
    test_data = (jnp.asarray(x_test), jnp.asarray(np.eye(n_classes, dtype=np.float32)[data.y_test]))
    key = point_key(0, seed_index=point["seed_index"])
    if arm == "fixed":
        widest_apply, widest_params = initial_mlp(
            (16,), n_classes, "tanh", jax.random.split(point_key(0, seed_index=0))[0], x_pool
        )
        rule = {
            "learning_rate": kernel_learning_rate(widest_apply, widest_params, x_pool[:10], 1.0)
        }
    else:
        rule = {"kernel_eta": 0.5}
    n, width = point["n"], point["width"]
    epochs = math.ceil(4 * min(10, n) / n)
    run = dense_run(
        (jnp.asarray(x_pool[:n]), jnp.asarray(targets_pool[:n])),
        test_data,
        hidden=(width,),
        n_outputs=n_classes,
        activation="tanh",
        key=key,
        epochs=epochs,
        batch_size=10,
        loss_fn=mse_loss,
        every=epochs,
        n_probe=10,
        probes=("train",),
        classification=True,
        linearised=point["linearised"],
        **rule,
    )
    return run_measures(run, jnp.asarray(x_pool[:10]), targets_pool[:10])


@pytest.mark.parametrize(
    ("arm", "axis_index"), [("fixed", 7), ("kernel", 11)]
)  # a width run of seed 1, a size run of seed 1
def test_a_tiny_run_equals_the_old_notebook_path(arm, axis_index):
    (runs,) = scaling.grid(TINY)
    point = runs.points[axis_index]
    assert (point["arm"], point["seed_index"]) == (arm, 1)
    got, expected = scaling.run(point), _old_path(point, arm)
    assert set(got) == set(expected)
    assert ("test_loss_linearised" in got) == point["linearised"]
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-6, err_msg=name)


def test_a_tiny_run_is_computed_once_and_then_read_from_the_store(tmp_path):
    (runs,) = scaling.grid(TINY)
    point = runs.points[:1]
    first = sweep.map(runs.experiment, point, client=sweep.SERIAL, store=str(tmp_path))
    again = sweep.map(runs.experiment, point, client=sweep.SERIAL, store=str(tmp_path))
    assert (first.computed, again.computed, again.from_store) == (1, 0, 1)
    assert again[0] == first[0]
    assert math.isfinite(first[0]["test_loss"]) and first[0]["learning_rate"] > 0


def test_measures_groups_the_results_by_arm_axis_and_value():
    (runs,) = scaling.grid(TINY)
    results = [{"index": i} for i in range(len(runs.points))]
    table = scaling.measures(TINY, results)
    assert list(table) == [("fixed", "n"), ("fixed", "width"), ("kernel", "n"), ("kernel", "width")]
    assert table["fixed", "width"] == {
        4: [{"index": 4}, {"index": 5}],
        8: [{"index": 6}, {"index": 7}],
        16: [{"index": 8}, {"index": 9}],
    }
    with pytest.raises(ValueError, match="expected 20 results"):
        scaling.measures(TINY, results[:-1])


def test_a_missing_parameter_is_named():
    with pytest.raises(KeyError, match="n_seeds"):
        scaling.grid({k: v for k, v in TINY.items() if k != "n_seeds"})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"widths": [8, 4, 16]}, "widths must be at least 3 strictly increasing"),
        ({"widths": [4, 8]}, "widths must be at least 3"),
        ({"data_sizes": [5, 20]}, r"training-set sizes \[5\] are smaller"),
        ({"data_sizes": [10, 10]}, "data_sizes must not repeat"),
        ({"dataset": "fashion"}, "dataset must be one of"),
        ({"n_seeds": 1}, "n_seeds must be an integer >= 2"),
        ({"eta": 0.0}, "eta must be a positive finite number"),
        ({"steps": 2.5}, "steps must be an integer"),
    ],
)
def test_a_bad_parameter_is_refused_with_its_value(change, message):
    with pytest.raises(ValueError, match=message):
        scaling.grid({**TINY, **change})


def test_a_point_with_an_unknown_arm_is_refused():
    (runs,) = scaling.grid(TINY)
    with pytest.raises(ValueError, match="arm must be one of fixed, kernel, got 'adam'"):
        scaling.run({**runs.points[0], "arm": "adam"})
