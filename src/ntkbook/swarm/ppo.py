"""Multi-agent PPO: one policy shared by all agents, the whole training run one jitted function.

Shape of PureJaxRL's ``ppo.py``: :func:`make_train` takes the static configuration and returns
``train(key, params) -> TrainResult``; the run is a ``lax.scan`` over updates, each update a
rollout (``lax.scan`` over decisions, ``vmap`` over environments; inside each environment the
agents act independently with the shared actor, a ``vmap`` over agents in effect), then
``update_epochs`` passes over shuffled minibatches. ``jax.vmap(train)`` over keys trains many
seeds at once; over a :class:`~ntkbook.swarm.tasks.Swimmer` batch it trains a sweep over
radius, speed, temperature and shape (aspect ratio) at once.

Algorithm (Schulman et al. 2017, 2016), per agent-decision ``t``:

    δ_t = r_t + γ (1 − terminated_t) V(s'_t) − V(s_t)
    A_t = δ_t + γ λ (1 − done_t) A_{t+1},   done_t = terminated_t or truncated_t
    value target  G_t = stop_gradient(A_t + V(s_t))
    ρ_t = π(a_t|s_t) / π_old(a_t|s_t),  Â = (A − mean A)/(std A + 1e-8) per minibatch
    L = −E[min(ρ Â, clip(ρ, 1−ε, 1+ε) Â)] + c_v E[huber(V(s_t) − G_t)] − c_e E[H(π(·|s_t))]

``s'_t`` is the observation the action led to, *before* any automatic reset: at a time limit
(truncation) the value is bootstrapped from it, only a true terminal stops the bootstrap. The
gradient is clipped to a global norm and applied with Adam.

Interface for kernel studies (eNTK of the actor during training):

- ``Actor(hidden, n_actions)`` is the Flax module; ``actor_apply(actor_params, observations)``
  maps observations of shape ``(N, observation_size)`` (``observation_size = 1`` for chemotaxis:
  the scaled concentration change) to logits ``(N, 4)``; ``Critic`` / ``critic_apply`` give
  values ``(N,)``. :func:`observation_grid` returns a fixed ``(N, 1)`` probe batch.
- ``PPOConfig(snapshot_every=k)`` makes ``train`` return ``TrainResult.snapshots``: the actor and
  critic parameters *before* updates ``0, k, 2k, …`` (stacked along a leading axis, with their
  ``update`` indices), next to the per-update ``metrics``; ``n_updates`` must then be a multiple
  of ``k``. ``jax.tree_util.tree_map(lambda a: a[i], result.snapshots["actor"])`` is snapshot
  ``i``.

Example::

    env = EnvConfig(n_agents=10)
    config = PPOConfig(n_updates=200, snapshot_every=20)
    result = jax.jit(make_train(env, config))(jax.random.key(0), swimmer(radius_um=1.0))
    logits = actor_apply(result.actor_params, observation_grid(64))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ntkbook.swarm import tasks as tk

__all__ = [
    "Actor",
    "Critic",
    "PPOConfig",
    "TrainResult",
    "actor_apply",
    "critic_apply",
    "observation_grid",
    "init_networks",
    "gae",
    "ppo_loss",
    "make_train",
    "policy_probabilities",
    "deploy",
]


class Actor(nn.Module):
    """Policy network: ``[Dense(w) → ReLU]* → Dense(n_actions)`` logits."""

    hidden: Sequence[int] = (128, 128)
    n_actions: int = len(tk.ACTIONS)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.n_actions)(x)


class Critic(nn.Module):
    """Value network: ``[Dense(w) → ReLU]* → Dense(1)``, squeezed to one value per sample."""

    hidden: Sequence[int] = (128, 128)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(1)(x)[..., 0]


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
        if not isinstance(self.snapshot_every, int) or self.snapshot_every < 0:
            raise ValueError(f"snapshot_every must be an integer >= 0, got {self.snapshot_every!r}")
        if self.snapshot_every and self.n_updates % self.snapshot_every:
            raise ValueError(
                f"n_updates {self.n_updates} must be a multiple of snapshot_every "
                f"{self.snapshot_every}"
            )


class TrainResult(NamedTuple):
    """Trained parameters, per-update ``metrics`` (arrays of length ``n_updates``) and
    ``snapshots`` (``{"update", "actor", "critic"}`` stacked, empty dict without snapshots)."""

    actor_params: dict
    critic_params: dict
    metrics: dict
    snapshots: dict


def actor_apply(actor_params, observations: jax.Array) -> jax.Array:
    """Logits ``(N, n_actions)`` of the actor for observations ``(N, observation_size)``.

    The architecture is read from the parameters, so any ``Actor(hidden)`` works.
    """
    return _actor_from(actor_params).apply(actor_params, observations)


def critic_apply(critic_params, observations: jax.Array) -> jax.Array:
    """Values ``(N,)`` of the critic for observations ``(N, observation_size)``."""
    return _critic_from(critic_params).apply(critic_params, observations)


def _hidden_from(params) -> tuple[int, ...]:
    layers = params["params"]
    names = sorted(layers, key=lambda s: int(s.split("_")[-1]))
    return tuple(int(layers[n]["kernel"].shape[-1]) for n in names[:-1])


def _actor_from(params) -> Actor:
    layers = params["params"]
    last = max(layers, key=lambda s: int(s.split("_")[-1]))
    return Actor(_hidden_from(params), int(layers[last]["kernel"].shape[-1]))


def _critic_from(params) -> Critic:
    return Critic(_hidden_from(params))


def observation_grid(n: int = 64, low: float = -1.0, high: float = 1.0) -> jax.Array:
    """A fixed probe batch ``(n, 1)`` of observations ``o`` evenly spaced in ``[low, high]``."""
    return jnp.linspace(low, high, n, dtype=jnp.float32)[:, None]


def init_networks(key: jax.Array, config: PPOConfig, observation_size: int = 1):
    """Initial ``(actor_params, critic_params)``."""
    k_actor, k_critic = jax.random.split(key)
    dummy = jnp.zeros((1, observation_size), jnp.float32)
    return (
        Actor(config.hidden).init(k_actor, dummy),
        Critic(config.hidden).init(k_critic, dummy),
    )


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
    """Build ``train(key, params) -> TrainResult`` (pure; wrap in ``jax.jit`` / ``jax.vmap``).

    ``params`` is a :class:`~ntkbook.swarm.tasks.Swimmer` (one system; ``vmap`` for a batch).
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

    def train(key: jax.Array, params: tk.Swimmer) -> TrainResult:
        k_init, k_env, k_run = jax.random.split(key, 3)
        actor_params, critic_params = init_networks(k_init, config, task.observation_size)
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
        update_keys = jax.random.split(k_run, config.n_updates)
        if not config.snapshot_every:
            carry, metrics = jax.lax.scan(update, carry, update_keys)
            snapshots = {}
        else:
            n_chunks = config.n_updates // config.snapshot_every

            def chunk(carry, keys):
                before = carry[0]
                carry, metrics = jax.lax.scan(update, carry, keys)
                return carry, (before, metrics)

            carry, (snapped, metrics) = jax.lax.scan(
                chunk, carry, update_keys.reshape(n_chunks, config.snapshot_every)
            )
            metrics = jax.tree_util.tree_map(
                lambda a: a.reshape(config.n_updates, *a.shape[2:]), metrics
            )
            snapshots = {
                "update": jnp.arange(n_chunks) * config.snapshot_every,
                "actor": snapped["actor"],
                "critic": snapped["critic"],
            }
        networks = carry[0]
        return TrainResult(networks["actor"], networks["critic"], metrics, snapshots)

    return train


def policy_probabilities(actor_params, observations: jax.Array) -> jax.Array:
    """``π(a | o) = softmax(actor(o))``, shape ``(N, n_actions)``: the policy map."""
    return jax.nn.softmax(actor_apply(actor_params, observations), axis=-1)


def deploy(
    key: jax.Array,
    actor_params,
    env_config: tk.EnvConfig,
    params: tk.Swimmer,
    n_decisions: int,
    greedy: bool = False,
) -> tk.Trajectory:
    """Run the trained policy for ``n_decisions`` (no resets): actions sampled from
    ``π(·|o)``, or its most probable action with ``greedy``. Jittable with ``env_config``,
    ``n_decisions`` and ``greedy`` static; ``vmap`` over keys, parameters or actor parameters."""

    def policy(k, obs):
        logits = actor_apply(actor_params, obs)
        return jnp.argmax(logits, -1) if greedy else jax.random.categorical(k, logits)

    return tk.rollout(key, policy, env_config, params, n_decisions)
