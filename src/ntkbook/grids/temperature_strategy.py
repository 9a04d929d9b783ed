"""The temperature-and-strategy sweep: one point per (task, temperature), its seeds in one ``vmap``.

A :func:`chemotaxis_point` trains ``n_seeds`` chemotaxis policies at one temperature with the
authors' policy-gradient loss and deploys them; a :func:`rod_point` trains ``n_seeds`` rod-rotation
policies at one temperature with PPO and deploys them, random agents and the scripted tip pusher
from the same starts; a :func:`fixed_epsilon_point` deploys the tip pusher at one temperature with
the contact energy ε held at ``k_B · fixed_epsilon_K``, from the same starts as the rod point (its
key is the rod point's), so changing ``fixed_epsilon_K`` trains nothing again.

Every point's random key is folded from ``seed`` and the point's own values (task, temperature),
not from its place in the grid, so adding a temperature leaves every other point's key, hence
its stored result, unchanged. The transfer matrix (the best policy of one temperature deployed at
another) depends on the trained policies and on which of them was best, so it is not a function
of parameters alone: the chapter computes it from the stored actors with :func:`deploy_rod`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from ntkbook.grids import point_key
from ntkbook.store import experiment
from ntkbook.swarm import (
    PolicyGradientConfig,
    PPOConfig,
    analysis,
    make_train,
    physics,
    policy,
    rod,
    rod_rotation,
    tasks,
)
from ntkbook.sweep import Grid

__all__ = [
    "CHEMOTAXIS_SWIMMER",
    "ROD_SWIMMER",
    "PARAMETERS",
    "chemotaxis_point",
    "rod_point",
    "fixed_epsilon_point",
    "grid",
    "chemotaxis_environment",
    "rod_environment",
    "rod_ppo_config",
    "swimmers",
    "deploy_rod",
]

#: Chemotaxis swimmers: radius µm, speed µm/s (the authors' chemotaxis script).
CHEMOTAXIS_SWIMMER = (2.14, 1.13)
#: Rod-rotation colloids: radius µm, speed µm/s (the authors' rod script).
ROD_SWIMMER = (3.08, 1.566)
#: Hidden widths of the chemotaxis actor and critic (the authors' 128-128).
CHEMOTAXIS_HIDDEN = (128, 128)
#: PPO entropy bonus of the authors' rod script.
ROD_ENTROPY_COEF = 0.02
#: The rod deployments of a point, in the order the chapter shows them.
ROD_CONTROLLERS = ("trained", "random", "tip pusher")

CHEMOTAXIS_PARAMETERS = (
    "n_seeds",
    "chemotaxis_agents",
    "chemotaxis_interactions",
    "chemotaxis_updates",
    "chemotaxis_deploy_decisions",
    "seed",
)
ROD_ENV_PARAMETERS = (
    "rod_agents",
    "rod_geometry",
    "rod_reward",
    "rod_integrator_step",
    "rod_decision_interval",
    "rod_episode_length",
)
ROD_PARAMETERS = (
    "n_seeds",
    *ROD_ENV_PARAMETERS,
    "rod_envs",
    "rod_updates",
    "rod_epochs",
    "rod_learning_rate",
    "rod_hidden",
    "rod_deploy_decisions",
    "seed",
)
EPSILON_PARAMETERS = (
    "n_seeds",
    *ROD_ENV_PARAMETERS,
    "rod_deploy_decisions",
    "fixed_epsilon_K",
    "seed",
)
#: Every chapter parameter that :func:`grid` reads.
PARAMETERS = tuple(
    sorted(
        {
            *CHEMOTAXIS_PARAMETERS,
            *ROD_PARAMETERS,
            *EPSILON_PARAMETERS,
            "chemotaxis_temperatures",
            "rod_temperatures",
        }
    )
)


# --------------------------------------------------------------------------- configurations


def chemotaxis_environment(p: Mapping[str, Any]) -> tasks.EnvConfig:
    """The chemotaxis environment (the authors' script): a periodic 1000 µm box, agents starting
    within 100 µm of the source, one decision per second, episodes of 20 decisions."""
    return tasks.EnvConfig(
        n_agents=p["chemotaxis_agents"],
        decision_interval=1.0,
        integrator_step=0.01,
        episode_length=20,
        box_length=1000.0,
        start_radius=100.0,
        turn_rate_deg=10.6,
        interactions=p["chemotaxis_interactions"],
    )


def rod_environment(p: Mapping[str, Any], fixed_epsilon_K: float | None = None) -> tasks.EnvConfig:
    """The rod-rotation environment (the authors' script,
    :func:`~ntkbook.swarm.rod_rotation.paper_env_config`: an open 150 µm box with the rod at its
    centre) at the chapter's agents, steps and episode length; the colloids touch the rod but
    not each other. With ``fixed_epsilon_K``, the contact energy is ``k_B · fixed_epsilon_K``
    at every temperature instead of ``k_B (T + 1 K)``.

    Raises:
        ValueError: the agents do not fit beside the rod, or a bad setting (named).
    """
    epsilon = None if fixed_epsilon_K is None else float(physics.thermal_energy(fixed_epsilon_K))
    env = dataclasses.replace(
        rod_rotation.paper_env_config(
            p["rod_agents"],
            rod=rod.RodConfig(geometry=p["rod_geometry"], fixed_epsilon=epsilon),
            reward=p["rod_reward"],
        ),
        decision_interval=p["rod_decision_interval"],
        integrator_step=p["rod_integrator_step"],
        episode_length=p["rod_episode_length"],
        interactions=False,  # colloids touch the rod, not each other (the authors: both)
    )
    rod_rotation.check_config(env, ROD_SWIMMER[0])
    return env


def rod_ppo_config(p: Mapping[str, Any]) -> PPOConfig:
    """PPO as the authors' rod script configures it: full-batch passes, entropy 0.02."""
    return PPOConfig(
        n_envs=p["rod_envs"],
        n_steps=p["rod_episode_length"],
        n_updates=p["rod_updates"],
        update_epochs=p["rod_epochs"],
        n_minibatches=1,
        learning_rate=p["rod_learning_rate"],
        entropy_coef=ROD_ENTROPY_COEF,
        hidden=tuple(p["rod_hidden"]),
    )


def _chemotaxis_config(p: Mapping[str, Any]) -> PolicyGradientConfig:
    return PolicyGradientConfig(n_updates=p["chemotaxis_updates"], hidden=CHEMOTAXIS_HIDDEN)


def swimmers(task: str, temperatures) -> tasks.SwimmerParameters:
    """The swimmers of ``task`` (``"chemotaxis"`` or ``"rod"``), one per temperature (K)."""
    radius, speed_um = {"chemotaxis": CHEMOTAXIS_SWIMMER, "rod": ROD_SWIMMER}[task]
    return tasks.swimmer_parameters(
        radius, speed_um / (2 * radius), temperature_K=np.asarray(temperatures, float)
    )


# --------------------------------------------------------------------------- programs


@functools.cache
def _train_program(env: tasks.EnvConfig, config) -> Any:
    return jax.jit(jax.vmap(make_train(env, config)))


_deploy = jax.jit(jax.vmap(policy.deploy, in_axes=(0, 0, None, 0, None)), static_argnums=(2, 4))
_rollout = jax.jit(
    jax.vmap(tasks.rollout, in_axes=(0, None, None, 0, None)), static_argnums=(1, 2, 4)
)


def deploy_rod(keys, actor_params, env: tasks.EnvConfig, temperatures, n_decisions: int):
    """Deploy rod policies (``actor_params`` with a leading run axis) at ``temperatures`` (K, one
    per run) with one key per run; returns the rod's angles (runs, n_decisions + 1), rad."""
    trajectory = _deploy(keys, actor_params, env, swimmers("rod", temperatures), n_decisions)
    return np.asarray(trajectory.task_states.angle)


def _to_numpy(tree: Any) -> Any:
    return jax.tree_util.tree_map(np.asarray, tree)


def _rod_keys(p: Mapping[str, Any]) -> tuple[jax.Array, jax.Array]:
    """(train keys, deploy keys), ``n_seeds`` each, of the rod point at ``p["temperature"]``."""
    key = point_key(p["seed"], task="rod", temperature=p["temperature"])
    train_key, deploy_key = jax.random.split(key)
    n = p["n_seeds"]
    return jax.random.split(train_key, n), jax.random.split(deploy_key, n)


# --------------------------------------------------------------------------- experiments


@experiment("temperature_strategy.chemotaxis")
def chemotaxis_point(p: dict[str, Any]) -> dict[str, Any]:
    """Train and deploy ``n_seeds`` chemotaxis policies at one temperature.

    Returns ``metrics`` (``mean_reward``, ``mean_distance``, ``entropy``: ``(n_seeds,
    chemotaxis_updates)``), the trained ``actor_params`` (leading axis: seeds), ``distance`` (the
    agents' mean distance to the source in each deployment, ``(n_seeds, decisions + 1)`` µm),
    and ``statistics`` (one :func:`~ntkbook.swarm.analysis.action_statistics` per seed).
    """
    n = p["n_seeds"]
    env = chemotaxis_environment(p)
    population = swimmers("chemotaxis", np.full(n, p["temperature"]))
    key = point_key(p["seed"], task="chemotaxis", temperature=p["temperature"])
    train_key, deploy_key = jax.random.split(key)
    result = _train_program(env, _chemotaxis_config(p))(jax.random.split(train_key, n), population)
    trajectory = _deploy(
        jax.random.split(deploy_key, n),
        result.actor_params,
        env,
        population,
        p["chemotaxis_deploy_decisions"],
    )
    observations, actions = np.asarray(trajectory.observations), np.asarray(trajectory.actions)
    return {
        "metrics": {
            name: np.asarray(result.metrics[name])
            for name in ("mean_reward", "mean_distance", "entropy")
        },
        "actor_params": _to_numpy(result.actor_params),
        "distance": analysis.mean_distance(trajectory.positions, env),
        "statistics": [
            analysis.action_statistics(o, a) for o, a in zip(observations, actions, strict=True)
        ],
    }


@experiment("temperature_strategy.rod")
def rod_point(p: dict[str, Any]) -> dict[str, Any]:
    """Train ``n_seeds`` rod-rotation policies at one temperature with PPO, then deploy them,
    random agents and the tip pusher (:data:`ROD_CONTROLLERS`) from the same starts.

    Returns ``metrics`` (``mean_reward``: ``(n_seeds, rod_updates)``), the trained
    ``actor_params`` (leading axis: seeds), ``angles`` (per controller, the rod's angle at each
    decision, ``(n_seeds, decisions + 1)`` rad), ``positions`` of the trained agents
    (``(n_seeds, decisions + 1, rod_agents, 2)`` µm).
    """
    n = p["n_seeds"]
    env = rod_environment(p)
    population = swimmers("rod", np.full(n, p["temperature"]))
    train_keys, deploy_keys = _rod_keys(p)
    result = _train_program(env, rod_ppo_config(p))(train_keys, population)
    decisions = p["rod_deploy_decisions"]
    trained = _deploy(deploy_keys, result.actor_params, env, population, decisions)
    trajectories = {
        "trained": trained,
        "random": _rollout(deploy_keys, tasks.random_policy, env, population, decisions),
        "tip pusher": _rollout(
            deploy_keys, rod_rotation.tip_pushing_policy, env, population, decisions
        ),
    }
    return {
        "metrics": {"mean_reward": np.asarray(result.metrics["mean_reward"])},
        "actor_params": _to_numpy(result.actor_params),
        "angles": {
            name: np.asarray(trajectories[name].task_states.angle) for name in ROD_CONTROLLERS
        },
        "positions": np.asarray(trained.positions),
    }


@experiment("temperature_strategy.fixed_epsilon")
def fixed_epsilon_point(p: dict[str, Any]) -> dict[str, Any]:
    """The tip pusher at one temperature with ε = ``k_B · fixed_epsilon_K``, from the starts of
    the rod point at that temperature; returns its ``angles`` ``(n_seeds, decisions + 1)`` rad."""
    n = p["n_seeds"]
    env = rod_environment(p, fixed_epsilon_K=p["fixed_epsilon_K"])
    _, deploy_keys = _rod_keys(p)
    trajectory = _rollout(
        deploy_keys,
        rod_rotation.tip_pushing_policy,
        env,
        swimmers("rod", np.full(n, p["temperature"])),
        p["rod_deploy_decisions"],
    )
    return {"angles": np.asarray(trajectory.task_states.angle)}


# --------------------------------------------------------------------------- the grid


def _temperatures(parameters: Mapping[str, Any], name: str) -> list[float]:
    values = parameters[name]
    if not isinstance(values, Sequence) or isinstance(values, str) or not values:
        raise ValueError(f"{name} must be a non-empty list of temperatures (K), got {values!r}")
    out = []
    for t in values:
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or t < 0:
            raise ValueError(f"{name} must hold finite temperatures >= 0 K, got {t!r}")
        out.append(float(t))
    if len(set(out)) != len(out):
        raise ValueError(f"{name} holds a temperature twice: {values!r}")
    return out


def _check(parameters: Mapping[str, Any]) -> None:
    missing = [name for name in PARAMETERS if name not in parameters]
    if missing:
        raise ValueError(f"temperature_strategy parameters missing: {', '.join(missing)}")
    n = parameters["n_seeds"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n_seeds must be an integer >= 1, got {n!r}")
    for name in ("chemotaxis_deploy_decisions", "rod_deploy_decisions"):
        value = parameters[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    value = parameters["fixed_epsilon_K"]
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"fixed_epsilon_K must be a positive number (K), got {value!r}")
    # Build every configuration once here, so a bad setting fails before any point runs.
    chemotaxis_environment(parameters)
    _chemotaxis_config(parameters)
    rod_environment(parameters)
    rod_ppo_config(parameters)


def grid(parameters: Mapping[str, Any]) -> list[Grid]:
    """The chapter's three sweeps: a :func:`chemotaxis_point` per ``chemotaxis_temperatures``,
    a :func:`rod_point` per ``rod_temperatures`` and a :func:`fixed_epsilon_point` per
    ``rod_temperatures``, each in the order of its temperatures.

    Raises:
        ValueError: a parameter is missing or bad (the message names it).
    """
    _check(parameters)
    chemotaxis_temperatures = _temperatures(parameters, "chemotaxis_temperatures")
    rod_temperatures = _temperatures(parameters, "rod_temperatures")

    def points(names, temperatures):
        common = {name: parameters[name] for name in names}
        return [{**common, "temperature": t} for t in temperatures]

    return [
        Grid(chemotaxis_point, points(CHEMOTAXIS_PARAMETERS, chemotaxis_temperatures)),
        Grid(rod_point, points(ROD_PARAMETERS, rod_temperatures)),
        Grid(fixed_epsilon_point, points(EPSILON_PARAMETERS, rod_temperatures)),
    ]
