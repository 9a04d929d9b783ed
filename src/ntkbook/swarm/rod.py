"""A rigid rod pinned at its centre, pushed by colloids: the object of the rod-rotation task.

Units as in :mod:`.physics` (µm, s, K, pN). The rod lies in the plane, pinned at ``c``; its only
degree of freedom is its angle ``φ`` (rad, counter-clockwise from x), with axis
``u = (cos φ, sin φ)``. Overdamped rotation with rotational friction ``γ_rod`` (pN·µm·s) at
temperature ``T``::

    φ(t+Δt) = φ + τ Δt/γ_rod + √(2 k_B T Δt/γ_rod) ξ,     τ = Σ_k ((p_k − c) × F_k)_z

with ``F_k`` the contact force on the rod at point ``p_k`` (minus the force it exerts on a
colloid) and ``ξ`` a standard normal, so a free rod diffuses with ``⟨Δφ²⟩ = 2 k_B T t/γ_rod`` and
a constant force ``F`` at the tip, perpendicular to the rod, turns it at ``ω = F (L/2)/γ_rod``.

Two geometries (:class:`RodConfig`):

- ``"beads"``: the authors' rod (SwarmRL ``add_rod``): ``n_beads`` touching spheres of radius
  ``a`` with centres evenly spaced on ``s ∈ [−(L/2 − a), L/2 − a]`` along the axis; each bead
  repels each colloid by WCA with pairwise ``σ = (R + a)·2^(−1/6)``.
- ``"capsule"``: the segment of the same bead centres with radius ``a`` (the beads' envelope);
  each colloid is repelled by WCA from the nearest point of the segment, one contact per colloid
  instead of ``n_beads``. A colloid pushing the rod gets the same normal force, and so the same
  torque, from both (tested); the beads are bumpy, the capsule smooth.

Colloids interact with each other by WCA with ``σ = 2R·2^(−1/6)``. The WCA energy is
``ε = k_B (T + offset)`` (the authors: offset 1 K) or a fixed ε (:func:`.physics.wca_epsilon`).

:func:`make_rod_system` gathers the parameters into a :class:`RodSystem` pytree (``vmap`` over
temperature or radius), :func:`init_rod_state` places colloids without overlaps,
:func:`advance` runs ``n_steps`` integrator steps in one ``lax.scan`` and returns each colloid's
share of the rod's deterministic rotation.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from ntkbook.swarm import physics as ph

__all__ = [
    "GEOMETRIES",
    "SI_ROTATIONAL_FRICTION",
    "RodConfig",
    "RodSystem",
    "RodState",
    "Advance",
    "make_rod_system",
    "rod_axis",
    "bead_offsets",
    "bead_positions",
    "cross",
    "torque",
    "contact_forces",
    "init_rod_state",
    "capsule_of",
    "step",
    "advance",
    "brownian_rotation",
]

GEOMETRIES = ("beads", "capsule")
SI_ROTATIONAL_FRICTION = 1e18  # 1 N·m·s in pN·µm·s


@dataclasses.dataclass(frozen=True)
class RodConfig:
    """Static description of the rod (hashable; defaults: the authors' run script).

    Attributes:
        length_um: end-to-end length ``L``, µm (100).
        n_beads: beads of the ``"beads"`` geometry (59).
        bead_radius_um: bead radius ``a``, also the capsule's radius, µm (100/59/2 = 0.847).
        friction_rotation: rotational friction ``γ_rod``, pN·µm·s (6.902e-16 N·m·s = 690.2).
        geometry: ``"beads"`` or ``"capsule"``.
        start_angle: angle at the start, rad. The authors' script passes 90 to a field that
            takes radians, so 90 rad (≈ 116.6° mod 360°).
        epsilon_offset_K: ``ε = k_B (T + offset)`` (1 K).
        fixed_epsilon: a fixed ε in pN·µm instead (None: use the offset form).
    """

    length_um: float = 100.0
    n_beads: int = 59
    bead_radius_um: float = 100.0 / 59.0 / 2.0
    friction_rotation: float = 6.902407326e-16 * SI_ROTATIONAL_FRICTION
    geometry: str = "beads"
    start_angle: float = 90.0
    epsilon_offset_K: float = 1.0
    fixed_epsilon: float | None = None

    def __post_init__(self):
        for name in ("length_um", "bead_radius_um", "friction_rotation"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"rod {name} must be a positive number, got {value!r}")
        if not isinstance(self.n_beads, int) or self.n_beads < 2:
            raise ValueError(f"rod n_beads must be an integer >= 2, got {self.n_beads!r}")
        if 2.0 * self.bead_radius_um >= self.length_um:
            raise ValueError(
                f"rod bead_radius_um {self.bead_radius_um} must be below half the length "
                f"{self.length_um}"
            )
        if self.geometry not in GEOMETRIES:
            raise ValueError(
                f"unknown rod geometry {self.geometry!r}; choose one of {', '.join(GEOMETRIES)}"
            )
        if not math.isfinite(self.start_angle):
            raise ValueError(f"rod start_angle must be finite, got {self.start_angle!r}")
        if not (math.isfinite(self.epsilon_offset_K) and self.epsilon_offset_K >= 0):
            raise ValueError(
                f"rod epsilon_offset_K must be finite and >= 0, got {self.epsilon_offset_K!r}"
            )
        if self.fixed_epsilon is not None and not (
            math.isfinite(self.fixed_epsilon) and self.fixed_epsilon > 0
        ):
            raise ValueError(f"rod fixed_epsilon must be positive, got {self.fixed_epsilon!r}")

    @property
    def half_span(self) -> float:
        """Distance from the centre to the outermost bead centre (the capsule's half-segment),
        ``L/2 − a``, µm."""
        return self.length_um / 2.0 - self.bead_radius_um

    @property
    def area_um2(self) -> float:
        """Area the rod covers in the plane (capsule), µm²."""
        a = self.bead_radius_um
        return 4.0 * a * self.half_span + math.pi * a**2


@struct.dataclass
class RodSystem:
    """Parameters of colloids and rod (a pytree: ``vmap`` over any array field).

    Attributes:
        colloids: the colloids' :class:`~ntkbook.swarm.physics.Physics` (friction, ``k_B T``,
            box; its own WCA switch is off, contacts are computed here).
        radius_um: colloid radius ``R``, µm.
        rod_friction: ``γ_rod``, pN·µm·s.
        epsilon: WCA energy ε of every contact, pN·µm.
        center: the pin ``c`` (2,), µm.
        rod: the static :class:`RodConfig`.
    """

    colloids: ph.Physics
    radius_um: jax.Array
    rod_friction: jax.Array
    epsilon: jax.Array
    center: jax.Array
    rod: RodConfig = struct.field(pytree_node=False, default=RodConfig())

    @property
    def rod_diffusion(self) -> jax.Array:
        """``D_rod = k_B T/γ_rod``, rad²/s."""
        return self.colloids.thermal_energy / self.rod_friction


@struct.dataclass
class RodState:
    """Colloids (positions (n, 2), orientations (n,)) and the rod angle (rad, unwrapped)."""

    colloids: ph.ColloidState
    angle: jax.Array


class Advance(NamedTuple):
    """What :func:`advance` returns.

    Attributes:
        state: the :class:`RodState` after the steps.
        contributions: each colloid's share (n,) of the rod's deterministic rotation over the
            steps, ``Σ_steps τ_i Δt/γ_rod`` in rad, with ``τ_i`` the torque of the contact
            forces between colloid ``i`` and the rod.
        brownian: the rod's Brownian rotation over the steps, rad.
        external: the rotation caused by the external torque, rad.
        rotation: the rod's angle change over the steps, ``Σ_i contributions_i + external +
            brownian`` (exactly their sum, step by step; ``state.angle`` minus the start angle
            loses float32 digits when the angle is large).
    """

    state: RodState
    contributions: jax.Array
    brownian: jax.Array
    external: jax.Array
    rotation: jax.Array


def make_rod_system(
    radius_um=3.08,
    temperature_K=300.0,
    rod: RodConfig = RodConfig(),
    viscosity=ph.WATER_VISCOSITY,
    box_length=150.0,
    boundary: str = "open",
    center=None,
) -> RodSystem:
    """A :class:`RodSystem` (traceable: array radius or temperature give a batch to ``vmap``).

    Spherical colloids (Stokes friction); ``ε`` from ``rod.epsilon_offset_K`` or
    ``rod.fixed_epsilon``; the pin at the box centre unless ``center`` is given.
    """
    colloids = ph.make_physics(
        radius_um=radius_um,
        temperature_K=temperature_K,
        viscosity=viscosity,
        box_length=box_length,
        boundary=boundary,
    )
    return RodSystem(
        colloids=colloids,
        radius_um=jnp.asarray(radius_um, jnp.float32),
        rod_friction=jnp.asarray(rod.friction_rotation, jnp.float32),
        epsilon=ph.wca_epsilon(temperature_K, rod.epsilon_offset_K, rod.fixed_epsilon),
        center=(
            jnp.full((2,), 0.5, jnp.float32) * jnp.asarray(box_length, jnp.float32)
            if center is None
            else jnp.asarray(center, jnp.float32)
        ),
        rod=rod,
    )


def rod_axis(angle) -> jax.Array:
    """Unit vector ``u = (cos φ, sin φ)`` along the rod (..., 2)."""
    return jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)


def bead_offsets(rod: RodConfig) -> jax.Array:
    """Positions ``s_k`` (n_beads,) of the bead centres along the axis, µm from the pin."""
    return jnp.linspace(-rod.half_span, rod.half_span, rod.n_beads, dtype=jnp.float32)


def bead_positions(angle, center, rod: RodConfig) -> jax.Array:
    """Bead centres ``c + s_k u`` (n_beads, 2), µm."""
    return jnp.asarray(center, jnp.float32) + bead_offsets(rod)[:, None] * rod_axis(angle)


def cross(a: jax.Array, b: jax.Array) -> jax.Array:
    """z component of the cross product of 2-D vectors, ``a_x b_y − a_y b_x``."""
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def torque(points: jax.Array, forces: jax.Array, center) -> jax.Array:
    """Torque about ``center`` of forces (..., 2) acting at points (..., 2),
    ``τ = Σ ((p − c) × F)_z`` in pN·µm."""
    return jnp.sum(cross(points - jnp.asarray(center, jnp.float32), forces))


def contact_forces(positions: jax.Array, angle, system: RodSystem) -> tuple[jax.Array, jax.Array]:
    """Contact forces between the colloids and the rod.

    Returns ``(forces, torques)``: the WCA force (n, 2) in pN on each colloid from the rod, and
    the torque (n,) in pN·µm about the pin of the opposite force on the rod, colloid by colloid
    (``τ_i = Σ_k ((p_k − c) × (−f_ik))_z`` over the contact points ``p_k`` of colloid ``i``).
    """
    rod = system.rod
    u = rod_axis(angle)
    relative = positions - system.center
    sigma = ph.wca_sigma(system.radius_um, rod.bead_radius_um)
    if rod.geometry == "beads":
        offsets = bead_offsets(rod)
        beads = offsets[:, None] * u
        pair = ph.wca_pair_forces(relative[:, None, :] - beads[None], sigma, system.epsilon)
        forces = jnp.sum(pair, axis=1)
        # (p_k − c) × (−f) = −s_k (u × f)
        torques = -jnp.sum(offsets[None, :] * cross(u, pair), axis=1)
        return forces, torques
    s = jnp.clip(relative @ u, -rod.half_span, rod.half_span)
    forces = ph.wca_pair_forces(relative - s[:, None] * u, sigma, system.epsilon)
    return forces, -s * cross(u, forces)


def init_rod_state(
    key: jax.Array,
    n: int,
    system: RodSystem,
    start_radius,
    n_iterations: int = 2000,
) -> RodState:
    """``n`` colloids started uniformly in a disc of radius ``start_radius`` around the pin,
    orientations uniform, then moved apart by :func:`.physics.relax_overlaps` until none
    overlaps another or the rod (the authors relax their start by energy minimisation).
    The rod starts at ``rod.start_angle``. Check with :func:`.physics.overlaps`."""
    start = ph.init_colloids(key, n, system.center, start_radius)
    angle = jnp.asarray(system.rod.start_angle, jnp.float32)
    u = rod_axis(angle)
    segment = (
        system.center - system.rod.half_span * u,
        system.center + system.rod.half_span * u,
        system.rod.bead_radius_um,
    )
    positions = ph.relax_overlaps(start.positions, system.radius_um, segment, n_iterations)
    return RodState(ph.ColloidState(positions, start.orientations), angle)


def capsule_of(state: RodState, system: RodSystem) -> tuple:
    """The rod as a segment ``(start, end, radius)`` for :func:`.physics.overlaps`."""
    u = rod_axis(state.angle)
    half = system.rod.half_span
    return (system.center - half * u, system.center + half * u, system.rod.bead_radius_um)


def step(
    state: RodState,
    noise: jax.Array,
    rod_noise: jax.Array,
    speed,
    angular_velocity,
    system: RodSystem,
    dt: float,
    external_torque=0.0,
) -> tuple[RodState, jax.Array, jax.Array]:
    """One Euler–Maruyama step of colloids and rod.

    Forces at the start of the step: WCA between colloids (``σ = 2R·2^(−1/6)``) and between
    colloids and rod; the colloids move by :func:`.physics.step` with these forces, the rod
    turns by ``(Σ_i τ_i + τ_ext) Δt/γ_rod + √(2 k_B T Δt/γ_rod) ξ``.

    Args:
        noise: standard normals (n, 3) of the colloids; rod_noise: one standard normal.
        external_torque: a further torque on the rod, pN·µm.

    Returns:
        the new state, each colloid's rotation ``τ_i Δt/γ_rod`` (n,) and the Brownian
        rotation of the rod, rad.
    """
    positions = state.colloids.positions
    n = positions.shape[0]
    sigma = ph.wca_sigma(system.radius_um, system.radius_um)
    pair = ph.wca_pair_forces(positions[:, None] - positions[None], sigma, system.epsilon)
    rod_forces, torques = contact_forces(positions, state.angle, system)
    force = jnp.sum(pair * ~jnp.eye(n, dtype=bool)[..., None], axis=1) + rod_forces
    colloids = ph.step(state.colloids, noise, speed, angular_velocity, system.colloids, dt, force)
    contributions = torques * dt / system.rod_friction
    brownian = jnp.sqrt(2.0 * system.rod_diffusion * dt) * rod_noise
    angle = (
        state.angle + jnp.sum(contributions) + external_torque * dt / system.rod_friction + brownian
    )
    return RodState(colloids, angle), contributions, brownian


def advance(
    state: RodState,
    key: jax.Array,
    speed,
    angular_velocity,
    system: RodSystem,
    dt: float,
    n_steps: int,
    external_torque=0.0,
) -> Advance:
    """``n_steps`` of :func:`step` in a ``lax.scan`` at constant ``speed`` (µm/s) and
    ``angular_velocity`` (rad/s), scalars or (n,) per colloid; one jittable program."""
    n = state.colloids.positions.shape[0]
    speed = jnp.broadcast_to(jnp.asarray(speed, jnp.float32), (n,))
    angular_velocity = jnp.broadcast_to(jnp.asarray(angular_velocity, jnp.float32), (n,))
    k_colloids, k_rod = jax.random.split(key)
    noise = ph.standard_normal(k_colloids, (n_steps, n, 3))
    rod_noise = ph.standard_normal(k_rod, (n_steps,))

    # the rotation is summed from zero, step by step, and the angle of each step is the start
    # angle folded into [−π, π) plus that sum: float32 resolves the tiny rotation of one step
    # only when it is not added to a large angle
    turns = 2.0 * jnp.pi * jnp.round(state.angle / (2.0 * jnp.pi))
    folded = state.angle - turns
    step_external = jnp.asarray(external_torque, jnp.float32) * dt / system.rod_friction

    def body(carry, xi):
        colloids, contributions, brownian, rotation = carry
        current = RodState(colloids, folded + rotation)
        moved, c, b = step(
            current, xi[0], xi[1], speed, angular_velocity, system, dt, external_torque
        )
        rotation = rotation + (jnp.sum(c) + step_external + b)
        return (moved.colloids, contributions + c, brownian + b, rotation), None

    zero = jnp.zeros((), jnp.float32)
    (colloids_out, contributions, brownian, rotation), _ = jax.lax.scan(
        body, (state.colloids, jnp.zeros((n,), jnp.float32), zero, zero), (noise, rod_noise)
    )
    external = jnp.asarray(external_torque, jnp.float32) * n_steps * dt / system.rod_friction
    return Advance(
        RodState(colloids_out, state.angle + rotation),
        contributions,
        brownian,
        external,
        rotation,
    )


def brownian_rotation(temperature_K, rod: RodConfig, duration_s) -> float:
    """Root-mean-square Brownian rotation of the free rod, ``√(2 k_B T t/γ_rod)``, rad."""
    kT = ph.BOLTZMANN * 1e18 * float(temperature_K)
    return math.sqrt(2.0 * kT * float(duration_s) / rod.friction_rotation)
