"""Matrix-free eNTK: products, Lanczos, Hutchinson trace and SLQ entropy against exact values.

Small-N tests run in float64 (``jax.enable_x64`` as a context manager, so nothing leaks to
other test files); the N = 2,000 test runs in the default float32, as the chapters do.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkbook.models import MLP
from ntkbook.ntk import empirical_ntk, matfree, spectrum

F64 = jnp.float64


def reference_jacobian(apply_fn, params, x) -> np.ndarray:
    """``J[i, a, p] = ∂f_a(x_i)/∂θ_p`` from one ``jacrev`` over the whole batch."""
    leaves = jax.tree_util.tree_leaves(jax.jit(jax.jacrev(apply_fn))(params, x))
    n, o = leaves[0].shape[:2]
    return np.concatenate([np.asarray(leaf).reshape(n, o, -1) for leaf in leaves], axis=2)


def small_problem(n: int, seed: int = 0):
    """An MLP with O = 3 in float64 and the reference full kernel (N·O, N·O), row i·O + a."""
    key, kx = jax.random.split(jax.random.PRNGKey(seed))
    model = MLP(hidden=(12,), n_outputs=3, activation="tanh", param_dtype=F64)
    x = jax.random.normal(kx, (n, 4), F64)
    params = model.init(key, x)
    jac = reference_jacobian(model.apply, params, x)
    full = np.einsum("iap,jbp->iajb", jac, jac).reshape(n * 3, n * 3)
    return model.apply, params, x, full


def traced_of(full: np.ndarray, n_outputs: int = 3) -> np.ndarray:
    n = full.shape[0] // n_outputs
    return full.reshape(n, n_outputs, n, n_outputs).trace(axis1=1, axis2=3)


# ------------------------------------------------------------------------------------------
# Θ v
# ------------------------------------------------------------------------------------------


def test_ntk_vector_product_equals_kernel_times_vector():
    with jax.enable_x64(True):
        apply_fn, params, x, full = small_problem(6)
        traced = traced_of(full)
        rng = np.random.default_rng(0)
        for trace_outputs, kernel in ((True, traced), (False, full)):
            matvec, n = matfree.ntk_vector_product(apply_fn, params, x, trace_outputs=trace_outputs)
            assert n == kernel.shape[0]
            v = rng.normal(size=n)
            np.testing.assert_allclose(
                np.asarray(matvec(jnp.asarray(v))),
                kernel @ v,
                rtol=0,
                atol=1e-12 * np.abs(kernel).max() * n,
            )
            block = rng.normal(size=(n, 4))  # a batch of vectors as columns
            result = np.asarray(matvec(jnp.asarray(block)))
            assert result.shape == (n, 4)
            np.testing.assert_allclose(result, kernel @ block, atol=1e-10 * np.abs(kernel).max())


# ------------------------------------------------------------------------------------------
# Lanczos
# ------------------------------------------------------------------------------------------


def test_lanczos_recovers_extreme_eigenvalues_of_a_diagonal_matrix():
    rng = np.random.default_rng(1)
    diagonal = np.concatenate([[10.0, 7.0, 5.0], rng.uniform(1.0, 2.0, size=196), [0.1]])
    diagonal = rng.permutation(diagonal)
    start = rng.normal(size=diagonal.size)
    # Lanczos hands the matvec vectors in JAX's default float dtype: float64 here.
    with jax.enable_x64(True):
        # A plain vector matvec, as the docstring promises (elementwise product).
        alpha, beta, basis = matfree.lanczos(lambda v: diagonal * v, start, 40)
    assert alpha.shape == (40,) and beta.shape == (39,) and basis.shape == (200, 40)
    tridiagonal = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
    np.testing.assert_allclose(basis.T @ basis, np.eye(40), atol=1e-10)
    np.testing.assert_allclose(basis.T @ (diagonal[:, None] * basis), tridiagonal, atol=1e-10)
    ritz = np.sort(np.linalg.eigvalsh(tridiagonal))[::-1]
    np.testing.assert_allclose(ritz[:3], [10.0, 7.0, 5.0], rtol=1e-9)
    assert ritz[-1] == pytest.approx(0.1, rel=1e-6)
    # In float32 (x64 off) the same run is accurate to single precision.
    alpha, beta, _ = matfree.lanczos(lambda v: diagonal * v, start, 40)
    ritz32 = np.linalg.eigvalsh(np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1))
    assert ritz32[-1] == pytest.approx(10.0, rel=1e-5)
    assert ritz32[0] == pytest.approx(0.1, rel=1e-3)


def test_lanczos_stops_when_the_krylov_space_is_exhausted():
    diagonal = np.repeat([4.0, 2.0, 1.0], 10)  # three distinct eigenvalues
    alpha, beta, basis = matfree.lanczos(lambda v: diagonal * v, np.ones(30), 20)
    assert alpha.shape == (3,) and beta.shape == (2,) and basis.shape == (30, 3)
    tridiagonal = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
    np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(tridiagonal)), [1.0, 2.0, 4.0], rtol=1e-6)


def test_top_eigenpairs_small_kernel_exact():
    with jax.enable_x64(True):
        apply_fn, params, x, full = small_problem(10, seed=1)
        exact = np.linalg.eigvalsh(full)[::-1]
        top = matfree.top_eigenpairs(
            apply_fn, params, x, 5, key=jax.random.PRNGKey(0), trace_outputs=False
        )
        np.testing.assert_allclose(top.eigenvalues, exact[:5], rtol=1e-9)
        assert np.all(top.residuals < 1e-8 * exact[0])
        np.testing.assert_allclose(
            full @ top.eigenvectors, top.eigenvectors * top.eigenvalues, atol=1e-8 * exact[0]
        )
        with pytest.raises(ValueError, match="k must be between 1 and the kernel size 10"):
            matfree.top_eigenpairs(apply_fn, params, x, 11, key=jax.random.PRNGKey(0))


# ------------------------------------------------------------------------------------------
# Hutchinson
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("trace_outputs", [True, False])
def test_trace_hutchinson_within_four_standard_errors(trace_outputs):
    with jax.enable_x64(True):
        apply_fn, params, x, full = small_problem(30, seed=2)
        kernel = traced_of(full) if trace_outputs else full
        exact = float(np.trace(full))
        assert np.trace(kernel) == pytest.approx(exact, rel=1e-12)
        estimate = matfree.trace_hutchinson(
            apply_fn,
            params,
            x,
            key=jax.random.PRNGKey(3),
            num_probes=64,
            trace_outputs=trace_outputs,
        )
        assert abs(estimate.value - exact) < 4 * estimate.standard_error
        # The reported standard error is the right size: Rademacher probes have variance
        # 2 Σ_{i≠j} K_ij² each.
        off_diagonal = kernel - np.diag(np.diag(kernel))
        expected = np.sqrt(2 * np.sum(off_diagonal**2) / 64)
        assert 0.5 * expected < estimate.standard_error < 2 * expected
        with pytest.raises(ValueError, match="num_probes must be at least 2"):
            matfree.trace_hutchinson(apply_fn, params, x, key=jax.random.PRNGKey(3), num_probes=1)


def test_entropy_slq_arguments():
    with jax.enable_x64(True):
        apply_fn, params, x, full = small_problem(12, seed=4)
        key = jax.random.PRNGKey(5)
        plain = matfree.entropy_slq(apply_fn, params, x, key=key, deflate=4, num_iter=12)
        effective = matfree.entropy_slq(
            apply_fn, params, x, key=key, deflate=4, num_iter=12, effective=True
        )
        assert effective.value == pytest.approx(plain.value / np.log(12), rel=1e-12)
        assert effective.standard_error == pytest.approx(plain.standard_error / np.log(12))
        exact = spectrum.entropy(spectrum.eigensystem(traced_of(full)).eigenvalues)
        assert abs(plain.value - exact) < max(4 * plain.standard_error, 0.02 * exact)
        with pytest.raises(ValueError, match=r"deflate must be in \[0, 12\)"):
            matfree.entropy_slq(apply_fn, params, x, key=key, deflate=12)
        with pytest.raises(ValueError, match="num_probes must be at least 2"):
            matfree.entropy_slq(apply_fn, params, x, key=key, num_probes=1)


# ------------------------------------------------------------------------------------------
# N = 2,000: SLQ entropy and top eigenpairs against the exact kernel
# ------------------------------------------------------------------------------------------


def test_matrix_free_spectrum_at_two_thousand_samples():
    key = jax.random.PRNGKey(0)
    kx, kp = jax.random.split(key)
    x = jax.random.normal(kx, (2000, 100))
    model = MLP(hidden=(32, 32), n_outputs=10)
    params = model.init(kp, x)

    kernel = empirical_ntk(model.apply, params, x)
    assert kernel.shape == (2000, 2000)
    system = spectrum.eigensystem(kernel)
    exact_entropy = spectrum.entropy(system.eigenvalues)

    estimate = matfree.entropy_slq(model.apply, params, x, key=jax.random.PRNGKey(1))
    assert abs(estimate.value - exact_entropy) < 0.02 * exact_entropy
    assert 0 < estimate.standard_error < 0.02 * exact_entropy

    top = matfree.top_eigenpairs(model.apply, params, x, 10, key=jax.random.PRNGKey(2))
    np.testing.assert_allclose(top.eigenvalues, system.eigenvalues[:10], rtol=1e-3)
    assert np.all(top.residuals < 1e-3 * top.eigenvalues)
    overlaps = np.abs(np.sum(top.eigenvectors * system.eigenvectors[:, :10], axis=0))
    assert np.all(overlaps > 0.99)


def test_relative_error_folds_the_t_interval_of_the_signed_error():
    # 16 probes: t_{15, 0.975} = 2.1314…, so the half-width is 2.1314 * 0.01 / 2 = 0.010657.
    half = 2.131449545559323 * 0.01 / 2.0
    above = matfree.relative_error(matfree.Estimate(2.1, 0.01), 2.0, num_probes=16)
    assert above.value == pytest.approx(0.05)
    assert above.interval == pytest.approx((0.05 - half, 0.05 + half))
    below = matfree.relative_error(matfree.Estimate(1.9, 0.01), 2.0, num_probes=16)
    assert below.value == pytest.approx(0.05)
    assert below.interval == pytest.approx((0.05 - half, 0.05 + half))
    assert (above.method, above.n, above.confidence) == ("|t|", 16, 0.95)


def test_relative_error_interval_starts_at_zero_when_the_signed_interval_contains_zero():
    estimate = matfree.relative_error(matfree.Estimate(-1.001, 0.01), -1.0, num_probes=4)
    assert estimate.value == pytest.approx(0.001)
    assert estimate.low == 0.0
    assert estimate.high == pytest.approx(0.001 + 3.182446305284263 * 0.01)


@pytest.mark.parametrize(
    ("exact", "num_probes", "confidence"),
    [(0.0, 16, 0.95), (float("nan"), 16, 0.95), (1.0, 1, 0.95), (1.0, 16, 1.0)],
)
def test_relative_error_arguments(exact, num_probes, confidence):
    with pytest.raises(ValueError):
        matfree.relative_error(
            matfree.Estimate(1.0, 0.1), exact, num_probes=num_probes, confidence=confidence
        )
