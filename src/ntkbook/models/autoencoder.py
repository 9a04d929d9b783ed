"""A dense auto-encoder: the network's output is its reconstruction of the input."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ntkbook.models.mlp import activation

__all__ = ["AutoEncoder"]


class AutoEncoder(nn.Module):
    """``x → [Dense → act]* (encoder) → Dense(latent) → [Dense → act]* (decoder) → Dense(D)``.

    Inputs of any shape ``(N, ...)`` are flattened to ``(N, D)``; the output is the linear
    reconstruction ``(N, D)``, to be compared with the flattened input (e.g. by mean squared
    error). The decoder mirrors the encoder's widths and the latent code is linear. With
    ``O = D`` outputs the traced eNTK sums over all ``D`` reconstructed pixels.
    """

    hidden: Sequence[int] = (128,)
    latent: int = 16
    activation: str = "relu"
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = activation(self.activation)
        dtype = self.param_dtype
        h = x.reshape(x.shape[0], -1)
        n_features = h.shape[1]
        for k, width in enumerate(self.hidden):
            h = act(nn.Dense(width, param_dtype=dtype, name=f"encoder_{k}")(h))
        h = nn.Dense(self.latent, param_dtype=dtype, name="latent")(h)
        for k, width in enumerate(reversed(self.hidden)):
            h = act(nn.Dense(width, param_dtype=dtype, name=f"decoder_{k}")(h))
        return nn.Dense(n_features, param_dtype=dtype, name="reconstruction")(h)
