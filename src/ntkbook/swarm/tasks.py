"""Tasks, observables, rewards and the multi-agent environment built on :mod:`.physics`.

A task is a pair of plain functions of the colloids' state at the previous decision and now,
as in SwarmRL (an observable and a task computing the reward); registering a new pair under a
name makes it available to the environment, PPO and the chapters:

    observe(previous, now, config) -> (n_agents, observation_size)
    reward(previous, now, config)  -> (n_agents,)

**Chemotaxis** (the task of Tovey, Lohrmann & Holm 2024). A source sits at the centre of a
periodic box of side ``L``; the concentration is ``c(r) = L/r`` with ``r`` the distance to the
source (µm; no time decay, SwarmRL's box-scaled ``1/r``). Each agent observes the scaled change
of its concentration since its last decision, ``o = 10 [c(t) − c(t−Δt_d)]``, and is rewarded for
the same change *caused by its action*, ``R = clip(10 [c(t+Δt_d) − c(t)], 0, ∞)`` (the reward
of the action taken at ``t`` is computed after the physics has run, not one decision early).

**Actions**: ``translate`` (swim at ``v = speed_body_lengths · 2R`` µm/s along the director),
``rotate_clockwise`` / ``rotate_counterclockwise`` (turn in place at ``ω`` = turn rate, default
600°/s, i.e. 60° per 0.1 s decision) and ``do_nothing`` (passive). Between decisions the physics
runs ``decision_interval/integrator_step`` integrator steps with the action held fixed.

**Environment** (gymnax-shaped pure functions): :func:`reset`, :func:`transition` (one decision,
never resetting: a continuous trajectory) and :func:`env_step` (the same with a reset at the
time limit) take an explicit key, a static :class:`EnvConfig` and a :class:`SwimmerParameters`
pytree of physical parameters (radius, temperature, shape, speed, viscosity) over which
everything can be ``vmap``-ed.

**Controllers** are :data:`Policy` functions run by :func:`rollout`: :func:`random_policy`,
:func:`run_and_rotate_policy` (hand-written, sees only the observation) and
:func:`steer_to_source_policy` (classical, knows where the source is); a trained actor is
wrapped into one by :func:`ntkbook.swarm.policy.deploy`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from ntkbook.swarm import physics as ph

__all__ = [
    "ACTIONS",
    "TRANSLATE",
    "ROTATE_CLOCKWISE",
    "ROTATE_COUNTERCLOCKWISE",
    "DO_NOTHING",
    "TASKS",
    "Task",
    "SwimmerParameters",
    "swimmer_parameters",
    "EnvConfig",
    "EnvState",
    "StepOutput",
    "Trajectory",
    "register_task",
    "get_task",
    "physics_of",
    "swim_speed",
    "source_position",
    "distance_to_source",
    "concentration",
    "concentration_change",
    "chemotaxis_reward",
    "reset",
    "transition",
    "env_step",
    "action_velocities",
    "Policy",
    "rollout",
    "rollout_each",
    "switch_policy",
    "random_policy",
    "run_and_rotate_policy",
    "steer_to_source_policy",
]

ACTIONS = ("translate", "rotate_clockwise", "rotate_counterclockwise", "do_nothing")
TRANSLATE, ROTATE_CLOCKWISE, ROTATE_COUNTERCLOCKWISE, DO_NOTHING = range(len(ACTIONS))


@struct.dataclass
class SwimmerParameters:
    """Physical parameters of the agents; every field may be an array to ``vmap`` over.

    Attributes:
        radius_um: radius ``R`` of the sphere of equal volume, µm.
        temperature_K: temperature, K.
        aspect_ratio: ``a_∥/a_⊥`` (1 sphere, > 1 prolate, < 1 oblate).
        speed_body_lengths: swim speed in body lengths (``2R``) per second.
        viscosity: dynamic viscosity of the solvent, Pa·s.
    """

    radius_um: jax.Array
    temperature_K: jax.Array
    aspect_ratio: jax.Array
    speed_body_lengths: jax.Array
    viscosity: jax.Array


def swimmer_parameters(
    radius_um=1.0,
    speed_body_lengths=2.0,
    temperature_K=300.0,
    shape: str | Sequence[str] = "sphere",
    aspect_ratio=None,
    viscosity=ph.WATER_VISCOSITY,
) -> SwimmerParameters:
    """A validated :class:`SwimmerParameters`; array arguments (broadcast together) give a batch.

    ``shape`` is ``"sphere"``, ``"prolate"`` or ``"oblate"`` (or a sequence of them, one per
    batch element); the aspect ratio defaults to 1, 3 and 1/3 respectively.

    Raises:
        ValueError: non-positive radius or viscosity, negative temperature or speed, NaN,
            unknown shape or an aspect ratio that contradicts it.
    """
    ph._check_physical(radius_um, temperature_K, viscosity)
    speed = np.asarray(speed_body_lengths, np.float64)
    if not np.all(np.isfinite(speed)) or np.any(speed < 0):
        raise ValueError(f"speed_body_lengths must be finite and >= 0, got {speed_body_lengths!r}")
    if isinstance(shape, str):
        p = ph.aspect_ratio_of(shape, aspect_ratio)
    else:
        ratios = (
            [None] * len(shape)
            if aspect_ratio is None
            else list(np.broadcast_to(aspect_ratio, (len(shape),)))
        )
        p = np.array([ph.aspect_ratio_of(s, a) for s, a in zip(shape, ratios, strict=True)])
    arrays = np.broadcast_arrays(
        np.asarray(radius_um, np.float64),
        np.asarray(temperature_K, np.float64),
        np.asarray(p, np.float64),
        speed,
        np.asarray(viscosity, np.float64),
    )
    return SwimmerParameters(*(jnp.asarray(a, jnp.float32) for a in arrays))


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    """Static settings of the environment (hashable; part of what ``jit`` compiles for).

    Attributes:
        task: a name in :data:`TASKS`.
        n_agents: colloids per environment, all sharing one policy.
        decision_interval: time between decisions, s.
        integrator_step: integrator step, s (must divide ``decision_interval``).
        episode_length: decisions per episode (the time limit; a truncation, not a terminal).
        box_length: side of the box, µm.
        start_radius: agents start uniformly in a disc of this radius around the source, µm.
        turn_rate_deg: angular speed of the rotate actions, degrees per second.
        observable_scale: ``o = observable_scale · Δc``.
        reward_scale: ``R = clip(reward_scale · Δc, 0, ∞)``.
        boundary: ``"periodic"`` or ``"walls"``.
        interactions: WCA repulsion between colloids (ε = k_B T, σ = 2R·2^(−1/6) so that the
            force vanishes at contact, SwarmRL's choice); the start is then relaxed to be
            free of overlaps.
        task_options: static options of the task (a hashable object, e.g.
            :class:`ntkbook.swarm.rod_rotation.RodRotation`); None takes the task's default.
    """

    task: str = "chemotaxis"
    n_agents: int = 10
    decision_interval: float = 0.1
    integrator_step: float = 1e-3
    episode_length: int = 20
    box_length: float = 1000.0
    start_radius: float = 100.0
    turn_rate_deg: float = 600.0
    observable_scale: float = 10.0
    reward_scale: float = 10.0
    boundary: str = "periodic"
    interactions: bool = False
    task_options: Any = None

    def __post_init__(self):
        task = get_task(self.task)
        if self.task_options is None and task.default_options is not None:
            object.__setattr__(self, "task_options", task.default_options)
        for name in ("decision_interval", "integrator_step", "box_length", "start_radius"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        for name in ("n_agents", "episode_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        ratio = self.decision_interval / self.integrator_step
        if abs(ratio - round(ratio)) > 1e-6 * ratio:
            raise ValueError(
                f"integrator_step {self.integrator_step} must divide decision_interval "
                f"{self.decision_interval}"
            )
        if self.start_radius >= self.box_length / 2:
            raise ValueError(
                f"start_radius {self.start_radius} must be below half the box {self.box_length}"
            )
        if self.boundary not in ph.BOUNDARIES:
            raise ValueError(
                f"unknown boundary {self.boundary!r}; choose one of {', '.join(ph.BOUNDARIES)}"
            )

    @property
    def n_substeps(self) -> int:
        """Integrator steps per decision."""
        return int(round(self.decision_interval / self.integrator_step))


class Task(NamedTuple):
    """A task: observable and reward as plain functions of (previous, now, config).

    A task with a state of its own (the rod of :mod:`.rod_rotation`) gives its own ``reset``
    and ``transition`` with the signatures of :func:`reset` and :func:`transition`; they are
    then used instead of the default ones (which call ``observe`` and ``reward``), and
    ``default_options`` fills ``EnvConfig.task_options`` when that is None.
    """

    observe: Callable | None
    reward: Callable | None
    observation_size: int
    reset: Callable | None = None
    transition: Callable | None = None
    default_options: Any = None


def source_position(config: EnvConfig) -> jax.Array:
    """The source at the centre of the box, µm."""
    return jnp.full((2,), config.box_length / 2, jnp.float32)


def distance_to_source(positions: jax.Array, config: EnvConfig) -> jax.Array:
    """Distance (µm) from each position (..., 2) to the source, minimum image if periodic."""
    d = positions - source_position(config)
    if config.boundary == "periodic":
        d = ph.minimum_image(d, config.box_length)
    return jnp.sqrt(jnp.sum(d**2, axis=-1))


def concentration(positions: jax.Array, config: EnvConfig) -> jax.Array:
    """``c = L/r``: the box-scaled ``1/r`` field of the source (dimensionless)."""
    return config.box_length / distance_to_source(positions, config)


def concentration_change(
    previous: ph.ColloidState, now: ph.ColloidState, config: EnvConfig
) -> jax.Array:
    """Observable ``o = observable_scale · [c(now) − c(previous)]``, shape (n_agents, 1)."""
    delta = concentration(now.positions, config) - concentration(previous.positions, config)
    return (config.observable_scale * delta)[:, None]


def chemotaxis_reward(
    previous: ph.ColloidState, now: ph.ColloidState, config: EnvConfig
) -> jax.Array:
    """Reward ``R = clip(reward_scale · [c(now) − c(previous)], 0, ∞)``, shape (n_agents,)."""
    delta = concentration(now.positions, config) - concentration(previous.positions, config)
    return jnp.maximum(config.reward_scale * delta, 0.0)


TASKS: dict[str, Task] = {
    "chemotaxis": Task(concentration_change, chemotaxis_reward, observation_size=1),
}


def register_task(name: str, task: Task) -> None:
    """Make ``task`` available as ``EnvConfig(task=name)``; an existing name is an error."""
    if name in TASKS:
        raise ValueError(f"a task named {name!r} is already registered")
    TASKS[name] = task


def get_task(name: str) -> Task:
    """The registered task ``name``.

    Raises:
        ValueError: unknown task, listing the known ones.
    """
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}") from None


def swim_speed(params: SwimmerParameters) -> jax.Array:
    """Swim speed ``v = speed_body_lengths · 2R`` in µm/s."""
    return params.speed_body_lengths * 2.0 * params.radius_um


def physics_of(params: SwimmerParameters, config: EnvConfig) -> ph.Physics:
    """The :class:`~ntkbook.swarm.physics.Physics` of ``params`` in the box of ``config``."""
    return ph.make_physics(
        radius_um=params.radius_um,
        temperature_K=params.temperature_K,
        viscosity=params.viscosity,
        aspect_ratio=params.aspect_ratio,
        box_length=config.box_length,
        boundary=config.boundary,
        interactions=config.interactions,
        wca_sigma=ph.wca_sigma(params.radius_um, params.radius_um),
    )


@struct.dataclass
class EnvState:
    """Colloids now, at the previous decision, and the decision index within the episode.

    ``extra`` is the task's own state, renewed at every reset (the rod of the rod-rotation
    task); ``memory`` is task state that outlives an episode (that task's reward history,
    which SwarmRL keeps in its task object across episodes). Both are None for chemotaxis.
    """

    colloids: ph.ColloidState
    previous: ph.ColloidState
    time: jax.Array
    extra: Any = None
    memory: Any = None


class StepOutput(NamedTuple):
    """What :func:`env_step` returns besides the new state.

    ``observation`` is the first observation of the next episode when ``truncated``;
    ``final_observation`` is always the observation the action led to (use it to bootstrap the
    value at a time limit).
    """

    observation: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    final_observation: jax.Array


def reset(
    key: jax.Array, config: EnvConfig, params: SwimmerParameters
) -> tuple[EnvState, jax.Array]:
    """A new episode: agents uniform in the start disc (moved apart until none overlaps
    another when they interact); first observation (no change yet) is 0.

    A task with its own ``reset`` (see :class:`Task`) starts its episodes itself."""
    task = get_task(config.task)
    if task.reset is not None:
        return task.reset(key, config, params)
    colloids = ph.init_colloids(key, config.n_agents, source_position(config), config.start_radius)
    if config.interactions:
        positions = ph.relax_overlaps(colloids.positions, params.radius_um)
        colloids = ph.ColloidState(positions, colloids.orientations)
    state = EnvState(colloids, colloids, jnp.zeros((), jnp.int32))
    return state, get_task(config.task).observe(colloids, colloids, config)


def action_velocities(actions: jax.Array, params: SwimmerParameters, config: EnvConfig):
    """Swim speed (µm/s) and angular velocity (rad/s) per agent for ``actions`` (n_agents,):
    ``v`` for translate, ``∓`` the turn rate for the clockwise/counter-clockwise turns."""
    v = swim_speed(params)
    omega = jnp.deg2rad(config.turn_rate_deg)
    speed = jnp.where(actions == TRANSLATE, v, 0.0)
    angular = jnp.where(
        actions == ROTATE_CLOCKWISE,
        -omega,
        jnp.where(actions == ROTATE_COUNTERCLOCKWISE, omega, 0.0),
    )
    return speed, angular


def transition(
    key: jax.Array,
    state: EnvState,
    actions: jax.Array,
    config: EnvConfig,
    params: SwimmerParameters,
) -> tuple[EnvState, jax.Array, jax.Array]:
    """Hold ``actions`` (n_agents,) for one decision interval; never resets.

    Returns the new state, the observation the action led to ``(n_agents, obs)`` and its
    reward ``(n_agents,)``. One continuous trajectory is a ``lax.scan`` of this function.
    """
    task = get_task(config.task)
    if task.transition is not None:
        return task.transition(key, state, actions, config, params)
    speed, angular = action_velocities(actions, params, config)
    now = ph.advance(
        state.colloids,
        key,
        speed,
        angular,
        physics_of(params, config),
        config.integrator_step,
        config.n_substeps,
    )
    observation = task.observe(state.colloids, now, config)
    reward = task.reward(state.colloids, now, config)
    return EnvState(now, state.colloids, state.time + 1), observation, reward


def env_step(
    key: jax.Array,
    state: EnvState,
    actions: jax.Array,
    config: EnvConfig,
    params: SwimmerParameters,
) -> tuple[EnvState, StepOutput]:
    """:func:`transition`, then a reset at the time limit (``episode_length`` decisions).

    At the time limit the episode is truncated and reset automatically (the returned
    observation starts the next episode; ``final_observation`` is the true next one).
    """
    k_physics, k_reset = jax.random.split(key)
    stepped, observation, reward = transition(k_physics, state, actions, config, params)
    truncated = stepped.time >= config.episode_length
    fresh_state, fresh_observation = reset(k_reset, config, params)
    next_state = jax.tree_util.tree_map(
        lambda a, b: jnp.where(truncated, a, b), fresh_state, stepped
    ).replace(memory=stepped.memory)
    n = config.n_agents
    return next_state, StepOutput(
        observation=jnp.where(truncated, fresh_observation, observation),
        reward=reward,
        terminated=jnp.zeros((n,), bool),
        truncated=jnp.broadcast_to(truncated, (n,)),
        final_observation=observation,
    )


class Trajectory(NamedTuple):
    """A deployment: ``positions`` (T+1, n, 2) µm, ``orientations`` (T+1, n) rad,
    ``observations`` (T, n, obs) seen before each action, ``actions`` (T, n), ``rewards`` (T, n),
    and ``task_states``, the task's own state (``EnvState.extra``) at the start and after each
    decision (T+1 leading entries; None for chemotaxis)."""

    positions: jax.Array
    orientations: jax.Array
    observations: jax.Array
    actions: jax.Array
    rewards: jax.Array
    task_states: Any = None


Policy = Callable[[jax.Array, jax.Array, EnvState, EnvConfig], jax.Array]
"""A controller ``policy(key, observations, state, config) -> actions (n_agents,)``.

