"""Analysis of deployments: distance curves, success and efficiency, policy maps, strategies,
Péclet numbers, and the grid statistics that the chapters' claims test (onset cells, changes at
the top of a swept range). Every function works on NumPy/JAX
arrays with optional leading batch axes (seeds, radii, …); success rates are always taken over
*all* runs given, none excluded.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

import jax
import numpy as np

from ntkbook.swarm import physics as ph
from ntkbook.swarm import policy
from ntkbook.swarm import tasks as tk
from ntkbook.swarm.rod_rotation import rod_frame

__all__ = [
    "MOVES",
    "STRATEGIES",
    "NAMED_STRATEGIES",
    "mean_distance",
    "distance_ratio",
    "success_rate",
    "chemotactic_efficiency",
    "deployment_summary",
    "policy_map",
    "action_statistics",
    "classify_strategy",
    "strategy_counts",
    "strategy_name",
    "rotational_peclet",
    "translational_peclet",
    "peclet_one_radius",
    "success_boundary",
    "active_brownian_ratio",
    "onset_cells",
    "top_pair",
    "top_change",
    "ROD_STRATEGIES",
    "rod_contact_statistics",
    "classify_rod_strategy",
    "rod_strategy_counts",
    "rod_frame_density",
    "strategy_shift",
    "StrategyShift",
]

ROD_STRATEGIES = ("tip pushing", "middle pushing", "idle")

MOVES = ("swim", "rotate", "rest")
STRATEGIES = tuple(f"{rise}-{fall}" for rise in MOVES for fall in MOVES)
NAMED_STRATEGIES = {"swim-rotate": "run and rotate"}


def mean_distance(positions, config: tk.EnvConfig) -> np.ndarray:
    """Mean distance to the source over agents, µm: ``(..., T+1, n, 2) → (..., T+1)``."""
    return np.asarray(tk.distance_to_source(jax.numpy.asarray(positions), config)).mean(axis=-1)


def distance_ratio(positions, config: tk.EnvConfig) -> np.ndarray:
    """Final over initial mean distance to the source, ``(..., T+1, n, 2) → (...)``."""
    d = mean_distance(positions, config)
    return d[..., -1] / d[..., 0]


def success_rate(ratios, threshold: float = 0.5, axis=None) -> np.ndarray:
    """Fraction of runs whose final/initial mean distance is ≤ ``threshold``.

    ``ratios`` holds one value per run (e.g. per seed); all runs count, NaN is an error.
    """
    ratios = np.asarray(ratios, np.float64)
    if ratios.size == 0:
        raise ValueError("success_rate needs at least one run")
    if np.isnan(ratios).any():
        raise ValueError("success_rate got NaN distance ratios")
    return np.mean(ratios <= threshold, axis=axis)


def chemotactic_efficiency(
    positions,
    config: tk.EnvConfig,
    speed_um_s,
    capture_fraction: float = 0.1,
    decision_interval: float | None = None,
) -> np.ndarray:
    """Time a straight swimmer needs to reach the source over the time taken, per run.

    Agent ``i`` starts at distance ``d_i(0)`` and *arrives* when it first comes within
    ``f·d_i(0)`` of the source (``f = capture_fraction``), at time ``t_i`` (a decision time); a
    swimmer heading straight at the source arrives after ``t_i* = (1 − f) d_i(0)/v``. The
    efficiency is ``e_i = t_i*/t_i`` (1: straight line; towards 0: slow; 0: not arrived within
    the deployment; Brownian kicks can push it slightly above 1), averaged over agents.
    ``(..., T+1, n, 2) → (...)``.
    """
    if not 0 < capture_fraction < 1:
        raise ValueError(f"capture_fraction must lie in (0, 1), got {capture_fraction!r}")
    dt = config.decision_interval if decision_interval is None else decision_interval
    d = np.asarray(tk.distance_to_source(jax.numpy.asarray(positions), config))
    speed = np.asarray(speed_um_s, np.float64)[..., None]
    if np.any(speed <= 0):
        raise ValueError("chemotactic_efficiency needs positive swim speeds")
    arrived = d[..., 1:, :] <= capture_fraction * d[..., :1, :]  # (..., T, n)
    first = np.argmax(arrived, axis=-2)  # decision index k: arrival at time (k + 1) dt
    straight = (1.0 - capture_fraction) * d[..., 0, :] / speed
    efficiency = np.where(arrived.any(axis=-2), straight / ((first + 1) * dt), 0.0)
    return efficiency.mean(axis=-1)


def deployment_summary(
    trajectory: tk.Trajectory,
    config: tk.EnvConfig,
    speed_um_s,
    capture_fraction: float = 0.1,
    keep_actions: bool = False,
    n_path_points: int = 200,
) -> dict:
    """What a chapter keeps of a batch of deployments ``(runs, T+1, n, 2)``.

    ``ratio`` (:func:`distance_ratio`) and ``efficiency`` (:func:`chemotactic_efficiency`) per
    run; with ``keep_actions`` also the ``observations`` and ``actions`` and the ``paths``
    (positions at about ``n_path_points`` evenly spaced decisions).
    """
    positions = np.asarray(trajectory.positions)
    summary = {
        "ratio": distance_ratio(positions, config),
        "efficiency": chemotactic_efficiency(positions, config, speed_um_s, capture_fraction),
    }
    if keep_actions:
        stride = max(1, (positions.shape[1] - 1) // n_path_points)
        summary |= {
            "observations": np.asarray(trajectory.observations),
            "actions": np.asarray(trajectory.actions),
            "paths": positions[:, ::stride],
        }
    return summary


def policy_map(actor_params, low: float = -1.0, high: float = 1.0, n: int = 41):
    """``(o, π(a|o))``: observations ``(n,)`` and action probabilities ``(n, 4)``."""
    grid = policy.observation_grid(n, low, high)
    return np.asarray(grid[:, 0]), np.asarray(policy.policy_probabilities(actor_params, grid))


def _move_of(actions: np.ndarray) -> np.ndarray:
    """Index into :data:`MOVES` of each action: translate → swim, either turn → rotate,
    do nothing → rest."""
    moves = np.full(actions.shape, 2)
    moves[actions == tk.TRANSLATE] = 0
    moves[(actions == tk.ROTATE_CLOCKWISE) | (actions == tk.ROTATE_COUNTERCLOCKWISE)] = 1
    return moves


def action_statistics(observations, actions) -> dict:
    """Statistics of one deployment (``observations (T, n, 1)``, ``actions (T, n)``).

    - ``fractions``: share of each action in :data:`~ntkbook.swarm.tasks.ACTIONS` order;
    - ``moves_given_rise`` / ``moves_given_fall``: shares of the :data:`MOVES` (swim, rotate,
      rest) among the decisions taken after the concentration rose (``o > 0``) or fell
      (``o < 0``); the overall shares when that never happened;
    - ``translate_given_rise`` / ``translate_given_fall``: their first entries;
    - ``responsiveness``: their difference (swims on a rising, turns on a falling signal);
    - ``mean_run``: mean number of consecutive ``translate`` decisions per run.
    """
    obs = np.asarray(observations)[..., 0]
    act = np.asarray(actions)
    fractions = np.bincount(act.ravel(), minlength=len(tk.ACTIONS)) / act.size
    moves = _move_of(act)
    overall = np.bincount(moves.ravel(), minlength=len(MOVES)) / moves.size

    def given(mask):
        if not mask.any():
            return overall
        return np.bincount(moves[mask], minlength=len(MOVES)) / mask.sum()

    rise, fall = given(obs > 0), given(obs < 0)
    translate = act == tk.TRANSLATE
    # a run starts where an agent translates after not translating (or at t = 0)
    starts = translate & ~np.concatenate([np.zeros_like(translate[:1]), translate[:-1]], axis=0)
    n_runs = int(starts.sum())
    return {
        "fractions": fractions,
        "moves_given_rise": rise,
        "moves_given_fall": fall,
        "translate_given_rise": float(rise[0]),
        "translate_given_fall": float(fall[0]),
        "responsiveness": float(rise[0] - fall[0]),
        "mean_run": float(translate.sum()) / n_runs if n_runs else 0.0,
    }


def classify_strategy(stats: dict) -> str:
    """The strategy of one deployment from :func:`action_statistics`: ``"<rise>-<fall>"``.

    The rule: ``<rise>`` is the most frequent of the :data:`MOVES` after the concentration
    rose and ``<fall>`` the most frequent after it fell (ties go to the earlier move in
    :data:`MOVES`), so there are nine possible strategies, :data:`STRATEGIES`. For example
    ``"swim-rotate"`` swims on a rising and turns on a falling signal (run and rotate);
    ``"swim-swim"`` swims whatever the signal.
    """
    rise = MOVES[int(np.argmax(stats["moves_given_rise"]))]
    fall = MOVES[int(np.argmax(stats["moves_given_fall"]))]
    return f"{rise}-{fall}"


def strategy_name(label: str) -> str:
    """A readable name: the paper's name where the rule matches it by definition
    (:data:`NAMED_STRATEGIES`), otherwise what the agents do, e.g. "swim on a rise, rest on a
    fall"."""
    if label not in STRATEGIES:
        raise ValueError(f"unknown strategy label {label!r}; choose one of {', '.join(STRATEGIES)}")
    if label in NAMED_STRATEGIES:
        return NAMED_STRATEGIES[label]
    rise, fall = label.split("-")
    return f"{rise} on a rise, {fall} on a fall"


