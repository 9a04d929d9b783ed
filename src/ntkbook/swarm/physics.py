"""Overdamped active Brownian dynamics of colloids in two dimensions.

Units throughout: micrometre (µm), second (s), kelvin (K), piconewton (pN). In these units a
viscosity of 1 Pa·s is 1 pN·s/µm² and ``k_B T`` at 300 K is 4.14e-3 pN·µm, so every quantity the
integrator touches is of order one in float32.

Each colloid has a position ``r`` (µm) and an orientation ``θ`` (rad) with director
``n = (cos θ, sin θ)``. It swims with speed ``v`` along ``n`` (a swim force ``F_s = γ_∥ v``) and
turns with angular velocity ``ω`` (a torque ``τ = γ_r ω``). The integrator is Euler–Maruyama for the
position and the exact Gaussian update for the orientation over one step ``Δt``::

    r(t+Δt) = r + [v n + M(θ) F] Δt + √(2 D_∥ Δt) ξ_∥ n + √(2 D_⊥ Δt) ξ_⊥ n_⊥
    θ(t+Δt) = θ + ω Δt + √(2 D_r Δt) ξ_θ

with ``ξ`` independent standard normals, ``n_⊥ = (−sin θ, cos θ)``, ``M(θ) = n n/γ_∥ + n_⊥ n_⊥/γ_⊥``
the mobility and ``F`` the optional WCA forces. For constant ``ω`` the orientation update is exact
for any ``Δt``.

Friction (Stokes' law for a sphere of radius ``a``; Perrin's factors for a spheroid of equal
volume)::

    γ_t = 6πηa,   γ_r = 8πηa³,   D = k_B T / γ

A spheroid has semi-axes ``a_∥ = R p^(2/3)`` along its director and ``a_⊥ = R p^(−1/3)`` across it
(``p = a_∥/a_⊥`` the aspect ratio, ``p > 1`` prolate, ``p < 1`` oblate, ``R`` the radius of the
sphere of equal volume). With ``S`` Perrin's shape integral,

    γ_∥ = 16πη (a_∥² − a_⊥²) / [(2a_∥² − a_⊥²) S − 2a_∥]
    γ_⊥ = 32πη (a_∥² − a_⊥²) / [(2a_∥² − 3a_⊥²) S + 2a_∥]
    γ_r = 32πη (a_∥⁴ − a_⊥⁴) / (3 [(2a_∥² − a_⊥²) S − 2a_∥])      (rotation about z ⟂ director)

    S = 2 ln[(a_∥ + ξ)/a_⊥] / ξ,   ξ = √(a_∥² − a_⊥²)            (prolate)
    S = 2 arctan[ξ/a_∥] / ξ,       ξ = √(a_⊥² − a_∥²)            (oblate)

The simulator follows jax-md's shape: :func:`init_colloids` makes a small frozen state,
:func:`step` advances it by one integrator step and :func:`advance` by many; all physical
parameters live in a :class:`Physics` pytree, so a sweep over radius, temperature or shape is a
``jax.vmap`` over it.
"""

from __future__ import annotations

import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

__all__ = [
    "BOLTZMANN",
    "WATER_VISCOSITY",
    "SHAPES",
    "BOUNDARIES",
    "ColloidState",
    "Physics",
    "aspect_ratio_of",
    "thermal_energy",
    "friction_coefficients",
    "diffusion_coefficients",
    "make_physics",
    "init_colloids",
    "minimum_image",
    "wca_forces",
    "wca_sigma",
    "wca_epsilon",
    "wca_pair_forces",
    "check_fits",
    "overlaps",
    "relax_overlaps",
    "step",
    "advance",
    "advance_stepwise",
    "active_msd",
]

BOLTZMANN = 1.380649e-23  # J/K
WATER_VISCOSITY = 8.9e-4  # Pa·s (= pN·s/µm²), water near 25 °C
SHAPES = ("sphere", "prolate", "oblate")
BOUNDARIES = ("periodic", "walls", "open")
HEXAGONAL_PACKING = math.pi / (2.0 * math.sqrt(3.0))  # densest packing fraction of discs
_SPHERE_TOLERANCE = 1e-2  # |p − 1| below which Stokes replaces Perrin (they differ by < 0.3%;
# closer to 1, Perrin's differences cancel catastrophically in float32)


