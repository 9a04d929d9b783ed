"""The chemotaxis sweep: one point per (shape, radius, speed) cell, its seeds in one ``vmap``.

A point trains ``n_seeds`` policies of one cell with the policy-gradient loss and deploys them,
and the three hand-written controllers, from the same starts (:data:`CONTROLLERS`). Its random
key is folded from ``seed`` and the cell itself (not its place in the grid), so adding a radius
or a speed leaves every other cell's key, hence its stored result, unchanged. PPO on the
``ppo_radii`` is a second experiment, one point per radius.

:func:`grid` gives both sweeps for a chapter's parameters; :func:`~ntkbook.grids.stack` joins
the points' results along the run axis in grid order (shape, radius, speed, seed), as the
notebook reads them.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from ntkbook.grids import point_key
from ntkbook.store import experiment
from ntkbook.swarm import PolicyGradientConfig, PPOConfig, analysis, make_train, policy, tasks
from ntkbook.sweep import Grid

__all__ = ["CONTROLLERS", "PARAMETERS", "cell", "ppo_cell", "grid"]

#: The hand-written controllers deployed beside every trained policy.
CONTROLLERS = {
    "random": tasks.random_policy,
    "run and rotate": tasks.run_and_rotate_policy,
    "classical": tasks.steer_to_source_policy,
}
#: Parameters of the chapter that every point of the cell sweep takes.
CELL_PARAMETERS = (
    "n_seeds",
    "temperature",
    "n_agents",
    "decision_interval",
    "integrator_step",
    "deploy_integrator_step",
    "episode_length",
    "n_envs",
    "n_updates",
    "continuous",
    "learning_rate",
    "hidden",
    "deploy_decisions",
    "capture_fraction",
    "seed",
)
PPO_PARAMETERS = (
    "n_seeds",
    "temperature",
    "n_agents",
    "decision_interval",
    "integrator_step",
    "deploy_integrator_step",
    "episode_length",
    "ppo_envs",
    "ppo_updates",
    "hidden",
    "deploy_decisions",
    "seed",
)

#: Every chapter parameter that :func:`grid` reads.
PARAMETERS = tuple(
    sorted({*CELL_PARAMETERS, *PPO_PARAMETERS, "shapes", "radii", "speeds", "ppo_radii"})
)


def _environments(p: Mapping[str, Any]) -> tuple[tasks.EnvConfig, tasks.EnvConfig]:
    env = tasks.EnvConfig(
        n_agents=p["n_agents"],
        decision_interval=p["decision_interval"],
        integrator_step=p["integrator_step"],
        episode_length=p["episode_length"],
    )
    return env, dataclasses.replace(env, integrator_step=p["deploy_integrator_step"])


@functools.cache
def _train_program(env: tasks.EnvConfig, config) -> Any:
    return jax.jit(jax.vmap(make_train(env, config)))


def _deploy_each(key, actor_params, config, swimmer, n_decisions):
    # The hand-written controllers, then the trained policy: one program for all four.
    controllers = [*CONTROLLERS.values(), policy.actor_policy(actor_params)]
    return tasks.rollout_each(key, controllers, config, swimmer, n_decisions)


_deploy_all = jax.jit(jax.vmap(_deploy_each, in_axes=(0, 0, None, 0, None)), static_argnums=(2, 4))
_deploy_trained = jax.jit(
    jax.vmap(policy.deploy, in_axes=(0, 0, None, 0, None)), static_argnums=(2, 4)
)


def _to_numpy(tree: Any) -> Any:
    return jax.tree_util.tree_map(np.asarray, tree)


@experiment("chemotaxis.cell")
def cell(p: dict[str, Any]) -> dict[str, Any]:
    """Train and deploy ``n_seeds`` policies of one (shape, radius, speed) cell.

    Returns ``metrics`` (``mean_reward``, ``mean_distance``, ``entropy``: ``(n_seeds,
    n_updates)``), the trained ``actor_params`` (leading axis: seeds), ``deployed`` (per
    controller and ``"trained"``: ``ratio`` and ``efficiency`` per seed), the trained policies'
    deployment ``paths`` and their :func:`~ntkbook.swarm.analysis.action_statistics`.
    """
    n = p["n_seeds"]
    env, deploy_env = _environments(p)
    config = PolicyGradientConfig(
        n_envs=p["n_envs"],
        n_updates=p["n_updates"],
        learning_rate=p["learning_rate"],
        continuous=p["continuous"],
        hidden=tuple(p["hidden"]),
    )
    swimmers = tasks.swimmer_parameters(
        radius_um=np.full(n, p["radius"]),
        speed_body_lengths=np.full(n, p["speed"]),
        temperature_K=p["temperature"],
        shape=[p["shape"]] * n,
    )
    key = point_key(p["seed"], shape=p["shape"], radius=p["radius"], speed=p["speed"])
    train_key, deploy_key = jax.random.split(key)
    deploy_keys = jax.random.split(deploy_key, n)
    result = _train_program(env, config)(jax.random.split(train_key, n), swimmers)
    speed = tasks.swim_speed(swimmers)
    # (seeds, controller, ...): every controller from the same starts and the same noise
    trajectories = _deploy_all(
        deploy_keys, result.actor_params, deploy_env, swimmers, p["deploy_decisions"]
    )

    def deployment(index: int, **options: Any) -> dict[str, Any]:
        trajectory = jax.tree_util.tree_map(lambda a: a[:, index], trajectories)
        return analysis.deployment_summary(
            trajectory, deploy_env, speed, p["capture_fraction"], **options
        )

    deployed = {name: deployment(i) for i, name in enumerate(CONTROLLERS)}
    trained = deployment(len(CONTROLLERS), keep_actions=True)
    statistics = [
        analysis.action_statistics(o, a)
        for o, a in zip(trained.pop("observations"), trained.pop("actions"), strict=True)
    ]
    paths = trained.pop("paths")
    deployed["trained"] = trained
    return {
        "metrics": {
            name: np.asarray(result.metrics[name])
            for name in ("mean_reward", "mean_distance", "entropy")
        },
        "actor_params": _to_numpy(result.actor_params),
        "deployed": deployed,
        "paths": paths,
        "statistics": statistics,
    }


@experiment("chemotaxis.ppo")
def ppo_cell(p: dict[str, Any]) -> dict[str, Any]:
    """Train ``n_seeds`` spheres of one radius with PPO and deploy them: ``ratio`` per seed."""
    n = p["n_seeds"]
    env, deploy_env = _environments(p)
    config = PPOConfig(
        n_envs=p["ppo_envs"],
        n_steps=p["episode_length"],
        n_updates=p["ppo_updates"],
        hidden=tuple(p["hidden"]),
    )
    swimmers = tasks.swimmer_parameters(
        radius_um=np.full(n, p["radius"]),
        speed_body_lengths=p["speed"],
        temperature_K=p["temperature"],
    )
    key = point_key(p["seed"], loss="ppo", radius=p["radius"], speed=p["speed"])
    keys = jax.random.split(key, n)
    result = _train_program(env, config)(keys, swimmers)
    trajectory = _deploy_trained(
        keys, result.actor_params, deploy_env, swimmers, p["deploy_decisions"]
    )
    return {"ratio": analysis.distance_ratio(np.asarray(trajectory.positions), env)}


def grid(parameters: Mapping[str, Any]) -> list[Grid]:
    """The chapter's two sweeps: every (shape, radius, speed) cell in grid order, and PPO on
    spheres at the middle swept speed for each of ``ppo_radii``."""
    common = {name: parameters[name] for name in CELL_PARAMETERS}
    cells = [
        {**common, "shape": shape, "radius": radius, "speed": speed}
        for shape in parameters["shapes"]
        for radius in parameters["radii"]
        for speed in parameters["speeds"]
    ]
    speeds = parameters["speeds"]
    ppo_common = {name: parameters[name] for name in PPO_PARAMETERS}
    ppo = [
        {**ppo_common, "radius": radius, "speed": speeds[len(speeds) // 2]}
        for radius in parameters["ppo_radii"]
    ]
    return [Grid(cell, cells), Grid(ppo_cell, ppo)]
