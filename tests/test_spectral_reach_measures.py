"""Frozen-layer (random-features) models and the spectral-position measures on them."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ntkbook import ntk
from ntkbook.models import MLP
from ntkbook.models.next_pixel import freeze_layers, layer_names, readout_width
from ntkbook.train import cross_entropy_loss, train


@pytest.fixture
def mlp_setup():
    model = MLP(hidden=(12, 9), n_outputs=3, activation="tanh")
    x = jax.random.normal(jax.random.key(1), (10, 5))
    y = jax.random.randint(jax.random.key(2), (10,), 0, 3)
    params = model.init(jax.random.key(0), x[:1])
    return model, params, x, y


def _features(params, x):
    """The hidden representation φ(x) of the 5-12-9 tanh MLP, written out by hand."""
    p = params["params"]
    h = jnp.tanh(x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"])
    return jnp.tanh(h @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"])


def test_frozen_model_computes_the_same_function(mlp_setup):
    model, params, x, _ = mlp_setup
    frozen = freeze_layers(model.apply, params, ["Dense_0", "Dense_1"])
    assert set(frozen.trainable["params"]) == {"Dense_2"}
    assert set(frozen.frozen["params"]) == {"Dense_0", "Dense_1"}
    np.testing.assert_allclose(
        frozen.apply_fn(frozen.trainable, x), model.apply(params, x), rtol=1e-6
    )
    merged = frozen.merge(frozen.trainable)
    for a, b in zip(
        jax.tree_util.tree_leaves(merged), jax.tree_util.tree_leaves(params), strict=True
    ):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("method", ["structured", "jacobian"])
def test_random_features_kernel_is_the_closed_form(mlp_setup, method):
    """Θ_ij = O·(φ_i·φ_j + 1) when only the readout (W, b) trains."""
    model, params, x, _ = mlp_setup
    frozen = freeze_layers(model.apply, params, ["Dense_0", "Dense_1"])
    kernel = ntk.empirical_ntk(frozen.apply_fn, frozen.trainable, x, method=method)
    phi = _features(params, x)
    expected = 3 * (phi @ phi.T + 1.0)
    np.testing.assert_allclose(kernel, expected, rtol=1e-5, atol=1e-6)


def test_spectral_position_of_random_features(mlp_setup):
    """χ_net is the closed-form trace; χ_pos agrees with the eigen form of the same kernel."""
    model, params, x, y = mlp_setup
    frozen = freeze_layers(model.apply, params, ["Dense_0", "Dense_1"])
    position = ntk.spectral_position(frozen.apply_fn, frozen.trainable, x, y, cross_entropy_loss)
    phi = np.asarray(_features(params, x), np.float64)
    assert position.chi_net == pytest.approx(3 * (np.sum(phi**2) + x.shape[0]), rel=1e-5)
    full = np.asarray(ntk.empirical_ntk(frozen.apply_fn, frozen.trainable, x, trace_outputs=False))
    grad_f = jax.grad(lambda f: cross_entropy_loss(f, y))(frozen.apply_fn(frozen.trainable, x))
    eigen_form = ntk.spectrum.spectral_position_from_eigensystem(
        ntk.eigensystem(full), np.asarray(grad_f)
    )
    assert position.chi_pos == pytest.approx(eigen_form, rel=1e-4)


def test_training_moves_only_the_readout_and_keeps_chi_net(mlp_setup):
    model, params, x, y = mlp_setup
    frozen = freeze_layers(model.apply, params, ["Dense_0", "Dense_1"])
    result = train(
        frozen.apply_fn,
        frozen.trainable,
        optax.sgd(0.5),
        cross_entropy_loss,
        (x, y),
        epochs=5,
        batch_size=5,
        key=jax.random.key(3),
    )
    final = frozen.merge(result.params)
    for name in ("Dense_0", "Dense_1"):
        np.testing.assert_array_equal(
            final["params"][name]["kernel"], params["params"][name]["kernel"]
        )
    assert not np.allclose(
        final["params"]["Dense_2"]["kernel"], params["params"]["Dense_2"]["kernel"]
    )
    assert result.history["train_loss"][-1] < result.history["train_loss"][0]
    # χ_net of a fixed feature map depends only on φ, so training cannot change it.
    before = ntk.spectral_position(frozen.apply_fn, frozen.trainable, x, y, cross_entropy_loss)
    after = ntk.spectral_position(frozen.apply_fn, result.params, x, y, cross_entropy_loss)
    assert after.chi_net == pytest.approx(before.chi_net, rel=1e-6)


def test_freeze_layers_rejects_bad_names(mlp_setup):
    model, params, _, _ = mlp_setup
    assert layer_names(params) == ["Dense_0", "Dense_1", "Dense_2"]
    with pytest.raises(ValueError, match="Dense_7"):
        freeze_layers(model.apply, params, ["Dense_7"])
    with pytest.raises(ValueError, match="nothing to freeze"):
        freeze_layers(model.apply, params, [])
    with pytest.raises(ValueError, match="nothing to train"):
        freeze_layers(model.apply, params, ["Dense_0", "Dense_1", "Dense_2"])
    with pytest.raises(ValueError, match="named layers"):
        layer_names({})


def test_readout_width_matches_the_trainable_count():
    model = MLP(hidden=(16, 16), n_outputs=16, activation="tanh")
    params = model.init(jax.random.key(0), jnp.zeros((1, 18)))
    n_trainable = sum(leaf.size for leaf in jax.tree_util.tree_leaves(params))
    width = readout_width(n_trainable, 16)
    frozen = freeze_layers(
        MLP(hidden=(width, width), n_outputs=16, activation="tanh").apply,
        MLP(hidden=(width, width), n_outputs=16, activation="tanh").init(
            jax.random.key(0), jnp.zeros((1, 18))
        ),
        ["Dense_0", "Dense_1"],
    )
    assert sum(leaf.size for leaf in jax.tree_util.tree_leaves(frozen.trainable)) == n_trainable
    assert readout_width(50, 4) == 11  # (11 + 1)·4 = 48 beats (12 + 1)·4 = 52 (ties: smaller)
    assert readout_width(50, 5) == 9
    with pytest.raises(ValueError, match="n_trainable=7 is below the 8 parameters"):
        readout_width(7, 4)
    with pytest.raises(ValueError, match="n_outputs must be a positive integer, got 0"):
        readout_width(10, 0)