@struct.dataclass
class ColloidState:
    """State of ``n`` colloids: ``positions`` (..., n, 2) in µm, ``orientations`` (..., n), rad."""

    positions: jax.Array
    orientations: jax.Array


@struct.dataclass
class Physics:
    """Physical parameters of one system (a pytree: ``vmap`` over any array field).

    Attributes:
        gamma_parallel: translational friction along the director, pN·s/µm.
        gamma_perpendicular: translational friction across the director, pN·s/µm.
        gamma_rotation: rotational friction about z, pN·µm·s.
        thermal_energy: ``k_B T`` in pN·µm.
        box_length: side of the square box, µm (the box is ``[0, L)²``).
        wca_epsilon: WCA energy scale in pN·µm (used only when ``interactions``).
        wca_sigma: WCA length scale in µm (twice the radius for touching spheres).
        boundary: ``"periodic"``, ``"walls"`` (reflecting) or ``"open"`` (no boundary: the
            box only sets the frame, as in the rod runs of the temperature paper), static.
        interactions: whether WCA repulsion between colloids is on, static.
    """

    gamma_parallel: jax.Array
    gamma_perpendicular: jax.Array
    gamma_rotation: jax.Array
    thermal_energy: jax.Array
    box_length: jax.Array
    wca_epsilon: jax.Array
    wca_sigma: jax.Array
    boundary: str = struct.field(pytree_node=False, default="periodic")
    interactions: bool = struct.field(pytree_node=False, default=False)

    @property
    def diffusion_parallel(self) -> jax.Array:
        """``D_∥ = k_B T / γ_∥`` in µm²/s."""
        return self.thermal_energy / self.gamma_parallel

    @property
    def diffusion_perpendicular(self) -> jax.Array:
        """``D_⊥ = k_B T / γ_⊥`` in µm²/s."""
        return self.thermal_energy / self.gamma_perpendicular

    @property
    def diffusion_rotation(self) -> jax.Array:
        """``D_r = k_B T / γ_r`` in 1/s."""
        return self.thermal_energy / self.gamma_rotation


def aspect_ratio_of(shape: str, aspect_ratio: float | None = None) -> float:
    """The aspect ratio ``p = a_∥/a_⊥`` for a named shape, checked against the name.

    ``"sphere"`` is ``p = 1``; ``"prolate"`` needs ``p > 1`` (default 3) and ``"oblate"`` ``p < 1``
    (default 1/3), always along the swimming direction over across it.

    Raises:
        ValueError: unknown shape, or an aspect ratio that contradicts it.
    """
    defaults = {"sphere": 1.0, "prolate": 3.0, "oblate": 1.0 / 3.0}
    if shape not in defaults:
        raise ValueError(f"unknown shape {shape!r}; choose one of {', '.join(SHAPES)}")
    p = defaults[shape] if aspect_ratio is None else float(aspect_ratio)
    if not math.isfinite(p) or p <= 0:
        raise ValueError(f"aspect_ratio must be a positive finite number, got {aspect_ratio!r}")
    if shape == "sphere" and p != 1.0:
        raise ValueError(f"a sphere has aspect_ratio 1, got {p}")
    if shape == "prolate" and p <= 1.0:
        raise ValueError(f"a prolate spheroid needs aspect_ratio > 1 (a_par/a_perp), got {p}")
    if shape == "oblate" and p >= 1.0:
        raise ValueError(f"an oblate spheroid needs aspect_ratio < 1 (a_par/a_perp), got {p}")
    return p


def thermal_energy(temperature_K) -> jax.Array:
    """``k_B T`` in pN·µm (1 J = 1e18 pN·µm)."""
    return jnp.asarray(temperature_K, jnp.float32) * jnp.float32(BOLTZMANN * 1e18)


