"""Choosing training sets from a pool (RND, random, norm-matched random) and training on them.

Random network distillation (Burda et al. 2018, "Exploration by random network
distillation") measures novelty with two networks of the same input: a *target* ``t(x)`` with
fixed random weights and a *predictor* ``p(x)`` trained to imitate it. On inputs like those it
was trained on, the predictor matches the target; on novel inputs it does not, so the distance

    d(x) = ‖t(x) − p(x)‖₂

is large where the data is unlike what has been seen. Tovey et al. (2023) build a training set
greedily from this: at every step add the not-yet-selected pool point with the largest
``d(x)``, then train the predictor on the selected set ``S`` until its loss

    L = (1/(|S|·D)) Σ_{i∈S} ‖t(x_i) − p(x_i)‖²

(the mean over points and the ``D`` output components, ZnNL's ``MeanPowerLoss(order=2)``)
falls below a tolerance. Points in dense regions are learned after one of them is chosen, so
the set spreads over the pool and takes in rare points early.

How this follows the authors' code (zincware/ZnNL, ``znnl/agents/rnd.py`` and the NeurIPS-2022
MNIST example): the greedy arg-max of a squared-difference distance and retraining the
predictor until its loss is below a threshold are theirs. Their predictor trains in rounds of
100 epochs of single-sample Adam steps, growing each round by 10% and re-initialising the
predictor every 10 rounds, with no limit; here it takes full-batch Adam steps, checks the loss
after every step, and stops at ``max_predictor_steps``: a step that stops there is *capped*,
which :func:`rnd_select` returns (:attr:`RNDSelection.capped`) and warns about. The 2022 agent
scored the whole pool, so a chosen point could be chosen again; the current agent, like this
one, scores only unchosen points, so every set has ``n`` distinct points. ``random_first``
starts, as the 2022 example did, from a uniformly drawn point (the predictor is then trained on
it before the first score). The whole selection is one jitted ``lax.fori_loop`` with a
``lax.while_loop`` per predictor fit. Because the procedure is greedy, the first ``k`` indices
of a selection of ``n`` are the selection of size ``k``.

Controls: :func:`random_select` (uniform) and :func:`norm_matched_select` (random sets whose
mean squared input norm matches a given set's, which separates novelty from the plain fact that
RND prefers large inputs); :func:`class_coverage` counts the classes in a set.
:func:`fit_and_test` trains one network per training set, all sets of one size in one jitted,
vmapped program, the way :func:`ntkbook.train.train` trains one.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ntkbook.models import CNN, MLP
from ntkbook.train import accuracy

__all__ = [
    "RNDSelection",
    "rnd_select",
    "random_select",
    "norm_matched_select",
    "mean_squared_norm",
    "class_coverage",
    "fit_and_test",
    "default_rnd_network",
]


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


def _check_pool(pool) -> jax.Array:
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
    return pool


def _check_positive(name: str, value) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.floating, np.integer))
        or not np.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


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


@dataclass(frozen=True)
class RNDSelection:
    """The result of :func:`rnd_select`; arrays are indexed by selection step ``k``.

    ``indices[k]``: the pool index chosen at step ``k`` (``int64``, distinct).
    ``distances[k]``: its distance ``‖t(x) − p(x)‖₂`` when it was chosen (NaN for a point
    drawn at random by ``random_first``). ``predictor_steps[k]``: the Adam steps the predictor
    took on the first ``k + 1`` points after step ``k`` (0 after the last point, which is never
    trained on). ``predictor_loss[k]``: the predictor's loss ``L`` on those points when it
    stopped. ``capped[k]``: that fit stopped at ``max_predictor_steps`` with ``L`` still above
    ``predictor_tolerance``.
    """

    indices: np.ndarray
    distances: np.ndarray
    predictor_steps: np.ndarray
    predictor_loss: np.ndarray
    capped: np.ndarray
    predictor_tolerance: float
    max_predictor_steps: int

    @property
    def n_capped(self) -> int:
        """How many predictor fits stopped at the step cap."""
        return int(np.sum(self.capped))

    @property
    def n_fits(self) -> int:
        """How many predictor fits the selection ran (one after every point but the last)."""
        return int(self.indices.size - 1)


@functools.partial(
    jax.jit,
    static_argnames=(
        "target",
        "predictor",
        "n",
        "learning_rate",
        "predictor_tolerance",
        "max_predictor_steps",
        "random_first",
    ),
)
def _rnd_loop(
    key: jax.Array,
    pool: jax.Array,
    *,
    target: nn.Module,
    predictor: nn.Module,
    n: int,
    learning_rate: float,
    predictor_tolerance: float,
    max_predictor_steps: int,
    random_first: bool,
):
    target_key, predictor_key, first_key = jax.random.split(key, 3)
    target_params = target.init(target_key, pool[:1])
    predictor_params = predictor.init(predictor_key, pool[:1])
    target_outputs = target.apply(target_params, pool)
    n_outputs = target_outputs.shape[-1]
    optimizer = optax.adam(learning_rate)

    def squared_errors(params, x, targets):
        return jnp.sum(jnp.square(predictor.apply(params, x) - targets), axis=-1)

    def masked_loss(params, x, targets, weights):
        # Mean over the selected points (weight 1) and the output components.
        return jnp.sum(weights * squared_errors(params, x, targets)) / (
            jnp.sum(weights) * n_outputs
        )

    loss_and_grad = jax.value_and_grad(masked_loss)

    def fit(params, opt_state, x, targets, weights):
        # Adam steps until the loss is at most the tolerance or the cap is reached; the loss is
        # checked before every step, so a fit that starts below the tolerance takes none.
        def keep_going(carry):
            _, _, steps, done = carry
            return jnp.logical_and(~done, steps < max_predictor_steps)

        def one_step(carry):
            p, o, steps, _ = carry
            loss, grads = loss_and_grad(p, x, targets, weights)
            done = loss <= predictor_tolerance
            updates, new_o = optimizer.update(grads, o, p)
            new_p = optax.apply_updates(p, updates)
            p, o = jax.tree.map(lambda old, new: jnp.where(done, old, new), (p, o), (new_p, new_o))
            return p, o, steps + jnp.where(done, 0, 1), done

        params, opt_state, steps, _ = jax.lax.while_loop(
            keep_going, one_step, (params, opt_state, jnp.int32(0), jnp.bool_(False))
        )
        return params, opt_state, steps, masked_loss(params, x, targets, weights)

    def add_point(step, state):
        params, opt_state, chosen, order, scores, fit_steps, fit_loss = state
        distance = jnp.sqrt(squared_errors(params, pool, target_outputs))
        # Chosen points can never win again; ties go to the lowest index (argmax).
        index = jnp.argmax(jnp.where(chosen, -jnp.inf, distance))
        score = distance[index]
        if random_first:
            drawn = jax.random.randint(first_key, (), 0, pool.shape[0])
            index = jnp.where(step == 0, drawn, index)
            score = jnp.where(step == 0, jnp.nan, score)
        chosen = chosen.at[index].set(True)
        order = order.at[step].set(index)
        scores = scores.at[step].set(score)
        # The selected set lives in a fixed-size buffer (so the loop has static shapes); entries
        # not yet filled point at index 0 and carry zero weight in the loss.
        weights = (jnp.arange(n) <= step).astype(target_outputs.dtype)
        x_selected, t_selected = pool[order], target_outputs[order]

        # No fit after the last point: nothing is scored with it.
        def train_predictor(args):
            return fit(*args, x_selected, t_selected, weights)

        def skip(args):
            p, o = args
            return p, o, jnp.int32(0), masked_loss(p, x_selected, t_selected, weights)

        params, opt_state, steps, loss = jax.lax.cond(
            step < n - 1, train_predictor, skip, (params, opt_state)
        )
        fit_steps = fit_steps.at[step].set(steps)
        fit_loss = fit_loss.at[step].set(loss)
        return params, opt_state, chosen, order, scores, fit_steps, fit_loss

    dtype = target_outputs.dtype
    state = (
        predictor_params,
        optimizer.init(predictor_params),
        jnp.zeros(pool.shape[0], dtype=bool),
        jnp.zeros(n, dtype=jnp.int32),
        jnp.zeros(n, dtype=dtype),
        jnp.zeros(n, dtype=jnp.int32),
        jnp.zeros(n, dtype=dtype),
    )
    _, _, _, order, scores, fit_steps, fit_loss = jax.lax.fori_loop(0, n, add_point, state)
    return order, scores, fit_steps, fit_loss


def rnd_select(
    key: jax.Array,
    pool,
    n: int,
    *,
    target: nn.Module | None = None,
    predictor: nn.Module | None = None,
    learning_rate: float = 1e-2,
    predictor_tolerance: float = 0.01,
    max_predictor_steps: int = 1000,
    random_first: bool = False,
) -> RNDSelection:
    """Select ``n`` distinct pool indices by random network distillation.

    Step ``k`` adds ``argmax_{i ∉ S} ‖t(x_i) − p(x_i)‖₂`` to the selected set ``S`` (with
    ``random_first``, step 0 adds a uniformly drawn point instead) and then trains the
    predictor with full-batch Adam (``learning_rate``) on ``L = (1/(|S|·D)) Σ_{i∈S}
    ‖t(x_i) − p(x_i)‖²`` until ``L ≤ predictor_tolerance`` or ``max_predictor_steps`` steps.
    Fits that stop at the cap are returned in :attr:`RNDSelection.capped` and reported with a
    ``RuntimeWarning``. ``key`` draws the target's and the predictor's initial weights (and the
    first point with ``random_first``), so the same key gives the same selection.

    ``target`` and ``predictor`` are Flax modules mapping ``pool`` to ``(N, D)`` with the same
    ``D`` (their attributes must be hashable: use tuples, not lists); ``predictor`` defaults to
    the target's architecture and the target to :func:`default_rnd_network`.
    """
    pool = _check_pool(pool)
    n = _check_count(n, int(pool.shape[0]), "pool")
    if (
        isinstance(max_predictor_steps, bool)
        or not isinstance(max_predictor_steps, (int, np.integer))
        or max_predictor_steps < 0
    ):
        raise ValueError(
            f"max_predictor_steps must be a non-negative integer, got {max_predictor_steps!r}"
        )
    learning_rate = _check_positive("learning_rate", learning_rate)
    predictor_tolerance = _check_positive("predictor_tolerance", predictor_tolerance)
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
    order, scores, steps, loss = _rnd_loop(
        key,
        pool,
        target=target,
        predictor=predictor,
        n=n,
        learning_rate=learning_rate,
        predictor_tolerance=predictor_tolerance,
        max_predictor_steps=int(max_predictor_steps),
        random_first=bool(random_first),
    )
    scores, loss = np.asarray(scores), np.asarray(loss)
    scored = scores[1:] if random_first else scores
    if not (np.all(np.isfinite(scored)) and np.all(np.isfinite(loss))):
        raise ValueError(
            "RND distances became NaN or inf (the predictor diverged); lower learning_rate "
            f"(now {learning_rate})"
        )
    steps = np.asarray(steps, dtype=np.int64)
    capped = (np.arange(n) < n - 1) & (loss > predictor_tolerance)
    selection = RNDSelection(
        indices=np.asarray(order, dtype=np.int64),
        distances=scores,
        predictor_steps=steps,
        predictor_loss=loss,
        capped=capped,
        predictor_tolerance=predictor_tolerance,
        max_predictor_steps=int(max_predictor_steps),
    )
    if selection.n_capped:
        worst = int(np.argmax(np.where(capped, loss, -np.inf)))
        warnings.warn(
            f"the RND predictor reached max_predictor_steps={max_predictor_steps} with its loss "
            f"above predictor_tolerance={predictor_tolerance:g} in {selection.n_capped} of "
            f"{selection.n_fits} fits (worst: loss {loss[worst]:.3g} after point {worst + 1})",
            RuntimeWarning,
            stacklevel=2,
        )
    return selection


def mean_squared_norm(x) -> float:
    """``(1/N) Σ_i ‖x_i‖²`` over the samples ``x`` ``(N, features...)``, in float64."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"x must hold at least one sample, got shape {x.shape}")
    return float(np.mean(np.sum(x.reshape(x.shape[0], -1) ** 2, axis=1)))


