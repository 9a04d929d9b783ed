"""Chemotaxis task: field, observable, reward timing, episode ends, policies, task registry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkbook.swarm import physics as ph
from ntkbook.swarm import tasks as tk

ENV = tk.EnvConfig(n_agents=5, integrator_step=0.01, episode_length=3)
SWIMMER = tk.swimmer_parameters(radius_um=1.0, speed_body_lengths=2.0)


def test_concentration_is_box_length_over_distance_with_minimum_image():
    positions = jnp.array([[600.0, 500.0], [500.0, 480.0], [10.0, 500.0]])
    # the third point is 490 µm away directly and 510 µm through the periodic boundary
    np.testing.assert_allclose(tk.distance_to_source(positions, ENV), [100.0, 20.0, 490.0])
    np.testing.assert_allclose(tk.concentration(positions, ENV), [10.0, 50.0, 1000.0 / 490.0])


def test_observable_and_reward_use_the_change_caused_by_the_action():
    key = jax.random.key(0)
    state, first = tk.reset(key, ENV, SWIMMER)
    np.testing.assert_array_equal(first, np.zeros((5, 1)))  # no change before the first move
    actions = jnp.array([0, 1, 2, 3, 0])
    new_state, out = tk.env_step(jax.random.key(1), state, actions, ENV, SWIMMER)
    c_before = tk.concentration(state.colloids.positions, ENV)
    c_after = tk.concentration(new_state.colloids.positions, ENV)
    np.testing.assert_allclose(out.observation[:, 0], 10.0 * (c_after - c_before), rtol=1e-5)
    np.testing.assert_allclose(out.reward, np.maximum(10.0 * (c_after - c_before), 0.0), rtol=1e-5)
    np.testing.assert_array_equal(out.final_observation, out.observation)
    assert not bool(out.truncated.any()) and not bool(out.terminated.any())


def test_rotations_turn_by_the_turn_rate():
    zero_t = tk.swimmer_parameters(radius_um=1.0, temperature_K=0.0)
    state, _ = tk.reset(jax.random.key(2), ENV, zero_t)
    actions = jnp.array([1, 2, 3, 0, 1])
    new_state, _ = tk.env_step(jax.random.key(3), state, actions, ENV, zero_t)
    turned = np.angle(np.exp(1j * (new_state.colloids.orientations - state.colloids.orientations)))
    np.testing.assert_allclose(turned, np.deg2rad([-60.0, 60.0, 0.0, 0.0, -60.0]), atol=1e-4)
    moved = np.linalg.norm(new_state.colloids.positions - state.colloids.positions, axis=-1)
    np.testing.assert_allclose(moved, [0.0, 0.0, 0.0, 0.4, 0.0], atol=1e-4)


def test_time_limit_truncates_and_resets_with_the_true_final_observation():
    state, _ = tk.reset(jax.random.key(4), ENV, SWIMMER)
    actions = jnp.zeros((5,), jnp.int32)
    for t in range(ENV.episode_length):
        previous = state
        state, out = tk.env_step(jax.random.key(10 + t), state, actions, ENV, SWIMMER)
    assert bool(out.truncated.all()) and not bool(out.terminated.any())
    assert int(state.time) == 0
    np.testing.assert_array_equal(out.observation, np.zeros((5, 1)))  # fresh episode
    assert float(jnp.abs(out.final_observation).max()) > 0
    # the last action's reward is computed from the move it caused (equal scales: R = max(o, 0))
    np.testing.assert_allclose(out.reward, np.maximum(out.final_observation[:, 0], 0.0), rtol=1e-6)
    c_prev = tk.concentration(previous.colloids.positions, ENV)
    assert float(jnp.abs(out.final_observation[:, 0] / 10 + c_prev).min()) > 0


def test_rollout_shapes_and_policies():
    traj = jax.jit(tk.rollout, static_argnums=(1, 2, 4))(
        jax.random.key(5), tk.run_and_rotate_policy, ENV, SWIMMER, 7
    )
    assert traj.positions.shape == (8, 5, 2) and traj.actions.shape == (7, 5)
    assert traj.observations.shape == (7, 5, 1) and traj.rewards.shape == (7, 5)
    # the hand-written controller translates exactly when the last change was not negative
    expected = np.where(
        np.asarray(traj.observations[..., 0]) >= 0, tk.TRANSLATE, tk.ROTATE_COUNTERCLOCKWISE
    )
    np.testing.assert_array_equal(traj.actions, expected)
    colloids = ph.ColloidState(jnp.zeros((4000, 2)), jnp.zeros((4000,)))
    start = tk.EnvState(colloids, colloids, jnp.zeros((), jnp.int32))
    counts = np.bincount(
        np.asarray(tk.random_policy(jax.random.key(6), jnp.zeros((4000, 1)), start, ENV))
    )
    np.testing.assert_allclose(counts / 4000, 0.25, atol=0.03)


def test_steering_controller_turns_towards_the_source_and_swims_when_aligned():
    source = np.asarray(tk.source_position(ENV))
    # agents east of the source: the source lies at angle π from them
    positions = jnp.asarray(np.tile(source + np.array([50.0, 0.0]), (4, 1)), jnp.float32)
    # headings: towards the source, 20° off (within half a 60° turn), 90° left and 90° right
    headings = jnp.asarray(np.deg2rad([180.0, 160.0, 90.0, 270.0]), jnp.float32)
    colloids = ph.ColloidState(positions, headings)
    actions = tk.steer_to_source_policy(
        None, jnp.zeros((4, 1)), tk.EnvState(colloids, colloids, jnp.zeros((), jnp.int32)), ENV
    )
    # heading 90° (north) must turn counter-clockwise to point west; 270° clockwise
    expected = [tk.TRANSLATE, tk.TRANSLATE, tk.ROTATE_COUNTERCLOCKWISE, tk.ROTATE_CLOCKWISE]
    np.testing.assert_array_equal(actions, expected)


def test_transition_never_resets_and_env_step_resets_at_the_time_limit():
    env = tk.EnvConfig(n_agents=3, integrator_step=0.01, episode_length=2)
    state, _ = tk.reset(jax.random.key(0), env, SWIMMER)
    swim = jnp.full((3,), tk.TRANSLATE)
    for k in range(3):  # past the episode length
        state, obs, reward = tk.transition(jax.random.key(k + 1), state, swim, env, SWIMMER)
    assert int(state.time) == 3 and obs.shape == (3, 1) and reward.shape == (3,)
    assert state.extra is None and state.memory is None  # chemotaxis has no task state


def test_rollout_records_the_rod_angle_and_ppo_trains_on_the_rod_task():
    from ntkbook.swarm import PPOConfig, make_train
    from ntkbook.swarm import rod as rd
    from ntkbook.swarm import rod_rotation as rr

    env = tk.EnvConfig(
        task="rod_rotation",
        n_agents=4,
        decision_interval=1.0,
        integrator_step=0.05,
        episode_length=3,
        box_length=150.0,
        start_radius=25.0,
        turn_rate_deg=3.55,
        boundary="open",
        task_options=rr.RodRotation(rod=rd.RodConfig(geometry="capsule")),
    )
    swimmer = tk.swimmer_parameters(radius_um=3.08, speed_body_lengths=0.25)
    traj = jax.jit(tk.rollout, static_argnums=(1, 2, 4))(
        jax.random.key(0), tk.random_policy, env, swimmer, 5
    )
    assert traj.task_states.angle.shape == (6,) and traj.observations.shape == (5, 4, 10)
    config = PPOConfig(n_envs=2, n_steps=3, n_updates=2, update_epochs=1, n_minibatches=1)
    temperatures = tk.swimmer_parameters(3.08, 0.25, temperature_K=[0.0, 300.0])
    result = jax.jit(jax.vmap(make_train(env, config)))(
        jax.random.split(jax.random.key(1), 2), temperatures
    )
    assert result.metrics["mean_reward"].shape == (2, 2)
    assert bool(jnp.all(jnp.isfinite(result.metrics["mean_reward"])))


def test_swimmer_batches_and_speed():
    batch = tk.swimmer_parameters(
        radius_um=[0.5, 1.0, 2.0], speed_body_lengths=3.0, shape=["sphere", "prolate", "oblate"]
    )
    np.testing.assert_allclose(batch.aspect_ratio, [1.0, 3.0, 1 / 3], rtol=1e-6)
    np.testing.assert_allclose(tk.swim_speed(batch), [3.0, 6.0, 12.0])
    physics = jax.vmap(tk.physics_of, in_axes=(0, None))(batch, ENV)
    assert physics.gamma_rotation.shape == (3,)
    d_t, d_r = ph.diffusion_coefficients(2.0, 300.0, shape="oblate")
    assert float(physics.diffusion_rotation[2]) == pytest.approx(d_r, rel=1e-5)


def test_unknown_task_and_registering_a_new_one():
    with pytest.raises(ValueError, match="unknown task 'phototaxis'"):
        tk.EnvConfig(task="phototaxis")

    def distance_observable(previous, now, config):
        return tk.distance_to_source(now.positions, config)[:, None] / config.box_length

    def closer_reward(previous, now, config):
        return tk.distance_to_source(previous.positions, config) - tk.distance_to_source(
            now.positions, config
        )

    name = "test_distance"
    if name not in tk.TASKS:
        tk.register_task(name, tk.Task(distance_observable, closer_reward, observation_size=1))
    with pytest.raises(ValueError, match="already registered"):
        tk.register_task(name, tk.TASKS[name])
    env = tk.EnvConfig(task=name, n_agents=3, integrator_step=0.01)
    state, obs = tk.reset(jax.random.key(7), env, SWIMMER)
    np.testing.assert_allclose(
        obs[:, 0], tk.distance_to_source(state.colloids.positions, env) / 1000.0, rtol=1e-6
    )


def test_interacting_agents_start_without_overlaps_and_touch_at_two_radii():
    env = tk.EnvConfig(n_agents=100, integrator_step=0.01, start_radius=20.0, interactions=True)
    swimmer = tk.swimmer_parameters(radius_um=2.14)
    state, _ = tk.reset(jax.random.key(0), env, swimmer)
    assert int(ph.overlaps(state.colloids.positions, 2.14)) == 0
    physics = tk.physics_of(swimmer, env)
    assert float(physics.wca_sigma) * 2 ** (1 / 6) == pytest.approx(4.28, rel=1e-6)


def test_rollout_each_equals_separate_rollouts_and_deploy():
    from ntkbook.swarm import policy as pol

    key = jax.random.key(3)
    actor, _ = pol.init_networks(jax.random.key(4), hidden=(8,))
    policies = [tk.random_policy, tk.steer_to_source_policy, pol.actor_policy(actor)]
    each = jax.jit(lambda k: tk.rollout_each(k, policies, ENV, SWIMMER, 6))(key)
    assert each.positions.shape == (3, 7, ENV.n_agents, 2)
    separate = [tk.rollout(key, p, ENV, SWIMMER, 6) for p in policies[:2]]
    separate.append(pol.deploy(key, actor, ENV, SWIMMER, 6))
    for i, one in enumerate(separate):
        np.testing.assert_array_equal(each.actions[i], one.actions)
        np.testing.assert_allclose(each.positions[i], one.positions, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="at least one policy"):
        tk.rollout_each(key, [], ENV, SWIMMER, 6)
    with pytest.raises(ValueError, match="at least one policy"):
        tk.switch_policy(0, [])