def _friction(xp, radius, eta, p):
    """Stokes/Perrin friction with array module ``xp`` (``jax.numpy`` or ``numpy``)."""
    near_sphere = xp.abs(p - 1.0) < _SPHERE_TOLERANCE
    p_safe = xp.where(near_sphere, 2.0, p)  # keeps the unused Perrin branch finite
    a_par = radius * p_safe ** (2.0 / 3.0)
    a_perp = radius * p_safe ** (-1.0 / 3.0)
    xi = xp.sqrt(xp.abs(a_par**2 - a_perp**2))
    s_prolate = 2.0 * xp.log((a_par + xi) / a_perp) / xi
    s_oblate = 2.0 * xp.arctan(xi / a_par) / xi
    s = xp.where(p_safe > 1.0, s_prolate, s_oblate)
    diff = a_par**2 - a_perp**2
    denominator = (2.0 * a_par**2 - a_perp**2) * s - 2.0 * a_par
    gamma_par = 16.0 * np.pi * eta * diff / denominator
    gamma_perp = 32.0 * np.pi * eta * diff / ((2.0 * a_par**2 - 3.0 * a_perp**2) * s + 2.0 * a_par)
    gamma_rot = 32.0 * np.pi * eta * (a_par**4 - a_perp**4) / (3.0 * denominator)
    sphere_t = 6.0 * np.pi * eta * radius
    sphere_r = 8.0 * np.pi * eta * radius**3
    return (
        xp.where(near_sphere, sphere_t, gamma_par),
        xp.where(near_sphere, sphere_t, gamma_perp),
        xp.where(near_sphere, sphere_r, gamma_rot),
    )


def friction_coefficients(radius_um, viscosity=WATER_VISCOSITY, aspect_ratio=1.0):
    """``(γ_∥, γ_⊥, γ_r)`` in pN·s/µm, pN·s/µm and pN·µm·s; traceable (no validation).

    Stokes' law for ``p = 1`` (``γ_∥ = γ_⊥ = 6πηR``, ``γ_r = 8πηR³``), otherwise Perrin's
    factors for the spheroid of equal volume (formulas in the module docstring). ``radius_um``
    is the radius ``R`` of the sphere of equal volume; float32.
    """
    return _friction(
        jnp,
        jnp.asarray(radius_um, jnp.float32),
        jnp.asarray(viscosity, jnp.float32),
        jnp.asarray(aspect_ratio, jnp.float32),
    )


def _check_physical(radius_um, temperature_K, viscosity) -> None:
    for name, value, strict in (
        ("radius_um", radius_um, True),
        ("temperature_K", temperature_K, False),
        ("viscosity", viscosity, True),
    ):
        arr = np.asarray(value, dtype=np.float64)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} must be finite, got {value!r}")
        if strict and np.any(arr <= 0):
            raise ValueError(f"{name} must be positive, got {value!r}")
        if not strict and np.any(arr < 0):
            raise ValueError(f"{name} must be non-negative, got {value!r}")


def diffusion_coefficients(
    radius_um: float,
    temperature_K: float,
    viscosity: float = WATER_VISCOSITY,
    shape: str = "sphere",
    aspect_ratio: float | None = None,
) -> tuple[float, float]:
    """``(D_t, D_r)`` in µm²/s and 1/s from ``D = k_B T/γ``.

    For a sphere ``D_t = k_B T/(6πηa)`` and ``D_r = k_B T/(8πηa³)`` (Stokes–Einstein–Debye);
    at 300 K and a = 2.14 µm in water these are 0.115 µm²/s and 0.019 1/s. For a spheroid
    (``shape="prolate"`` or ``"oblate"``, ``radius_um`` the radius of the sphere of equal
    volume) ``D_t = (D_∥ + D_⊥)/2`` is the in-plane average that sets the long-time 2-D mean
    squared displacement ``4 D_t t`` of a passive particle, and ``D_r`` is for rotation about
    an axis perpendicular to the director. Computed in float64.

    Raises:
        ValueError: non-positive radius or viscosity, negative temperature, unknown shape.
    """
    _check_physical(radius_um, temperature_K, viscosity)
    p = aspect_ratio_of(shape, aspect_ratio)
    g_par, g_perp, g_rot = (
        float(g) for g in _friction(np, float(radius_um), float(viscosity), np.float64(p))
    )
    kT = BOLTZMANN * 1e18 * float(temperature_K)
    return 0.5 * (kT / g_par + kT / g_perp), kT / g_rot