def norm_matched_select(
    key: jax.Array, pool, n: int, target_mean: float, *, tolerance: float = 0.02
) -> np.ndarray:
    """``n`` distinct random pool indices whose mean squared norm ``(1/n) Σ ‖x_i‖²`` lies within
    ``tolerance`` (relative) of ``target_mean``.

    The draw is the maximum-entropy one for a given mean: the ``n`` largest of
    ``β·z_i + g_i``, with ``z_i`` the standardised ``‖x_i‖²`` and ``g_i`` Gumbel noise from
    ``key`` (Gumbel top-``n`` sampling without replacement from weights ``∝ exp(β z_i)``), and
    ``β`` found by bisection so that the set's mean meets ``target_mean``. When the last swap
    of the bisection jumps over the window, one swap (a chosen point for an unchosen one, drawn
    at random among those that land in the window) completes it. ``β = 0`` is
    :func:`random_select`'s uniform draw.

    Raises:
        ValueError: ``target_mean`` outside what ``n`` pool points can reach (the message gives
            the range), or bad arguments.
    """
    pool = np.asarray(_check_pool(pool))
    n = _check_count(n, pool.shape[0], "pool")
    target_mean = _check_positive("target_mean", target_mean)
    tolerance = _check_positive("tolerance", tolerance)
    norms = np.sum(pool.reshape(pool.shape[0], -1).astype(np.float64) ** 2, axis=1)
    ordered = np.sort(norms)
    lowest, highest = ordered[:n].mean(), ordered[-n:].mean()
    if not lowest * (1 - tolerance) <= target_mean <= highest * (1 + tolerance):
        raise ValueError(
            f"target_mean={target_mean:.6g} cannot be matched: sets of n={n} points of this pool "
            f"have mean squared norms between {lowest:.6g} and {highest:.6g}"
        )
    spread = norms.std()
    z = (norms - norms.mean()) / (spread if spread > 0 else 1.0)
    gumbel_key, swap_key = jax.random.split(key)
    noise = np.asarray(jax.random.gumbel(gumbel_key, (pool.shape[0],)), dtype=np.float64)

    def draw(beta: float) -> np.ndarray:
        return np.argsort(-(beta * z + noise), kind="stable")[:n]

    def miss(indices: np.ndarray) -> float:
        return norms[indices].mean() / target_mean - 1.0

    low, high = -1.0, 1.0
    while miss(draw(low)) > 0 and low > -1e6:
        low *= 2.0
    while miss(draw(high)) < 0 and high < 1e6:
        high *= 2.0
    best = draw(0.0)
    for _ in range(200):
        if abs(miss(best)) <= tolerance:
            break
        middle = 0.5 * (low + high)
        best = draw(middle)
        if miss(best) < 0:
            low = middle
        else:
            high = middle
    if abs(miss(best)) > tolerance:
        # The bisection has narrowed down to one swap that jumps over the window: pick the
        # closest end and swap one point so that the mean lands inside it.
        candidates = [draw(low), draw(high)]
        best = min(candidates, key=lambda indices: abs(miss(indices)))
        inside = np.zeros(pool.shape[0], dtype=bool)
        inside[best] = True
        outside = np.flatnonzero(~inside)
        change = (norms[outside][None, :] - norms[best][:, None]) / n
        new_miss = (norms[best].mean() + change) / target_mean - 1.0
        valid = np.argwhere(np.abs(new_miss) <= tolerance)
        if valid.size == 0:
            raise ValueError(
                f"no random set of n={n} points found with mean squared norm within "
                f"{tolerance:g} of {target_mean:.6g}; raise tolerance"
            )
        row, column = valid[int(jax.random.randint(swap_key, (), 0, valid.shape[0]))]
        best = best.copy()
        best[row] = outside[column]
    return np.asarray(best, dtype=np.int64)


