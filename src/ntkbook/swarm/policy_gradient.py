"""The chemotaxis paper's loss: SwarmRL's policy gradient on one continuous trajectory.

The authors' run scripts (SamTov/projects ``microrobotics-lab/emergent-chemotaxis/
{prolate,oblate}/find-center-rl.py``, on SwarmRL at commit bbb904e) train an actor and a
critic with SwarmRL's ``PolicyGradientLoss`` and ``ExpectedReturns(gamma=0.99,
standardize=True)``, one gradient step per episode of ``T = 20`` decisions, on one simulation
that is never reset (the episodes are update windows of a continuous trajectory). Per window,
with rewards ``r_{k,i}`` of agent ``i`` at decision ``k = 0 … T−1``:

    G_{t,i} = Σ_{k=t}^{T−1} γ^{k+1} r_{k,i}              (discounted from the window's start)
    Ĝ_{t,i} = (G_{t,i} − mean_t G_{·,i}) / (std_t G_{·,i} + ε)     (per agent, over the window)
    A_{t,i} = Ĝ_{t,i} − V(o_{t,i})                        (no gradient into V here)
    L_actor  = −(1/N) Σ_i Σ_t log(π(a_{t,i} | o_{t,i}) + 1e-8) · A_{t,i}
    L_critic =  (1/N) Σ_i Σ_t huber(V(o_{t,i}) − Ĝ_{t,i})  (Huber δ = 1)

``std`` is the population standard deviation and ``ε`` the float32 machine epsilon, as in
SwarmRL. Actor and critic each take one Adam step (learning rate 1e-3) per window, with no
entropy bonus, no clipping of ratios or gradients. The two losses touch disjoint parameters, so
one Adam over both networks applied to ``L_actor + L_critic`` takes exactly the two separate
steps.

Differences from SwarmRL, kept on purpose: the reward of decision ``t`` is the change the
action ``a_t`` caused (SwarmRL records with ``a_t`` the reward of the previous action, a
known fault); the last reward of a window is weighted ``γ^T`` (SwarmRL's integer ``linspace``
weights it ``γ^{T+1}`` in all but the last step, a change below 1%).

:func:`make_train` returns ``train(key, params) -> TrainedPolicy`` as :mod:`.ppo` does: one
jitted program, ``vmap``-able over keys and physical parameters. ``continuous=False`` restarts
every window from new random positions instead. Actions are drawn from ``π(·|o)`` by
inverse-CDF sampling (:func:`~ntkbook.swarm.policy.sample_actions`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ntkbook.swarm import tasks as tk
from ntkbook.swarm.policy import (
    TrainedPolicy,
    actor_apply,
    check_snapshot_every,
    critic_apply,
    init_networks,
    sample_actions,
    scan_updates,
)

__all__ = [
    "PolicyGradientConfig",
    "expected_returns",
    "policy_gradient_loss",
    "TrainingSteps",
    "make_steps",
    "make_train",
]

_EPSILON = float(np.finfo(np.float32).eps)


@dataclasses.dataclass(frozen=True)
class PolicyGradientConfig:
    """Static settings of the policy-gradient training (defaults: the authors' run scripts).

    Attributes:
        n_envs: environments stepped side by side, their agents pooled in one loss (the
            authors: 1 environment of 10 agents).
        n_updates: update windows (episodes) in the training run, one gradient step each.
        learning_rate: Adam step size of actor and critic.
        gamma: discount per decision.
        standardize: standardise the returns per agent over each window.
        continuous: one trajectory that is never reset (the authors); ``False`` restarts every
            window from new random positions in the start disc.
        hidden: widths of the actor's and the critic's hidden layers.
        snapshot_every: keep actor/critic parameters before every k-th update (0: none).

    The window length is ``EnvConfig.episode_length`` decisions.
    """

    n_envs: int = 1
    n_updates: int = 5000
    learning_rate: float = 1e-3
    gamma: float = 0.99
    standardize: bool = True
    continuous: bool = True
    hidden: tuple[int, ...] = (128, 128)
    snapshot_every: int = 0

    def __post_init__(self):
        for name in ("n_envs", "n_updates"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate!r}")
        if not 0 <= self.gamma <= 1:
            raise ValueError(f"gamma must lie in [0, 1], got {self.gamma!r}")
        check_snapshot_every(self.n_updates, self.snapshot_every)


def expected_returns(rewards: jax.Array, gamma: float, standardize: bool = True) -> jax.Array:
    """``G_{t,i} = Σ_{k≥t} γ^{k+1} r_{k,i}`` over a window, standardised per agent.

    ``rewards`` is time-major ``(T, n_agents)``; with ``standardize`` every agent's returns are
    shifted and scaled to mean 0 and (population) standard deviation 1 over the window, with the
    float32 epsilon added to the standard deviation.
    """
    n_steps = rewards.shape[0]
    weights = gamma ** jnp.arange(1, n_steps + 1, dtype=rewards.dtype)
    weighted = rewards * weights.reshape(-1, *([1] * (rewards.ndim - 1)))
    returns = jnp.flip(jnp.cumsum(jnp.flip(weighted, 0), axis=0), 0)
    if not standardize:
        return returns
    return (returns - returns.mean(axis=0)) / (returns.std(axis=0) + _EPSILON)


def _huber(x: jax.Array) -> jax.Array:
    abs_x = jnp.abs(x)
    return jnp.where(abs_x <= 1.0, 0.5 * x**2, abs_x - 0.5)


def policy_gradient_loss(
    networks: dict, batch: dict, config: PolicyGradientConfig
) -> tuple[jax.Array, dict]:
    """``L_actor + L_critic`` of the module docstring on one window.

    ``networks = {"actor": ..., "critic": ...}``; ``batch`` holds time-major arrays
    ``observations (T, n_agents, obs)``, ``actions (T, n_agents)`` and ``rewards (T, n_agents)``.
    """
    observations = batch["observations"]
    n_steps, n_agents, size = observations.shape
    flat = observations.reshape(-1, size)
    returns = expected_returns(batch["rewards"], config.gamma, config.standardize)
    probabilities = jax.nn.softmax(actor_apply(networks["actor"], flat)).reshape(
        n_steps, n_agents, -1
    )
    chosen = jnp.take_along_axis(probabilities, batch["actions"][..., None], axis=-1)[..., 0]
    log_prob = jnp.log(chosen + 1e-8)
    values = critic_apply(networks["critic"], flat).reshape(n_steps, n_agents)
    advantage = returns - jax.lax.stop_gradient(values)
    actor_loss = -jnp.mean(jnp.sum(log_prob * advantage, axis=0))
    critic_loss = jnp.mean(jnp.sum(_huber(values - returns), axis=0))
    entropy = -jnp.mean(jnp.sum(probabilities * jnp.log(probabilities + 1e-8), axis=-1))
    aux = {"actor_loss": actor_loss, "critic_loss": critic_loss, "entropy": entropy}
    return actor_loss + critic_loss, aux


class TrainingSteps(NamedTuple):
    """The pieces of a policy-gradient training, pure functions of explicit state.

    - ``init(key, params) -> (networks, opt_state, env_states, observations)``;
    - ``decide(actor, env_states, observations, key, params) -> (env_states, observations,
      record)``: every agent acts once and the physics runs one decision interval; ``record``
      holds the flat ``observations``, ``actions`` and ``rewards`` of that decision;
    - ``learn(networks, opt_state, window) -> (networks, opt_state, aux)``: one gradient step
      on a window of stacked records.

    :func:`make_train` runs them in one ``lax.scan``; calling ``decide`` from a Python loop and
    ``learn`` once per episode is the pattern of SwarmRL (the benchmark times both).
    """

    init: Callable
    decide: Callable
    learn: Callable


def make_steps(env_config: tk.EnvConfig, config: PolicyGradientConfig) -> TrainingSteps:
    """The :class:`TrainingSteps` of ``config`` in the environment ``env_config``."""
    task = tk.get_task(env_config.task)
    n_agents = env_config.n_agents
    optimizer = optax.adam(config.learning_rate)
    reset_envs = jax.vmap(tk.reset, in_axes=(0, None, None))
    step_envs = jax.vmap(tk.transition, in_axes=(0, 0, 0, None, None))

    def init(key, params):
        k_init, k_env = jax.random.split(key)
        actor_params, critic_params = init_networks(k_init, config.hidden, task.observation_size)
        networks = {"actor": actor_params, "critic": critic_params}
        env_states, observations = reset_envs(
            jax.random.split(k_env, config.n_envs), env_config, params
        )
        return networks, optimizer.init(networks), env_states, observations

    def decide(actor, env_states, obs, key, params):
        k_act, k_step = jax.random.split(key)
        flat_obs = obs.reshape(-1, task.observation_size)
        actions = sample_actions(k_act, actor_apply(actor, flat_obs))
        env_states, next_obs, reward = step_envs(
            jax.random.split(k_step, config.n_envs),
            env_states,
            actions.reshape(config.n_envs, n_agents),
            env_config,
            params,
        )
        record = {"observations": flat_obs, "actions": actions, "rewards": reward.reshape(-1)}
        return env_states, next_obs, record

    def learn(networks, opt_state, window):
        grads, aux = jax.grad(policy_gradient_loss, has_aux=True)(networks, window, config)
        updates, opt_state = optimizer.update(grads, opt_state, networks)
        return optax.apply_updates(networks, updates), opt_state, aux

    return TrainingSteps(init, decide, learn)


def make_train(env_config: tk.EnvConfig, config: PolicyGradientConfig):
    """Build ``train(key, params) -> TrainedPolicy`` (pure; wrap in ``jax.jit`` / ``jax.vmap``).

    ``params`` is a :class:`~ntkbook.swarm.tasks.SwimmerParameters` (one system; ``vmap`` for
    a batch). Each update is one window of ``env_config.episode_length`` decisions of all
    ``n_envs × n_agents`` agents, then one gradient step. Metrics per update: ``mean_reward``
    (per agent and decision), ``actor_loss``, ``critic_loss``, ``entropy`` (of the policy on the
    window's observations), ``action_fractions`` ``(n_updates, n_actions)``, and the agents'
    mean distance to the source (µm) at the window's start, ``start_distance``, and at its end,
    ``mean_distance``.
    """
    steps = make_steps(env_config, config)
    reset_envs = jax.vmap(tk.reset, in_axes=(0, None, None))
    n_actions = len(tk.ACTIONS)

    def train(key: jax.Array, params: tk.SwimmerParameters) -> TrainedPolicy:
        k_init, k_run = jax.random.split(key)

        def decide(carry, k):
            actor, env_states, obs = carry
            env_states, obs, record = steps.decide(actor, env_states, obs, k, params)
            return (actor, env_states, obs), record

        def update(carry, k):
            networks, opt_state, env_states, obs = carry
            k_window, k_reset = jax.random.split(k)
            start = tk.distance_to_source(env_states.colloids.positions, env_config).mean()
            (_, env_states, obs), window = jax.lax.scan(
                decide,
                (networks["actor"], env_states, obs),
                jax.random.split(k_window, env_config.episode_length),
            )
            end = tk.distance_to_source(env_states.colloids.positions, env_config).mean()
            networks, opt_state, aux = steps.learn(networks, opt_state, window)
            if not config.continuous:
                env_states, obs = reset_envs(
                    jax.random.split(k_reset, config.n_envs), env_config, params
                )
            metrics = dict(aux)
            metrics["mean_reward"] = window["rewards"].mean()
            metrics["start_distance"] = start
            metrics["mean_distance"] = end
            metrics["action_fractions"] = jnp.mean(
                jax.nn.one_hot(window["actions"], n_actions), axis=(0, 1)
            )
            return (networks, opt_state, env_states, obs), metrics

        carry = steps.init(k_init, params)
        carry, metrics, snapshots = scan_updates(
            update, carry, k_run, config.n_updates, config.snapshot_every
        )
        networks = carry[0]
        return TrainedPolicy(networks["actor"], networks["critic"], metrics, snapshots)

    return train
