"""Analysis: distances, success over all runs, efficiency, strategies, Péclet number."""

import math

import jax
import numpy as np
import pytest

from ntkbook.swarm import analysis as an
from ntkbook.swarm import policy
from ntkbook.swarm import tasks as tk

ENV = tk.EnvConfig(n_agents=2, integrator_step=0.01)


def _straight_paths(speed, n_steps, start_distances, angle_offsets=(0.0, 0.0)):
    """Agents swimming along the line to the source at ``speed`` (µm/s), stopping at it."""
    t = np.arange(n_steps + 1) * ENV.decision_interval
    paths = []
    for d0, offset in zip(start_distances, angle_offsets, strict=True):
        d = np.maximum(d0 - speed * t, 0.0)
        paths.append(
            np.stack([500.0 + d * math.cos(offset), 500.0 + d * math.sin(offset)], axis=-1)
        )
    return np.stack(paths, axis=1)  # (T+1, n, 2)


def test_distances_and_success_rate_over_all_runs():
    positions = _straight_paths(2.0, 100, (40.0, 80.0), (0.0, 1.0))
    d = an.mean_distance(positions, ENV)
    assert d[0] == pytest.approx(60.0, rel=1e-5)
    # after 10 s: max(40 − 20, 0) and 80 − 20
    assert d[-1] == pytest.approx((20.0 + 60.0) / 2, rel=1e-5)
    assert an.distance_ratio(positions, ENV) == pytest.approx(40.0 / 60.0, rel=1e-5)
    assert an.success_rate([0.2, 0.8, 0.5, 1.3], threshold=0.5) == pytest.approx(0.5)
    np.testing.assert_allclose(
        an.success_rate(np.array([[0.1, 0.9], [0.2, 0.3]]), axis=1), [0.5, 1.0]
    )
    with pytest.raises(ValueError, match="NaN"):
        an.success_rate([0.1, float("nan")])
    with pytest.raises(ValueError, match="at least one"):
        an.success_rate([])


def test_efficiency_is_straight_time_over_arrival_time():
    straight = _straight_paths(2.0, 400, (40.0, 60.0))
    # arrival within 0.1 d0 after 0.9 d0 / v: 18 s and 27 s, both on the decision grid
    assert an.chemotactic_efficiency(straight, ENV, 2.0) == pytest.approx(1.0, abs=1e-5)
    half = _straight_paths(1.0, 600, (40.0, 60.0))  # half the speed: twice the time
    assert an.chemotactic_efficiency(half, ENV, 2.0) == pytest.approx(0.5, abs=0.01)
    # one agent arrives straight, the other never does: (1 + 0) / 2
    mixed = np.concatenate(
        [_straight_paths(2.0, 400, (40.0,), (0.0,)), _straight_paths(0.0, 400, (60.0,), (0.0,))],
        axis=1,
    )
    assert an.chemotactic_efficiency(mixed, ENV, 2.0) == pytest.approx(0.5, abs=1e-5)
    resting = _straight_paths(0.0, 400, (40.0, 60.0))
    assert an.chemotactic_efficiency(resting, ENV, 2.0) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="capture_fraction"):
        an.chemotactic_efficiency(straight, ENV, 2.0, capture_fraction=1.0)


