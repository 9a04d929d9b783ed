"""Matrix-free eNTK: kernel-vector products, top eigenpairs, trace and entropy estimates.

For sample counts where the ``N × N`` kernel does not fit in memory, Θ is only ever applied to
vectors: ``Θ v = J (Jᵀ v)`` is one VJP (``Jᵀ v``) followed by one JVP, linearised once around
the current parameters. On top of that product:

- :func:`top_eigenpairs`: Lanczos with full re-orthogonalisation, Rayleigh–Ritz on the
  tridiagonal matrix, with residual norms ``‖Θ q − λ q‖`` returned for every pair.
- :func:`trace_hutchinson`: ``Tr Θ ≈ (1/m) Σ_k z_kᵀ Θ z_k`` with Rademacher probes ``z_k``.
- :func:`entropy_slq`: the spectral entropy ``S = ln Tr Θ − (Σ λ ln λ)/Tr Θ`` with the top of
  the spectrum deflated exactly (Lanczos) and the remainder by stochastic Lanczos quadrature
  (Ubaru, Chen & Saad 2017): ``zᵀ f(Θ) z ≈ ‖z‖² Σ_j τ_j² f(θ_j)`` from ``m`` Lanczos steps.
- :func:`relative_error`: how far such an estimate lies from an exact value, with an interval
  from the probes' standard error (for checking the estimators where Θ still fits).

Kernels follow :mod:`ntkbook.ntk.kernel`: traced (outputs summed) or full (row ``i·O + a``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats as _scipy_stats

from ntkbook import stats
from ntkbook.ntk.kernel import check_inputs

__all__ = [
    "ntk_vector_product",
    "lanczos",
    "top_eigenpairs",
    "trace_hutchinson",
    "entropy_slq",
    "relative_error",
    "Eigenpairs",
    "Estimate",
]


class Eigenpairs(NamedTuple):
    """Leading eigenpairs, descending; ``residuals[k] = ‖Θ q_k − λ_k q_k‖``."""

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    residuals: np.ndarray


class Estimate(NamedTuple):
    """A stochastic estimate and its standard error over probe vectors."""

    value: float
    standard_error: float


def ntk_vector_product(
    apply_fn: Callable, params, x, *, trace_outputs: bool = True
) -> tuple[Callable[[jax.Array], jax.Array], int]:
    """Return ``(matvec, n)`` with ``matvec(v) = Θ v`` for ``v`` of length ``n``.

    ``n = N`` for the traced kernel (``Θ v = Σ_a J_a J_aᵀ v``, ``J_a`` the Jacobian of output
    ``a``) and ``n = N·O`` for the full kernel. The network is linearised once; each product
    costs one VJP and one JVP over the ``N`` samples (``O`` of each when traced). ``matvec``
    is jitted and accepts a batch of vectors as columns, shape ``(n, k)``.
    """
    x, _, n_outputs = check_inputs(apply_fn, params, x)
    n_samples = x.shape[0]
    out, jvp_fn = jax.linearize(lambda p: apply_fn(p, x), params)
    vjp_fn = jax.linear_transpose(jvp_fn, params)

    def full(v):
        (tangent,) = vjp_fn(v.reshape(n_samples, n_outputs).astype(out.dtype))
        return jvp_fn(tangent).reshape(-1)

    def traced(v):
        def one_output(a):
            cotangent = jnp.zeros((n_samples, n_outputs), out.dtype).at[:, a].set(v)
            (tangent,) = vjp_fn(cotangent)
            return jvp_fn(tangent)[:, a]

        return jnp.sum(jax.vmap(one_output)(jnp.arange(n_outputs)), axis=0)

    single = traced if trace_outputs else full

    @jax.jit
    def matvec(v):
        if v.ndim == 1:
            return single(v)
        return jax.vmap(single, in_axes=1, out_axes=1)(v)

    return matvec, n_samples if trace_outputs else n_samples * n_outputs


def lanczos(
    matvec: Callable[[jax.Array], jax.Array], start, num_iter: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``num_iter`` Lanczos steps with full re-orthogonalisation from ``start``.

    Returns ``(alpha, beta, Q)``: the tridiagonal ``T = tridiag(beta, alpha, beta)`` and the
    orthonormal Krylov basis ``Q`` (``n × m``) with ``Qᵀ Θ Q = T``. Stops early (shorter
    outputs) when the Krylov space is exhausted (``beta`` below 1e-10 of the largest α).
    Full re-orthogonalisation (twice, classical Gram–Schmidt) keeps ``Q`` orthonormal, which
    is what makes the Ritz values of clustered NTK spectra trustworthy. ``matvec`` is applied
    to vectors of shape ``(n,)``.
    """

    def column_matvec(block):
        # The batched driver passes an (n, 1) column; a vector matvec such as ``d * v`` would
        # broadcast that to (n, n), so apply it to the vector and return a column.
        return np.asarray(matvec(block[:, 0]))[:, None]

    alphas, betas, bases = _lanczos_batch(column_matvec, np.asarray(start)[:, None], num_iter)
    return alphas[0], betas[0], bases[0]