def class_coverage(labels, indices) -> int:
    """The number of distinct classes among ``labels[indices]``."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be integer classes (N,), got shape {labels.shape}")
    indices = np.asarray(indices, dtype=np.int64)
    bad = indices[(indices < 0) | (indices >= labels.size)]
    if bad.size:
        raise ValueError(f"indices must lie in [0, {labels.size}), got {int(bad[0])}")
    return int(np.unique(labels[indices]).size)


@functools.partial(jax.jit, static_argnames=("apply_fn", "optimizer", "loss_fn"))
def _batch_step(params, opt_state, x_sets, y_sets, batch, *, apply_fn, optimizer, loss_fn):
    # One optimizer step of every network in the group on its own minibatch
    # (`batch`: (G, B) indices into its set).
    def one(p, o, x, y, index):
        grads = jax.grad(lambda q: loss_fn(apply_fn(q, x[index]), y[index]))(p)
        updates, o = optimizer.update(grads, o, p)
        return optax.apply_updates(p, updates), o

    return jax.vmap(one)(params, opt_state, x_sets, y_sets, batch)


@functools.partial(jax.jit, static_argnames=("optimizer",))
def _init_states(params, *, optimizer):
    return jax.vmap(optimizer.init)(params)


@functools.partial(jax.jit, static_argnames=("n_samples",))
def _permutations(keys, epoch, *, n_samples):
    return jax.vmap(lambda k: jax.random.permutation(jax.random.fold_in(k, epoch), n_samples))(keys)


@functools.partial(jax.jit, static_argnames=("apply_fn", "loss_fn"))
def _test(params, test_x, test_y, *, apply_fn, loss_fn):
    # One network at a time: the activations of all of them at once may not fit in memory.
    def one(p):
        logits = apply_fn(p, test_x)
        return accuracy(logits, test_y), loss_fn(logits, test_y)

    return jax.lax.map(one, params)


def fit_and_test(
    apply_fn: Callable,
    params,
    optimizer: optax.GradientTransformation,
    loss_fn: Callable,
    train_sets: tuple,
    test_data: tuple,
    *,
    epochs: int,
    batch_size: int,
    keys: jax.Array,
    params_per_set: bool = False,
    parallel: int = 1,
) -> dict[str, np.ndarray]:
    """Train one network per training set and return its test accuracy and test loss.

    ``train_sets = (x, y)`` stacks ``M`` sets of one size: ``x`` ``(M, N, ...)``, ``y``
    ``(M, N)``; ``keys`` ``(M,)`` shuffle each set. Every network starts from ``params`` (or,
    with ``params_per_set``, from its own slice of ``params`` stacked on a leading axis ``M``)
    and is trained exactly as :func:`ntkbook.train.train` trains it: ``epochs`` epochs, each a
    permutation drawn with ``fold_in(key, epoch)``, full minibatches of ``batch_size`` and one
    smaller batch for the remainder. ``parallel`` trainings at a time take their steps
    together in one vmapped, jitted step (on a CPU that gains nothing for convolutions, which
    become grouped convolutions; on a GPU raise it). Returns ``{"test_accuracy": (M,),
    "test_loss": (M,)}`` (``loss_fn`` on the test set).
    """
    if not isinstance(train_sets, (tuple, list)) or len(train_sets) != 2:
        raise ValueError("train_sets must be a pair (x, y) of stacked sets")
    if not isinstance(test_data, (tuple, list)) or len(test_data) != 2:
        raise ValueError("test_data must be a pair (x, y)")
    x_sets, y_sets = jnp.asarray(train_sets[0]), jnp.asarray(train_sets[1])
    test_x, test_y = jnp.asarray(test_data[0]), jnp.asarray(test_data[1])
    if x_sets.ndim < 3 or y_sets.shape[:2] != x_sets.shape[:2]:
        raise ValueError(
            f"train_sets must be x (M, N, ...) and y (M, N, ...); got {x_sets.shape} and "
            f"{y_sets.shape}"
        )
    n_sets, n_samples = x_sets.shape[:2]
    if n_sets == 0 or n_samples == 0:
        raise ValueError(f"train_sets holds no samples (shape {x_sets.shape})")
    if test_x.shape[0] == 0 or test_x.shape[0] != test_y.shape[0]:
        raise ValueError(f"test_data must be non-empty with matching x and y, got {test_x.shape}")
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(parallel, bool) or not isinstance(parallel, (int, np.integer)) or parallel < 1:
        raise ValueError(f"parallel must be a positive integer, got {parallel!r}")
    keys = jnp.asarray(keys)
    if keys.shape[:1] != (n_sets,):
        raise ValueError(f"keys must hold one key per set ({n_sets}), got shape {keys.shape}")
    for name, array in (("train_sets x", x_sets), ("test_data x", test_x)):
        if not bool(jnp.all(jnp.isfinite(array))):
            raise ValueError(f"{name} contains NaN or inf")
    if params_per_set:
        sizes = {leaf.shape[0] for leaf in jax.tree.leaves(params)}
        if sizes != {n_sets}:
            raise ValueError(
                f"params_per_set needs params stacked on a leading axis of {n_sets}, got {sizes}"
            )
    else:
        params = jax.tree.map(lambda a: jnp.broadcast_to(a, (n_sets, *a.shape)), params)
    batch_size = int(min(batch_size, n_samples))
    n_full = n_samples // batch_size
    functions = {"apply_fn": apply_fn, "optimizer": optimizer, "loss_fn": loss_fn}
    results = []
    for first in range(0, n_sets, parallel):
        group = slice(first, min(first + parallel, n_sets))
        p = jax.tree.map(lambda a, g=group: a[g], params)
        o = _init_states(p, optimizer=optimizer)
        x_group, y_group = x_sets[group], y_sets[group]
        # A Python loop of jitted steps: on a CPU, XLA runs convolution gradients inside a
        # lax.scan several times slower than the same step compiled on its own.
        for epoch in range(int(epochs)):
            permutation = _permutations(keys[group], epoch, n_samples=n_samples)
            for b in range(n_full):
                batch = permutation[:, b * batch_size : (b + 1) * batch_size]
                p, o = _batch_step(p, o, x_group, y_group, batch, **functions)
            if n_full * batch_size < n_samples:
                batch = permutation[:, n_full * batch_size :]
                p, o = _batch_step(p, o, x_group, y_group, batch, **functions)
        results.append(_test(p, test_x, test_y, apply_fn=apply_fn, loss_fn=loss_fn))
    return {
        name: np.concatenate([np.asarray(r[i], dtype=np.float64) for r in results])
        for i, name in enumerate(("test_accuracy", "test_loss"))
    }