def strategy_counts(labels: Sequence[str]) -> dict[str, int]:
    """Counts of every strategy in :data:`STRATEGIES` (zeros included)."""
    counts = Counter(labels)
    unknown = set(counts) - set(STRATEGIES)
    if unknown:
        raise ValueError(f"unknown strategy labels {sorted(unknown)}")
    return {name: int(counts.get(name, 0)) for name in STRATEGIES}


def _diffusion(radius, temperature_K, shape, which: int) -> np.ndarray:
    return np.vectorize(lambda r: ph.diffusion_coefficients(r, temperature_K, shape=shape)[which])(
        radius
    )


def rotational_peclet(radius_um, speed_body_lengths, temperature_K=300.0, shape="sphere"):
    """``Pe_rot = v / (2R · D_r) = s / D_r``, ``s = v/(2R)`` the speed in body lengths per second.

    The time ``1/D_r`` over which rotational diffusion decorrelates the heading, over the time
    ``2R/v`` the swimmer needs to cover one body length: the persistence length ``v/D_r`` in body
    lengths. ``Pe_rot ≫ 1``: straight swimming over many body lengths; ``Pe_rot ≪ 1``: the
    heading is lost before the swimmer covers its own size. ``D_r`` is for rotation about an
    axis perpendicular to the director (:func:`~ntkbook.swarm.physics.diffusion_coefficients`).
    """
    radius = np.asarray(radius_um, np.float64)
    speed = np.asarray(speed_body_lengths, np.float64) * 2.0 * radius
    return speed / (2.0 * radius * _diffusion(radius, temperature_K, shape, 1))


