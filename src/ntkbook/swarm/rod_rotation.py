"""The rod-rotation task of the temperature paper (Tovey, Zimmer, Lohrmann et al. 2023).

``n_agents`` colloids of radius ``R`` share a box with a rod pinned at the box centre
(:mod:`.rod`); they are rewarded for turning it counter-clockwise. Registered as
``EnvConfig(task="rod_rotation", task_options=RodRotation(...))``, it runs through
:func:`~ntkbook.swarm.tasks.reset`, :func:`~ntkbook.swarm.tasks.transition`,
:func:`~ntkbook.swarm.tasks.env_step`, ``make_train`` and deployment like chemotaxis.

**Observation**: :func:`~ntkbook.swarm.vision.vision_cones` with :data:`N_CONES` (5) cones over
``±half_angle`` and two types, the other colloids (radius ``R``) and the rod's beads (radius
``a``), flattened to 10 numbers. The rod is seen as
its beads in both geometries.

**Rewards** (``RodRotation.reward``), per agent and decision:

- ``"authors"`` (SwarmRL ``RotateRod``): the rod's counter-clockwise angle change over the
  decision in degrees, ``Δφ = atan2(u_old × u_new, u_old · u_new)``, is appended to a history
  of the last ``velocity_history`` decisions (100) that is *not* cleared between episodes; the
  mean of the history is split among the agents with weights
  ``w_i ∝ |u × Σ_k ∇(1/|r_ik|¹²)| + 10⁻⁸``, ``r_ik = p_k − r_i`` from colloid ``i`` to bead ``k``
  in µm (SwarmRL's ``compute_torque_partition_on_rod``), ``Σ_i w_i = 1``.
- ``"torque"``: each agent's own contribution to the rod's deterministic rotation over the
  decision, ``Σ_steps τ_i Δt/γ_rod`` in degrees; summed over agents it is exactly the rotation
  that the contact forces caused (the angle change minus the Brownian rotation).

**Controllers**: :func:`tip_pushing_policy` (scripted, reads the rod angle) and the package's
random policy.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from ntkbook.swarm import physics as ph
from ntkbook.swarm import rod as rd
from ntkbook.swarm import tasks as tk
from ntkbook.swarm import vision

__all__ = [
    "REWARDS",
    "N_CONES",
    "check_config",
    "RodRotation",
    "RodTaskState",
    "RewardHistory",
    "authors_weights",
    "rod_system_of",
    "observe",
    "reset",
    "transition",
    "tip_pushing_policy",
    "rod_frame",
    "rotations_per_hour",
    "paper_env_config",
]

REWARDS = ("authors", "torque")
N_CONES = 5  # vision cones; with two types the observation has 2·N_CONES = 10 numbers


@dataclasses.dataclass(frozen=True)
class RodRotation:
    """Static options of the rod-rotation task (defaults: the authors' run script).

    Attributes:
        rod: the :class:`~ntkbook.swarm.rod.RodConfig`.
        reward: ``"authors"`` or ``"torque"`` (module docstring).
        half_angle: half-width of the :data:`N_CONES` vision cones, rad (1.4).
        vision_range: how far the agents see, µm (unlimited).
        velocity_history: decisions averaged by the ``"authors"`` reward (100).
    """

    rod: rd.RodConfig = rd.RodConfig()
    reward: str = "authors"
    half_angle: float = 1.4
    vision_range: float = float("inf")
    velocity_history: int = 100

    def __post_init__(self):
        if self.reward not in REWARDS:
            raise ValueError(f"unknown reward {self.reward!r}; choose one of {', '.join(REWARDS)}")
        if not 0 < self.half_angle <= math.pi:
            raise ValueError(f"half_angle must lie in (0, π], got {self.half_angle!r}")
        if not self.vision_range > 0:
            raise ValueError(f"vision_range must be positive, got {self.vision_range!r}")
        if not isinstance(self.velocity_history, int) or self.velocity_history < 1:
            raise ValueError(
                f"velocity_history must be a positive integer, got {self.velocity_history!r}"
            )


@struct.dataclass
class RodTaskState:
    """The rod's angle now (rad, unwrapped, counter-clockwise), its change over the last
    decision (rad) and that decision's torque contributions (n_agents,), rad."""

    angle: jax.Array
    rotation: jax.Array
    contributions: jax.Array


@struct.dataclass
class RewardHistory:
    """The ``"authors"`` reward's ring buffer of angle changes (degrees) and how many were
    written."""

    values: jax.Array
    count: jax.Array


def _options(config: tk.EnvConfig) -> RodRotation:
    options = config.task_options
    if not isinstance(options, RodRotation):
        raise ValueError(
            f"task 'rod_rotation' needs task_options=RodRotation(...), got {options!r}"
        )
    if config.boundary == "periodic":
        raise ValueError(
            "task 'rod_rotation' needs boundary 'open' (the authors) or 'walls', got 'periodic'"
        )
    return options


def check_config(config: tk.EnvConfig, radius_um: float) -> None:
    """Raise unless ``config.n_agents`` colloids of radius ``radius_um`` fit in the box beside
    the rod (:func:`~ntkbook.swarm.physics.check_fits`) and the rod fits in the box."""
    rod = _options(config).rod
    if rod.length_um >= config.box_length:
        raise ValueError(
            f"rod length_um {rod.length_um} must be shorter than the box {config.box_length}"
        )
    ph.check_fits(
        config.n_agents,
        float(radius_um),
        config.box_length**2 - rod.area_um2,
        what=f"the {config.box_length} µm box beside the rod",
    )


def rod_system_of(params: tk.SwimmerParameters, config: tk.EnvConfig) -> rd.RodSystem:
    """The :class:`~ntkbook.swarm.rod.RodSystem` of ``params`` in the box of ``config``."""
    return rd.make_rod_system(
        radius_um=params.radius_um,
        temperature_K=params.temperature_K,
        rod=_options(config).rod,
        viscosity=params.viscosity,
        box_length=config.box_length,
        boundary=config.boundary,
    )


def observe(colloids: ph.ColloidState, angle, system: rd.RodSystem, config: tk.EnvConfig):
    """Vision-cone observation (n_agents, 2·n_cones) of colloids and rod beads."""
    options = _options(config)
    n = colloids.positions.shape[0]
    beads = rd.bead_positions(angle, system.center, options.rod)
    targets = jnp.concatenate([colloids.positions, beads])
    radii = jnp.concatenate(
        [
            jnp.broadcast_to(system.radius_um, (n,)),
            jnp.full((options.rod.n_beads,), options.rod.bead_radius_um, jnp.float32),
        ]
    )
    types = jnp.concatenate(
        [jnp.zeros((n,), jnp.int32), jnp.ones((options.rod.n_beads,), jnp.int32)]
    )
    cones = vision.vision_cones(
        colloids.positions,
        colloids.orientations,
        targets,
        radii,
        types,
        n_types=2,
        n_cones=N_CONES,
        half_angle=options.half_angle,
        vision_range=options.vision_range,
    )
    return vision.flatten_cones(cones)


def authors_weights(positions: jax.Array, angle, system: rd.RodSystem) -> jax.Array:
    """SwarmRL's reward split ``w_i ∝ |u × Σ_k ∇(1/|r_ik|¹²)| + 10⁻⁸``, ``Σ w = 1`` (n,)."""
    beads = rd.bead_positions(angle, system.center, system.rod)
    r = beads[None] - positions[:, None]  # (n, n_beads, 2), µm
    d2 = jnp.sum(r**2, axis=-1)
    gradient = jnp.sum(-12.0 * r / (d2**7)[..., None], axis=1)
    magnitude = jnp.abs(rd.cross(rd.rod_axis(angle), gradient)) + 1e-8
    return magnitude / jnp.sum(magnitude)


def reset(key: jax.Array, config: tk.EnvConfig, params: tk.SwimmerParameters):
    """A new episode: colloids relaxed without overlaps from the start disc, the rod at its
    start angle, a fresh reward history (:func:`~ntkbook.swarm.tasks.env_step` keeps the old
    one across episodes)."""
    options = _options(config)
    if not isinstance(params.radius_um, jax.core.Tracer):
        check_config(config, float(np.max(np.asarray(params.radius_um))))
    system = rod_system_of(params, config)
    state = rd.init_rod_state(key, config.n_agents, system, config.start_radius)
    extra = RodTaskState(
        state.angle, jnp.zeros((), jnp.float32), jnp.zeros((config.n_agents,), jnp.float32)
    )
    memory = RewardHistory(
        jnp.zeros((options.velocity_history,), jnp.float32), jnp.zeros((), jnp.int32)
    )
    env_state = tk.EnvState(state.colloids, state.colloids, jnp.zeros((), jnp.int32), extra, memory)
    return env_state, observe(state.colloids, state.angle, system, config)


def transition(
    key: jax.Array,
    state: tk.EnvState,
    actions: jax.Array,
    config: tk.EnvConfig,
    params: tk.SwimmerParameters,
):
    """One decision of the rod task: the actions held for ``decision_interval`` (one
    ``lax.scan`` of :func:`~ntkbook.swarm.rod.step`), then observation and reward."""
    options = _options(config)
    system = rod_system_of(params, config)
    speed, angular = tk.action_velocities(actions, params, config)
    out = rd.advance(
        rd.RodState(state.colloids, state.extra.angle),
        key,
        speed,
        angular,
        system,
        config.integrator_step,
        config.n_substeps,
    )
    now = out.state
    observation = observe(now.colloids, now.angle, system, config)
    # SwarmRL's atan2 of the old and new directors: the change wrapped to (−180°, 180°]
    change_deg = jnp.rad2deg(jnp.angle(jnp.exp(1j * out.rotation)))
    history = state.memory
    size = options.velocity_history
    values = history.values.at[history.count % size].set(change_deg)
    count = history.count + 1
    if options.reward == "authors":
        mean_change = jnp.sum(values) / jnp.minimum(count, size)
        reward = mean_change * authors_weights(now.colloids.positions, now.angle, system)
    else:
        reward = jnp.rad2deg(out.contributions)
    new_state = tk.EnvState(
        now.colloids,
        state.colloids,
        state.time + 1,
        RodTaskState(now.angle, out.rotation, out.contributions),
        RewardHistory(values, count),
    )
    return new_state, observation, reward


def tip_pushing_policy(
    key: jax.Array, observations: jax.Array, state: tk.EnvState, config: tk.EnvConfig
) -> jax.Array:
    """A scripted controller that reads the rod angle: every agent goes to the tip nearest
    to it and pushes it counter-clockwise.

    With ``u`` the rod axis, ``n = (−u_y, u_x)`` its normal, ``s = (r − c)·u`` and
    ``h = (r − c)·n`` the agent's position in the rod's frame and ``σ = sign(s)``: a push
    along ``σ n`` at ``s`` turns the rod counter-clockwise, so the agent's place is the
    point ``c + σ(0.9 ℓ u − (2a + 4 µm) n)`` behind the tip (``ℓ`` the half-span, ``a`` the
    rod radius). An agent on the wrong side of the rod (``σ h > 0``) first heads for a point
    ``R + a + 6 µm`` beyond the tip, so that it goes round the rod instead of pushing it the
    wrong way; an agent within 6 µm of its place heads along ``σ n``; any other heads for its
    place. It translates when its heading is within half a decision's turn of that
    direction and otherwise turns towards it.
    """
    del key, observations
    rod = _options(config).rod
    colloids = state.colloids
    u = rd.rod_axis(state.extra.angle)
    normal = jnp.stack([-u[1], u[0]])
    center = jnp.full((2,), config.box_length / 2, jnp.float32)
    relative = colloids.positions - center
    s, h = relative @ u, relative @ normal
    side = jnp.where(s >= 0.0, 1.0, -1.0)[:, None]
    place = center + side * (0.9 * rod.half_span * u - (2.0 * rod.bead_radius_um + 4.0) * normal)
    beyond = center + side * (rod.half_span + rod.bead_radius_um + 3.08 + 6.0) * u
    wrong_side = (side[:, 0] * h > 0.0) & (jnp.abs(s) < rod.half_span + 3.08)
    to_place = place - colloids.positions
    at_place = jnp.linalg.norm(to_place, axis=-1) <= 6.0
    goal = jnp.where(
        wrong_side[:, None],
        beyond - colloids.positions,
        jnp.where(at_place[:, None], side * normal, to_place),
    )
    heading_error = jnp.angle(
        jnp.exp(1j * (jnp.arctan2(goal[:, 1], goal[:, 0]) - colloids.orientations))
    )
    half_turn = 0.5 * math.radians(config.turn_rate_deg) * config.decision_interval
    turn = jnp.where(heading_error > 0.0, tk.ROTATE_COUNTERCLOCKWISE, tk.ROTATE_CLOCKWISE)
    return jnp.where(jnp.abs(heading_error) <= half_turn, tk.TRANSLATE, turn).astype(jnp.int32)


def rod_frame(positions, angles, center) -> tuple[np.ndarray, np.ndarray]:
    """Positions (..., n, 2) in the rod's frame: ``s`` along the axis and ``h`` along the
    normal ``(−u_y, u_x)``, µm, for rod angles (...)."""
    positions = np.asarray(positions, np.float64)
    angles = np.asarray(angles, np.float64)[..., None]
    relative = positions - np.asarray(center, np.float64)
    s = relative[..., 0] * np.cos(angles) + relative[..., 1] * np.sin(angles)
    h = -relative[..., 0] * np.sin(angles) + relative[..., 1] * np.cos(angles)
    return s, h


def rotations_per_hour(angles, decision_interval: float) -> np.ndarray:
    """Mean counter-clockwise rotation rate of the rod, in full turns per hour, from the
    unwrapped angles (..., T+1) of a deployment: ``(φ_T − φ_0)/(2π T Δt_d)·3600``."""
    angles = np.asarray(angles, np.float64)
    n = angles.shape[-1] - 1
    return (angles[..., -1] - angles[..., 0]) / (2 * np.pi * n * decision_interval) * 3600.0


def paper_env_config(n_agents: int = 100, **options) -> tk.EnvConfig:
    """The authors' rod environment: 150 µm open box, 10 s decisions, 0.01 s steps,
    360-decision episodes, start disc 25 µm, turns at 3.55°/s; ``options`` go to
    :class:`RodRotation`."""
    return tk.EnvConfig(
        task="rod_rotation",
        n_agents=n_agents,
        decision_interval=10.0,
        integrator_step=0.01,
        episode_length=360,
        box_length=150.0,
        start_radius=25.0,
        turn_rate_deg=3.55,
        boundary="open",
        interactions=True,
        task_options=RodRotation(**options),
    )


tk.register_task(
    "rod_rotation",
    tk.Task(
        observe=None,
        reward=None,
        observation_size=2 * N_CONES,
        reset=reset,
        transition=transition,
        default_options=RodRotation(),
    ),
)
