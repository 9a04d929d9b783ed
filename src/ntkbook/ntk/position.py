"""Spectral position: the Spectral Reach decomposition of the linearised loss change.

For a loss ``L(f(X), Y)`` and the full eNTK ``Θ = ∇_θ f ∇_θ fᵀ`` (rows ``i·O + a``),

    δL = ‖∇_θ L‖² = ∇_f Lᵀ Θ ∇_f L = χ_loss · χ_net · χ_pos ,

    χ_loss = ‖∇_f L‖²,   χ_net = Tr Θ = ‖∇_θ f‖_F²,   χ_pos = Σ_k γ_k² λ_k / Tr Θ ,

with ``γ_k = ∇_f L · q_k / ‖∇_f L‖`` the alignment of the loss gradient with eigenvector
``q_k``. χ_pos lies in ``[0, 1]``: near 1 when learning moves along the top of the spectrum,
small when it has moved into the spectral tail. Here it is computed WITHOUT an
eigendecomposition, ``χ_pos = δL / (χ_loss χ_net)``, with ``δL`` from one parameter gradient
and ``χ_net`` from the traces of the kernel's diagonal blocks (:func:`kernel_trace`).

For two mini-batches (update on ``A``, loss measured on ``B``):
``δL(A, B) = ∇_θ L^B · ∇_θ L^A``, ``χ_loss = ‖∇_f L^A‖ ‖∇_f L^B‖``,
``χ_net = ‖∇_θ f^A‖_F ‖∇_θ f^B‖_F`` and ``χ_pos = δL/(χ_loss χ_net)``, which can be negative.
The batch-size normalised forms are ``χ̃_loss = sqrt(|A||B|) χ_loss`` and
``χ̃_net = χ_net / sqrt(|A||B|)`` (their product, and χ_pos, are unchanged).

A measured χ_pos has a floor. For a loss that is a mean of per-sample losses ``ℓ_i``,
``δL = N⁻² Σ_i ‖∇_θ ℓ_i‖² + N⁻² Σ_{i≠j} ∇_θ ℓ_i·∇_θ ℓ_j``: the self term (first sum,
:func:`self_delta_loss`) is positive even for a gradient of pure label noise, whose χ_pos,
:func:`chi_pos_floor`, is about ``1/(N·O)``. The cross-sample part has no such floor; it is
what :func:`two_batch_chi_pos` estimates with disjoint batches. :func:`spectral_recorder`
records all of them during training.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ntkbook.ntk.kernel import check_inputs, ntk_fn

__all__ = [
    "SpectralPosition",
    "MinibatchSpectralPosition",
    "ChiPosFloor",
    "TwoBatchEstimate",
    "spectral_position",
    "spectral_position_minibatch",
    "chi_pos_floor",
    "two_batch_chi_pos",
    "ratio_of_means",
    "spectral_recorder",
    "self_delta_loss",
    "kernel_trace",
]


@dataclass(frozen=True)
class SpectralPosition:
    """``delta_loss = chi_loss · chi_net · chi_pos`` for one batch (see the module docstring)."""

    chi_loss: float
    chi_net: float
    chi_pos: float
    delta_loss: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class MinibatchSpectralPosition:
    """Two-batch decomposition with its batch-size normalised magnitudes."""

    chi_loss: float
    chi_net: float
    chi_pos: float
    delta_loss: float
    chi_loss_normalised: float
    chi_net_normalised: float
    size_a: int
    size_b: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _squared_norm(tree) -> jax.Array:
    return sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree_util.tree_leaves(tree))


_TRACE_BLOCK = 256


@functools.lru_cache(maxsize=64)
def _cached_traced_kernel(apply_fn: Callable) -> Callable:
    return ntk_fn(apply_fn, trace_outputs=True)


def kernel_trace(apply_fn: Callable, params, x, *, block_size: int | None = None) -> float:
    """``χ_net = Tr Θ = Σ_i Σ_a ‖∇_θ f_a(x_i)‖²`` (outputs summed), as the sum of the traces
    of the kernel's diagonal blocks of ``block_size`` samples (default 256) from
    :func:`ntkbook.ntk.ntk_fn`, whose Gram products avoid per-sample Jacobians."""
    size = _TRACE_BLOCK if block_size is None else block_size
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    try:
        kernel = _cached_traced_kernel(apply_fn)
    except TypeError:  # an unhashable model function
        kernel = ntk_fn(apply_fn, trace_outputs=True)
    n = int(x.shape[0])
    return float(
        sum(jnp.trace(kernel(params, x[start : start + size])) for start in range(0, n, size))
    )


def _gradients(apply_fn, params, x, y, loss_fn):
    predictions = apply_fn(params, x)
    loss_value = loss_fn(predictions, y)
    if jnp.ndim(loss_value) != 0:
        raise ValueError(f"loss_fn must return a scalar, got shape {jnp.shape(loss_value)}")
    grad_f = jax.grad(lambda f: loss_fn(f, y))(predictions)
    grad_theta = jax.grad(lambda p: loss_fn(apply_fn(p, x), y))(params)
    return grad_f, grad_theta


def spectral_position(
    apply_fn: Callable, params, x, y, loss_fn: Callable, *, block_size: int | None = None
) -> SpectralPosition:
    """χ_loss, χ_net, χ_pos and δL of ``loss_fn(apply_fn(params, x), y)``, eigen-free.

    ``loss_fn(predictions, y) -> scalar``. Raises if the loss gradient or the kernel trace is
    zero (χ_pos is then undefined).
    """
    x, _, _ = check_inputs(apply_fn, params, x)
    grad_f, grad_theta = _gradients(apply_fn, params, x, y, loss_fn)
    chi_loss = float(_squared_norm(grad_f))
    delta_loss = float(_squared_norm(grad_theta))
    chi_net = kernel_trace(apply_fn, params, x, block_size=block_size)
    if chi_loss == 0 or chi_net == 0:
        raise ValueError(f"chi_pos is undefined: chi_loss={chi_loss}, chi_net={chi_net}")
    return SpectralPosition(chi_loss, chi_net, delta_loss / (chi_loss * chi_net), delta_loss)


_SELF_BLOCK = 128


@functools.lru_cache(maxsize=64)
def _per_sample_norms_fn(apply_fn: Callable, loss_fn: Callable) -> Callable:
    def one(params, xi, yi):
        grad = jax.grad(lambda p: loss_fn(apply_fn(p, xi[None]), yi[None]))(params)
        return _squared_norm(grad)

    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0)))


def self_delta_loss(apply_fn: Callable, params, x, y, loss_fn: Callable) -> float:
    """The self term of ``δL`` for a loss that is a mean of per-sample losses,
    ``L = (1/N) Σ_i ℓ_i`` with ``ℓ_i = loss_fn(f(x_i), y_i)`` on a batch of one:

        δL = ‖∇_θ L‖² = (1/N²) Σ_i ‖∇_θ ℓ_i‖²  +  (1/N²) Σ_{i≠j} ∇_θ ℓ_i·∇_θ ℓ_j ,

    the first sum (returned here) being the part in which every sample meets only itself.
    ``δL`` minus it is the cross-sample part, the only part that two disjoint batches see
    (:func:`two_batch_chi_pos`). Per-sample gradients in blocks of 128 samples.
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    try:
        norms = _per_sample_norms_fn(apply_fn, loss_fn)
    except TypeError:  # an unhashable model or loss function
        norms = _per_sample_norms_fn.__wrapped__(apply_fn, loss_fn)
    n = int(x.shape[0])
    blocks = [slice(start, start + _SELF_BLOCK) for start in range(0, n, _SELF_BLOCK)]
    total = sum(float(jnp.sum(norms(params, x[block], y[block]))) for block in blocks)
    return total / n**2


