"""Flax models (shapes, activations, dtypes) and the offline datasets (splits, determinism)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkbook.data import DATASETS, load_dataset
from ntkbook.data.datasets import stratified_split
from ntkbook.models import CNN, MLP, ResidualMLP, activation

# ------------------------------------------------------------------------------------------
# models
# ------------------------------------------------------------------------------------------


def test_mlp_output_shape_and_layer_widths():
    x = jnp.ones((4, 28, 28))  # images are flattened per sample
    model = MLP(hidden=(16, 8), n_outputs=10)
    params = model.init(jax.random.PRNGKey(0), x)
    assert model.apply(params, x).shape == (4, 10)
    kernels = [params["params"][f"Dense_{k}"]["kernel"].shape for k in range(3)]
    assert kernels == [(784, 16), (16, 8), (8, 10)]


def test_mlp_computes_what_it_says():
    """``x → tanh(x W0 + b0) → x W1 + b1`` written out by hand."""
    model = MLP(hidden=(5,), n_outputs=2, activation="tanh")
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 4))
    params = model.init(jax.random.PRNGKey(2), x)
    p0, p1 = params["params"]["Dense_0"], params["params"]["Dense_1"]
    expected = jnp.tanh(x @ p0["kernel"] + p0["bias"]) @ p1["kernel"] + p1["bias"]
    np.testing.assert_allclose(model.apply(params, x), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(3, 12, 12), (3, 12, 12, 1), (3, 8, 8, 2)])
def test_cnn_output_shape(shape):
    model = CNN(conv_features=(4, 6), dense_features=(8,), n_outputs=5)
    x = jnp.ones(shape)
    params = model.init(jax.random.PRNGKey(0), x)
    assert model.apply(params, x).shape == (3, 5)
    # Two 2×2 average pools: the dense layer sees (H/4)·(W/4)·6 features.
    side = shape[1] // 4
    assert params["params"]["Dense_0"]["kernel"].shape == (side * side * 6, 8)
    assert params["params"]["Conv_0"]["kernel"].shape == (
        3,
        3,
        1 if len(shape) == 3 else shape[3],
        4,
    )


def test_cnn_rejects_flat_inputs():
    with pytest.raises(
        ValueError, match=r"CNN expects images \(N, H, W\[, C\]\), got shape \(3, 64\)"
    ):
        CNN().init(jax.random.PRNGKey(0), jnp.ones((3, 64)))


def test_residual_mlp_output_shape_and_structure():
    model = ResidualMLP(width=8, depth=3, n_outputs=4)
    x = jnp.ones((5, 6))
    params = model.init(jax.random.PRNGKey(0), x)
    assert model.apply(params, x).shape == (5, 4)
    names = set(params["params"])
    assert names == {f"Dense_{k}" for k in range(5)} | {f"LayerNorm_{k}" for k in range(3)}


def test_param_dtype_is_respected():
    with jax.enable_x64(True):
        for model, x in (
            (MLP(hidden=(4,), n_outputs=2, param_dtype=jnp.float64), jnp.ones((2, 3))),
            (ResidualMLP(width=4, depth=1, n_outputs=2, param_dtype=jnp.float64), jnp.ones((2, 3))),
            (CNN((2,), (3,), 2, param_dtype=jnp.float64), jnp.ones((2, 4, 4))),
        ):
            params = model.init(jax.random.PRNGKey(0), x.astype(jnp.float64))
            assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(params)} == {
                np.dtype(np.float64)
            }
            assert model.apply(params, x.astype(jnp.float64)).dtype == jnp.float64


def test_activations():
    z = jnp.linspace(-3.0, 3.0, 13)
    np.testing.assert_allclose(activation("relu")(z), np.maximum(np.asarray(z), 0.0))
    np.testing.assert_allclose(activation("tanh")(z), np.tanh(np.asarray(z)), rtol=1e-6)
    np.testing.assert_allclose(activation("identity")(z), z)
    np.testing.assert_allclose(
        activation("sigmoid")(z), 1.0 / (1.0 + np.exp(-np.asarray(z))), rtol=1e-6
    )
    with pytest.raises(ValueError, match="unknown activation 'swish'; choose one of relu, tanh"):
        activation("swish")
    for model in (
        MLP(hidden=(4,), n_outputs=2, activation="swish"),
        ResidualMLP(width=4, depth=1, n_outputs=2, activation="swish"),
        CNN((2,), (3,), 2, activation="swish"),
    ):
        with pytest.raises(ValueError, match="unknown activation 'swish'"):
            model.init(jax.random.PRNGKey(0), jnp.ones((2, 4, 4)))


# ------------------------------------------------------------------------------------------
# datasets
# ------------------------------------------------------------------------------------------


def _rows(images: np.ndarray) -> set[bytes]:
    return {image.tobytes() for image in images}


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist", n_train=100, n_test=50, key=jax.random.PRNGKey(0))


def test_mnist_shapes_values_and_stratification(mnist):
    assert mnist.name == "mnist" and mnist.n_classes == 10
    assert mnist.x_train.shape == (100, 28, 28) and mnist.x_test.shape == (50, 28, 28)
    assert mnist.y_train.shape == (100,) and mnist.y_test.shape == (50,)
    assert mnist.x_train.dtype == np.float32 and mnist.y_train.dtype == np.int32
    for images in (mnist.x_train, mnist.x_test):
        assert images.min() >= 0.0 and images.max() <= 1.0
        assert images.max() == pytest.approx(1.0)  # scaled from 0..255, not just clipped
    np.testing.assert_array_equal(np.bincount(mnist.y_train, minlength=10), np.full(10, 10))
    np.testing.assert_array_equal(np.bincount(mnist.y_test, minlength=10), np.full(10, 5))
    # Not sorted by class: the split is shuffled.
    assert np.any(np.diff(mnist.y_train) < 0)
    flat_train, flat_test = mnist.flat()
    assert flat_train.shape == (100, 784) and flat_test.shape == (50, 784)


def test_mnist_split_is_deterministic_per_key_and_disjoint(mnist):
    again = load_dataset("mnist", n_train=100, n_test=50, key=jax.random.PRNGKey(0))
    np.testing.assert_array_equal(again.x_train, mnist.x_train)
    np.testing.assert_array_equal(again.y_train, mnist.y_train)
    np.testing.assert_array_equal(again.x_test, mnist.x_test)
    other = load_dataset("mnist", n_train=100, n_test=50, key=jax.random.PRNGKey(1))
    assert _rows(other.x_train) != _rows(mnist.x_train)
    assert not _rows(mnist.x_train) & _rows(mnist.x_test)
    assert len(_rows(mnist.x_train)) == 100  # no sample drawn twice

    labels = np.repeat(np.arange(10), 500)
    train, test = stratified_split(jax.random.PRNGKey(3), labels, 4000, 1000)
    assert len(train) == 4000 and len(test) == 1000
    assert len(np.union1d(train, test)) == 5000  # disjoint and covering all


def test_digits_dataset():
    digits = load_dataset("digits", n_train=50, n_test=30, key=jax.random.PRNGKey(0))
    assert digits.x_train.shape == (50, 8, 8) and digits.x_test.shape == (30, 8, 8)
    assert digits.n_classes == 10
    assert digits.x_train.min() >= 0.0 and digits.x_train.max() <= 1.0
    counts = np.bincount(digits.y_train, minlength=10)
    assert counts.min() == counts.max() == 5
    assert not _rows(digits.x_train) & _rows(digits.x_test)
    assert set(DATASETS) == {"mnist", "digits"}


def test_dataset_errors():
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="unknown dataset 'cifar'; choose one of mnist, digits"):
        load_dataset("cifar", n_train=10, n_test=10, key=key)
    with pytest.raises(ValueError, match="n_train \\+ n_test = 5001 exceeds the 5000 available"):
        load_dataset("mnist", n_train=5000, n_test=1, key=key)
    with pytest.raises(ValueError, match="exceeds the 1797 available"):
        load_dataset("digits", n_train=1800, n_test=0, key=key)
    with pytest.raises(ValueError, match="need n_train >= 1"):
        load_dataset("digits", n_train=0, n_test=10, key=key)
