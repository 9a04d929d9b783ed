"""Multi-agent PPO: one policy shared by all agents, the whole training run one jitted function.

Shape of PureJaxRL's ``ppo.py``: :func:`make_train` takes the static configuration and returns
``train(key, params) -> TrainedPolicy``; the run is a ``lax.scan`` over updates, each update a
rollout (``lax.scan`` over decisions, ``vmap`` over environments; inside each environment the
agents act independently with the shared actor, a ``vmap`` over agents in effect), then
``update_epochs`` passes over shuffled minibatches. ``jax.vmap(train)`` over keys trains many
seeds at once; over a :class:`~ntkbook.swarm.tasks.SwimmerParameters` batch it trains a sweep
over radius, speed, temperature and shape (aspect ratio) at once.

Algorithm (Schulman et al. 2017, 2016), per agent-decision ``t``:

    δ_t = r_t + γ (1 − terminated_t) V(s'_t) − V(s_t)
    A_t = δ_t + γ λ (1 − done_t) A_{t+1},   done_t = terminated_t or truncated_t
    value target  G_t = stop_gradient(A_t + V(s_t))
    ρ_t = π(a_t|s_t) / π_old(a_t|s_t),  Â = (A − mean A)/(std A + 1e-8) per minibatch
    L = −E[min(ρ Â, clip(ρ, 1−ε, 1+ε) Â)] + c_v E[huber(V(s_t) − G_t)] − c_e E[H(π(·|s_t))]

``s'_t`` is the observation the action led to, *before* any automatic reset: at a time limit
(truncation) the value is bootstrapped from it, only a true terminal stops the bootstrap. The
gradient is clipped to a global norm and applied with Adam.

The networks, :class:`~ntkbook.swarm.policy.TrainedPolicy` and deployment live in
:mod:`.policy`; ``PPOConfig(snapshot_every=k)`` makes ``train`` keep snapshots of the networks
before every ``k``-th update (``n_updates`` must then be a multiple of ``k``). This is not the
loss of the chemotaxis paper's run scripts, which is :mod:`.policy_gradient`.

Example::

    env = EnvConfig(n_agents=10)
    config = PPOConfig(n_updates=200, snapshot_every=20)
    train = jax.jit(make_train(env, config))
    result = train(jax.random.key(0), swimmer_parameters(radius_um=1.0))
    logits = actor_apply(result.actor_params, observation_grid(64))
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from ntkbook.swarm import tasks as tk
from ntkbook.swarm.policy import (
    TrainedPolicy,
    actor_apply,
    check_snapshot_every,
    critic_apply,
    init_networks,
    scan_updates,
)

__all__ = [
    "PPOConfig",
    "gae",
    "ppo_loss",
    "make_train",
]


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """Static PPO settings (defaults: SwarmRL's chemotaxis values where they exist).

    Attributes:
        n_envs: environments run in parallel per rollout (each with ``n_agents`` agents).
        n_steps: decisions per rollout and update.
        n_updates: rollouts/updates in the training run.
        update_epochs: passes over each rollout.
        n_minibatches: minibatches per pass (must divide ``n_envs · n_agents · n_steps``).
        learning_rate: Adam step size.
        gamma: discount per decision.
        gae_lambda: GAE λ.
        clip_epsilon: PPO ratio clip ε.
        entropy_coef: entropy bonus weight c_e.
        value_coef: value loss weight c_v (Huber loss, δ = 1).
        max_grad_norm: global gradient-norm clip.
        hidden: widths of the actor's and the critic's hidden layers.
        snapshot_every: keep actor/critic parameters before every k-th update (0: none).
    """

    n_envs: int = 8
    n_steps: int = 20
    n_updates: int = 200
    update_epochs: int = 4
    n_minibatches: int = 4
    learning_rate: float = 1e-3
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_epsilon: float = 0.2
    entropy_coef: float = 0.01
    value_coef: float = 0.5
    max_grad_norm: float = 0.5
    hidden: tuple[int, ...] = (128, 128)
    snapshot_every: int = 0

    def __post_init__(self):
        for name in ("n_envs", "n_steps", "n_updates", "update_epochs", "n_minibatches"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("learning_rate", "clip_epsilon", "max_grad_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        for name in ("gamma", "gae_lambda"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)!r}")
        check_snapshot_every(self.n_updates, self.snapshot_every)


def gae(
    rewards: jax.Array,
    values: jax.Array,
    next_values: jax.Array,
    terminated: jax.Array,
    truncated: jax.Array,
    gamma: float,
    lam: float,
) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimates and value targets, time-major ``(T, ...)`` arrays.

    ``δ_t = r_t + γ (1 − terminated_t) V(s'_t) − V(s_t)`` and
    ``A_t = δ_t + γλ (1 − done_t) A_{t+1}`` with ``done = terminated | truncated``: a time
    limit stops the recursion (the next step belongs to a new episode) but still bootstraps
    from ``V(s'_t)``; a true terminal does neither. Returns ``(A, stop_gradient(A + V))``.
    """
    not_terminal = 1.0 - terminated.astype(rewards.dtype)
    not_done = 1.0 - jnp.logical_or(terminated, truncated).astype(rewards.dtype)
    deltas = rewards + gamma * not_terminal * next_values - values

    def body(carry, inputs):
        delta, keep = inputs
        advantage = delta + gamma * lam * keep * carry
        return advantage, advantage

    _, advantages = jax.lax.scan(body, jnp.zeros_like(deltas[0]), (deltas, not_done), reverse=True)
    return advantages, jax.lax.stop_gradient(advantages + values)


def _huber(x: jax.Array, delta: float = 1.0) -> jax.Array:
    abs_x = jnp.abs(x)
    return jnp.where(abs_x <= delta, 0.5 * x**2, delta * (abs_x - 0.5 * delta))


def ppo_loss(networks: dict, batch: dict, config: PPOConfig) -> tuple[jax.Array, dict]:
    """The PPO objective ``L`` of the module docstring on one minibatch.

    ``networks = {"actor": ..., "critic": ...}``; ``batch`` holds flat arrays
    ``observations (B, obs)``, ``actions (B,)``, ``log_probs`` (of the behaviour policy),
    ``advantages`` and ``targets``. The targets are wrapped in ``stop_gradient`` here as well,
    so no gradient can flow into them whatever the caller passed.
    """
    logits = actor_apply(networks["actor"], batch["observations"])
    log_pi = jax.nn.log_softmax(logits)
    log_prob = jnp.take_along_axis(log_pi, batch["actions"][:, None], axis=-1)[:, 0]
    ratio = jnp.exp(log_prob - batch["log_probs"])
    adv = batch["advantages"]
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    clipped = jnp.clip(ratio, 1.0 - config.clip_epsilon, 1.0 + config.clip_epsilon)
    policy_loss = -jnp.mean(jnp.minimum(ratio * adv, clipped * adv))
    values = critic_apply(networks["critic"], batch["observations"])
    value_loss = jnp.mean(_huber(values - jax.lax.stop_gradient(batch["targets"])))
    entropy = jnp.mean(-jnp.sum(jnp.exp(log_pi) * log_pi, axis=-1))
    total = policy_loss + config.value_coef * value_loss - config.entropy_coef * entropy
    aux = {
        "policy_loss": policy_loss,
        "value_loss": value_loss,
        "entropy": entropy,
        "approx_kl": jnp.mean(batch["log_probs"] - log_prob),
        "clip_fraction": jnp.mean(jnp.abs(ratio - 1.0) > config.clip_epsilon),
    }
    return total, aux


def make_train(env_config: tk.EnvConfig, config: PPOConfig):
    """Build ``train(key, params) -> TrainedPolicy`` (pure; wrap in ``jax.jit`` / ``jax.vmap``).

    ``params`` is a :class:`~ntkbook.swarm.tasks.SwimmerParameters` (one system; ``vmap`` for
    a batch).
    Metrics per update: ``mean_reward`` (per agent and decision), the losses of the last
    minibatch pass, ``entropy``, ``approx_kl``, ``clip_fraction`` and ``action_fractions``
    ``(n_updates, n_actions)``.
    """
    task = tk.get_task(env_config.task)
    n_agents = env_config.n_agents
    batch_size = config.n_envs * n_agents * config.n_steps
    if batch_size % config.n_minibatches:
        raise ValueError(
            f"n_minibatches {config.n_minibatches} must divide the batch of "
            f"n_envs·n_agents·n_steps = {batch_size}"
        )
    minibatch_size = batch_size // config.n_minibatches
    optimizer = optax.chain(
        optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.learning_rate)
    )
    n_actions = len(tk.ACTIONS)

    def train(key: jax.Array, params: tk.SwimmerParameters) -> TrainedPolicy:
        k_init, k_env, k_run = jax.random.split(key, 3)
        actor_params, critic_params = init_networks(k_init, config.hidden, task.observation_size)
        networks = {"actor": actor_params, "critic": critic_params}
        opt_state = optimizer.init(networks)
        env_states, observations = jax.vmap(tk.reset, in_axes=(0, None, None))(
            jax.random.split(k_env, config.n_envs), env_config, params
        )
        step_envs = jax.vmap(tk.env_step, in_axes=(0, 0, 0, None, None))

        def rollout_step(carry, k):
            networks, env_states, obs = carry
            k_act, k_step = jax.random.split(k)
            flat_obs = obs.reshape(-1, task.observation_size)
            logits = actor_apply(networks["actor"], flat_obs)
            actions = jax.random.categorical(k_act, logits)
            log_probs = jnp.take_along_axis(jax.nn.log_softmax(logits), actions[:, None], axis=-1)[
                :, 0
            ]
            values = critic_apply(networks["critic"], flat_obs)
            env_states, out = step_envs(
                jax.random.split(k_step, config.n_envs),
                env_states,
                actions.reshape(config.n_envs, n_agents),
                env_config,
                params,
            )
            next_values = critic_apply(
                networks["critic"], out.final_observation.reshape(-1, task.observation_size)
            )
            transition = {
                "observations": flat_obs,
                "actions": actions,
                "log_probs": log_probs,
                "values": values,
                "next_values": next_values,
                "rewards": out.reward.reshape(-1),
                "terminated": out.terminated.reshape(-1),
                "truncated": out.truncated.reshape(-1),
            }
            return (networks, env_states, out.observation), transition

        def update(carry, k):
            networks, opt_state, env_states, obs = carry
            k_roll, k_perm = jax.random.split(k)
            (_, env_states, obs), traj = jax.lax.scan(
                rollout_step,
                (networks, env_states, obs),
                jax.random.split(k_roll, config.n_steps),
            )
            advantages, targets = gae(
                traj["rewards"],
                traj["values"],
                traj["next_values"],
                traj["terminated"],
                traj["truncated"],
                config.gamma,
                config.gae_lambda,
            )
            data = {
                "observations": traj["observations"].reshape(-1, task.observation_size),
                "actions": traj["actions"].reshape(-1),
                "log_probs": traj["log_probs"].reshape(-1),
                "advantages": advantages.reshape(-1),
                "targets": targets.reshape(-1),
            }

            def epoch(carry, k):
                networks, opt_state = carry
                order = jax.random.permutation(k, batch_size)
                minibatches = jax.tree_util.tree_map(
                    lambda a: a[order].reshape(config.n_minibatches, minibatch_size, *a.shape[1:]),
                    data,
                )

                def minibatch_step(carry, mb):
                    networks, opt_state = carry
                    grads, aux = jax.grad(ppo_loss, has_aux=True)(networks, mb, config)
                    updates, opt_state = optimizer.update(grads, opt_state, networks)
                    return (optax.apply_updates(networks, updates), opt_state), aux

                return jax.lax.scan(minibatch_step, (networks, opt_state), minibatches)

            (networks, opt_state), aux = jax.lax.scan(
                epoch, (networks, opt_state), jax.random.split(k_perm, config.update_epochs)
            )
            metrics = {name: value[-1].mean() for name, value in aux.items()}
            metrics["mean_reward"] = traj["rewards"].mean()
            metrics["action_fractions"] = jnp.mean(
                jax.nn.one_hot(traj["actions"], n_actions), axis=(0, 1)
            )
            return (networks, opt_state, env_states, obs), metrics

        carry = (networks, opt_state, env_states, observations)
        carry, metrics, snapshots = scan_updates(
            update, carry, k_run, config.n_updates, config.snapshot_every
        )
        networks = carry[0]
        return TrainedPolicy(networks["actor"], networks["critic"], metrics, snapshots)

    return train
