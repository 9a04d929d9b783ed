"""The shared policy: actor and critic networks, the result of a training, and deployment.

Every agent acts on its own observation with one shared actor (a ``vmap`` over agents in
effect); the critic estimates a value per observation. Both losses of the package,
:mod:`.ppo` and :mod:`.policy_gradient`, train these networks and return a
:class:`TrainedPolicy`.

Interface for kernel studies (eNTK of the actor during training):

- ``Actor(hidden, n_actions)`` is the Flax module; ``actor_apply(actor_params, observations)``
  maps observations of shape ``(N, observation_size)`` (``observation_size = 1`` for chemotaxis:
  the scaled concentration change) to logits ``(N, 4)``; ``Critic`` / ``critic_apply`` give
  values ``(N,)``. :func:`observation_grid` returns a fixed ``(N, 1)`` probe batch.
- With ``snapshot_every=k`` in a training configuration, ``TrainedPolicy.snapshots`` holds the
  actor and critic parameters *before* updates ``0, k, 2k, …`` (stacked along a leading axis,
  with their ``update`` indices); ``jax.tree_util.tree_map(lambda a: a[i],
  result.snapshots["actor"])`` is snapshot ``i``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ntkbook.progress import track
from ntkbook.swarm import tasks as tk

__all__ = [
    "Actor",
    "Critic",
    "TrainedPolicy",
    "check_snapshot_every",
    "actor_apply",
    "critic_apply",
    "observation_grid",
    "init_networks",
    "scan_updates",
    "policy_probabilities",
    "sample_actions",
    "actor_policy",
    "deploy",
    "in_batches",
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


class TrainedPolicy(NamedTuple):
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


def check_snapshot_every(n_updates: int, snapshot_every: int) -> None:
    """Refuse a ``snapshot_every`` that is not an integer >= 0 or does not divide ``n_updates``
    (0 means no snapshots); shared by the training configurations."""
    if not isinstance(snapshot_every, int) or snapshot_every < 0:
        raise ValueError(f"snapshot_every must be an integer >= 0, got {snapshot_every!r}")
    if snapshot_every and n_updates % snapshot_every:
        raise ValueError(
            f"n_updates {n_updates} must be a multiple of snapshot_every {snapshot_every}"
        )


def observation_grid(n: int = 64, low: float = -1.0, high: float = 1.0) -> jax.Array:
    """A fixed probe batch ``(n, 1)`` of observations ``o`` evenly spaced in ``[low, high]``."""
    return jnp.linspace(low, high, n, dtype=jnp.float32)[:, None]


def init_networks(key: jax.Array, hidden: Sequence[int], observation_size: int = 1):
    """Initial ``(actor_params, critic_params)`` with hidden widths ``hidden``."""
    k_actor, k_critic = jax.random.split(key)
    dummy = jnp.zeros((1, observation_size), jnp.float32)
    return (
        Actor(tuple(hidden)).init(k_actor, dummy),
        Critic(tuple(hidden)).init(k_critic, dummy),
    )


def scan_updates(
    update: Callable, carry, key: jax.Array, n_updates: int, snapshot_every: int
) -> tuple[object, dict, dict]:
    """Run ``update(carry, key) -> (carry, metrics)`` ``n_updates`` times in a ``lax.scan``.

    ``carry[0]`` must be the networks ``{"actor", "critic"}``. Returns the final carry, the
    metrics stacked over updates and the snapshots of the networks before every
    ``snapshot_every``-th update (an empty dict for ``snapshot_every = 0``).
    """
    keys = jax.random.split(key, n_updates)
    if not snapshot_every:
        carry, metrics = jax.lax.scan(update, carry, keys)
        return carry, metrics, {}
    n_chunks = n_updates // snapshot_every

    def chunk(carry, keys):
        before = carry[0]
        carry, metrics = jax.lax.scan(update, carry, keys)
        return carry, (before, metrics)

    carry, (snapped, metrics) = jax.lax.scan(chunk, carry, keys.reshape(n_chunks, snapshot_every))
    metrics = jax.tree_util.tree_map(lambda a: a.reshape(n_updates, *a.shape[2:]), metrics)
    snapshots = {
        "update": jnp.arange(n_chunks) * snapshot_every,
        "actor": snapped["actor"],
        "critic": snapped["critic"],
    }
    return carry, metrics, snapshots


def policy_probabilities(actor_params, observations: jax.Array) -> jax.Array:
    """``π(a | o) = softmax(actor(o))``, shape ``(N, n_actions)``: the policy map."""
    return jax.nn.softmax(actor_apply(actor_params, observations), axis=-1)


def sample_actions(key: jax.Array, logits: jax.Array) -> jax.Array:
    """One action per row of ``logits (..., n_actions)``, drawn from ``softmax(logits)``.

    Inverse-CDF sampling with one uniform number per row: the action is the number of
    cumulative probabilities ``P_k = Σ_{j≤k} π_j`` (``k < n_actions − 1``) not above
    ``u · P_{n−1}``, ``u ~ U[0, 1)``. The same distribution as ``jax.random.categorical``,
    which draws one Gumbel number per action (four times the random numbers, two logarithms
    each), at about a third of its cost on CPU; the draws for a given key differ.
    """
    cumulative = jnp.cumsum(jax.nn.softmax(logits, axis=-1), axis=-1)
    u = jax.random.uniform(key, logits.shape[:-1] + (1,), logits.dtype) * cumulative[..., -1:]
    return jnp.sum(cumulative[..., :-1] <= u, axis=-1)


def deploy(
    key: jax.Array,
    actor_params,
    env_config: tk.EnvConfig,
    params: tk.SwimmerParameters,
    n_decisions: int,
    greedy: bool = False,
) -> tk.Trajectory:
    """Run the trained policy for ``n_decisions`` (no resets): actions sampled from
    ``π(·|o)``, or its most probable action with ``greedy``. Jittable with ``env_config``,
    ``n_decisions`` and ``greedy`` static; ``vmap`` over keys, parameters or actor parameters."""
    return tk.rollout(key, actor_policy(actor_params, greedy), env_config, params, n_decisions)


def actor_policy(actor_params, greedy: bool = False) -> tk.Policy:
    """The trained actor as a controller (:data:`ntkbook.swarm.tasks.Policy`): each agent sees
    only its observation and samples from ``π(·|o)``, or takes its most probable action with
    ``greedy``. ``actor_params`` may be traced."""

    def policy(k, obs, state, config):
        del state, config  # a trained agent sees only its observation
        logits = actor_apply(actor_params, obs)
        return jnp.argmax(logits, -1) if greedy else jax.random.categorical(k, logits)

    return policy


def in_batches(
    fn: Callable,
    args: Sequence[Any],
    batch_size: int = 0,
    reduce: Callable | None = None,
    description: str | None = None,
):
    """``fn(*args)`` for pytrees ``args`` with a common leading axis, ``batch_size`` at a time.

    ``fn`` is a ``vmap``-ed (and usually jitted) function of the leading axis. The last batch
    is padded with copies of the final element and the padding dropped, so ``fn`` compiles
    once; ``batch_size = 0`` runs everything in one call. ``reduce(output, *batch_args)`` maps
    each batch's output to what is kept (e.g. distance ratios instead of whole trajectories);
    the kept pieces are moved to NumPy and concatenated. ``description`` shows a progress bar.
    """
    if not isinstance(batch_size, int) or batch_size < 0:
        raise ValueError(f"batch_size must be an integer >= 0, got {batch_size!r}")
    n = len(jax.tree_util.tree_leaves(args[0])[0])
    size = batch_size or n
    starts = range(0, n, size)
    if description is not None:
        starts = track(starts, description=description, progress=True)
    parts = []
    for first in starts:
        index = np.minimum(np.arange(first, first + size), n - 1)
        taken = jax.tree_util.tree_map(lambda a, index=index: a[index], tuple(args))
        out = jax.block_until_ready(fn(*taken))
        out = out if reduce is None else reduce(out, *taken)
        parts.append(jax.tree_util.tree_map(np.asarray, out))
    return jax.tree_util.tree_map(lambda *p: np.concatenate(p)[:n], *parts)