def translational_peclet(radius_um, speed_body_lengths, temperature_K=300.0, shape="sphere"):
    """``Pe_trans = 2R · v / D_t``: the time ``(2R)²/D_t`` to diffuse one body length over the
    time ``2R/v`` to swim it.

    ``D_t`` is the in-plane translational diffusion coefficient (the mean of the parallel and
    perpendicular ones for a spheroid). At a fixed speed in body lengths per second
    ``Pe_trans ∝ R³`` for a sphere, like ``Pe_rot``.
    """
    radius = np.asarray(radius_um, np.float64)
    speed = np.asarray(speed_body_lengths, np.float64) * 2.0 * radius
    return 2.0 * radius * speed / _diffusion(radius, temperature_K, shape, 0)


def peclet_one_radius(speed_body_lengths, temperature_K=300.0, shape="sphere"):
    """The radius ``R₁`` (µm) at which ``Pe_rot = 1`` for a speed in body lengths per second.

    At a fixed shape and speed in body lengths per second ``D_r ∝ R⁻³``, so ``Pe_rot ∝ R³`` and
    ``R₁ = R · Pe_rot(R)^(−1/3)`` for any ``R`` (1 µm is used).
    """
    return rotational_peclet(1.0, speed_body_lengths, temperature_K, shape) ** (-1.0 / 3.0)


