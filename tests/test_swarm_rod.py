"""Pinned rod: Brownian rotation, torque of tip forces and pushing colloids, beads against
capsule, overlap-free starts, bad parameters, and the rod-rotation task's rewards."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkbook.swarm import physics as ph
from ntkbook.swarm import rod as rd
from ntkbook.swarm import rod_rotation as rr
from ntkbook.swarm import tasks as tk

ROD = rd.RodConfig(start_angle=0.0)
RADIUS = 3.08
SPEED = 1.566  # µm/s: a swim force of γ_t v = 0.081 pN


def _system(temperature_K=300.0, rod=ROD, **kwargs):
    return rd.make_rod_system(RADIUS, temperature_K, rod, center=[75.0, 75.0], **kwargs)


def test_authors_rod_units_and_brownian_rotation_of_twelve_degrees_per_hour():
    assert ROD.friction_rotation == pytest.approx(690.24, rel=1e-4)  # 6.902e-16 N·m·s
    assert ROD.half_span == pytest.approx(50.0 - 0.847, rel=1e-3)
    spacing = float(rd.bead_offsets(ROD)[1] - rd.bead_offsets(ROD)[0])
    assert spacing == pytest.approx(1.695, rel=1e-3)
    assert math.degrees(rd.brownian_rotation(300.0, ROD, 3600.0)) == pytest.approx(12.0, rel=0.05)


def test_free_rod_angle_diffuses_with_two_kT_t_over_gamma():
    temperature, dt, n_steps = 300.0, 0.5, 40
    system = _system(temperature)
    start = rd.RodState(ph.ColloidState(jnp.zeros((0, 2)), jnp.zeros((0,))), jnp.float32(0.3))

    def run(key):
        return rd.advance(start, key, 0.0, 0.0, system, dt, n_steps).state.angle - 0.3

    dphi = np.asarray(jax.jit(jax.vmap(run))(jax.random.split(jax.random.key(0), 20000)))
    expected = 2.0 * float(ph.thermal_energy(temperature)) * dt * n_steps / ROD.friction_rotation
    assert np.mean(dphi**2) == pytest.approx(expected, rel=0.05)
    assert abs(np.mean(dphi)) < 3 * math.sqrt(expected / 20000)


def test_constant_tip_force_perpendicular_to_the_rod_turns_it_at_f_half_length_over_gamma():
    force, dt, n_steps = 0.081, 0.01, 1000
    system = _system(0.0)
    empty = ph.ColloidState(jnp.zeros((0, 2)), jnp.zeros((0,)))

    def body(state, _):
        u = rd.rod_axis(state.angle)
        tip = system.center + 0.5 * ROD.length_um * u
        tau = rd.torque(tip, force * jnp.stack([-u[1], u[0]]), system.center)
        return rd.step(state, jnp.zeros((0, 3)), 0.0, 0.0, 0.0, system, dt, tau)[0], None

    end = jax.lax.scan(body, rd.RodState(empty, jnp.float32(0.0)), None, length=n_steps)[0]
    omega = float(end.angle) / (dt * n_steps)
    assert omega == pytest.approx(force * 50.0 / ROD.friction_rotation, rel=0.01)


@pytest.mark.parametrize("geometry", rd.GEOMETRIES)
def test_a_colloid_pushing_the_rod_turns_it_as_force_balance_predicts(geometry):
    """A colloid swims at the rod 30 µm from the pin, perpendicular to it, at 0 K. In steady
    state its swim force F_s is balanced by the contact force, less the drag of the colloid
    moving with the rod's surface: ω = F_s s/(γ_rod + γ_t s²) (within 2%, both geometries)."""
    rod = rd.RodConfig(start_angle=0.0, geometry=geometry)
    system = _system(0.0, rod)
    s = 30.0
    position = jnp.array([[75.0 + s, 75.0 - (RADIUS + rod.bead_radius_um) - 0.3]])
    state = rd.RodState(ph.ColloidState(position, jnp.array([np.pi / 2])), jnp.float32(0.0))
    run = jax.jit(lambda st, k: rd.advance(st, k, SPEED, 0.0, system, 0.01, 500))
    settled = run(state, jax.random.key(0)).state
    out = run(settled, jax.random.key(1))
    omega = float(out.contributions.sum()) / 5.0
    gamma_t = float(system.colloids.gamma_parallel)
    expected = gamma_t * SPEED * s / (ROD.friction_rotation + gamma_t * s**2)
    assert omega == pytest.approx(expected, rel=0.02)
    assert float(out.state.angle - settled.angle) == pytest.approx(5.0 * omega, rel=1e-4)


