"""Training compute: the 6·N·D rule against XLA's own FLOP count."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkbook.flops import compiled_flops, training_flops
from ntkbook.models import MLP
from ntkbook.train import mse_loss


def test_training_flops_is_six_n_d():
    assert training_flops(1_000, 50) == 300_000.0
    np.testing.assert_allclose(training_flops(10, [0, 1, 4]), [0.0, 60.0, 240.0])
    with pytest.raises(ValueError, match="n_parameters"):
        training_flops(0, 10)
    with pytest.raises(ValueError, match="n_tokens"):
        training_flops(10, -1)


def test_compiled_flops_counts_a_matrix_product():
    a, b = jnp.ones((8, 16)), jnp.ones((16, 4))
    assert compiled_flops(lambda u, v: u @ v, a, b) == pytest.approx(2 * 8 * 16 * 4, rel=0.01)


def test_gradient_step_of_an_mlp_costs_about_six_flops_per_weight_and_token():
    """XLA's count for one gradient on a batch is close to 6·(weights)·batch: the 6ND rule."""
    model = MLP(hidden=(64, 64), n_outputs=8, activation="tanh")
    x = jnp.ones((128, 20))
    y = jnp.zeros((128, 8))
    params = model.init(jax.random.key(0), x[:1])
    n_weights = 20 * 64 + 64 * 64 + 64 * 8

    def gradient(p, xb, yb):
        return jax.grad(lambda q: mse_loss(model.apply(q, xb), yb))(p)

    per_token = compiled_flops(gradient, params, x, y) / x.shape[0]
    # The first layer's input gradient is not needed (2 of the 6 FLOPs of its weights are
    # skipped); activations and the loss add a few FLOPs per unit.
    assert 0.8 * 6 * n_weights < per_token < 1.2 * 6 * n_weights
