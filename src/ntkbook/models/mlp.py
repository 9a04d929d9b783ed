"""Dense networks: a plain MLP and a pre-norm residual MLP."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["MLP", "ResidualMLP", "activation", "ACTIVATIONS"]

ACTIVATIONS: dict[str, Callable] = {
    "relu": nn.relu,
    "tanh": jnp.tanh,
    "gelu": nn.gelu,
    "sigmoid": nn.sigmoid,
    "softplus": nn.softplus,
    "identity": lambda z: z,
}


def activation(name: str) -> Callable:
    """The activation function called ``name`` (one of :data:`ACTIVATIONS`)."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}"
        ) from None


class MLP(nn.Module):
    """``x → [Dense(w) → act]* → Dense(n_outputs)``; inputs are flattened per sample.

    ``hidden=(256, 256)`` with ``n_outputs=10`` is the 784-256-256-10 network of the benchmarks.
    """

    hidden: Sequence[int]
    n_outputs: int
    activation: str = "relu"
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = activation(self.activation)
        x = x.reshape(x.shape[0], -1)
        for width in self.hidden:
            x = act(nn.Dense(width, param_dtype=self.param_dtype)(x))
        return nn.Dense(self.n_outputs, param_dtype=self.param_dtype)(x)


class ResidualMLP(nn.Module):
    """Pre-norm residual MLP: ``h ← h + act(Dense(LayerNorm(h)))``, ``depth`` blocks."""

    width: int
    depth: int
    n_outputs: int
    activation: str = "gelu"
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = activation(self.activation)
        h = nn.Dense(self.width, param_dtype=self.param_dtype)(x.reshape(x.shape[0], -1))
        for _ in range(self.depth):
            update = nn.LayerNorm(param_dtype=self.param_dtype)(h)
            h = h + act(nn.Dense(self.width, param_dtype=self.param_dtype)(update))
        return nn.Dense(self.n_outputs, param_dtype=self.param_dtype)(h)