def success_boundary(success, radii: Sequence[float], level: float = 0.5) -> np.ndarray:
    """Per line of ``success`` (radius on the last axis), the smallest swept radius from which
    the success rate is at least ``level`` at that and every larger swept radius; NaN where the
    largest radius stays below ``level``."""
    success = np.asarray(success, np.float64)
    radii = np.asarray(radii, np.float64)
    if radii.shape != success.shape[-1:]:
        raise ValueError(f"radii has shape {radii.shape}, success has {success.shape}")
    order = np.argsort(radii)
    above = success[..., order] >= level
    # from each radius upwards, is every swept radius above the level?
    holds = np.flip(np.cumprod(np.flip(above, -1), axis=-1), -1).astype(bool)
    first = np.argmax(holds, axis=-1)
    return np.where(holds.any(axis=-1), radii[order][first], np.nan)


def active_brownian_ratio(
    radius_um,
    speed_body_lengths,
    decision_interval: float,
    temperature_K=300.0,
    shape="sphere",
):
    """Active over Brownian displacement in one decision, ``v·Δt / √(4 D_t Δt)``.

    ``v = speed_body_lengths · 2R`` (µm/s), ``Δt`` the decision interval (s), ``D_t`` the
    in-plane translational diffusion coefficient (:func:`~ntkbook.swarm.physics.
    diffusion_coefficients`); ``√(4 D_t Δt)`` is the root-mean-square 2-D Brownian displacement
    in ``Δt``. Below 1 the swimmer's own motion within a decision is smaller than its Brownian
    displacement: active swimming does not yet overpower Brownian motion.
    """
    if not (math.isfinite(decision_interval) and decision_interval > 0):
        raise ValueError(f"decision_interval must be positive, got {decision_interval!r}")
    radius = np.asarray(radius_um, np.float64)
    speed = np.asarray(speed_body_lengths, np.float64) * 2.0 * radius
    d_t = _diffusion(radius, temperature_K, shape, 0)
    return speed * decision_interval / np.sqrt(4.0 * d_t * decision_interval)


def onset_cells(peclet, coordinates: Sequence[float], axis: int, threshold: float = 1.0):
    """Where each line along ``axis`` first reaches ``peclet ≥ threshold``, as a boolean mask.

    ``coordinates`` are the swept values along ``axis`` (e.g. radii, in any order); for every
    line (one entry of the other axes) the mask is ``True`` at the smallest coordinate whose
    ``peclet`` is at least ``threshold``, and ``False`` elsewhere (a line that never reaches it
    has no ``True``). The onset cells are the first swept swimmers for which the physics allows
    a heading to be kept.
    """
    peclet = np.asarray(peclet, np.float64)
    coordinates = np.asarray(coordinates, np.float64)
    if coordinates.shape != (peclet.shape[axis],):
        raise ValueError(
            f"coordinates has shape {coordinates.shape}, expected ({peclet.shape[axis]},) "
            f"for axis {axis} of peclet with shape {peclet.shape}"
        )
    order = np.argsort(coordinates, kind="stable")
    reached = np.moveaxis(peclet, axis, -1)[..., order] >= threshold  # (..., n) in sorted order
    first = np.argmax(reached, axis=-1)[..., None]  # the first True (0 where there is none)
    in_sorted_order = np.zeros_like(reached)
    np.put_along_axis(in_sorted_order, first, reached.any(axis=-1)[..., None], axis=-1)
    mask = np.empty_like(in_sorted_order)
    mask[..., order] = in_sorted_order
    return np.moveaxis(mask, -1, axis)


