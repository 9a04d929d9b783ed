"""The linearised (frozen-kernel) form of a network.

Around the parameters ``θ₀`` at which it is built, the linearised network is the first-order
Taylor expansion of ``f`` in its parameters,

    f_lin(θ, x) = f(θ₀, x) + J(θ₀, x) (θ − θ₀),     J = ∂f/∂θ,

evaluated with one forward-mode product (``jax.jvp``), so no Jacobian is ever stored. Its
Jacobian is ``J(θ₀)`` whatever ``θ``, so its eNTK is ``Θ₀`` for ever: trained by gradient
descent it is exactly the kernel (lazy) regime of Jacot et al. (2018) and Lee et al. (2019),
the reference a feature-learning network is compared with.
"""

from __future__ import annotations

from collections.abc import Callable

import jax

__all__ = ["linearize"]


def linearize(apply_fn: Callable, params0) -> Callable:
    """``apply_lin(params, x) = f(θ₀, x) + J(θ₀, x)(params − θ₀)`` for ``apply_fn(params, x)``.

    ``params0`` is θ₀ (the expansion point, normally the initial parameters); ``params`` must
    have the same tree structure. The result has the ``apply_fn(params, x) -> (N, O)`` signature
    of the network, so :func:`ntkbook.train.train`, the eNTK functions and the recorders take it
    unchanged; train it from ``params0``. Each call costs about one forward pass plus one
    forward-mode derivative of ``apply_fn`` at θ₀.
    """
    leaves0 = jax.tree_util.tree_leaves(params0)
    if not leaves0:
        raise ValueError("params0 has no leaves: nothing to linearise around")
    structure0 = jax.tree_util.tree_structure(params0)

    def apply_lin(params, x):
        if jax.tree_util.tree_structure(params) != structure0:
            raise ValueError(
                "params do not have the structure of the expansion point params0: "
                f"{jax.tree_util.tree_structure(params)} vs {structure0}"
            )
        delta = jax.tree_util.tree_map(lambda p, p0: p - p0, params, params0)
        f0, df = jax.jvp(lambda p: apply_fn(p, x), (params0,), (delta,))
        return f0 + df

    return apply_lin
