"""Benchmark of the active-particle engine and of one chemotaxis training, ratios in one run.

1. Engine throughput (agent-steps per second) for batches of independent systems of 10
   colloids (default 64 and 2,048 systems; the larger is about the chemotaxis paper's sweep of
   shapes × radii × speeds × seeds): the jitted JAX engine (``physics.advance``, ``vmap`` over
   systems) against a plain NumPy loop over integrator steps doing the same Euler–Maruyama
   update (anisotropic body-frame noise, exact orientation update, periodic box). Two NumPy
   baselines: one system of ``--agents`` colloids per process (SwarmRL's layout: one
   simulation per process, stepped from Python), and the whole batch vectorised per step. A
   third JAX line runs ``physics.advance_stepwise`` (``physics.step`` in a ``lax.scan``, three
   normals per colloid and step as in the NumPy loop), separating what compilation gains from
   what the engine's summed free-space update gains.
2. Training pattern, in trainings per hour at the book configuration (the chapter's
   policy-gradient loss, 10 agents, 64-64 networks, 4,000 episodes of 20 decisions): SwarmRL
   drives its engine from Python one decision at a time and updates once per episode; the
   anchor runs the same physics and networks in that pattern (a Python loop over a jitted
   decision step and a jitted update, ``policy_gradient.make_steps``), one training per process
   on every core, against ntkbook's single jitted program ``vmap``-ed over the book's 270
   trainings (goal: ≥ 20×). Each pattern is also split into its parts (decisions and update;
   rollout and the rest), and the program runs once more with its trainings sharded over one
   XLA CPU device per core. Timed on a tenth of / all of ``--pattern-episodes`` episodes,
   scaled to a whole training, the patterns in turns so that a change of load affects all
   alike.
3. One chemotaxis training (policy gradient on a continuous trajectory, 10 agents, R = 1 µm,
   2 body lengths/s, 300 K): compile and run time of the jitted run, then the final/initial
   mean distance to the source after a deployment of the trained policy and of a random policy.

Run: ``python bench/swarm.py`` (a few minutes on 2 CPU cores). Timings are the best of
``--repeats`` calls after one compiling call.
"""

from __future__ import annotations

import argparse
import os
import time

# one XLA CPU device per core (set before JAX starts): the trainings of the program can then be
# sharded over the cores, one part per device; unsharded work runs on the first device as usual
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + f" --xla_force_host_platform_device_count={os.cpu_count() or 1}"
).strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from _timing import best_time, best_times_interleaved  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec  # noqa: E402

from ntkbook.swarm import analysis, physics, policy, policy_gradient, tasks  # noqa: E402
from ntkbook.swarm.training import make_train  # noqa: E402


def numpy_engine(positions, theta, speed, omega, coeffs, dt, n_steps, box, rng):
    """The per-step loop: the same update as ``physics.step`` in NumPy float64."""
    d_par, d_perp, d_rot = coeffs
    s_par, s_perp, s_rot = (np.sqrt(2 * d * dt) for d in (d_par, d_perp, d_rot))
    for _ in range(n_steps):
        xi = rng.standard_normal((theta.size, 3))
        c, s = np.cos(theta), np.sin(theta)
        along = speed * dt + s_par * xi[:, 0]
        across = s_perp * xi[:, 1]
        positions[:, 0] += along * c - across * s
        positions[:, 1] += along * s + across * c
        np.mod(positions, box, out=positions)
        theta = np.mod(theta + omega * dt + s_rot * xi[:, 2], 2 * np.pi)
    return positions, theta


