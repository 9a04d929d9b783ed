"""Spectral position: the Spectral Reach decomposition of the linearised loss change.

For a loss ``L(f(X), Y)`` and the full eNTK ``Θ = ∇_θ f ∇_θ fᵀ`` (rows ``i·O + a``),

    δL = ‖∇_θ L‖² = ∇_f Lᵀ Θ ∇_f L = χ_loss · χ_net · χ_pos ,

    χ_loss = ‖∇_f L‖²,   χ_net = Tr Θ = ‖∇_θ f‖_F²,   χ_pos = Σ_k γ_k² λ_k / Tr Θ ,

with ``γ_k = ∇_f L · q_k / ‖∇_f L‖`` the alignment of the loss gradient with eigenvector
``q_k``. χ_pos lies in ``[0, 1]``: near 1 when learning moves along the top of the spectrum,
small when it has moved into the spectral tail. Here it is computed WITHOUT an
eigendecomposition, ``χ_pos = δL / (χ_loss χ_net)``, with ``δL`` from one parameter gradient
and ``χ_net`` from per-sample gradient norms.

For two mini-batches (update on ``A``, loss measured on ``B``):
``δL(A, B) = ∇_θ L^B · ∇_θ L^A``, ``χ_loss = ‖∇_f L^A‖ ‖∇_f L^B‖``,
``χ_net = ‖∇_θ f^A‖_F ‖∇_θ f^B‖_F`` and ``χ_pos = δL/(χ_loss χ_net)``, which can be negative.
The batch-size normalised forms are ``χ̃_loss = sqrt(|A||B|) χ_loss`` and
``χ̃_net = χ_net / sqrt(|A||B|)`` (their product, and χ_pos, are unchanged).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import jax
import jax.numpy as jnp

from ntkbook.ntk.kernel import check_inputs, ntk_diagonal

__all__ = [
    "SpectralPosition",
    "MinibatchSpectralPosition",
    "spectral_position",
    "spectral_position_minibatch",
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
    chi_net = float(jnp.sum(ntk_diagonal(apply_fn, params, x, block_size=block_size)))
    if chi_loss == 0 or chi_net == 0:
        raise ValueError(f"chi_pos is undefined: chi_loss={chi_loss}, chi_net={chi_net}")
    return SpectralPosition(chi_loss, chi_net, delta_loss / (chi_loss * chi_net), delta_loss)


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
    trace_a = jnp.sum(ntk_diagonal(apply_fn, params, xa, block_size=block_size))
    trace_b = jnp.sum(ntk_diagonal(apply_fn, params, xb, block_size=block_size))
    chi_net = float(jnp.sqrt(trace_a * trace_b))
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