def _lanczos_batch(matvec, starts: np.ndarray, num_iter: int):
    """Independent Lanczos runs from each column of ``starts``, sharing batched products."""
    n, batch = starts.shape
    num_iter = int(min(num_iter, n))
    if num_iter < 1:
        raise ValueError(f"num_iter must be at least 1, got {num_iter}")
    dtype = _default_dtype()
    # The bases live on the host in float64: re-orthogonalisation against a growing basis is
    # cheap there and never triggers a recompilation for every new basis size.
    basis = np.zeros((batch, n, num_iter), dtype=np.float64)
    starts = np.asarray(starts, dtype=np.float64)
    basis[:, :, 0] = (starts / np.linalg.norm(starts, axis=0, keepdims=True)).T
    alphas = np.zeros((batch, num_iter))
    betas = np.zeros((batch, max(num_iter - 1, 0)))
    sizes = np.ones(batch, dtype=int)
    running = np.ones(batch, dtype=bool)
    for k in range(num_iter):
        current = basis[:, :, k].T  # (n, batch)
        products = np.asarray(matvec(jnp.asarray(current, dtype=dtype)), dtype=np.float64)
        for b in np.flatnonzero(running):
            w = products[:, b]
            alphas[b, k] = basis[b, :, k] @ w
            active = basis[b, :, : k + 1]
            for _ in range(2):
                w = w - active @ (active.T @ w)
            beta = float(np.linalg.norm(w))
            if k == num_iter - 1 or beta <= 1e-10 * np.max(np.abs(alphas[b, : k + 1])):
                running[b] = False
                continue
            betas[b, k] = beta
            basis[b, :, k + 1] = w / beta
            sizes[b] += 1
        if not running.any():
            break
    return (
        [alphas[b, : sizes[b]] for b in range(batch)],
        [betas[b, : sizes[b] - 1] for b in range(batch)],
        [basis[b, :, : sizes[b]] for b in range(batch)],
    )