def engine(args) -> None:
    phys = physics.make_physics(radius_um=1.0, aspect_ratio=3.0, box_length=1000.0)
    coeffs = tuple(
        float(x)
        for x in (phys.diffusion_parallel, phys.diffusion_perpendicular, phys.diffusion_rotation)
    )
    dt, n_steps, n_agents = 1e-3, args.steps, args.agents
    speed = jnp.full((n_agents,), 2.0)
    omega = jnp.zeros((n_agents,))
    rng = np.random.default_rng(0)

    # the baseline: one system stepped from Python (cheap, so all steps and many repeats: on a
    # shared machine its best time varies by up to 2x between runs of a few repeats)
    one = physics.init_colloids(jax.random.key(0), n_agents, jnp.array([500.0, 500.0]), 100.0)
    pos1 = np.asarray(one.positions, np.float64)
    th1 = np.asarray(one.orientations, np.float64)
    np_single = best_time(
        lambda: numpy_engine(pos1.copy(), th1.copy(), 2.0, 0.0, coeffs, dt, n_steps, 1000.0, rng),
        max(20, args.repeats),
    )
    rate_single = n_agents * n_steps / np_single
    print(f"== engine: systems of {n_agents} agents, {n_steps} steps of {dt} s")
    print(f"NumPy loop, one system      {rate_single:14,.0f} agent-steps/s  (baseline)")

    run = jax.jit(jax.vmap(lambda s, k: physics.advance(s, k, speed, omega, phys, dt, n_steps)))

    run_stepwise = jax.jit(
        jax.vmap(lambda s, k: physics.advance_stepwise(s, k, speed, omega, phys, dt, n_steps))
    )

    def measure_batch(n_systems: int) -> None:
        total = n_systems * n_agents
        start = jax.vmap(
            lambda k: physics.init_colloids(k, n_agents, jnp.array([500.0, 500.0]), 100.0)
        )(jax.random.split(jax.random.key(0), n_systems))
        keys = jax.random.split(jax.random.key(1), n_systems)
        jax_time = best_time(lambda: jax.block_until_ready(run(start, keys)), args.repeats)
        stepwise_time = best_time(
            lambda: jax.block_until_ready(run_stepwise(start, keys)), args.repeats
        )
        pos0 = np.asarray(start.positions, np.float64).reshape(total, 2)
        th0 = np.asarray(start.orientations, np.float64).reshape(total)
        batch_steps = max(1, n_steps // 10)  # the vectorised loop is slow; a tenth of the steps
        np_batch = best_time(
            lambda: numpy_engine(
                pos0.copy(), th0.copy(), 2.0, 0.0, coeffs, dt, batch_steps, 1000.0, rng
            ),
            args.repeats,
        )
        rate_jax = total * n_steps / jax_time
        rate_stepwise = total * n_steps / stepwise_time
        rate_batch = total * batch_steps / np_batch
        print(f"-- a batch of {n_systems} systems ({total} agents)")
        print(
            f"NumPy loop, whole batch     {rate_batch:14,.0f} agent-steps/s  "
            f"{rate_batch / rate_single:8.1f}x the baseline"
        )
        print(
            f"JAX scan of physics.step    {rate_stepwise:14,.0f} agent-steps/s  "
            f"{rate_stepwise / rate_single:8.1f}x the baseline"
        )
        print(
            f"JAX engine (advance)        {rate_jax:14,.0f} agent-steps/s  "
            f"{rate_jax / rate_single:8.1f}x the baseline, {rate_jax / rate_batch:.1f}x the "
            "whole-batch loop"
        )

    for n_systems in args.systems:
        measure_batch(n_systems)


def per_decision_training(steps, key, params, n_episodes: int, episode_length: int):
    """SwarmRL's pattern: Python steps the engine one decision at a time (here a jitted step of
    the same physics and network) and updates the networks once per episode."""
    k_init, k_run = jax.random.split(key)
    networks, opt_state, env_states, obs = steps.init(k_init, params)
    for k_episode in jax.random.split(k_run, n_episodes):
        records = []
        for k in jax.random.split(k_episode, episode_length):
            env_states, obs, record = steps.decide(networks["actor"], env_states, obs, k, params)
            records.append(record)
        window = jax.tree_util.tree_map(lambda *r: jnp.stack(r), *records)
        networks, opt_state, _ = steps.learn(networks, opt_state, window)
    return jax.block_until_ready(networks)


def per_decision_parts(steps, key, params, episode_length: int):
    """The two parts of one episode of :func:`per_decision_training`, as functions to time:
    the Python loop over decisions with the stacking of its records, and the update."""
    networks, opt_state, env_states, obs = steps.init(key, params)
    keys = jax.random.split(jax.random.key(1), episode_length)

    def decisions():
        states, o, records = env_states, obs, []
        for k in keys:
            states, o, record = steps.decide(networks["actor"], states, o, k, params)
            records.append(record)
        return jax.block_until_ready(jax.tree_util.tree_map(lambda *r: jnp.stack(r), *records))

    window = decisions()
    return decisions, lambda: jax.block_until_ready(steps.learn(networks, opt_state, window))


def rollout_program(env, config):
    """ntkbook's program without the update: the same scan over windows of decisions, the
    networks fixed (times the rollout's share of a training)."""
    steps = policy_gradient.make_steps(env, config)

    def run(key, params):
        networks, _, env_states, obs = steps.init(key, params)

        def decide(carry, k):
            env_states, obs = carry
            env_states, obs, record = steps.decide(networks["actor"], env_states, obs, k, params)
            return (env_states, obs), record["rewards"]

        def window(carry, k):
            carry, rewards = jax.lax.scan(decide, carry, jax.random.split(k, env.episode_length))
            return carry, rewards.mean()

        keys = jax.random.split(key, config.n_updates)
        return jax.lax.scan(window, (env_states, obs), keys)[1]

    return run


def training_pattern(args) -> None:
    """Trainings per hour at the book configuration: ntkbook's one jitted program (``vmap``
    over a batch of trainings) against the per-decision pattern, measured in one run."""
    env = tasks.EnvConfig(n_agents=10, integrator_step=args.pattern_integrator_step)
    config = policy_gradient.PolicyGradientConfig(n_updates=args.pattern_episodes, hidden=(64, 64))
    steps = policy_gradient.make_steps(env, config)
    steps = policy_gradient.TrainingSteps(
        jax.jit(steps.init), jax.jit(steps.decide), jax.jit(steps.learn)
    )
    one = tasks.swimmer_parameters(radius_um=0.5, speed_body_lengths=3.0)
    key = jax.random.key(0)
    anchor_episodes = max(1, args.pattern_episodes // 10)
    batch = args.pattern_batch
    swimmers = tasks.swimmer_parameters(
        radius_um=np.linspace(0.3, 1.5, batch), speed_body_lengths=3.0
    )
    keys = jax.random.split(key, batch)
    devices = jax.devices()
    if batch % len(devices):
        raise ValueError(
            f"--pattern-batch {batch} must be a multiple of the {len(devices)} devices"
        )
    by_device = NamedSharding(Mesh(np.array(devices), ("trainings",)), PartitionSpec("trainings"))
    sharded_keys, sharded_swimmers = jax.device_put((keys, swimmers), by_device)
    decisions, update = per_decision_parts(steps, key, one, env.episode_length)
    train = jax.jit(jax.vmap(make_train(env, config)))
    rollout = jax.jit(jax.vmap(rollout_program(env, config)))
    timed = best_times_interleaved(
        [
            lambda: per_decision_training(steps, key, one, anchor_episodes, env.episode_length),
            decisions,
            update,
            lambda: jax.block_until_ready(train(keys, swimmers)),
            lambda: jax.block_until_ready(rollout(keys, swimmers)),
            lambda: jax.block_until_ready(train(sharded_keys, sharded_swimmers)),
        ],
        args.repeats,
    )
    per_decision = timed[0] / anchor_episodes
    # the program's times per training and episode
    program, rollout_part, sharded = np.array(timed[3:]) / (batch * args.pattern_episodes)
    hour = 3600.0 / args.book_episodes
    cores = os.cpu_count() or 1
    # the anchor runs one training per process: as many at once as there are cores, scaling
    # perfectly (a bound in its favour)
    anchor_rate = cores * hour / per_decision
    load = os.getloadavg()
    print(
        f"== training pattern: policy gradient, 10 agents, R = 0.5 um, 3 body lengths/s, "
        f"integrator step {env.integrator_step} s, 64-64 networks; trainings of "
        f"{args.book_episodes} episodes x {env.episode_length} decisions (the book preset); "
        f"load average after timing {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}"
    )
    print(
        f"per-decision pattern (Python loop over jitted steps, one update per episode): "
        f"{1e3 * per_decision:7.3f} ms per episode ({1e3 * timed[1]:.3f} ms for "
        f"{env.episode_length} decisions and stacking, {1e3 * timed[2]:.3f} ms update), "
        f"{anchor_rate:8,.0f} trainings/hour ({cores} processes)  (baseline)"
    )
    rate = hour / program
    print(
        f"one jitted program, vmap over {batch} trainings: {1e3 * program:7.3f} ms per episode "
        f"({1e3 * rollout_part:.3f} ms rollout, i.e. the program without its updates; "
        f"{1e3 * (program - rollout_part):.3f} ms updates and the rest), {rate:8,.0f} "
        f"trainings/hour, {rate / anchor_rate:5.1f}x the baseline (goal >= 20x)"
    )
    rate = hour / sharded
    print(
        f"the same, its trainings sharded over {len(devices)} CPU devices: "
        f"{1e3 * sharded:7.3f} ms per episode, {rate:8,.0f} trainings/hour, "
        f"{rate / anchor_rate:5.1f}x the baseline (goal >= 20x)"
    )


def chemotaxis(args) -> None:
    env = tasks.EnvConfig(n_agents=10, integrator_step=args.integrator_step)
    config = policy_gradient.PolicyGradientConfig(n_updates=args.updates, hidden=(64, 64))
    sw = tasks.swimmer_parameters(radius_um=1.0, speed_body_lengths=2.0, temperature_K=300.0)
    cpu0 = os.times()
    start = time.perf_counter()
    train = jax.jit(make_train(env, config)).lower(jax.random.key(0), sw).compile()
    compiled = time.perf_counter()
    result = jax.block_until_ready(train(jax.random.key(0), sw))
    done = time.perf_counter()
    cpu1 = os.times()
    cpu = (cpu1.user - cpu0.user + cpu1.system - cpu0.system) / max(1, os.cpu_count() or 1)
    deploy = jax.jit(
        jax.vmap(policy.deploy, in_axes=(0, None, None, None, None)), static_argnums=(2, 4)
    )
    rollout = jax.jit(
        jax.vmap(tasks.rollout, in_axes=(0, None, None, None, None)), static_argnums=(1, 2, 4)
    )
    keys = jax.random.split(jax.random.key(1), args.deployments)
    trained = deploy(keys, result.actor_params, env, sw, args.decisions)
    random = rollout(keys, tasks.random_policy, env, sw, args.decisions)
    ratio_trained = analysis.distance_ratio(trained.positions, env)
    ratio_random = analysis.distance_ratio(random.positions, env)
    samples = config.n_updates * env.episode_length * env.n_agents
    print(
        f"== chemotaxis training: policy gradient on one continuous trajectory, 10 agents, "
        f"R = 1 um, 2 body lengths/s, 300 K, integrator step {env.integrator_step} s, "
        f"{config.n_updates} episodes x {env.episode_length} decisions "
        f"({samples:,} agent-decisions)"
    )
    print(
        f"compile {compiled - start:.1f} s, train {done - compiled:.1f} s, "
        f"total {done - start:.1f} s wall; (user+sys)/cores {cpu:.1f} s"
    )
    print(
        f"deployment {args.decisions} decisions ({args.decisions * env.decision_interval:.0f} s) "
        f"x {args.deployments} runs, final/initial mean distance to the source:"
    )
    print(f"trained policy  mean {ratio_trained.mean():.3f}  per run {np.round(ratio_trained, 3)}")
    print(f"random policy   mean {ratio_random.mean():.3f}  per run {np.round(ratio_random, 3)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--systems", type=int, nargs="+", default=[64, 2048])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--updates", type=int, default=1000)
    parser.add_argument("--pattern-episodes", type=int, default=100)
    parser.add_argument("--pattern-batch", type=int, default=270)
    parser.add_argument("--book-episodes", type=int, default=4000)
    parser.add_argument("--pattern-integrator-step", type=float, default=0.01)
    parser.add_argument("--integrator-step", type=float, default=1e-3)
    parser.add_argument("--decisions", type=int, default=1000)
    parser.add_argument("--deployments", type=int, default=5)
    parser.add_argument("--skip-engine", action="store_true")
    parser.add_argument("--skip-chemotaxis", action="store_true")
    args = parser.parse_args()
    print(f"JAX {jax.__version__}, backend {jax.default_backend()}, {os.cpu_count()} CPU cores")
    if not args.skip_engine:
        engine(args)
    training_pattern(args)
    if not args.skip_chemotaxis:
        chemotaxis(args)


if __name__ == "__main__":
    main()