def spectral_position_minibatch(
    apply_fn: Callable,
    params,
    batch_a: tuple,
    batch_b: tuple,
    loss_fn: Callable,
    *,
    block_size: int | None = None,
) -> MinibatchSpectralPosition:
    """Two-batch decomposition: update direction from ``batch_a = (x, y)``, loss on ``batch_b``.

    ``δL(A, B) = ∇_θ L^B · ∇_θ L^A``; with ``A = B`` it equals :func:`spectral_position`.
    """
    (xa, ya), (xb, yb) = batch_a, batch_b
    xa, xb, _ = check_inputs(apply_fn, params, xa, xb)
    grad_fa, grad_theta_a = _gradients(apply_fn, params, xa, ya, loss_fn)
    grad_fb, grad_theta_b = _gradients(apply_fn, params, xb, yb, loss_fn)
    delta_loss = float(
        sum(
            jnp.vdot(a, b)
            for a, b in zip(
                jax.tree_util.tree_leaves(grad_theta_a),
                jax.tree_util.tree_leaves(grad_theta_b),
                strict=True,
            )
        )
    )
    chi_loss = float(jnp.sqrt(_squared_norm(grad_fa) * _squared_norm(grad_fb)))
    trace_a = kernel_trace(apply_fn, params, xa, block_size=block_size)
    trace_b = kernel_trace(apply_fn, params, xb, block_size=block_size)
    chi_net = float(np.sqrt(trace_a * trace_b))
    if chi_loss == 0 or chi_net == 0:
        raise ValueError(f"chi_pos is undefined: chi_loss={chi_loss}, chi_net={chi_net}")
    size_a, size_b = int(xa.shape[0]), int(xb.shape[0])
    scale = (size_a * size_b) ** 0.5
    return MinibatchSpectralPosition(
        chi_loss=chi_loss,
        chi_net=chi_net,
        chi_pos=delta_loss / (chi_loss * chi_net),
        delta_loss=delta_loss,
        chi_loss_normalised=chi_loss * scale,
        chi_net_normalised=chi_net / scale,
        size_a=size_a,
        size_b=size_b,
    )