def top_pair(coordinates: Sequence[float], factor: float = 1.5) -> tuple[int, int] | None:
    """Indices ``(low, top)`` of the swept values that :func:`top_change` compares.

    ``top`` is the index of the largest coordinate ``x_top`` and ``low`` that of the largest
    coordinate at most ``x_top / factor``; ``None`` when there is none.
    """
    coordinates = np.asarray(coordinates, np.float64)
    if not factor > 1:
        raise ValueError(f"factor must exceed 1, got {factor!r}")
    top = int(np.argmax(coordinates))
    below = np.flatnonzero(coordinates <= coordinates[top] / factor)
    if below.size == 0:
        return None
    return int(below[np.argmax(coordinates[below])]), top


def top_change(
    values, coordinates: Sequence[float], axis: int, factor: float = 1.5, eligible=None
) -> np.ndarray:
    """Changes of ``values`` across the top of a swept range, one per line along ``axis``.

    With ``x_top`` the largest of ``coordinates`` and ``x_low`` the largest coordinate at most
    ``x_top / factor``, returns ``values(x_top) − values(x_low)`` for every entry of the other
    axes, flattened, keeping only those where ``eligible`` (an array shaped like ``values``) is
    ``True`` at ``x_low``. A quantity that has converged in the swept variable changes little
    when that variable grows by ``factor`` at the top of its range. Empty when no coordinate is
    at most ``x_top / factor``.
    """
    values = np.asarray(values, np.float64)
    coordinates = np.asarray(coordinates, np.float64)
    if coordinates.shape != (values.shape[axis],):
        raise ValueError(
            f"coordinates has shape {coordinates.shape}, expected ({values.shape[axis]},)"
        )
    pair = top_pair(coordinates, factor)
    if pair is None:
        return np.zeros(0)
    low, top = pair
    change = np.take(values, top, axis=axis) - np.take(values, low, axis=axis)
    if eligible is None:
        return change.ravel()
    keep = np.take(np.broadcast_to(np.asarray(eligible, bool), values.shape), low, axis=axis)
    return change[keep]


def rod_contact_statistics(
    positions, angles, center, radius_um: float, rod, contact_gap: float | None = None
) -> dict:
    """Where the agents of one deployment touch the rod.

    ``positions`` (T+1, n, 2) and rod ``angles`` (T+1,) of a rod-rotation deployment; ``rod`` its
    :class:`~ntkbook.swarm.rod.RodConfig`. In the rod's frame (``s`` along the axis, ``h``
    along the normal), an agent is **in contact** when its gap to the rod's surface,
    ``dist(r, segment) − (R + a)``, is below ``contact_gap`` (default ``R/2``). Returns
    ``contact_fraction`` (share of all agent-decisions in contact), ``tip_share`` (share of the
    contacts with ``|s| > L/4``, the outer half of each arm), ``counterclockwise_share`` (share
    of the contacts on the side from which a push turns the rod counter-clockwise,
    ``s·h < 0``).
    """
    s, h = rod_frame(positions, angles, center)
    along = np.clip(s, -rod.half_span, rod.half_span)
    gap = np.hypot(s - along, h) - (radius_um + rod.bead_radius_um)
    touching = gap < (0.5 * radius_um if contact_gap is None else contact_gap)
    n_contacts = int(touching.sum())
    tip = np.abs(s) > rod.length_um / 4
    return {
        "contact_fraction": n_contacts / touching.size,
        "tip_share": float((tip & touching).sum() / n_contacts) if n_contacts else 0.0,
        "counterclockwise_share": (
            float(((s * h < 0) & touching).sum() / n_contacts) if n_contacts else 0.0
        ),
    }


