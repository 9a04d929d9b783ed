"""A small encoder-only transformer for sequence classification."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ntkbook.models.mlp import activation

__all__ = ["Transformer"]


class Transformer(nn.Module):
    """Token and position embeddings → ``depth`` pre-norm blocks → mean over positions → Dense.

    Each block is ``h ← h + Attn(LN(h))``, ``h ← h + W₂ act(W₁ LN(h))`` with multi-head
    self-attention ``Attn(z) = concat_k softmax(q_k k_kᵀ / √d_head) v_k · W_o`` (no mask: every
    position sees every other). Inputs are integer tokens ``(N, L)`` with ``L ≤ max_length``;
    outputs are ``(N, n_outputs)`` logits. Samples are independent (no batch statistics), so
    the eNTK of ``apply`` is a kernel between sequences.
    """

    vocab_size: int
    n_outputs: int
    max_length: int = 64
    d_model: int = 32
    n_heads: int = 2
    depth: int = 1
    mlp_ratio: int = 2
    activation: str = "gelu"
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
            raise ValueError(
                f"Transformer expects integer tokens (N, L), got {tokens.dtype} {tokens.shape}"
            )
        length = tokens.shape[1]
        if length > self.max_length:
            raise ValueError(f"sequence length {length} exceeds max_length={self.max_length}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        act = activation(self.activation)
        dtype = self.param_dtype
        d_head = self.d_model // self.n_heads
        h = nn.Embed(self.vocab_size, self.d_model, param_dtype=dtype, name="token_embedding")(
            tokens
        )
        positions = self.param(
            "position_embedding",
            nn.initializers.normal(0.02),
            (self.max_length, self.d_model),
            dtype,
        )
        h = h + positions[:length]
        for block in range(self.depth):
            z = nn.LayerNorm(param_dtype=dtype, name=f"attention_norm_{block}")(h)

            def heads(name: str, z=z, block=block) -> jax.Array:
                projected = nn.Dense(self.d_model, param_dtype=dtype, name=f"{name}_{block}")(z)
                return projected.reshape(*z.shape[:-1], self.n_heads, d_head)

            q, k, v = heads("query"), heads("key"), heads("value")
            scores = jnp.einsum("nqhd,nkhd->nhqk", q, k) / jnp.sqrt(d_head).astype(q.dtype)
            mixed = jnp.einsum("nhqk,nkhd->nqhd", jax.nn.softmax(scores, axis=-1), v)
            mixed = mixed.reshape(*z.shape[:-1], self.d_model)
            h = h + nn.Dense(self.d_model, param_dtype=dtype, name=f"attention_out_{block}")(mixed)
            z = nn.LayerNorm(param_dtype=dtype, name=f"mlp_norm_{block}")(h)
            z = act(
                nn.Dense(self.mlp_ratio * self.d_model, param_dtype=dtype, name=f"mlp_in_{block}")(
                    z
                )
            )
            h = h + nn.Dense(self.d_model, param_dtype=dtype, name=f"mlp_out_{block}")(z)
        h = nn.LayerNorm(param_dtype=dtype, name="final_norm")(h).mean(axis=1)
        return nn.Dense(self.n_outputs, param_dtype=dtype, name="head")(h)