# ----------------------------------------------------------------------------------------------
# The label-noise floor, the two-batch estimator over many pairs, and the spectral recorder
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChiPosFloor:
    """χ_pos of pure label noise on a probe set (see :func:`chi_pos_floor`).

    ``value`` is the mean over ``n_draws`` label draws, ``standard_error`` its standard error
    (``s/√n_draws``), ``reference`` the value ``1/(N·O)`` of a kernel proportional to the
    identity, which the floor equals when every probe sample has the same kernel block
    ``Θ_ii ∝ I``. ``cross_rms`` (with ``cross=True``) is the root mean square over the draws of
    the cross-sample part ``χ_pos − δL_self/(χ_loss χ_net)`` of the noise, whose mean is zero:
    the resolution of the cross-sample χ_pos (see :func:`self_delta_loss`).
    """

    value: float
    standard_error: float
    n_draws: int
    reference: float
    cross_rms: float | None = None

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _softmax_cross_entropy(logits, labels):
    """``−(1/N) Σ_i ln softmax(f_i)_{y_i}`` for integer labels (the floor's loss)."""
    log_p = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(log_p, labels[:, None], axis=-1))


def _noise_position(apply_fn, params, x, key, n_draws):
    """``(χ_loss, δL)`` for ``n_draws`` label vectors drawn from the model's own softmax."""
    logits = apply_fn(params, x)
    labels = jax.random.categorical(key, logits, axis=-1, shape=(n_draws, logits.shape[0]))

    def one(y):
        grad_f = jax.grad(lambda f: _softmax_cross_entropy(f, y))(logits)
        grad_theta = jax.grad(lambda p: _softmax_cross_entropy(apply_fn(p, x), y))(params)
        return _squared_norm(grad_f), _squared_norm(grad_theta)

    return jax.lax.map(one, labels)


_noise_position_jit = jax.jit(_noise_position, static_argnums=(0, 4))