``observations`` is what the agents see ``(n_agents, obs)``; ``state`` is the full
:class:`EnvState`, which only a controller that is not restricted to the observation
(:func:`steer_to_source_policy`, the rod task's tip pusher) reads.
"""


def rollout(
    key: jax.Array,
    policy: Policy,
    config: EnvConfig,
    params: SwimmerParameters,
    n_decisions: int,
) -> Trajectory:
    """Deploy ``policy`` (a :data:`Policy`) for ``n_decisions`` without resets.

    Jittable with ``policy``, ``config`` and ``n_decisions`` static (``jax.jit(rollout,
    static_argnums=(1, 2, 4))``); ``vmap`` over ``key`` or ``params`` gives many deployments at
    once.
    """
    k_reset, k_run = jax.random.split(key)
    state, observation = reset(k_reset, config, params)

    def body(carry, k):
        state, obs = carry
        k_policy, k_physics = jax.random.split(k)
        actions = policy(k_policy, obs, state, config)
        state, next_obs, reward = transition(k_physics, state, actions, config, params)
        now = state.colloids
        record = (now.positions, now.orientations, obs, actions, reward, state.extra)
        return (state, next_obs), record

    start = state
    _, (positions, orientations, observations, actions, rewards, extras) = jax.lax.scan(
        body, (state, observation), jax.random.split(k_run, n_decisions)
    )
    return Trajectory(
        positions=jnp.concatenate([start.colloids.positions[None], positions]),
        orientations=jnp.concatenate([start.colloids.orientations[None], orientations]),
        observations=observations,
        actions=actions,
        rewards=rewards,
        task_states=jax.tree_util.tree_map(
            lambda a, b: jnp.concatenate([a[None], b]), start.extra, extras
        ),
    )


def switch_policy(index: jax.Array | int, policies: Sequence[Policy]) -> Policy:
    """The controller that acts as ``policies[index]``; ``index`` may be a traced integer.

    One ``jax.lax.switch`` over the policies (their actions cast to ``int32``), so a program
    that takes ``index`` as data compiles the physics once for all of them.

    Raises:
        ValueError: ``policies`` is empty.
    """
    policies = list(policies)
    if not policies:
        raise ValueError("switch_policy needs at least one policy, got none")

    def policy(key, observations, state, config):
        branches = [lambda k, o, s, p=p: p(k, o, s, config).astype(jnp.int32) for p in policies]
        return jax.lax.switch(index, branches, key, observations, state)

    return policy


def rollout_each(
    key: jax.Array,
    policies: Sequence[Policy],
    config: EnvConfig,
    params: SwimmerParameters,
    n_decisions: int,
) -> Trajectory:
    """:func:`rollout` of every one of ``policies`` from the same ``key`` (the same start and the
    same physics noise), stacked on a new leading axis in the order of ``policies``.

    The policies run one after the other (a ``lax.map`` over their index, a
    :func:`switch_policy` inside), so the result equals separate rollouts while the physics is
    compiled once, not once per policy. Call it inside a jitted function (``config`` and
    ``n_decisions`` static); the policies may close over traced values (a trained actor's
    parameters).

    Raises:
        ValueError: ``policies`` is empty.
    """
    policies = list(policies)
    if not policies:
        raise ValueError("rollout_each needs at least one policy, got none")

    def one(index):
        return rollout(key, switch_policy(index, policies), config, params, n_decisions)

    return jax.lax.map(one, jnp.arange(len(policies)))


def random_policy(
    key: jax.Array, observations: jax.Array, state: EnvState, config: EnvConfig
) -> jax.Array:
    """Each agent picks one of the four actions uniformly at random."""
    del state, config
    return jax.random.randint(key, observations.shape[:1], 0, len(ACTIONS))


def run_and_rotate_policy(
    key: jax.Array, observations: jax.Array, state: EnvState, config: EnvConfig
) -> jax.Array:
    """A hand-written controller that sees only the observation: swim while the concentration
    did not fall, otherwise turn.

    ``translate`` if ``o ≥ 0``, otherwise ``rotate_counterclockwise`` (60° per decision at the
    default turn rate); deterministic.
    """
    del key, state, config
    return jnp.where(observations[:, 0] >= 0.0, TRANSLATE, ROTATE_COUNTERCLOCKWISE).astype(
        jnp.int32
    )


def steer_to_source_policy(
    key: jax.Array, observations: jax.Array, state: EnvState, config: EnvConfig
) -> jax.Array:
    """A classical controller that knows where the source is (it reads the full state).

    With ``δ`` the angle from the agent's heading to the direction of the source (minimum image
    in a periodic box), wrapped to ``(−π, π]``, and ``Δφ`` the turn of one decision (turn rate ×
    decision interval): ``translate`` if ``|δ| ≤ Δφ/2``, else rotate towards the source
    (counter-clockwise for ``δ > 0``). It bounds what steering can achieve with these actions.
    """
    del key, observations
    colloids = state.colloids
    to_source = source_position(config) - colloids.positions
    if config.boundary == "periodic":
        to_source = ph.minimum_image(to_source, config.box_length)
    heading_error = jnp.angle(
        jnp.exp(1j * (jnp.arctan2(to_source[:, 1], to_source[:, 0]) - colloids.orientations))
    )
    half_turn = 0.5 * math.radians(config.turn_rate_deg) * config.decision_interval
    turn = jnp.where(heading_error > 0.0, ROTATE_COUNTERCLOCKWISE, ROTATE_CLOCKWISE)
    return jnp.where(jnp.abs(heading_error) <= half_turn, TRANSLATE, turn).astype(jnp.int32)