def _pushing_torque(geometry, angle=0.4, s=20.0):
    """Mean torque (pN·µm) of one colloid swimming perpendicular into the rod at 0 K,
    after it settled."""
    rod = rd.RodConfig(start_angle=angle, geometry=geometry)
    system = _system(0.0, rod)
    u = np.array([math.cos(angle), math.sin(angle)])
    normal = np.array([-u[1], u[0]])
    position = 75.0 + s * u - (RADIUS + rod.bead_radius_um + 0.3) * normal
    state = rd.RodState(
        ph.ColloidState(jnp.asarray(position, jnp.float32)[None], jnp.array([angle + np.pi / 2])),
        jnp.float32(angle),
    )
    run = jax.jit(lambda st, k: rd.advance(st, k, SPEED, 0.0, system, 0.01, 300))
    out = run(run(state, jax.random.key(0)).state, jax.random.key(1))
    return float(out.contributions[0]) * ROD.friction_rotation / 3.0


def test_capsule_and_beads_give_the_same_torque_from_a_pushing_colloid_within_three_percent():
    for s in (5.0, 20.0, 45.0):
        beads, capsule = _pushing_torque("beads", s=s), _pushing_torque("capsule", s=s)
        assert capsule > 0
        assert beads == pytest.approx(capsule, rel=0.03), s


def test_start_has_no_overlaps_and_is_one_jitted_vmappable_program():
    rod = rd.RodConfig()
    temperatures = jnp.array([0.0, 300.0])
    systems = jax.vmap(lambda t: rd.make_rod_system(RADIUS, t, rod))(temperatures)

    def start(key, system):
        state = rd.init_rod_state(key, 100, system, 25.0)
        return ph.overlaps(state.colloids.positions, RADIUS, rd.capsule_of(state, system))

    counts = jax.jit(jax.vmap(start))(jax.random.split(jax.random.key(3), 2), systems)
    np.testing.assert_array_equal(counts, [0, 0])
    # the unrelaxed disc of 25 µm holds far too many: the check is not vacuous
    raw = ph.init_colloids(jax.random.key(3), 100, [75.0, 75.0], 25.0)
    assert int(ph.overlaps(raw.positions, RADIUS)) > 100


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"friction_rotation": -1.0}, "friction_rotation must be a positive number, got -1.0"),
        ({"length_um": 0.0}, "length_um must be a positive number, got 0.0"),
        ({"length_um": -5.0}, "length_um must be a positive number, got -5.0"),
        ({"n_beads": 1}, "n_beads must be an integer >= 2, got 1"),
        ({"geometry": "cylinder"}, "unknown rod geometry 'cylinder'"),
        ({"fixed_epsilon": 0.0}, "fixed_epsilon must be positive, got 0.0"),
    ],
)
def test_bad_rod_parameters_raise_naming_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        rd.RodConfig(**kwargs)


def test_more_agents_than_fit_raise_naming_the_count():
    env = rr.paper_env_config(n_agents=3000)
    swimmer = tk.swimmer_parameters(radius_um=RADIUS, speed_body_lengths=0.25)
    with pytest.raises(ValueError, match="3000 colloids of radius 3.08 µm cannot fit"):
        tk.reset(jax.random.key(0), env, swimmer)
    with pytest.raises(ValueError, match="needs boundary 'open'"):
        tk.reset(jax.random.key(0), tk.EnvConfig(task="rod_rotation", n_agents=5), swimmer)
    with pytest.raises(ValueError, match="unknown reward 'speed'"):
        rr.RodRotation(reward="speed")


def _small_env(reward, n_agents=6, **kwargs):
    return tk.EnvConfig(
        task="rod_rotation",
        n_agents=n_agents,
        decision_interval=2.0,
        integrator_step=0.02,
        episode_length=3,
        box_length=150.0,
        start_radius=25.0,
        turn_rate_deg=3.55,
        boundary="open",
        task_options=rr.RodRotation(reward=reward, velocity_history=4, **kwargs),
    )


@pytest.mark.parametrize("temperature", [0.0, 300.0])
def test_torque_reward_sums_exactly_to_the_rods_deterministic_rotation(temperature):
    env = _small_env("torque", rod=rd.RodConfig(geometry="capsule"))
    swimmer = tk.swimmer_parameters(RADIUS, SPEED / (2 * RADIUS), temperature)
    state, obs = tk.reset(jax.random.key(1), env, swimmer)
    assert obs.shape == (6, 10)
    swim = jnp.zeros((6,), jnp.int32)
    system = rr.rod_system_of(swimmer, env)
    total = 0.0
    for k in range(4):
        before = state
        state, obs, reward = tk.transition(jax.random.key(10 + k), state, swim, env, swimmer)
        # the same decision through the engine gives the Brownian part
        out = rd.advance(
            rd.RodState(before.colloids, before.extra.angle),
            jax.random.key(10 + k),
            SPEED,
            0.0,
            system,
            env.integrator_step,
            env.n_substeps,
        )
        change = float(state.extra.rotation)
        assert change == pytest.approx(float(state.extra.angle - before.extra.angle), abs=1e-4)
        assert change == pytest.approx(float(out.rotation), rel=1e-6)
        assert float(jnp.sum(reward)) == pytest.approx(
            math.degrees(change - float(out.brownian)), rel=1e-4, abs=1e-6
        )
        total += abs(float(jnp.sum(reward)))
    assert total > 1e-3  # the agents did push the rod