def make_physics(
    radius_um=1.0,
    temperature_K=300.0,
    viscosity=WATER_VISCOSITY,
    aspect_ratio=1.0,
    box_length=1000.0,
    boundary: Literal["periodic", "walls"] = "periodic",
    interactions: bool = False,
    wca_epsilon=None,
    wca_sigma=None,
) -> Physics:
    """A :class:`Physics` from physical parameters (traceable; arrays give a batch to ``vmap``).

    ``wca_epsilon`` defaults to ``k_B T`` and ``wca_sigma`` to ``2 R``. Validation of concrete
    values is done by :func:`ntkbook.swarm.tasks.swimmer_parameters` and
    :func:`diffusion_coefficients`.
    """
    if boundary not in BOUNDARIES:
        raise ValueError(f"unknown boundary {boundary!r}; choose one of {', '.join(BOUNDARIES)}")
    g_par, g_perp, g_rot = friction_coefficients(radius_um, viscosity, aspect_ratio)
    kT = thermal_energy(temperature_K)
    radius = jnp.asarray(radius_um, jnp.float32)
    return Physics(
        gamma_parallel=g_par,
        gamma_perpendicular=g_perp,
        gamma_rotation=g_rot,
        thermal_energy=kT,
        box_length=jnp.asarray(box_length, jnp.float32),
        wca_epsilon=kT if wca_epsilon is None else jnp.asarray(wca_epsilon, jnp.float32),
        wca_sigma=2.0 * radius if wca_sigma is None else jnp.asarray(wca_sigma, jnp.float32),
        boundary=boundary,
        interactions=interactions,
    )


def init_colloids(key: jax.Array, n: int, center, radius_um: float) -> ColloidState:
    """``n`` colloids placed uniformly in a disc of radius ``radius_um`` around ``center``,
    orientations uniform in ``[0, 2π)``."""
    k_r, k_phi, k_theta = jax.random.split(key, 3)
    r = radius_um * jnp.sqrt(jax.random.uniform(k_r, (n,)))
    phi = jax.random.uniform(k_phi, (n,), maxval=2 * jnp.pi)
    positions = jnp.asarray(center, jnp.float32) + jnp.stack(
        [r * jnp.cos(phi), r * jnp.sin(phi)], axis=-1
    )
    orientations = jax.random.uniform(k_theta, (n,), maxval=2 * jnp.pi)
    return ColloidState(positions, orientations)


def minimum_image(displacement: jax.Array, box_length) -> jax.Array:
    """Displacement vectors of a periodic box of side ``L`` folded to their nearest image,
    ``d − L·round(d/L)`` (each component in ``[−L/2, L/2]``)."""
    return displacement - box_length * jnp.round(displacement / box_length)


def wca_sigma(radius_i, radius_j) -> jax.Array:
    """WCA length ``σ_ij = (r_i + r_j)·2^(−1/6)`` (µm): the force vanishes at contact,
    ``d = 2^(1/6) σ = r_i + r_j`` (SwarmRL's choice for particles of different radii)."""
    return (jnp.asarray(radius_i, jnp.float32) + jnp.asarray(radius_j, jnp.float32)) * (
        2.0 ** (-1.0 / 6.0)
    )


def wca_epsilon(temperature_K, offset_K=0.0, fixed=None) -> jax.Array:
    """WCA energy ``ε = k_B (T + offset)`` in pN·µm, or ``fixed`` (pN·µm) when given.

    The temperature paper's rod runs use ``offset = 1 K``; a fixed ε separates the contact
    stiffness from the temperature.
    """
    if fixed is not None:
        return jnp.asarray(fixed, jnp.float32)
    return thermal_energy(jnp.asarray(temperature_K, jnp.float32) + offset_K)