def chi_pos_floor(
    apply_fn: Callable,
    params,
    x,
    *,
    key: jax.Array,
    n_draws: int = 8,
    chi_net: float | None = None,
    block_size: int | None = None,
    cross: bool = False,
) -> ChiPosFloor:
    """The label-noise floor of χ_pos for softmax cross-entropy on the probe inputs ``x``.

    Labels are drawn from the model's own prediction, ``y_i ~ softmax(f(x_i))``, so the loss
    gradient ``∇_f L = (p_i − e_{y_i})/N`` is pure noise with mean zero and carries no
    structure the model could learn. Its spectral position

        χ_pos = ∇_f Lᵀ Θ ∇_f L / (‖∇_f L‖² Tr Θ)

    is averaged over ``n_draws`` independent draws (keys from ``key``). Only the self term of
    ``δL`` survives in expectation, ``E[δL] = Σ_i tr(Θ_ii C_i)/N²`` with
    ``C_i = diag(p_i) − p_i p_iᵀ``, so the floor is about ``1/(N·O)`` for ``N`` probe samples
    and ``O`` outputs (exactly, draw by draw, when ``Θ ∝ I``). A measured χ_pos close to it
    cannot be told apart from a gradient without structure.

    ``chi_net`` (``Tr Θ`` on ``x``) is computed with :func:`kernel_trace` unless given.
    ``cross=True`` adds ``cross_rms`` (one per-sample gradient pass per draw). Raises on
    ``n_draws < 2`` (a standard error needs two draws) or a non-positive ``chi_net``.
    """
    if isinstance(n_draws, bool) or not isinstance(n_draws, int) or n_draws < 2:
        raise ValueError(f"n_draws must be an integer of at least 2, got {n_draws!r}")
    x, _, n_outputs = check_inputs(apply_fn, params, x)
    if n_outputs < 2:
        raise ValueError(f"the floor needs a softmax over at least 2 outputs, got {n_outputs}")
    if chi_net is None:
        chi_net = kernel_trace(apply_fn, params, x, block_size=block_size)
    if not chi_net > 0:
        raise ValueError(f"chi_net must be positive, got {chi_net}")
    try:
        chi_loss, delta_loss = _noise_position_jit(apply_fn, params, x, key, n_draws)
    except TypeError:  # an unhashable model function
        chi_loss, delta_loss = _noise_position(apply_fn, params, x, key, n_draws)
    chi_loss = np.asarray(chi_loss, np.float64)
    values = np.asarray(delta_loss, np.float64) / (chi_loss * chi_net)
    cross_rms = None
    if cross:
        logits = apply_fn(params, x)
        labels = jax.random.categorical(key, logits, axis=-1, shape=(n_draws, logits.shape[0]))
        selves = np.array(
            [self_delta_loss(apply_fn, params, x, y, _softmax_cross_entropy) for y in labels]
        )
        cross_rms = float(np.sqrt(np.mean((values - selves / (chi_loss * chi_net)) ** 2)))
    return ChiPosFloor(
        value=float(values.mean()),
        standard_error=float(values.std(ddof=1) / np.sqrt(n_draws)),
        n_draws=int(n_draws),
        reference=1.0 / (int(x.shape[0]) * n_outputs),
        cross_rms=cross_rms,
    )


@dataclass(frozen=True)
class TwoBatchEstimate:
    """The two-batch estimate of χ_pos over ``n_pairs`` pairs of disjoint batches.

    ``chi_pos = ⟨δL(A, B)⟩ / (⟨χ̃_loss⟩ ⟨χ̃_net⟩)`` with its standard error from the
    covariance of the three per-pair quantities (delta method); ``delta_loss`` is
    ``⟨δL(A, B)⟩`` with its standard error ``s/√n_pairs``.
    """

    chi_pos: float
    chi_pos_standard_error: float
    delta_loss: float
    delta_loss_standard_error: float
    chi_loss_normalised: float
    chi_net_normalised: float
    batch_size: int
    n_pairs: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def ratio_of_means(samples) -> tuple[float, float]:
    """``R = ⟨d⟩/(⟨l⟩⟨n⟩)`` of paired samples ``(d, l, n)`` (rows: repeats) and its standard
    error by the delta method, ``Var R ≈ ∇Rᵀ Σ ∇R / m`` with ``Σ`` the sample covariance of
    the three columns and ``∇R = (1/(⟨l⟩⟨n⟩), −R/⟨l⟩, −R/⟨n⟩)`` (no division by ``⟨d⟩``,
    which may be near zero)."""
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim != 2 or samples.shape[1] != 3 or samples.shape[0] < 2:
        raise ValueError(f"samples must have shape (m >= 2, 3), got {samples.shape}")
    means = samples.mean(axis=0)
    if means[1] == 0 or means[2] == 0:
        raise ValueError(f"the denominators' means must be non-zero, got {means[1:]}")
    ratio = means[0] / (means[1] * means[2])
    gradient = np.array([1.0 / (means[1] * means[2]), -ratio / means[1], -ratio / means[2]])
    covariance = np.cov(samples, rowvar=False, ddof=1)
    variance = float(gradient @ covariance @ gradient) / samples.shape[0]
    return float(ratio), float(np.sqrt(max(variance, 0.0)))


