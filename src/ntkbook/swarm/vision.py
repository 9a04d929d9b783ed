"""Subdivided vision cones: what each colloid sees of the particles around it.

Each colloid at ``r`` with heading ``θ`` looks ahead over the angles ``[−α, α]`` about its
director, split into ``n_cones`` equal cones. A particle ``j`` of radius ``r_j`` at distance
``d = |r_j − r|`` and signed angle ``β`` (from the director to ``r_j − r``, counter-clockwise
positive) adds ``min(1, 2 r_j/d)`` to the cone that contains ``β`` (strictly inside it), in the
channel of its type, if ``d`` is below the vision range. The colloid does not see itself
(``d = 0``). This is SwarmRL's ``SubdividedVisionCones``; the rod-rotation runs use 5 cones
over ``α = 1.4`` rad, an unlimited range and two types (colloids and rod beads).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["vision_cones", "flatten_cones"]


def vision_cones(
    positions: jax.Array,
    orientations: jax.Array,
    targets: jax.Array,
    target_radii: jax.Array,
    target_types: jax.Array,
    n_types: int,
    n_cones: int = 5,
    half_angle: float = 1.4,
    vision_range: float = float("inf"),
) -> jax.Array:
    """Vision-cone values ``(n, n_cones, n_types)`` of ``n`` viewers.

    Args:
        positions: viewers (n, 2), µm; orientations: their headings (n,), rad.
        targets: particles that can be seen (m, 2), µm (may include the viewers themselves).
        target_radii: their radii (m,), µm; target_types: their types (m,), ints in
            ``[0, n_types)``.
        n_cones, half_angle: the cones split ``[−half_angle, half_angle]`` (rad) evenly.
        vision_range: particles at ``d ≥ vision_range`` (µm) are not seen.
    """
    if n_cones < 1 or n_types < 1:
        raise ValueError(f"n_cones and n_types must be >= 1, got {n_cones!r} and {n_types!r}")
    d_vec = targets[None, :, :] - positions[:, None, :]
    d = jnp.sqrt(jnp.sum(d_vec**2, axis=-1))
    seen = (d > 0.0) & (d < vision_range)
    value = jnp.where(
        seen, jnp.minimum(1.0, 2.0 * target_radii[None] / jnp.where(seen, d, 1.0)), 0.0
    )
    heading = jnp.stack([jnp.cos(orientations), jnp.sin(orientations)], axis=-1)[:, None, :]
    beta = jnp.arctan2(
        heading[..., 0] * d_vec[..., 1] - heading[..., 1] * d_vec[..., 0],
        jnp.sum(heading * d_vec, axis=-1),
    )
    rims = -half_angle + jnp.arange(n_cones + 1) * (2.0 * half_angle / n_cones)
    in_cone = (beta[..., None] > rims[:-1]) & (beta[..., None] < rims[1:])  # (n, m, cones)
    of_type = jax.nn.one_hot(target_types, n_types)  # (m, types)
    return jnp.einsum("nm,nmc,mt->nct", value, in_cone.astype(value.dtype), of_type)


def flatten_cones(cones: jax.Array) -> jax.Array:
    """``(n, n_cones, n_types) → (n, n_types·n_cones)``: all cones of type 0, then type 1, …
    (the order of the authors' network input)."""
    return jnp.swapaxes(cones, -1, -2).reshape(*cones.shape[:-2], -1)