def wca_pair_forces(displacements: jax.Array, sigma, epsilon) -> jax.Array:
    """WCA force (..., 2) in pN on particle ``i`` from ``j`` for ``d = r_i − r_j`` (..., 2).

    ``U(d) = 4ε[(σ/d)¹² − (σ/d)⁶] + ε`` for ``d < 2^(1/6) σ``, zero beyond and at ``d = 0``;
    ``F = −∂U/∂r_i = 24ε (2(σ/d)¹² − (σ/d)⁶) d/d²``. ``sigma`` and ``epsilon`` broadcast
    against ``displacements[..., 0]`` (pairwise σ).
    """
    d2 = jnp.sum(displacements**2, axis=-1)
    sigma2 = jnp.asarray(sigma, jnp.float32) ** 2
    active = (d2 > 0.0) & (d2 < (2.0 ** (1.0 / 3.0)) * sigma2)
    d2_safe = jnp.where(active, d2, 1.0)
    s6 = (sigma2 / d2_safe) ** 3
    magnitude = jnp.where(active, 24.0 * epsilon * (2.0 * s6**2 - s6) / d2_safe, 0.0)
    return magnitude[..., None] * displacements


def wca_forces(positions: jax.Array, physics: Physics) -> jax.Array:
    """Weeks–Chandler–Andersen forces (n, 2) in pN on each colloid from all others.

    ``U(d) = 4ε[(σ/d)¹² − (σ/d)⁶] + ε`` for ``d < 2^(1/6) σ``, zero beyond; ``F_i = −∂U/∂r_i``
    (:func:`wca_pair_forces` with the one ``σ`` and ``ε`` of ``physics``).
    """
    d_vec = positions[:, None, :] - positions[None, :, :]
    if physics.boundary == "periodic":
        d_vec = minimum_image(d_vec, physics.box_length)
    return jnp.sum(wca_pair_forces(d_vec, physics.wca_sigma, physics.wca_epsilon), axis=1)


def check_fits(n: int, radius_um: float, area_um2: float, what: str = "the box") -> None:
    """Raise unless ``n`` discs of radius ``radius_um`` can fit into ``area_um2`` without
    overlap, i.e. unless ``n π R² ≤ (π/(2√3))·area`` (hexagonal packing, the densest).

    Raises:
        ValueError: naming ``n``, the radius, the area and the packing fraction it would need.
    """
    fraction = n * math.pi * radius_um**2 / area_um2
    if not fraction <= HEXAGONAL_PACKING:
        raise ValueError(
            f"{n} colloids of radius {radius_um:.4g} µm cannot fit without overlap in {what} "
            f"of area {area_um2:.4g} µm²: they would cover {fraction:.3g} of it, more than "
            f"the densest packing {HEXAGONAL_PACKING:.4f}"
        )


def _segment_offsets(positions, segment_start, segment_end):
    """Vectors (n, 2) from the nearest point of the segment to each position."""
    axis = segment_end - segment_start
    t = jnp.clip(
        jnp.sum((positions - segment_start) * axis, -1) / jnp.maximum(jnp.sum(axis**2), 1e-12),
        0.0,
        1.0,
    )
    return positions - (segment_start + t[:, None] * axis)


def overlaps(
    positions: jax.Array,
    radius_um,
    segment: tuple | None = None,
    tolerance: float = 1e-4,
) -> jax.Array:
    """Number of overlapping pairs: colloid pairs closer than ``2R(1 − tolerance)`` plus,
    with ``segment = (start, end, radius)``, colloids closer than ``(R + radius)(1 −
    tolerance)`` to that capsule (a rod)."""
    n = positions.shape[0]
    d2 = jnp.sum((positions[:, None] - positions[None]) ** 2, -1)
    too_close = (d2 < (2.0 * radius_um * (1.0 - tolerance)) ** 2) & ~jnp.eye(n, dtype=bool)
    count = jnp.sum(too_close) // 2
    if segment is not None:
        start, end, seg_radius = segment
        gap = jnp.linalg.norm(_segment_offsets(positions, start, end), axis=-1)
        count = count + jnp.sum(gap < (radius_um + seg_radius) * (1.0 - tolerance))
    return count