@functools.lru_cache(maxsize=64)
def _pair_terms_fn(apply_fn: Callable, loss_fn: Callable) -> Callable:
    """Jitted ``(δL(A, B), ‖∇_f L^A‖², ‖∇_f L^B‖²)`` of one batch pair."""

    def terms(params, xa, ya, xb, yb):
        grad_fa, grad_a = _gradients(apply_fn, params, xa, ya, loss_fn)
        grad_fb, grad_b = _gradients(apply_fn, params, xb, yb, loss_fn)
        delta_loss = sum(
            jnp.vdot(u, v)
            for u, v in zip(
                jax.tree_util.tree_leaves(grad_a), jax.tree_util.tree_leaves(grad_b), strict=True
            )
        )
        return delta_loss, _squared_norm(grad_fa), _squared_norm(grad_fb)

    return jax.jit(terms)


def two_batch_chi_pos(
    apply_fn: Callable,
    params,
    x,
    y,
    loss_fn: Callable,
    *,
    key: jax.Array,
    batch_size: int,
    n_pairs: int,
    block_size: int | None = None,
) -> TwoBatchEstimate:
    """χ_pos from ``n_pairs`` pairs of DISJOINT batches ``A``, ``B`` of ``batch_size`` samples
    each, drawn without replacement from ``(x, y)`` (one permutation of the probe per pair).

    Per pair, :func:`spectral_position_minibatch` gives ``δL(A, B) = ∇_θ L^B·∇_θ L^A`` and
    the normalised magnitudes. Because ``A`` and ``B`` share no sample, ``δL(A, B)`` has no
    self term: for a loss that is a mean of per-sample losses ``ℓ_i`` with gradients ``g_i``,
    ``E δL(A, B) = Σ_{i≠j} g_i·g_j / (N(N−1))``, the cross-sample part of the full-batch
    ``δL``, without the ``Σ_i ‖g_i‖²`` that makes a label-noise floor. The estimate is the
    ratio of means (see :func:`ratio_of_means` for its standard error).
    """
    x, _, _ = check_inputs(apply_fn, params, x)
    n = int(x.shape[0])
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if 2 * batch_size > n:
        raise ValueError(
            f"two disjoint batches of {batch_size} need {2 * batch_size} samples; x has {n}"
        )
    if isinstance(n_pairs, bool) or not isinstance(n_pairs, int) or n_pairs < 2:
        raise ValueError(f"n_pairs must be an integer of at least 2, got {n_pairs!r}")
    y = jnp.asarray(y)
    try:
        pair_terms = _pair_terms_fn(apply_fn, loss_fn)
    except TypeError:  # an unhashable model or loss function
        pair_terms = _pair_terms_fn.__wrapped__(apply_fn, loss_fn)
    rows = []
    for pair_key in jax.random.split(key, n_pairs):
        order = jax.random.permutation(pair_key, n)
        a, b = order[:batch_size], order[batch_size : 2 * batch_size]
        delta_loss, loss_a, loss_b = (float(v) for v in pair_terms(params, x[a], y[a], x[b], y[b]))
        trace_a = kernel_trace(apply_fn, params, x[a], block_size=block_size)
        trace_b = kernel_trace(apply_fn, params, x[b], block_size=block_size)
        # The normalised magnitudes of spectral_position_minibatch: √(|A||B|)·χ_loss and
        # χ_net/√(|A||B|), here with |A| = |B| = batch_size.
        rows.append(
            (
                delta_loss,
                batch_size * np.sqrt(loss_a * loss_b),
                np.sqrt(trace_a * trace_b) / batch_size,
            )
        )
    rows = np.array(rows)
    chi_pos, chi_pos_error = ratio_of_means(rows)
    return TwoBatchEstimate(
        chi_pos=chi_pos,
        chi_pos_standard_error=chi_pos_error,
        delta_loss=float(rows[:, 0].mean()),
        delta_loss_standard_error=float(rows[:, 0].std(ddof=1) / np.sqrt(n_pairs)),
        chi_loss_normalised=float(rows[:, 1].mean()),
        chi_net_normalised=float(rows[:, 2].mean()),
        batch_size=int(batch_size),
        n_pairs=int(n_pairs),
    )