def test_action_statistics_and_the_strategy_rule():
    # run and rotate: swims while o > 0, turns on o < 0
    obs = np.array([1, 1, 1, 1, -1, 1, 1, 1, 1, -1], float)[:, None, None]
    act = np.array([0, 0, 0, 0, 2, 0, 0, 0, 0, 2])[:, None]
    stats = an.action_statistics(obs, act)
    np.testing.assert_allclose(stats["fractions"], [0.8, 0.0, 0.2, 0.0])
    np.testing.assert_allclose(stats["moves_given_rise"], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(stats["moves_given_fall"], [0.0, 1.0, 0.0])
    assert stats["translate_given_rise"] == 1.0 and stats["translate_given_fall"] == 0.0
    assert stats["mean_run"] == pytest.approx(4.0)
    assert an.classify_strategy(stats) == "swim-rotate"
    assert an.strategy_name("swim-rotate") == "run and rotate"
    # both turn directions count as rotating; resting on a rise, rotating on a fall
    act_r = np.array([3, 3, 3, 0, 1, 3, 3, 3, 3, 2])[:, None]
    stats_r = an.action_statistics(obs, act_r)
    np.testing.assert_allclose(stats_r["moves_given_rise"], [1 / 8, 0.0, 7 / 8])
    assert an.classify_strategy(stats_r) == "rest-rotate"
    assert an.strategy_name("rest-rotate") == "rest on a rise, rotate on a fall"
    # always swims: the same move whatever the signal
    assert an.classify_strategy(an.action_statistics(obs, np.zeros((10, 1), int))) == "swim-swim"
    # a signal that never falls: the overall shares stand in for the missing condition
    rising = np.ones((4, 1, 1))
    stats_up = an.action_statistics(rising, np.array([[3], [3], [0], [3]]))
    np.testing.assert_allclose(stats_up["moves_given_fall"], [0.25, 0.0, 0.75])
    counts = an.strategy_counts(["swim-rotate", "swim-rotate", "rest-rest"])
    assert len(counts) == 9 and counts["swim-rotate"] == 2 and counts["rest-rest"] == 1
    assert sum(counts.values()) == 3
    with pytest.raises(ValueError, match="unknown strategy"):
        an.strategy_counts(["swimming"])
    with pytest.raises(ValueError, match="unknown strategy"):
        an.strategy_name("glide-rest")


def test_policy_map_is_a_distribution_over_actions():
    actor, _ = policy.init_networks(jax.random.key(0), (8,))
    o, probs = an.policy_map(actor, -2.0, 2.0, 9)
    np.testing.assert_allclose(o, np.linspace(-2, 2, 9), rtol=1e-6)
    assert probs.shape == (9, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_rotational_peclet_number():
    # R = 2.14 µm at 300 K: D_r ≈ 0.0189 1/s; 1 body length per second gives Pe_r = 1/D_r
    pe = an.rotational_peclet(2.14, 1.0)
    assert float(pe) == pytest.approx(1.0 / 0.018894, rel=1e-3)
    # Pe_r ∝ R³ at a fixed speed in body lengths per second
    pe_two = an.rotational_peclet([1.0, 2.0], 3.0)
    assert pe_two[1] / pe_two[0] == pytest.approx(8.0, rel=1e-9)


def test_translational_peclet_number():
    # R = 1 µm sphere at 300 K: D_t = 0.24687 µm²/s; 3 body lengths/s = 6 µm/s; 2R v / D_t
    pe = an.translational_peclet(1.0, 3.0)
    assert float(pe) == pytest.approx(2.0 * 6.0 / 0.24687, rel=1e-3)
    # ∝ R³ at a fixed speed in body lengths per second (v ∝ R, D_t ∝ 1/R)
    pe_two = an.translational_peclet([0.5, 1.0], 3.0)
    assert pe_two[1] / pe_two[0] == pytest.approx(8.0, rel=1e-9)


def test_active_brownian_ratio_compares_swimming_with_diffusion_per_decision():
    # R = 1 µm sphere at 300 K: D_t = 0.2469 µm²/s; 2 body lengths/s = 4 µm/s over 0.1 s
    ratio = an.active_brownian_ratio(1.0, 2.0, 0.1)
    assert float(ratio) == pytest.approx(0.4 / math.sqrt(4 * 0.24687 * 0.1), rel=1e-3)
    # v Δt ∝ R and √(D_t) ∝ R^(-1/2) at a fixed speed in body lengths: the ratio ∝ R^(3/2)
    pair = an.active_brownian_ratio([0.5, 2.0], 3.0, 0.1)
    assert pair[1] / pair[0] == pytest.approx(8.0, rel=1e-9)
    with pytest.raises(ValueError, match="decision_interval"):
        an.active_brownian_ratio(1.0, 2.0, 0.0)


def test_onset_cells_mark_the_smallest_swept_value_that_reaches_the_threshold():
    radii = [1.5, 0.3, 0.8]  # unsorted on purpose
    peclet = np.array(
        [
            [[2.0, 9.0], [0.2, 0.5], [1.0, 3.0]],  # line 0: onset at 0.8 for both speeds
            [[4.0, 9.0], [0.1, 2.0], [0.3, 0.9]],  # line 1: 1.5 for speed 0; 0.3 for speed 1
            [[0.5, 0.5], [0.1, 0.1], [0.2, 0.2]],  # line 2: never reaches 1
        ]
    )  # (line, radius, speed)
    mask = an.onset_cells(peclet, radii, axis=1)
    assert mask.shape == peclet.shape and mask.dtype == bool
    np.testing.assert_array_equal(mask[0], [[False, False], [False, False], [True, True]])
    np.testing.assert_array_equal(mask[1], [[True, False], [False, True], [False, False]])
    assert not mask[2].any()
    # one onset per line that reaches the threshold, none for the others
    np.testing.assert_array_equal(mask.sum(axis=1), [[1, 1], [1, 1], [0, 0]])
    with pytest.raises(ValueError, match="coordinates"):
        an.onset_cells(peclet, [0.3, 1.5], axis=1)


def test_top_change_compares_the_top_of_the_range_with_a_factor_below_it():
    radii = [0.5, 1.0, 1.5, 2.5]
    values = np.array([[0.0, 0.2, 0.5, 0.6], [0.1, 0.1, 0.3, 0.2]])  # (line, radius)
    # x_top = 2.5, the largest radius ≤ 2.5 / 1.5 is 1.5
    np.testing.assert_allclose(an.top_change(values, radii, axis=1), [0.1, -0.1], atol=1e-12)
    # factor 2: the largest radius ≤ 1.25 is 1.0
    np.testing.assert_allclose(an.top_change(values, radii, axis=1, factor=2.0), [0.4, 0.1])
    eligible = np.array([[True, True, False, True], [True, True, True, True]])
    np.testing.assert_allclose(
        an.top_change(values, radii, axis=1, eligible=eligible), [-0.1], atol=1e-12
    )
    assert an.top_change(values, radii, axis=1, factor=10.0).size == 0
    assert an.top_pair(radii) == (2, 3) and an.top_pair([2.5, 1.0], factor=2.0) == (1, 0)
    assert an.top_pair(radii, factor=10.0) is None
    with pytest.raises(ValueError, match="factor"):
        an.top_change(values, radii, axis=1, factor=1.0)


def test_peclet_one_radius_matches_the_rotational_peclet_number():
    radii = an.peclet_one_radius(np.array([1.0, 3.0, 5.0]))
    np.testing.assert_allclose(radii, [0.570, 0.395, 0.333], atol=2e-3)
    for shape in ("sphere", "prolate", "oblate"):
        r_one = an.peclet_one_radius(3.0, shape=shape)
        assert float(an.rotational_peclet(r_one, 3.0, shape=shape)) == pytest.approx(1.0, rel=1e-6)


def test_success_boundary_needs_success_at_every_larger_radius():
    radii = [0.5, 0.3, 0.4, 0.6, 0.7]  # any order
    # first line in radius order 0.3 … 0.7: 0, 1, 0.3, 1, 1 → the boundary is 0.6, not the
    # lucky 0.4; the second line never reaches 0.5
    success = np.array([[0.3, 0.0, 1.0, 1.0, 1.0], [0.4, 0.0, 0.0, 0.0, 0.4]])
    np.testing.assert_allclose(an.success_boundary(success, radii), [0.6, np.nan])
    np.testing.assert_allclose(an.success_boundary(np.ones(5), radii), 0.3)
    with pytest.raises(ValueError, match="radii"):
        an.success_boundary(np.ones(4), radii)


def test_in_batches_pads_the_last_batch_and_reduces_each():
    values = np.arange(7.0)
    calls = []

    def double(x):
        calls.append(x.shape[0])
        return {"twice": 2 * x}

    out = policy.in_batches(double, (values,), batch_size=3)
    np.testing.assert_array_equal(out["twice"], 2 * values)
    assert calls == [3, 3, 3]  # the last batch padded to the same size
    summed = policy.in_batches(lambda x: x, (values,), 3, reduce=lambda out, x: out + x)
    np.testing.assert_array_equal(summed, 2 * values)
    np.testing.assert_array_equal(policy.in_batches(lambda x: x + 1, (values,)), values + 1)
    with pytest.raises(ValueError, match="batch_size"):
        policy.in_batches(lambda x: x, (values,), -1)