def relax_overlaps(
    positions: jax.Array,
    radius_um,
    segment: tuple | None = None,
    n_iterations: int = 2000,
    margin: float = 0.01,
) -> jax.Array:
    """Positions moved apart until no two colloids (and no colloid and the capsule
    ``segment = (start, end, radius)``, held fixed) overlap: an energy minimisation.

    Steepest descent on the soft overlap energy ``U = ½ Σ (c − d)₊²`` with contact distance
    ``c = 2R(1 + margin)`` between colloids and ``(R + radius)(1 + margin)`` to the segment,
    a step of ``¼ ∇U`` per iteration, until every overlap is below half the margin or after
    ``n_iterations`` (the authors relax their start by ESPResSo's steepest descent on the WCA
    energy; the soft energy reaches the same end without huge forces).
    Check the result with :func:`overlaps`; it is overlap-free whenever the colloids fit.
    """
    n = positions.shape[0]
    eye = jnp.eye(n, dtype=bool)
    contact = 2.0 * radius_um * (1.0 + margin)

    def overlaps_of(x):
        d_vec = x[:, None] - x[None]
        d = jnp.sqrt(jnp.sum(d_vec**2, -1) + eye)
        overlap = jnp.where(eye, 0.0, jnp.maximum(contact - d, 0.0))
        seg_overlap = jnp.zeros((n,), x.dtype)
        normal = jnp.zeros_like(x)
        if segment is not None:
            start, end, seg_radius = segment
            offset = _segment_offsets(x, start, end)
            gap = jnp.linalg.norm(offset, axis=-1)
            normal = offset / jnp.maximum(gap, 1e-6)[:, None]
            seg_overlap = jnp.maximum((radius_um + seg_radius) * (1.0 + margin) - gap, 0.0)
        return d_vec, d, overlap, seg_overlap, normal

    def push(carry):
        x, i = carry
        d_vec, d, overlap, seg_overlap, normal = overlaps_of(x)
        # coincident colloids are split along a fixed direction
        split = jnp.array([1.0, 0.0]) * (1.0 - 2.0 * jnp.tri(n)[..., None])
        direction = jnp.where(d[..., None] > 1e-6, d_vec / d[..., None], split)
        move = 0.25 * jnp.sum(overlap[..., None] * direction, axis=1)
        return x + move + 0.5 * seg_overlap[:, None] * normal, i + 1

    def overlapping(carry):
        x, i = carry
        _, _, overlap, seg_overlap, _ = overlaps_of(x)
        # stop once every gap is at least half the margin: then no two colloids overlap
        worst = jnp.maximum(jnp.max(overlap, initial=0.0), jnp.max(seg_overlap, initial=0.0))
        return (i < n_iterations) & (worst > 0.5 * margin * radius_um)

    return jax.lax.while_loop(overlapping, push, (positions, 0))[0]


def _apply_boundary(positions: jax.Array, physics: Physics) -> jax.Array:
    L = physics.box_length
    if physics.boundary == "open":
        return positions
    if physics.boundary == "periodic":
        return jnp.mod(positions, L)
    reflected = jnp.where(positions < 0.0, -positions, positions)
    return jnp.where(reflected > L, 2.0 * L - reflected, reflected)


def step(
    state: ColloidState,
    noise: jax.Array,
    speed,
    angular_velocity,
    physics: Physics,
    dt: float,
    force: jax.Array | None = None,
) -> ColloidState:
    """One Euler–Maruyama step of length ``dt`` (s); the update is in the module docstring.

    Args:
        state: positions (n, 2) and orientations (n,).
        noise: standard normals (n, 3): ``ξ_∥``, ``ξ_⊥``, ``ξ_θ``.
        speed: swim speed ``v`` in µm/s, scalar or (n,).
        angular_velocity: ``ω`` in rad/s, scalar or (n,).
        physics: friction, temperature, box.
        dt: integrator step in s.
        force: further forces (n, 2) in pN (e.g. contacts with a rod), added to the WCA
            forces between colloids.
    """
    theta = state.orientations
    n_hat = jnp.stack([jnp.cos(theta), jnp.sin(theta)], axis=-1)
    n_perp = jnp.stack([-jnp.sin(theta), jnp.cos(theta)], axis=-1)
    drift = speed[..., None] * n_hat if jnp.ndim(speed) else speed * n_hat
    if physics.interactions:
        force = wca_forces(state.positions, physics) + (0.0 if force is None else force)
    if force is not None:
        drift = drift + (
            jnp.sum(force * n_hat, -1, keepdims=True) * n_hat / physics.gamma_parallel
            + jnp.sum(force * n_perp, -1, keepdims=True) * n_perp / physics.gamma_perpendicular
        )
    kick = (
        jnp.sqrt(2.0 * physics.diffusion_parallel * dt) * noise[..., 0:1] * n_hat
        + jnp.sqrt(2.0 * physics.diffusion_perpendicular * dt) * noise[..., 1:2] * n_perp
    )
    positions = _apply_boundary(state.positions + drift * dt + kick, physics)
    orientations = (
        theta
        + angular_velocity * dt
        + jnp.sqrt(2.0 * physics.diffusion_rotation * dt) * noise[..., 2]
    )
    return ColloidState(positions, jnp.mod(orientations, 2 * jnp.pi))