def _tridiagonal_eigh(alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    matrix = np.diag(alpha.astype(np.float64))
    if beta.size:
        matrix += np.diag(beta.astype(np.float64), 1) + np.diag(beta.astype(np.float64), -1)
    return np.linalg.eigh(matrix)


def _random_start(key: jax.Array, n: int, dtype) -> jax.Array:
    return jax.random.normal(key, (n,), dtype=dtype)


def _default_dtype():
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def top_eigenpairs(
    apply_fn: Callable,
    params,
    x,
    k: int,
    *,
    key: jax.Array,
    trace_outputs: bool = True,
    num_iter: int | None = None,
) -> Eigenpairs:
    """The ``k`` largest eigenpairs of Θ by Lanczos, without forming Θ.

    ``num_iter`` Krylov steps (default ``max(3k, k + 60)``); convergence is reported by the
    residual norms. Eigenvectors are columns, aligned with the descending eigenvalues.
    """
    matvec, n = ntk_vector_product(apply_fn, params, x, trace_outputs=trace_outputs)
    return _top_eigenpairs(matvec, n, k, key=key, num_iter=num_iter)


def _top_eigenpairs(matvec, n: int, k: int, *, key, num_iter: int | None) -> Eigenpairs:
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and the kernel size {n}, got {k}")
    num_iter = num_iter or max(3 * k, k + 60)
    alpha, beta, basis = lanczos(matvec, _random_start(key, n, _default_dtype()), num_iter)
    ritz_values, ritz_vectors = _tridiagonal_eigh(alpha, beta)
    order = np.argsort(ritz_values)[::-1][:k]
    values = ritz_values[order]
    vectors = basis @ ritz_vectors[:, order]
    vectors /= np.linalg.norm(vectors, axis=0, keepdims=True)
    applied = np.asarray(matvec(jnp.asarray(vectors, dtype=_default_dtype())), dtype=np.float64)
    residuals = np.linalg.norm(applied - vectors * values[None, :], axis=0)
    return Eigenpairs(values, vectors, residuals)


def trace_hutchinson(
    apply_fn: Callable,
    params,
    x,
    *,
    key: jax.Array,
    num_probes: int = 32,
    trace_outputs: bool = True,
) -> Estimate:
    """Hutchinson's estimate ``Tr Θ ≈ (1/m) Σ_k z_kᵀ Θ z_k``, ``z_k`` Rademacher (±1).

    Unbiased, with variance ``2 Σ_{i≠j} Θ_ij²`` per probe; the standard error over the
    ``m = num_probes`` probes is returned with it. (The exact trace is cheap too, see
    :func:`ntkbook.ntk.ntk_diagonal`; this estimator serves kernels too large for per-sample
    Jacobians.)
    """
    if num_probes < 2:
        raise ValueError(f"num_probes must be at least 2 for a standard error, got {num_probes}")
    matvec, n = ntk_vector_product(apply_fn, params, x, trace_outputs=trace_outputs)
    probes = jax.random.rademacher(key, (n, num_probes), dtype=_default_dtype())
    samples = np.asarray(jnp.sum(probes * matvec(probes), axis=0), dtype=np.float64)
    return Estimate(float(samples.mean()), float(samples.std(ddof=1) / np.sqrt(num_probes)))


def entropy_slq(
    apply_fn: Callable,
    params,
    x,
    *,
    key: jax.Array,
    num_probes: int = 16,
    num_iter: int = 40,
    deflate: int = 20,
    effective: bool = False,
    trace_outputs: bool = True,
) -> Estimate:
    """Spectral entropy ``S = −Σ p ln p``, ``p = λ/Tr Θ``, without forming Θ.

    Uses ``S = ln Tr Θ − (1/Tr Θ) Σ_k λ_k ln λ_k``. The ``deflate`` largest eigenpairs, which
    carry most of the weight of an NTK spectrum, are found by Lanczos and enter exactly; the
    rest of ``Tr Θ`` and ``Σ λ ln λ`` comes from stochastic Lanczos quadrature on the deflated
    operator ``P Θ P`` (``P`` projects out the top eigenvectors) with ``num_probes`` Rademacher
    probes of ``num_iter`` Lanczos steps each. The standard error is propagated from the
    spread over probes. ``effective=True`` divides by ``ln n``.
    """
    matvec, n = ntk_vector_product(apply_fn, params, x, trace_outputs=trace_outputs)
    return _entropy_slq(
        matvec,
        n,
        key=key,
        num_probes=num_probes,
        num_iter=num_iter,
        deflate=deflate,
        effective=effective,
    )


def _entropy_slq(matvec, n, *, key, num_probes, num_iter, deflate, effective) -> Estimate:
    if num_probes < 2:
        raise ValueError(f"num_probes must be at least 2 for a standard error, got {num_probes}")
    if not 0 <= deflate < n:
        raise ValueError(f"deflate must be in [0, {n}), got {deflate}")
    dtype = _default_dtype()
    top_key, probe_key = jax.random.split(key)
    if deflate:
        top = _top_eigenpairs(matvec, n, deflate, key=top_key, num_iter=max(3 * deflate, 80))
        top_values = np.clip(top.eigenvalues, 0.0, None)
        basis = top.eigenvectors
    else:
        top_values = np.zeros(0)
        basis = np.zeros((n, 0))

    def project(v):
        v = np.asarray(v, dtype=np.float64)
        return v - basis @ (basis.T @ v)

    def deflated(v):
        return project(matvec(jnp.asarray(project(v), dtype=dtype)))

    def xlogx(values):
        values = np.clip(values, 0.0, None)
        return np.where(values > 0, values * np.log(np.where(values > 0, values, 1.0)), 0.0)

    probes = project(jax.random.rademacher(probe_key, (n, num_probes), dtype=dtype))
    norms2 = np.sum(probes**2, axis=0)
    alphas, betas, _ = _lanczos_batch(deflated, probes, num_iter)
    traces, xlogxs = [], []
    for alpha, beta, norm2 in zip(alphas, betas, norms2, strict=True):
        nodes, vectors = _tridiagonal_eigh(alpha, beta)
        weights = vectors[0, :] ** 2 * norm2
        traces.append(float(np.sum(weights * np.clip(nodes, 0.0, None))))
        xlogxs.append(float(np.sum(weights * xlogx(nodes))))
    traces_arr, xlogx_arr = np.asarray(traces), np.asarray(xlogxs)
    total_trace = top_values.sum() + traces_arr.mean()
    total_xlogx = xlogx(top_values).sum() + xlogx_arr.mean()
    value = np.log(total_trace) - total_xlogx / total_trace
    # Error propagation through S(T, X) = ln T − X/T for the probe means of T and X.
    d_trace = 1.0 / total_trace + total_xlogx / total_trace**2
    d_xlogx = -1.0 / total_trace
    per_probe = d_trace * traces_arr + d_xlogx * xlogx_arr
    error = per_probe.std(ddof=1) / np.sqrt(num_probes)
    if effective:
        value, error = value / np.log(n), error / np.log(n)
    return Estimate(float(value), float(error))


def relative_error(
    estimate: Estimate, exact: float, *, num_probes: int, confidence: float = 0.95
) -> stats.Estimate:
    """Relative error ``|ŝ − s| / |s|`` of a probe estimate ``ŝ`` against the exact ``s``.

    The signed error ``e = (ŝ − s)/|s|`` gets the Student-t interval
    ``e ± t_{m−1} σ/|s|`` (``σ`` the estimate's standard error over its ``m = num_probes``
    probes); the returned interval is the image of that interval under ``|·|``:
    ``[min |end|, max |end|]``, or ``[0, max |end|]`` when it contains 0. It covers the probe
    noise of the estimate only, not a systematic error that every probe shares (for SLQ, a
    quadrature too short for the spectrum): that part shows in the value itself.

    Raises:
        ValueError: ``exact`` is zero or not finite, fewer than 2 probes, or a confidence
            outside (0, 1).
    """
    exact = float(exact)
    if not np.isfinite(exact) or exact == 0.0:
        raise ValueError(f"a relative error needs a finite, non-zero exact value, got {exact}")
    if isinstance(num_probes, bool) or not isinstance(num_probes, int) or num_probes < 2:
        raise ValueError(f"num_probes must be an integer >= 2, got {num_probes!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    signed = (float(estimate.value) - exact) / abs(exact)
    half = float(
        _scipy_stats.t.ppf(0.5 + confidence / 2.0, num_probes - 1)
        * float(estimate.standard_error)
        / abs(exact)
    )
    signed_error = stats.Estimate(signed, signed - half, signed + half, "t", num_probes, confidence)
    return stats.magnitude(signed_error)
