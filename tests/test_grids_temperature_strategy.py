"""The temperature-and-strategy sweep's grid: its points, their keys, tiny points against the
chapter's computation before it had a sweep (environment, swimmers and keys built by hand, then
the package's training and deployment), and one point through the store."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from ntkbook import store as st
from ntkbook import sweep
from ntkbook.grids import point_key
from ntkbook.grids import temperature_strategy as ts
from ntkbook.swarm import (
    PolicyGradientConfig,
    physics,
    rod_rotation,
    tasks,
)
from ntkbook.swarm import rod as rod_model

TINY = {
    "chemotaxis_temperatures": [0.0, 350.0],
    "chemotaxis_agents": 2,
    "chemotaxis_interactions": False,
    "chemotaxis_updates": 1,
    "chemotaxis_deploy_decisions": 3,
    "rod_temperatures": [0.0, 300.0],
    "n_seeds": 2,
    "rod_agents": 2,
    "rod_geometry": "capsule",
    "rod_reward": "authors",
    "rod_integrator_step": 0.5,
    "rod_decision_interval": 1.0,
    "rod_episode_length": 2,
    "rod_envs": 1,
    "rod_updates": 1,
    "rod_epochs": 1,
    "rod_learning_rate": 1e-3,
    "rod_hidden": [4],
    "rod_deploy_decisions": 3,
    "fixed_epsilon_K": 301.0,
    "seed": 0,
}


def test_grid_has_one_point_per_task_and_temperature_in_order():
    chemotaxis, rod, epsilon = ts.grid(TINY)
    assert chemotaxis.experiment is ts.chemotaxis_point
    assert rod.experiment is ts.rod_point and epsilon.experiment is ts.fixed_epsilon_point
    assert [p["temperature"] for p in chemotaxis.points] == [0.0, 350.0]
    assert [p["temperature"] for p in rod.points] == [p["temperature"] for p in epsilon.points]
    assert [p["temperature"] for p in rod.points] == [0.0, 300.0]
    assert set(chemotaxis.points[0]) == {*ts.CHEMOTAXIS_PARAMETERS, "temperature"}
    assert set(rod.points[0]) == {*ts.ROD_PARAMETERS, "temperature"}
    assert set(epsilon.points[1]) == {*ts.EPSILON_PARAMETERS, "temperature"}
    assert rod.points[1]["rod_hidden"] == [4] and epsilon.points[1]["fixed_epsilon_K"] == 301.0
    assert set(ts.PARAMETERS) == set(TINY)


def test_integer_temperatures_give_the_same_points_as_floats():
    fingerprint = st.code_fingerprint()
    as_int = {**TINY, "chemotaxis_temperatures": [0, 350], "rod_temperatures": [0, 300]}
    for one, other in zip(ts.grid(TINY), ts.grid(as_int), strict=True):
        name = one.experiment.experiment_name
        assert [st.make_key(name, p, fingerprint) for p in one.points] == [
            st.make_key(name, p, fingerprint) for p in other.points
        ]


def test_adding_a_temperature_leaves_every_other_point_key_unchanged():
    fingerprint = st.code_fingerprint()

    def keys(parameters):
        return [
            {st.make_key(g.experiment.experiment_name, p, fingerprint) for p in g.points}
            for g in ts.grid(parameters)
        ]

    before = keys(TINY)
    after = keys(
        {**TINY, "chemotaxis_temperatures": [150.0, 0.0, 350.0], "rod_temperatures": [0, 150, 300]}
    )
    for old, new in zip(before, after, strict=True):
        assert old < new and len(new - old) == 1


def test_changing_the_fixed_epsilon_leaves_the_trainings_unchanged():
    fingerprint = st.code_fingerprint()
    changed = {**TINY, "fixed_epsilon_K": 150.0}
    for one, other in zip(ts.grid(TINY), ts.grid(changed), strict=True):
        name = one.experiment.experiment_name
        same = [st.make_key(name, p, fingerprint) for p in one.points] == [
            st.make_key(name, p, fingerprint) for p in other.points
        ]
        assert same == (one.experiment is not ts.fixed_epsilon_point)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("n_seeds", 0, "n_seeds"),
        ("rod_temperatures", [0.0, -5.0], "rod_temperatures"),
        ("rod_temperatures", [], "rod_temperatures"),
        ("chemotaxis_temperatures", [300.0, 300.0], "twice"),
        ("rod_geometry", "cube", "cube"),
        ("rod_reward", "speed", "speed"),
        ("rod_integrator_step", 0.3, "integrator_step"),
        ("rod_agents", 10_000, "box"),
        ("fixed_epsilon_K", 0.0, "fixed_epsilon_K"),
        ("rod_deploy_decisions", 0, "rod_deploy_decisions"),
    ],
)
def test_a_bad_parameter_is_named(name, value, message):
    with pytest.raises(ValueError, match=message):
        ts.grid({**TINY, name: value})


def test_a_missing_parameter_is_named():
    with pytest.raises(ValueError, match="rod_epochs"):
        ts.grid({k: v for k, v in TINY.items() if k != "rod_epochs"})


def _rod_env_by_hand(fixed_epsilon_K=None):
    """The rod environment as the chapter's notebook built it before it had a sweep."""
    env = tasks.EnvConfig(
        task="rod_rotation",
        n_agents=TINY["rod_agents"],
        decision_interval=TINY["rod_decision_interval"],
        integrator_step=TINY["rod_integrator_step"],
        episode_length=TINY["rod_episode_length"],
        box_length=150.0,
        start_radius=25.0,
        turn_rate_deg=3.55,
        boundary="open",
        task_options=rod_rotation.RodRotation(
            rod=rod_model.RodConfig(geometry="capsule"), reward="authors"
        ),
    )
    if fixed_epsilon_K is None:
        return env
    rod = dataclasses.replace(
        env.task_options.rod, fixed_epsilon=float(physics.thermal_energy(fixed_epsilon_K))
    )
    return dataclasses.replace(env, task_options=dataclasses.replace(env.task_options, rod=rod))