def advance(
    state: ColloidState,
    key: jax.Array,
    speed,
    angular_velocity,
    physics: Physics,
    dt: float,
    n_steps: int,
) -> ColloidState:
    """``n_steps`` integrator steps of length ``dt`` at constant ``speed`` and ``angular_velocity``.

    With interactions or walls, :func:`step` runs in a ``lax.scan``. Free colloids in a
    periodic box are independent and the wrap commutes with the dynamics, so the steps are
    evaluated without a sequential loop and with one random number per colloid and step:

    * orientations ``θ_k`` at the start of step ``k`` are a cumulative sum of the exact Gaussian
      increments ``ω Δt + sqrt(2 D_r Δt) ξ_k``;
    * given that path, the displacement is a sum of independent Gaussian kicks, hence exactly
      Gaussian with mean ``v Δt Σ_k n_k`` and covariance
      ``C = 2 Δt Σ_k (D_∥ n_k n_kᵀ + D_⊥ n_⊥k n_⊥kᵀ) = 2 Δt (K D_⊥ I + (D_∥ − D_⊥) S)`` with
      ``S = Σ_k n_k n_kᵀ`` (``K = n_steps``); it is drawn as ``mean + L ζ`` with ``L Lᵀ = C``
      (2×2 Cholesky) and two standard normals ``ζ``.

    The result has the same distribution as :func:`step` in a loop (three normals per colloid
    and step there; the random numbers drawn differ).
    """
    n = state.orientations.shape[0]
    speed = jnp.broadcast_to(jnp.asarray(speed, jnp.float32), (n,))
    angular_velocity = jnp.broadcast_to(jnp.asarray(angular_velocity, jnp.float32), (n,))
    if physics.interactions or physics.boundary != "periodic":
        return advance_stepwise(state, key, speed, angular_velocity, physics, dt, n_steps)
    k_theta, k_kick = jax.random.split(key)
    # steps on the last axis: the cumulative sum and the sums over steps run along contiguous
    # memory, which XLA on CPU vectorises
    dtheta = angular_velocity[:, None] * dt + jnp.sqrt(2.0 * physics.diffusion_rotation * dt) * (
        standard_normal(k_theta, (n, n_steps))
    )
    director = jnp.exp(1j * (state.orientations[:, None] + exclusive_cumsum(dtheta)))
    # Σ n_k = (Re, Im) Σ e^{iθ_k};  S = Σ n_k n_kᵀ = K/2 I + ½ [[Re, Im], [Im, −Re]] Σ e^{2iθ_k}
    sum_director = jnp.sum(director, axis=-1)
    sum_doubled = jnp.sum(director * director, axis=-1)
    d_par, d_perp = physics.diffusion_parallel, physics.diffusion_perpendicular
    mean_d, half_anisotropy = (d_par + d_perp) / 2, (d_par - d_perp) / 2
    c_xx = 2.0 * dt * (n_steps * mean_d + half_anisotropy * sum_doubled.real)
    c_yy = 2.0 * dt * (n_steps * mean_d - half_anisotropy * sum_doubled.real)
    c_xy = 2.0 * dt * half_anisotropy * sum_doubled.imag
    l_xx = jnp.sqrt(c_xx)
    # C = 0 only at zero temperature, where there are no kicks
    l_yx = jnp.where(l_xx > 0.0, c_xy / jnp.where(l_xx > 0.0, l_xx, 1.0), 0.0)
    # C is positive semi-definite (a sum of such terms); the maximum only absorbs float32
    # round-off of c_yy − l_yx² near zero
    l_yy = jnp.sqrt(jnp.maximum(c_yy - l_yx**2, 0.0))
    zeta = jax.random.normal(k_kick, (n, 2))
    moves = jnp.stack(
        [
            speed * dt * sum_director.real + l_xx * zeta[:, 0],
            speed * dt * sum_director.imag + l_yx * zeta[:, 0] + l_yy * zeta[:, 1],
        ],
        axis=-1,
    )
    positions = _apply_boundary(state.positions + moves, physics)
    orientations = jnp.mod(state.orientations + jnp.sum(dtheta, axis=-1), 2 * jnp.pi)
    return ColloidState(positions, orientations)