def test_authors_reward_is_the_history_mean_split_by_the_force_weights():
    env = _small_env("authors")
    swimmer = tk.swimmer_parameters(RADIUS, SPEED / (2 * RADIUS), 300.0)
    state, _ = tk.reset(jax.random.key(2), env, swimmer)
    changes = []
    for k in range(7):  # past the history of 4 and past an episode end (env_step resets)
        state, out = tk.env_step(jax.random.key(20 + k), state, jnp.zeros((6,), int), env, swimmer)
        changes.append(float(state.memory.values[(int(state.memory.count) - 1) % 4]))
        weights = out.reward / jnp.sum(out.reward)
        np.testing.assert_allclose(float(jnp.sum(out.reward)), np.mean(changes[-4:]), rtol=1e-4)
        assert float(jnp.min(weights)) > 0
    assert int(state.memory.count) == 7  # the history outlived the episode resets


def test_authors_weights_follow_the_perpendicular_force_on_the_rod():
    system = _system(300.0, rd.RodConfig(start_angle=0.0))
    touching = RADIUS + 0.847
    positions = jnp.array([[95.0, 75.0 - touching], [95.0, 75.0 - 2.0 * touching], [75.0, 140.0]])
    w = rr.authors_weights(positions, jnp.float32(0.0), system)
    assert float(jnp.sum(w)) == pytest.approx(1.0, rel=1e-6)
    assert float(w[0]) > 0.99 * (1.0 - float(w[2]) - float(w[1]))
    assert float(w[0]) > float(w[1]) > 0.0


def test_tip_pusher_turns_the_rod_counterclockwise_faster_than_random_agents():
    env = _small_env("torque", n_agents=10, rod=rd.RodConfig(geometry="capsule"))
    env = tk.EnvConfig(**{**env.__dict__, "decision_interval": 10.0, "integrator_step": 0.05})
    swimmer = tk.swimmer_parameters(RADIUS, SPEED / (2 * RADIUS), 300.0)
    run = jax.jit(tk.rollout, static_argnums=(1, 2, 4))
    rates = {}
    for name, policy in (("tip", rr.tip_pushing_policy), ("random", tk.random_policy)):
        traj = run(jax.random.key(4), policy, env, swimmer, 60)
        rates[name] = float(rr.rotations_per_hour(traj.task_states.angle, 10.0))
    assert rates["tip"] > 0.2 and rates["tip"] > rates["random"] + 0.2


def test_rod_strategy_rule_counts_contacts_at_the_tips_and_in_the_middle():
    from ntkbook.swarm import analysis

    rod = rd.RodConfig()
    touching = RADIUS + rod.bead_radius_um + 0.5
    # rod along x (angle 0) through the origin; two decisions of three agents
    tip = [40.0, -touching]  # |s| > L/4, below the rod: a counter-clockwise push
    middle = [10.0, touching]  # |s| < L/4, above the rod at s > 0: clockwise side
    away = [0.0, 60.0]
    positions = np.array([[tip, middle, away], [tip, tip, away]])
    stats_ = analysis.rod_contact_statistics(positions, np.zeros(2), [0.0, 0.0], RADIUS, rod)
    assert stats_["contact_fraction"] == pytest.approx(4 / 6)
    assert stats_["tip_share"] == pytest.approx(3 / 4)
    assert stats_["counterclockwise_share"] == pytest.approx(3 / 4)
    assert analysis.classify_rod_strategy(stats_) == "tip pushing"
    assert analysis.classify_rod_strategy(stats_, tip_threshold=0.8) == "middle pushing"
    assert analysis.classify_rod_strategy(stats_, contact_threshold=0.7) == "idle"
    # the frame turns with the rod: the same agents around a rod at 90° give the same numbers
    turned = positions @ np.array([[0.0, 1.0], [-1.0, 0.0]])
    again = analysis.rod_contact_statistics(turned, np.full(2, np.pi / 2), [0, 0], RADIUS, rod)
    assert again == pytest.approx(stats_)


def test_strategy_shift_is_large_only_when_the_labels_differ_beyond_chance():
    from ntkbook.swarm import analysis

    key = jax.random.key(0)
    same = analysis.strategy_shift(["a", "b"] * 10, ["b", "a"] * 10, key)
    assert same.value == 0.0 and same.interval[1] < 0.5 and same.null > 0.0
    apart = analysis.strategy_shift(["a"] * 20, ["b"] * 20, key)
    assert apart.value == 1.0 and apart.interval[0] > apart.null
    with pytest.raises(ValueError, match="at least 2 labels per group, got 1 and 3"):
        analysis.strategy_shift(["a"], ["a", "b", "c"], key)
