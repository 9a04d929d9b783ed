"""The linearised network: equal to f at θ₀, first-order accurate, and its eNTK frozen at Θ₀."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ntkbook.models import MLP
from ntkbook.ntk import empirical_ntk
from ntkbook.ntk.linearize import linearize
from ntkbook.train import mse_loss, train

F64 = jnp.float64


@pytest.fixture(autouse=True, scope="module")
def _float64():
    with jax.enable_x64(True):
        yield


@pytest.fixture(scope="module")
def setup(_float64):
    key_x, key_y, key_p = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(key_x, (12, 3), dtype=F64)
    y = jax.random.normal(key_y, (12, 2), dtype=F64)
    model = MLP(hidden=(16, 16), n_outputs=2, activation="tanh", param_dtype=F64)
    params0 = model.init(key_p, x[:1])
    return model, params0, x, y


def test_equals_the_network_at_the_expansion_point(setup):
    model, params0, x, _ = setup
    np.testing.assert_allclose(
        linearize(model.apply, params0)(params0, x), model.apply(params0, x), rtol=1e-12
    )


def test_first_order_agreement_for_small_steps(setup):
    model, params0, x, _ = setup
    apply_lin = linearize(model.apply, params0)
    direction = jax.tree_util.tree_map(
        lambda p: jax.random.normal(jax.random.key(p.size), p.shape, F64), params0
    )
    errors = []
    for eps in (1e-2, 5e-3, 2.5e-3):
        params = jax.tree_util.tree_map(lambda p, d, e=eps: p + e * d, params0, direction)
        errors.append(float(jnp.max(jnp.abs(model.apply(params, x) - apply_lin(params, x)))))
    # The remainder is second order: halving the step quarters it.
    assert errors[0] / errors[1] == pytest.approx(4.0, rel=0.05)
    assert errors[1] / errors[2] == pytest.approx(4.0, rel=0.05)
    # Against a finite-difference directional derivative of f itself.
    eps = 1e-6
    plus = jax.tree_util.tree_map(lambda p, d: p + eps * d, params0, direction)
    minus = jax.tree_util.tree_map(lambda p, d: p - eps * d, params0, direction)
    derivative = (model.apply(plus, x) - model.apply(minus, x)) / (2 * eps)
    unit_step = jax.tree_util.tree_map(lambda p, d: p + d, params0, direction)
    np.testing.assert_allclose(
        apply_lin(unit_step, x) - model.apply(params0, x), derivative, rtol=1e-6, atol=1e-8
    )


def test_kernel_stays_theta0_and_training_is_kernel_gradient_descent(setup):
    model, params0, x, y = setup
    apply_lin = linearize(model.apply, params0)
    lr, epochs = 0.05, 6
    result = train(
        apply_lin,
        params0,
        optax.sgd(lr),
        mse_loss,
        (x, y),
        epochs=epochs,
        batch_size=x.shape[0],
        key=jax.random.key(1),
    )
    moved = jax.tree_util.tree_leaves(
        jax.tree_util.tree_map(lambda a, b: jnp.max(jnp.abs(a - b)), result.params, params0)
    )
    assert max(float(m) for m in moved) > 1e-3

    theta0 = np.asarray(empirical_ntk(model.apply, params0, x, trace_outputs=False))
    theta_lin = np.asarray(empirical_ntk(apply_lin, result.params, x, trace_outputs=False))
    np.testing.assert_allclose(theta_lin, theta0, rtol=1e-10, atol=1e-12)
    # The network itself, moved by the same amount, has a different kernel.
    theta_net = np.asarray(empirical_ntk(model.apply, result.params, x, trace_outputs=False))
    assert np.max(np.abs(theta_net - theta0)) > 1e-6

    # Full-batch GD on a model linear in θ is exact GD in function space:
    # f ← f − lr · (2/N) Θ₀ (f − y) with mse_loss = (1/N) Σ_i ‖f_i − y_i‖².
    f = np.asarray(model.apply(params0, x)).reshape(-1)
    target = np.asarray(y).reshape(-1)
    for _ in range(epochs):
        f = f - lr * (2.0 / x.shape[0]) * theta0 @ (f - target)
    np.testing.assert_allclose(
        np.asarray(apply_lin(result.params, x)).reshape(-1), f, rtol=1e-9, atol=1e-10
    )


def test_wrong_parameter_structure_raises(setup):
    model, params0, x, _ = setup
    with pytest.raises(ValueError, match="structure"):
        linearize(model.apply, params0)({"params": {}}, x)
    with pytest.raises(ValueError, match="no leaves"):
        linearize(model.apply, {})
