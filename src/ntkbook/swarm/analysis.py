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

import jax
import numpy as np

from ntkbook.swarm import physics as ph
from ntkbook.swarm import ppo
from ntkbook.swarm import tasks as tk

__all__ = [
    "STRATEGIES",
    "mean_distance",
    "distance_ratio",
    "success_rate",
    "chemotactic_efficiency",
    "policy_map",
    "action_statistics",
    "classify_strategy",
    "strategy_counts",
    "rotational_peclet",
    "active_brownian_ratio",
    "onset_cells",
    "top_pair",
    "top_change",
]

STRATEGIES = ("run_and_tumble", "gradient_steering", "passive", "undirected")


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
    positions, config: tk.EnvConfig, speed_um_s, decision_interval: float | None = None
) -> np.ndarray:
    """Progress towards the source relative to a straight swimmer, per run.

    For agent ``i`` starting at distance ``d_i(0)``, a swimmer heading straight at the source
    arrives after ``t_i* = d_i(0)/v``. The efficiency is ``e_i = [d_i(0) − d_i(t_i*)]/d_i(0)``
    (1: straight line; 0: no net progress; negative: drifted away), averaged over agents;
    ``t_i*`` is capped at the end of the deployment. ``(..., T+1, n, 2) → (...)``.
    """
    dt = config.decision_interval if decision_interval is None else decision_interval
    d = np.asarray(tk.distance_to_source(jax.numpy.asarray(positions), config))
    n_steps = d.shape[-2] - 1
    speed = np.asarray(speed_um_s, np.float64)[..., None]
    arrival = np.ceil(d[..., 0, :] / (np.maximum(speed, 1e-12) * dt)).astype(int)
    index = np.minimum(arrival, n_steps)
    d_at = np.take_along_axis(d, index[..., None, :], axis=-2)[..., 0, :]
    return np.mean((d[..., 0, :] - d_at) / d[..., 0, :], axis=-1)


def policy_map(actor_params, low: float = -1.0, high: float = 1.0, n: int = 41):
    """``(o, π(a|o))``: observations ``(n,)`` and action probabilities ``(n, 4)``."""
    grid = ppo.observation_grid(n, low, high)
    return np.asarray(grid[:, 0]), np.asarray(ppo.policy_probabilities(actor_params, grid))


def action_statistics(observations, actions) -> dict:
    """Statistics of one deployment (``observations (T, n, 1)``, ``actions (T, n)``).

    - ``fractions``: share of each action in :data:`~ntkbook.swarm.tasks.ACTIONS` order;
    - ``translate_given_rise`` / ``translate_given_fall``: ``P(translate | o > 0)`` and
      ``P(translate | o < 0)`` (NaN-free: 0 when the condition never occurs);
    - ``responsiveness``: their difference (swims on a rising, turns on a falling signal);
    - ``mean_run``: mean number of consecutive ``translate`` decisions per run.
    """
    obs = np.asarray(observations)[..., 0]
    act = np.asarray(actions)
    fractions = np.bincount(act.ravel(), minlength=len(tk.ACTIONS)) / act.size
    translate = act == 0

    def conditional(mask):
        return float(translate[mask].mean()) if mask.any() else 0.0

    rise, fall = conditional(obs > 0), conditional(obs < 0)
    # a run starts where an agent translates after not translating (or at t = 0)
    starts = translate & ~np.concatenate([np.zeros_like(translate[:1]), translate[:-1]], axis=0)
    n_runs = int(starts.sum())
    return {
        "fractions": fractions,
        "translate_given_rise": rise,
        "translate_given_fall": fall,
        "responsiveness": rise - fall,
        "mean_run": float(translate.sum()) / n_runs if n_runs else 0.0,
    }


def classify_strategy(
    stats: dict,
    passive_below: float = 0.25,
    responsive_above: float = 0.3,
    long_run: float = 2.0,
) -> str:
    """One of :data:`STRATEGIES` from :func:`action_statistics`.

    - ``passive``: translates in fewer than ``passive_below`` of the decisions;
    - ``run_and_tumble``: responsive (``responsiveness ≥ responsive_above``) with runs of at
      least ``long_run`` decisions on average: long straight runs, a turn when the signal falls;
    - ``gradient_steering``: responsive with shorter runs: swimming and turning interleave;
    - ``undirected``: swims a lot without responding to the signal.
    """
    if stats["fractions"][0] < passive_below:
        return "passive"
    if stats["responsiveness"] >= responsive_above:
        return "run_and_tumble" if stats["mean_run"] >= long_run else "gradient_steering"
    return "undirected"


def strategy_counts(labels: Sequence[str]) -> dict[str, int]:
    """Counts of every strategy in :data:`STRATEGIES` (zeros included)."""
    counts = Counter(labels)
    unknown = set(counts) - set(STRATEGIES)
    if unknown:
        raise ValueError(f"unknown strategy labels {sorted(unknown)}")
    return {name: int(counts.get(name, 0)) for name in STRATEGIES}


def rotational_peclet(radius_um, speed_body_lengths, temperature_K=300.0, shape="sphere"):
    """``Pe_r = v / (2R · D_r)``: the persistence length ``v/D_r`` of the swimmer in body lengths.

    ``Pe_r ≫ 1``: swimming stays straight over many body lengths; ``Pe_r ≪ 1``: rotational
    diffusion scrambles the direction before the swimmer covers its own size.
    """
    radius = np.asarray(radius_um, np.float64)
    speed = np.asarray(speed_body_lengths, np.float64) * 2.0 * radius
    d_r = np.vectorize(lambda r: ph.diffusion_coefficients(r, temperature_K, shape=shape)[1])(
        radius
    )
    return speed / (2.0 * radius * d_r)


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
    d_t = np.vectorize(lambda r: ph.diffusion_coefficients(r, temperature_K, shape=shape)[0])(
        radius
    )
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
