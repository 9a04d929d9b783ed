"""The chemotaxis sweep's grid: its points, their keys, and one tiny point through the store."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from ntkbook import store as st
from ntkbook import sweep
from ntkbook.grids import chemotaxis, point_key, stack

TINY = {
    "radii": [0.5, 1.0],
    "speeds": [1.0, 3.0, 5.0],
    "shapes": ["sphere", "prolate"],
    "n_seeds": 2,
    "temperature": 300.0,
    "n_agents": 3,
    "decision_interval": 0.1,
    "integrator_step": 0.05,
    "deploy_integrator_step": 0.05,
    "episode_length": 4,
    "n_envs": 1,
    "n_updates": 3,
    "continuous": True,
    "learning_rate": 1e-3,
    "hidden": [8],
    "deploy_decisions": 5,
    "capture_fraction": 0.1,
    "ppo_radii": [1.0],
    "ppo_updates": 2,
    "ppo_envs": 2,
    "seed": 0,
}


def test_point_key_depends_on_the_values_not_their_order():
    a = point_key(0, width=8, seed=1)
    assert np.array_equal(
        jax.random.key_data(a), jax.random.key_data(point_key(0, seed=1, width=8))
    )
    others = [point_key(1, width=8, seed=1), point_key(0, width=16, seed=1), point_key(0, width=8)]
    for other in others:
        assert not np.array_equal(jax.random.key_data(a), jax.random.key_data(other))


def test_grid_has_every_cell_in_order_and_ppo_at_the_middle_speed():
    cells, ppo = chemotaxis.grid(TINY)
    assert [(p["shape"], p["radius"], p["speed"]) for p in cells.points] == [
        (shape, radius, speed)
        for shape in TINY["shapes"]
        for radius in TINY["radii"]
        for speed in TINY["speeds"]
    ]
    assert [(p["radius"], p["speed"]) for p in ppo.points] == [(1.0, 3.0)]
    assert set(chemotaxis.PARAMETERS) <= set(TINY)


def test_adding_a_radius_leaves_every_other_cell_key_unchanged():
    fingerprint = st.code_fingerprint()

    def keys(parameters):
        (cells, _) = chemotaxis.grid(parameters)
        return {st.make_key("chemotaxis.cell", p, fingerprint) for p in cells.points}

    before, after = keys(TINY), keys({**TINY, "radii": [0.3, *TINY["radii"]]})
    assert before < after and len(after - before) == len(TINY["shapes"]) * len(TINY["speeds"])


def test_a_missing_parameter_is_named():
    parameters = {k: v for k, v in TINY.items() if k != "n_seeds"}
    with pytest.raises(KeyError, match="n_seeds"):
        chemotaxis.grid(parameters)


def test_a_tiny_cell_is_computed_once_and_then_read_from_the_store(tmp_path):
    (cells, _) = chemotaxis.grid(TINY)
    point = cells.points[:1]
    first = sweep.map(cells.experiment, point, client=sweep.SERIAL, store=str(tmp_path))
    again = sweep.map(cells.experiment, point, client=sweep.SERIAL, store=str(tmp_path))
    assert (first.computed, again.computed, again.from_store) == (1, 0, 1)
    runs = stack([first[0]])
    assert runs["metrics"]["mean_reward"].shape == (TINY["n_seeds"], TINY["n_updates"])
    assert set(runs["deployed"]) == {*chemotaxis.CONTROLLERS, "trained"}
    assert runs["deployed"]["trained"]["ratio"].shape == (TINY["n_seeds"],)
    np.testing.assert_array_equal(
        again[0]["deployed"]["trained"]["ratio"], first[0]["deployed"]["trained"]["ratio"]
    )


def test_stack_joins_points_along_their_first_axis():
    joined = stack([{"a": np.zeros((2, 3)), "b": [1]}, {"a": np.ones((1, 3)), "b": [2, 3]}])
    np.testing.assert_array_equal(joined["a"], [[0, 0, 0], [0, 0, 0], [1, 1, 1]])
    assert joined["b"] == [1, 2, 3]
    with pytest.raises(ValueError, match="at least one result"):
        stack([])