def spectral_recorder(
    apply_fn: Callable,
    probe_x,
    probe_y,
    loss_fn: Callable,
    *,
    every,
    floor_key: jax.Array | None = None,
    floor_draws: int = 4,
    snapshots: dict | None = None,
    block_size: int | None = None,
    cross: bool = False,
):
    """A recorder (:class:`ntkbook.train.Recorder`) of the spectral position on a probe set.

    At every epoch scheduled by ``every`` (an interval or a list of epochs, see
    :class:`ntkbook.ntk.Schedule`) and at the final state it records, keyed by ``"epoch"``,
    ``chi_loss``, ``chi_net``, ``chi_pos`` and ``delta_loss`` of
    :func:`spectral_position` on ``(probe_x, probe_y)`` and the probe ``loss``. With
    ``floor_key`` it also records the label-noise floor :func:`chi_pos_floor` of the same
    state (``floor_draws`` draws from ``fold_in(floor_key, epoch)``) as ``chi_pos_floor`` with
    ``chi_pos_floor_standard_error``. ``cross=True`` adds the cross-sample part
    ``chi_pos_cross = χ_pos − δL_self/(χ_loss χ_net)`` (:func:`self_delta_loss`; it has no
    label-noise floor, and it is the full-probe value that the two-batch estimator with
    disjoint batches estimates) and, with ``floor_key``, its noise level
    ``chi_pos_cross_noise`` (``ChiPosFloor.cross_rms``). ``snapshots``, a dict, receives the
    parameters of every recorded state by epoch (for later checks). ``series(measure)`` gives a
    :class:`ntkbook.ntk.Series`.
    """
    from ntkbook.ntk.record import FunctionRecorder  # record.py imports this module

    probe_x, probe_y = jnp.asarray(probe_x), jnp.asarray(probe_y)

    def measure(epoch: int, params) -> dict:
        position = spectral_position(
            apply_fn, params, probe_x, probe_y, loss_fn, block_size=block_size
        )
        values = {
            **position.as_dict(),
            "loss": float(loss_fn(apply_fn(params, probe_x), probe_y)),
        }
        if cross:
            self_part = self_delta_loss(apply_fn, params, probe_x, probe_y, loss_fn)
            values["chi_pos_cross"] = position.chi_pos - self_part / (
                position.chi_loss * position.chi_net
            )
        if floor_key is not None:
            floor = chi_pos_floor(
                apply_fn,
                params,
                probe_x,
                key=jax.random.fold_in(floor_key, epoch),
                n_draws=floor_draws,
                chi_net=position.chi_net,
                cross=cross,
            )
            values["chi_pos_floor"] = floor.value
            values["chi_pos_floor_standard_error"] = floor.standard_error
            if cross:
                values["chi_pos_cross_noise"] = floor.cross_rms
        if snapshots is not None:
            snapshots[int(epoch)] = params
        return values

    return FunctionRecorder(measure, every=every)
