"""Spectral position (Spectral Reach): the eigen-free decomposition against its eigen form.

References are independent of the engine: the full kernel from one ``jacrev`` over the batch,
and the loss gradients ``∇_f L`` written out by hand (MSE: ``2(f − y)/N``; softmax
cross-entropy: ``(softmax(f) − onehot(y))/N``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkbook.models import MLP
from ntkbook.ntk import empirical_ntk, spectral_position, spectral_position_minibatch, spectrum
from ntkbook.train import cross_entropy_loss, mse_loss

F64 = jnp.float64
N_OUT = 3


@pytest.fixture(autouse=True, scope="module")
def _float64():
    with jax.enable_x64(True):
        yield


def reference_full_kernel(apply_fn, params, x1, x2=None) -> np.ndarray:
    """Full eNTK ``(N1·O, N2·O)``, row ``i·O + a``, from ``jacrev`` of the whole batch."""

    def jacobian(x):
        leaves = jax.tree_util.tree_leaves(jax.jit(jax.jacrev(apply_fn))(params, x))
        n, o = leaves[0].shape[:2]
        return np.concatenate([np.asarray(leaf).reshape(n * o, -1) for leaf in leaves], axis=1)

    j1 = jacobian(x1)
    j2 = j1 if x2 is None else jacobian(x2)
    return j1 @ j2.T


def loss_gradient(name: str, predictions, targets) -> np.ndarray:
    """``∇_f L`` by hand, flattened in kernel row order ``i·O + a``."""
    f = np.asarray(predictions)
    n = f.shape[0]
    if name == "mse":
        grad = 2.0 * (f - np.asarray(targets)) / n
    else:
        shifted = np.exp(f - f.max(axis=1, keepdims=True))
        softmax = shifted / shifted.sum(axis=1, keepdims=True)
        grad = (softmax - np.eye(f.shape[1])[np.asarray(targets)]) / n
    return grad.reshape(-1)


@pytest.fixture(scope="module")
def problem(_float64):
    key, kx, ky, kl = jax.random.split(jax.random.PRNGKey(11), 4)
    model = MLP(hidden=(10, 10), n_outputs=N_OUT, activation="tanh", param_dtype=F64)
    x = jax.random.normal(kx, (9, 4), F64)
    params = model.init(key, x)
    targets = {
        "mse": jax.random.normal(ky, (9, N_OUT), F64),
        "cross_entropy": jax.random.randint(kl, (9,), 0, N_OUT),
    }
    return model.apply, params, x, targets


LOSSES = {"mse": mse_loss, "cross_entropy": cross_entropy_loss}


@pytest.mark.parametrize("loss_name", ["mse", "cross_entropy"])
def test_spectral_position_against_eigen_form(problem, loss_name):
    apply_fn, params, x, targets = problem
    y, loss_fn = targets[loss_name], LOSSES[loss_name]
    position = spectral_position(apply_fn, params, x, y, loss_fn, block_size=4)

    kernel = reference_full_kernel(apply_fn, params, x)
    grad_f = loss_gradient(loss_name, apply_fn(params, x), y)
    system = spectrum.eigensystem(kernel)

    assert position.chi_loss == pytest.approx(grad_f @ grad_f, rel=1e-10)
    assert position.chi_net == pytest.approx(np.trace(kernel), rel=1e-10)
    assert position.delta_loss == pytest.approx(grad_f @ kernel @ grad_f, rel=1e-10)
    assert position.delta_loss == pytest.approx(
        position.chi_loss * position.chi_net * position.chi_pos, rel=1e-12
    )
    eigen_form = spectrum.spectral_position_from_eigensystem(system, grad_f)
    assert position.chi_pos == pytest.approx(eigen_form, abs=1e-8)
    assert 0.0 < position.chi_pos <= 1.0
    assert set(position.as_dict()) == {"chi_loss", "chi_net", "chi_pos", "delta_loss"}


@pytest.mark.parametrize("loss_name", ["mse", "cross_entropy"])
def test_minibatch_with_identical_batches_reproduces_single_batch(problem, loss_name):
    apply_fn, params, x, targets = problem
    y, loss_fn = targets[loss_name], LOSSES[loss_name]
    single = spectral_position(apply_fn, params, x, y, loss_fn)
    both = spectral_position_minibatch(apply_fn, params, (x, y), (x, y), loss_fn)
    for name in ("chi_loss", "chi_net", "chi_pos", "delta_loss"):
        assert getattr(both, name) == pytest.approx(getattr(single, name), rel=1e-10), name
    assert both.size_a == both.size_b == 9
    assert both.chi_loss_normalised == pytest.approx(9 * single.chi_loss, rel=1e-10)
    assert both.chi_net_normalised == pytest.approx(single.chi_net / 9, rel=1e-10)


@pytest.mark.parametrize("loss_name", ["mse", "cross_entropy"])
def test_minibatch_with_different_batches(problem, loss_name):
    apply_fn, params, x, targets = problem
    y, loss_fn = targets[loss_name], LOSSES[loss_name]
    xa, ya = x[:5], y[:5]  # update direction from A (5 samples)
    xb, yb = x[6:], y[6:]  # loss measured on B (3 samples)
    result = spectral_position_minibatch(apply_fn, params, (xa, ya), (xb, yb), loss_fn)

    grad_a = loss_gradient(loss_name, apply_fn(params, xa), ya)
    grad_b = loss_gradient(loss_name, apply_fn(params, xb), yb)
    # Cross kernel from the engine: rows are the samples of B, columns those of A.
    cross = np.asarray(empirical_ntk(apply_fn, params, xb, xa, trace_outputs=False))
    assert cross.shape == (3 * N_OUT, 5 * N_OUT)
    np.testing.assert_allclose(
        cross, reference_full_kernel(apply_fn, params, xb, xa), atol=1e-12 * np.abs(cross).max()
    )
    assert result.delta_loss == pytest.approx(grad_b @ cross @ grad_a, rel=1e-10)

    trace_a = np.trace(reference_full_kernel(apply_fn, params, xa))
    trace_b = np.trace(reference_full_kernel(apply_fn, params, xb))
    chi_loss = np.linalg.norm(grad_a) * np.linalg.norm(grad_b)
    chi_net = np.sqrt(trace_a * trace_b)
    assert result.chi_loss == pytest.approx(chi_loss, rel=1e-10)
    assert result.chi_net == pytest.approx(chi_net, rel=1e-10)
    assert result.chi_pos == pytest.approx(result.delta_loss / (chi_loss * chi_net), rel=1e-10)
    assert (result.size_a, result.size_b) == (5, 3)
    assert result.chi_loss_normalised == pytest.approx(np.sqrt(15) * chi_loss, rel=1e-12)
    assert result.chi_net_normalised == pytest.approx(chi_net / np.sqrt(15), rel=1e-12)
    assert result.chi_loss_normalised * result.chi_net_normalised == pytest.approx(
        result.chi_loss * result.chi_net, rel=1e-12
    )
    # Cauchy–Schwarz: |δL(A, B)| ≤ χ_loss χ_net, so |χ_pos| ≤ 1.
    assert abs(result.chi_pos) <= 1.0


def test_spectral_position_errors(problem):
    apply_fn, params, x, targets = problem
    with pytest.raises(ValueError, match="loss_fn must return a scalar"):
        spectral_position(apply_fn, params, x, targets["mse"], lambda f, y: (f - y) ** 2)
    exact = apply_fn(params, x)  # zero loss gradient: χ_pos undefined
    with pytest.raises(ValueError, match="chi_pos is undefined: chi_loss=0.0"):
        spectral_position(apply_fn, params, x, exact, mse_loss)
    with pytest.raises(ValueError, match="x1 contains NaN"):
        spectral_position(apply_fn, params, x.at[0, 0].set(jnp.nan), targets["mse"], mse_loss)