def test_the_fixed_epsilon_point_is_the_tip_pusher_from_the_rod_points_starts():
    point = ts.grid(TINY)[2].points[1]  # 300 K
    result = ts.fixed_epsilon_point(point)
    n = TINY["n_seeds"]
    key = point_key(TINY["seed"], task="rod", temperature=300.0)
    deploy_keys = jax.random.split(jax.random.split(key)[1], n)
    radius, speed = ts.ROD_SWIMMER
    swimmers = tasks.swimmer_parameters(radius, speed / (2 * radius), temperature_K=[300.0] * n)
    # the module's jitted vmap of tasks.rollout, given the environment built here by hand: an
    # environment that differed from the point's would compile anew and give other numbers
    expected = ts._rollout(
        deploy_keys,
        rod_rotation.tip_pushing_policy,
        _rod_env_by_hand(TINY["fixed_epsilon_K"]),
        swimmers,
        TINY["rod_deploy_decisions"],
    )
    assert ts.rod_environment(point, point["fixed_epsilon_K"]) == _rod_env_by_hand(301.0)
    assert result["angles"].shape == (n, TINY["rod_deploy_decisions"] + 1)
    np.testing.assert_allclose(
        result["angles"], np.asarray(expected.task_states.angle), rtol=1e-6, atol=1e-6
    )


def test_a_chemotaxis_point_equals_the_chapters_direct_computation():
    point = ts.grid(TINY)[0].points[1]  # 350 K
    result = ts.chemotaxis_point(point)
    n = TINY["n_seeds"]
    env = tasks.EnvConfig(
        n_agents=TINY["chemotaxis_agents"],
        decision_interval=1.0,
        integrator_step=0.01,
        episode_length=20,
        box_length=1000.0,
        start_radius=100.0,
        turn_rate_deg=10.6,
        interactions=False,
    )
    assert ts.chemotaxis_environment(point) == env
    radius, speed = ts.CHEMOTAXIS_SWIMMER
    swimmers = tasks.swimmer_parameters(radius, speed / (2 * radius), temperature_K=[350.0] * n)
    train_key, deploy_key = jax.random.split(
        point_key(TINY["seed"], task="chemotaxis", temperature=350.0)
    )
    config = PolicyGradientConfig(n_updates=TINY["chemotaxis_updates"], hidden=(128, 128))
    # The programs the point ran (jitted vmaps of make_train and policy.deploy), called with the
    # environment, configuration, swimmers and keys built here by hand: compiled once for both
    # (the test stays fast), and any other environment or configuration compiles anew and gives
    # other numbers.
    train = ts._train_program(env, config)
    trained = train(jax.random.split(train_key, n), swimmers)
    trajectory = ts._deploy(
        jax.random.split(deploy_key, n),
        trained.actor_params,
        env,
        swimmers,
        TINY["chemotaxis_deploy_decisions"],
    )
    for got, want in zip(
        jax.tree_util.tree_leaves(result["actor_params"]),
        jax.tree_util.tree_leaves(trained.actor_params),
        strict=True,
    ):
        np.testing.assert_allclose(got, np.asarray(want), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        result["metrics"]["mean_reward"], np.asarray(trained.metrics["mean_reward"]), rtol=1e-5
    )
    distance = np.linalg.norm(
        np.asarray(trajectory.positions) - np.asarray(tasks.source_position(env)), axis=-1
    )
    assert result["distance"].shape == (n, TINY["chemotaxis_deploy_decisions"] + 1)
    assert len(result["statistics"]) == n
    # no agent comes within a wrap of the source in 3 s, so the plain distance is the distance
    np.testing.assert_allclose(result["distance"], distance.mean(axis=-1), rtol=1e-5)
    actions = np.asarray(trajectory.actions)
    for statistics, a in zip(result["statistics"], actions, strict=True):
        np.testing.assert_allclose(
            statistics["fractions"], np.bincount(a.ravel(), minlength=4) / a.size
        )


def test_a_tiny_point_is_computed_once_and_then_read_from_the_store(tmp_path):
    points = ts.grid(TINY)[2].points
    first = sweep.map(ts.fixed_epsilon_point, points, client=sweep.SERIAL, store=str(tmp_path))
    again = sweep.map(ts.fixed_epsilon_point, points, client=sweep.SERIAL, store=str(tmp_path))
    assert (first.computed, first.from_store) == (2, 0)
    assert (again.computed, again.from_store) == (0, 2) and again.keys == first.keys
    for one, other in zip(first, again, strict=True):
        assert one["angles"].tobytes() == other["angles"].tobytes()
    # each temperature has its own starts
    assert not np.array_equal(first[0]["angles"], first[1]["angles"])