def advance_stepwise(
    state: ColloidState,
    key: jax.Array,
    speed,
    angular_velocity,
    physics: Physics,
    dt: float,
    n_steps: int,
) -> ColloidState:
    """``n_steps`` calls of :func:`step` in a ``lax.scan`` (three normals per colloid and step).

    :func:`advance` runs this with interactions or walls; for free colloids it is the
    step-by-step reference of the summed update.
    """
    n = state.orientations.shape[0]
    speed = jnp.broadcast_to(jnp.asarray(speed, jnp.float32), (n,))
    angular_velocity = jnp.broadcast_to(jnp.asarray(angular_velocity, jnp.float32), (n,))

    def body(s, xi):
        return step(s, xi, speed, angular_velocity, physics, dt), None

    return jax.lax.scan(body, state, jax.random.normal(key, (n_steps, n, 3)))[0]


def standard_normal(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Standard normals from ``key``, drawn with JAX's non-partitionable threefry variant.

    The partitionable variant (JAX's default) lets a sharded array draw its numbers without
    communication, at about half the throughput on CPU (one threefry hash per number instead
    of one per two). The engine's noise is drawn on one device, so it uses the faster variant;
    the numbers are as reproducible from the key as with the default, only different ones.
    """
    with jax.threefry_partitionable(False):
        return jax.random.normal(key, shape)


def exclusive_cumsum(increments: jax.Array, block: int = 32) -> jax.Array:
    """``out[..., k] = Σ_{j<k} increments[..., j]`` along the last axis.

    Computed in blocks of ``block`` entries: within a block by a product with a strictly
    triangular matrix of ones (a small matrix multiplication, which XLA runs several times
    faster on CPU than its cumulative-sum lowering), across blocks by a cumulative sum of the
    block totals.
    """
    k = increments.shape[-1]
    if k <= block:
        return jnp.cumsum(increments, axis=-1) - increments
    padded = -(-k // block) * block
    pad = [(0, 0)] * (increments.ndim - 1) + [(0, padded - k)]
    blocks = jnp.pad(increments, pad).reshape(*increments.shape[:-1], padded // block, block)
    earlier = jnp.triu(jnp.ones((block, block), increments.dtype), 1)  # earlier[j, i] = j < i
    # full precision: a GPU would otherwise run a float32 product in TF32
    within = jnp.einsum("...mj,ji->...mi", blocks, earlier, precision=jax.lax.Precision.HIGHEST)
    totals = jnp.sum(blocks, axis=-1)
    offsets = jnp.cumsum(totals, axis=-1) - totals
    return (within + offsets[..., None]).reshape(*increments.shape[:-1], padded)[..., :k]


def active_msd(t, speed, diffusion_translation, diffusion_rotation):
    """2-D mean squared displacement of an active Brownian particle at constant speed ``v``.

    ``MSD(t) = 4 D_t t + (2 v²/D_r²) (D_r t − 1 + e^{−D_r t})`` (µm²), the closed form the
    integrator is tested against.
    """
    t = np.asarray(t, np.float64)
    x = diffusion_rotation * t
    return 4.0 * diffusion_translation * t + 2.0 * speed**2 / diffusion_rotation**2 * (
        x - 1.0 + np.exp(-x)
    )