def classify_rod_strategy(
    stats: dict, contact_threshold: float = 0.1, tip_threshold: float = 0.5
) -> str:
    """The strategy of one rod deployment from :func:`rod_contact_statistics`.

    The rule: ``"idle"`` when fewer than ``contact_threshold`` of the agent-decisions are in
    contact with the rod; otherwise ``"tip pushing"`` when at least ``tip_threshold`` of the
    contacts lie on the outer half of an arm (``|s| > L/4``), else ``"middle pushing"``.
    """
    if stats["contact_fraction"] < contact_threshold:
        return "idle"
    return "tip pushing" if stats["tip_share"] >= tip_threshold else "middle pushing"


def rod_strategy_counts(labels: Sequence[str]) -> dict[str, int]:
    """Counts of every strategy in :data:`ROD_STRATEGIES` (zeros included)."""
    counts = Counter(labels)
    unknown = set(counts) - set(ROD_STRATEGIES)
    if unknown:
        raise ValueError(f"unknown rod strategy labels {sorted(unknown)}")
    return {name: int(counts.get(name, 0)) for name in ROD_STRATEGIES}


def rod_frame_density(positions, angles, center, extent: float, bins: int = 40) -> np.ndarray:
    """Histogram (bins, bins) of agent positions in the rod's frame, ``s`` (rows) and ``h``
    (columns) within ``±extent`` µm, normalised to sum 1 over all agent-decisions given
    (leading axes of ``positions`` are pooled; ``angles`` matches them without the agents)."""
    s, h = rod_frame(positions, angles, center)
    edges = np.linspace(-extent, extent, bins + 1)
    counts, _, _ = np.histogram2d(s.ravel(), h.ravel(), bins=(edges, edges))
    return counts / s.size


class StrategyShift(NamedTuple):
    """How far the strategy labels of two groups of trainings differ.

    ``value``: the total-variation distance ``½ Σ_k |p_k − q_k|`` between the label frequencies
    of the two groups; ``interval``: its percentile-bootstrap interval (seeds resampled within
    each group); ``null``: the ``null_quantile`` of the same distance when the labels are
    shuffled between the groups (what two groups of these sizes drawn from one distribution
    give by chance)."""

    value: float
    interval: tuple[float, float]
    null: float


def _total_variation(a: np.ndarray, b: np.ndarray, n_labels: int) -> float:
    p = np.bincount(a, minlength=n_labels) / a.size
    q = np.bincount(b, minlength=n_labels) / b.size
    return 0.5 * float(np.abs(p - q).sum())


def strategy_shift(
    labels_a: Sequence[str],
    labels_b: Sequence[str],
    key: jax.Array,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    null_quantile: float = 0.95,
) -> StrategyShift:
    """:class:`StrategyShift` of two groups of strategy labels (e.g. the seeds trained at the
    coldest and at the hottest temperature).

    Raises:
        ValueError: a group with fewer than 2 labels.
    """
    if len(labels_a) < 2 or len(labels_b) < 2:
        raise ValueError(
            f"strategy_shift needs at least 2 labels per group, got {len(labels_a)} and "
            f"{len(labels_b)}"
        )
    names = sorted(set(labels_a) | set(labels_b))
    a = np.array([names.index(x) for x in labels_a])
    b = np.array([names.index(x) for x in labels_b])
    k_a, k_b, k_null = jax.random.split(key, 3)
    rows_a = np.asarray(jax.random.randint(k_a, (n_resamples, a.size), 0, a.size))
    rows_b = np.asarray(jax.random.randint(k_b, (n_resamples, b.size), 0, b.size))
    boot = [_total_variation(a[i], b[j], len(names)) for i, j in zip(rows_a, rows_b, strict=True)]
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(boot, [tail, 100.0 - tail])
    pooled = np.concatenate([a, b])
    orders = np.asarray(
        jax.vmap(lambda k: jax.random.permutation(k, pooled.size))(
            jax.random.split(k_null, n_resamples)
        )
    )
    null = [
        _total_variation(pooled[order[: a.size]], pooled[order[a.size :]], len(names))
        for order in orders
    ]
    return StrategyShift(
        _total_variation(a, b, len(names)),
        (float(low), float(high)),
        float(np.quantile(null, null_quantile)),
    )
