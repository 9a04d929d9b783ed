"""A graph convolutional network (Kipf and Welling) and its per-node function for the eNTK.

A GCN mixes nodes: node ``i``'s output depends on the features of its neighbourhood, so
``apply(params, features)[i]`` is NOT a function of row ``i`` alone, and an eNTK engine that
evaluates the network one sample at a time would compute the wrong kernel if it were handed the
node features as samples. :func:`node_function` turns the model into a function of NODE INDICES:
``f(params, idx) = GCN(params; X, Â)[idx]`` runs the full-graph forward pass and selects rows, so
each "sample" (an index) has outputs that depend on that index only, and the per-node eNTK

    Θ_ij = Σ_a Σ_p ∂f_a(i)/∂θ_p · ∂f_a(j)/∂θ_p

is exactly what every method of :mod:`ntkbook.ntk.kernel` computes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ntkbook.models.mlp import activation

__all__ = ["GCN", "node_function"]


class GCN(nn.Module):
    """``H⁽ˡ⁺¹⁾ = act(Â (H⁽ˡ⁾ W⁽ˡ⁾ + b⁽ˡ⁾))`` for each hidden width, then ``Â (H W + b)`` (logits).

    ``features`` ``(V, F)``, ``adjacency`` the normalised ``Â = D^{-1/2}(A + I)D^{-1/2}``
    ``(V, V)`` (see :func:`ntkbook.data.datasets.normalised_adjacency`); returns ``(V, O)``.
    """

    hidden: Sequence[int] = (16,)
    n_outputs: int = 2
    activation: str = "relu"
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, features: jax.Array, adjacency: jax.Array) -> jax.Array:
        n = features.shape[0]
        if features.ndim != 2 or adjacency.shape != (n, n):
            raise ValueError(
                f"GCN expects features (V, F) and adjacency (V, V), got {features.shape} "
                f"and {adjacency.shape}"
            )
        act = activation(self.activation)
        h = features
        for width in self.hidden:
            h = act(adjacency @ nn.Dense(width, param_dtype=self.param_dtype)(h))
        return adjacency @ nn.Dense(self.n_outputs, param_dtype=self.param_dtype)(h)


def node_function(model: GCN, features: jax.Array, adjacency: jax.Array) -> Callable:
    """``apply(params, node_indices) -> (len(node_indices), O)``: full-graph pass, rows selected.

    Hand this to :func:`ntkbook.ntk.ntk_fn` and :func:`ntkbook.train.train` with integer node
    indices as the samples. An index outside ``[0, V)`` gives NaN outputs (never a silently
    clipped row); concrete out-of-range indices raise at once.
    """
    features = jnp.asarray(features)
    adjacency = jnp.asarray(adjacency)

    def apply(params, node_indices: jax.Array) -> jax.Array:
        if node_indices.ndim != 1 or not jnp.issubdtype(node_indices.dtype, jnp.integer):
            raise ValueError(
                "node_function expects a 1-D integer array of node indices, got "
                f"{node_indices.dtype} {node_indices.shape}"
            )
        if not isinstance(node_indices, jax.core.Tracer):
            bad = (node_indices < 0) | (node_indices >= features.shape[0])
            if bool(jnp.any(bad)):
                raise ValueError(
                    f"node indices {node_indices[bad].tolist()} are outside "
                    f"[0, {features.shape[0]})"
                )
        outputs = model.apply(params, features, adjacency)
        return outputs.at[node_indices].get(mode="fill", fill_value=jnp.nan)

    return apply
