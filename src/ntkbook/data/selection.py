"""Choosing training sets from a pool: random network distillation (RND) and random selection.

Random network distillation (Burda et al. 2018, "Exploration by random network
distillation") measures novelty with two networks of the same input: a *target* ``t(x)`` with
fixed random weights and a *predictor* ``p(x)`` trained to imitate it. On inputs like those it
was trained on, the predictor matches the target; on novel inputs it does not, so the distance

    d(x) = ‖t(x) − p(x)‖₂

is large where the data is unlike what has been seen. Tovey et al. (2023) build a training set
greedily from this: start from an untrained predictor; at every step add the not-yet-selected
pool point with the largest ``d(x)``, then retrain the predictor on the selected set
(mean squared error ``(1/k) Σ_{i∈S} ‖t(x_i) − p(x_i)‖²``). Points in dense regions are learned
after one of them is chosen, so the set spreads over the pool and takes in rare points early.

Unlike ZnNL's ``RND`` agent, this implementation scores with a distance (not a cosine
similarity), never re-selects a chosen point, and has no stopping threshold: it returns exactly
``n`` unique indices. The whole selection (``n`` scoring passes over the pool and the predictor
updates between them) is one jitted ``lax.fori_loop``. Because the procedure is greedy, the
first ``k`` indices of a selection of ``n`` are the selection of size ``k``.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ntkbook.models import CNN, MLP

__all__ = ["rnd_select", "random_select", "default_rnd_network"]


def default_rnd_network(pool_shape: tuple[int, ...]) -> nn.Module:
    """The target/predictor network used when none is given.

    Images ``(N, H, W[, C])`` get the network of the authors' RND experiment:
    ``Conv(32) → avg-pool → Conv(64) → avg-pool → flatten → Dense(256)``. Flat inputs ``(N, D)``
    get an MLP ``D → 256 → 256 → 64``.
    """
    if len(pool_shape) >= 3:
        return CNN(conv_features=(32, 64), dense_features=(), n_outputs=256)
    return MLP(hidden=(256, 256), n_outputs=64)


def _check_count(n, available: int, what: str) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise ValueError(f"n must be an integer, got {n!r}")
    n = int(n)
    if n <= 0:
        raise ValueError(f"n must be positive, got n={n}")
    if n > available:
        raise ValueError(f"cannot select n={n} points from a {what} of {available}")
    return n


def random_select(key: jax.Array, pool_size: int, n: int) -> np.ndarray:
    """``n`` distinct indices drawn uniformly from ``range(pool_size)``, in random order.

    The first ``k`` indices of a draw are a uniform draw of size ``k`` (nested sets, like RND's).
    """
    if isinstance(pool_size, bool) or not isinstance(pool_size, (int, np.integer)):
        raise ValueError(f"pool_size must be an integer, got {pool_size!r}")
    if pool_size <= 0:
        raise ValueError(f"pool is empty (pool_size={pool_size})")
    n = _check_count(n, int(pool_size), "pool")
    return np.asarray(jax.random.permutation(key, int(pool_size))[:n], dtype=np.int64)


@functools.partial(
    jax.jit,
    static_argnames=("target", "predictor", "n", "learning_rate", "predictor_steps"),
)
def _rnd_loop(
    key: jax.Array,
    pool: jax.Array,
    *,
    target: nn.Module,
    predictor: nn.Module,
    n: int,
    learning_rate: float,
    predictor_steps: int,
) -> tuple[jax.Array, jax.Array]:
    target_key, predictor_key = jax.random.split(key)
    target_params = target.init(target_key, pool[:1])
    predictor_params = predictor.init(predictor_key, pool[:1])
    target_outputs = target.apply(target_params, pool)
    optimizer = optax.adam(learning_rate)

    def squared_errors(params, x, targets):
        return jnp.sum(jnp.square(predictor.apply(params, x) - targets), axis=-1)

    def masked_loss(params, x, targets, weights):
        return jnp.sum(weights * squared_errors(params, x, targets)) / jnp.sum(weights)

    def add_point(step, state):
        params, opt_state, chosen, order, scores = state
        distance = jnp.sqrt(squared_errors(params, pool, target_outputs))
        # Chosen points can never win again; ties go to the lowest index (argmax).
        index = jnp.argmax(jnp.where(chosen, -jnp.inf, distance))
        chosen = chosen.at[index].set(True)
        order = order.at[step].set(index)
        scores = scores.at[step].set(distance[index])
        # The selected set lives in a fixed-size buffer (so the loop has static shapes); entries
        # not yet filled point at index 0 and carry zero weight in the loss.
        weights = (jnp.arange(n) <= step).astype(target_outputs.dtype)
        x_selected, t_selected = pool[order], target_outputs[order]

        def fit(_, carry):
            p, o = carry
            grads = jax.grad(masked_loss)(p, x_selected, t_selected, weights)
            updates, o = optimizer.update(grads, o, p)
            return optax.apply_updates(p, updates), o

        # No retraining after the last point: nothing is scored with it.
        steps = jnp.where(step < n - 1, predictor_steps, 0)
        params, opt_state = jax.lax.fori_loop(0, steps, fit, (params, opt_state))
        return params, opt_state, chosen, order, scores

    state = (
        predictor_params,
        optimizer.init(predictor_params),
        jnp.zeros(pool.shape[0], dtype=bool),
        jnp.zeros(n, dtype=jnp.int32),
        jnp.zeros(n, dtype=target_outputs.dtype),
    )
    _, _, _, order, scores = jax.lax.fori_loop(0, n, add_point, state)
    return order, scores


def rnd_select(
    key: jax.Array,
    pool,
    n: int,
    *,
    target: nn.Module | None = None,
    predictor: nn.Module | None = None,
    learning_rate: float = 1e-2,
    predictor_steps: int = 10,
    return_distances: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Select ``n`` unique pool indices by random network distillation.

    Step ``k`` adds ``argmax_{i ∉ S} ‖t(x_i) − p(x_i)‖₂`` to the selected set ``S`` and then
    takes ``predictor_steps`` full-batch Adam steps (``learning_rate``) on the predictor's mean
    squared error over ``S``. ``key`` draws the target's and the predictor's initial weights,
    so the same key gives the same selection.

    ``target`` and ``predictor`` are Flax modules mapping ``pool`` to ``(N, D)`` with the same
    ``D`` (their attributes must be hashable: use tuples, not lists); ``predictor`` defaults to
    the target's architecture and the target to :func:`default_rnd_network`. Returns the indices
    in selection order (``int64``); with ``return_distances=True`` also the distance of each
    point when it was chosen.
    """
    pool = jnp.asarray(pool)
    if pool.ndim < 2:
        raise ValueError(f"pool must be (N, features...) with N samples, got shape {pool.shape}")
    if pool.shape[0] == 0:
        raise ValueError(f"pool is empty (shape {pool.shape})")
    if not jnp.issubdtype(pool.dtype, jnp.floating):
        raise ValueError(f"pool must hold floating-point values, got dtype {pool.dtype}")
    if not bool(jnp.all(jnp.isfinite(pool))):
        bad = np.argwhere(~np.isfinite(np.asarray(pool)))[0]
        raise ValueError(f"pool contains NaN or inf (first at index {tuple(int(i) for i in bad)})")
    n = _check_count(n, int(pool.shape[0]), "pool")
    if isinstance(predictor_steps, bool) or not isinstance(predictor_steps, int):
        raise ValueError(f"predictor_steps must be an integer, got {predictor_steps!r}")
    if predictor_steps < 0:
        raise ValueError(f"predictor_steps must be >= 0, got {predictor_steps}")
    if not (isinstance(learning_rate, (int, float)) and np.isfinite(learning_rate)) or (
        learning_rate <= 0
    ):
        raise ValueError(f"learning_rate must be a positive finite number, got {learning_rate!r}")
    target = default_rnd_network(pool.shape) if target is None else target
    predictor = target if predictor is None else predictor
    for name, module in (("target", target), ("predictor", predictor)):
        if not isinstance(module, nn.Module):
            raise ValueError(f"{name} must be a Flax module, got {type(module).__name__}")
        try:
            hash(module)
        except TypeError:
            raise ValueError(
                f"{name} {module!r} has unhashable attributes; pass tuples instead of lists"
            ) from None
    probe = pool[:1]
    shapes = {
        name: jax.eval_shape(lambda m=module: m.apply(m.init(jax.random.key(0), probe), probe))
        for name, module in (("target", target), ("predictor", predictor))
    }
    if shapes["target"].ndim != 2 or shapes["target"].shape != shapes["predictor"].shape:
        raise ValueError(
            "target and predictor must both return (N, D) with the same D; got "
            f"{shapes['target'].shape} and {shapes['predictor'].shape} for one sample"
        )
    order, scores = _rnd_loop(
        key,
        pool,
        target=target,
        predictor=predictor,
        n=n,
        learning_rate=float(learning_rate),
        predictor_steps=predictor_steps,
    )
    order, scores = np.asarray(order, dtype=np.int64), np.asarray(scores)
    if not np.all(np.isfinite(scores)):
        raise ValueError(
            "RND distances became NaN or inf (the predictor diverged); lower learning_rate "
            f"(now {learning_rate})"
        )
    return (order, scores) if return_distances else order
