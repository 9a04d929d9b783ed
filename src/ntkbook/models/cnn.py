"""A small convolutional network (the ZnNL/RND architecture, scaled by its widths)."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ntkbook.models.mlp import activation

__all__ = ["CNN"]


class CNN(nn.Module):
    """``[Conv(c, 3×3) → act → avg-pool 2]* → flatten → [Dense → act]* → Dense(n_outputs)``.

    ``conv_features=(32, 64)``, ``dense_features=(256,)`` is the network of Tovey et al.'s data
    selection experiments. Inputs are ``(N, H, W, C)``; ``(N, H, W)`` gets a channel axis.
    """

    conv_features: Sequence[int] = (32, 64)
    dense_features: Sequence[int] = (256,)
    n_outputs: int = 10
    activation: str = "relu"
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = activation(self.activation)
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4:
            raise ValueError(f"CNN expects images (N, H, W[, C]), got shape {x.shape}")
        for channels in self.conv_features:
            x = act(nn.Conv(channels, (3, 3), param_dtype=self.param_dtype)(x))
            x = nn.avg_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        for width in self.dense_features:
            x = act(nn.Dense(width, param_dtype=self.param_dtype)(x))
        return nn.Dense(self.n_outputs, param_dtype=self.param_dtype)(x)
