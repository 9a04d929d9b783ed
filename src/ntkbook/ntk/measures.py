"""The table of eNTK measures that every recorder and chapter computes from a kernel matrix.

One name per measure, one formula per name, one float64 eigendecomposition per kernel. A kernel
is ``(N·O, N·O)`` (``O = 1`` for a traced kernel); ``N = rows / n_outputs`` samples. With
``λ_k`` the eigenvalues (float64 ``eigvalsh``, round-off below zero clipped as in
:func:`ntkbook.ntk.spectrum.eigensystem`) and ``p_k = λ_k / Σ_j λ_j``:

================== =====================================================================
``entropy``        ``S = −Σ_k p_k ln p_k`` (nats)
``effective_entropy`` ``S / ln n`` for ``n`` eigenvalues (in ``[0, 1]``)
``effective_rank`` ``exp(S)``
``eigenvalues``    ``λ`` sorted descending (a list; the other measures are floats)
``trace``          ``Tr Θ = Σ_i Θ_ii``
``trace_per_sample`` ``Tr Θ / N``
``covariance_entropy`` ``S`` of the correlation matrix ``Θ_ij / sqrt(Θ_ii Θ_jj)``
``self_entropy``   ``S`` of the weights ``sqrt(Θ_ii) / Σ_j sqrt(Θ_jj)``
================== =====================================================================

:func:`kernel_measures` measures one kernel, :func:`kernel_measures_stack` a stack of kernels
of one size (for example the subsets of :mod:`ntkbook.ntk.subsample`), with the same formulas.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ntkbook.ntk import spectrum

__all__ = ["KERNEL_MEASURES", "SPECTRAL_MEASURES", "kernel_measures", "kernel_measures_stack"]

# name -> (needs the eigenvalues, f(eigenvalues, kernel, n_outputs)); eigenvalues are float64,
# clipped and sorted descending, or None when the measure does not need them.
_TABLE: dict[str, tuple[bool, Callable]] = {
    "entropy": (True, lambda lam, k, o: spectrum.entropy(lam)),
    "effective_entropy": (True, lambda lam, k, o: spectrum.entropy(lam, effective=True)),
    "effective_rank": (True, lambda lam, k, o: spectrum.effective_rank(lam)),
    "eigenvalues": (True, lambda lam, k, o: [float(v) for v in lam]),
    "trace": (False, lambda lam, k, o: spectrum.trace(k, n_outputs=o)),
    "trace_per_sample": (False, lambda lam, k, o: spectrum.trace(k, per_sample=True, n_outputs=o)),
    "covariance_entropy": (False, lambda lam, k, o: spectrum.covariance_entropy(k)),
    "self_entropy": (False, lambda lam, k, o: spectrum.self_entropy(k)),
}

#: Every measure :func:`kernel_measures` knows, in table order.
KERNEL_MEASURES: tuple[str, ...] = tuple(_TABLE)
#: The measures that need the kernel's eigenvalues.
SPECTRAL_MEASURES: tuple[str, ...] = tuple(name for name, (spec, _) in _TABLE.items() if spec)


def _check_names(measures: Sequence[str]) -> tuple[str, ...]:
    if isinstance(measures, str):
        raise ValueError(f"measures must be a sequence of names, got the string {measures!r}")
    measures = tuple(measures)
    if not measures:
        raise ValueError(f"measures is empty; valid measures: {', '.join(KERNEL_MEASURES)}")
    unknown = [m for m in measures if m not in _TABLE]
    if unknown:
        raise ValueError(
            f"unknown measures {unknown}; valid measures: {', '.join(KERNEL_MEASURES)}"
        )
    return measures


def _check_outputs(n_outputs: int, rows: int) -> None:
    if not isinstance(n_outputs, int | np.integer) or n_outputs < 1:
        raise ValueError(f"n_outputs must be a positive integer, got {n_outputs!r}")
    if rows % n_outputs:
        raise ValueError(f"n_outputs={n_outputs} does not divide the kernel's {rows} rows")


def _eigenvalues(kernels: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Eigenvalues of a stack ``(M, n, n)``, float64, descending, round-off clipped to zero
    (the rule and tolerance of :func:`ntkbook.ntk.spectrum.eigensystem`)."""
    tolerance = spectrum._NEGATIVE_TOLERANCE.get(dtype, spectrum._NEGATIVE_TOLERANCE_DEFAULT)
    values = np.linalg.eigvalsh(0.5 * (kernels + np.swapaxes(kernels, -1, -2)))[..., ::-1]
    largest = np.maximum(values[:, 0], 0.0)
    bad = (values[:, -1] < -tolerance * largest) | ((largest == 0.0) & (values[:, -1] < 0))
    if np.any(bad):
        index = int(np.argmax(bad))
        raise ValueError(
            f"kernel {index} is not positive semi-definite: smallest eigenvalue "
            f"{values[index, -1]:.3e} against largest {largest[index]:.3e} (round-off "
            f"tolerance {tolerance:g})"
        )
    return np.clip(values, 0.0, None)


def kernel_measures_stack(
    kernels, measures: Sequence[str] = ("entropy", "trace_per_sample"), *, n_outputs: int = 1
) -> dict[str, np.ndarray]:
    """Measures of each kernel of a stack ``(M, N·O, N·O)``: ``{name: (M,) array}`` (``(M, N·O)``
    for ``eigenvalues``). One batched float64 eigendecomposition; formulas in the module
    docstring.

    Raises:
        ValueError: an unknown measure (the message lists the valid ones), a stack that is not
            ``(M, n, n)`` or holds NaN/inf, an asymmetric or not positive semi-definite kernel.
    """
    measures = _check_names(measures)
    array = np.asarray(kernels)
    if array.ndim != 3 or array.shape[1] != array.shape[2] or 0 in array.shape:
        raise ValueError(f"kernels must be a non-empty stack (M, n, n), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        bad = np.argwhere(~np.isfinite(array))[0]
        raise ValueError(f"kernels contain a non-finite value at index {tuple(map(int, bad))}")
    _check_outputs(n_outputs, array.shape[1])
    stack = array.astype(np.float64)
    scale = np.max(np.abs(stack), axis=(1, 2))
    asymmetry = np.max(np.abs(stack - np.swapaxes(stack, 1, 2)), axis=(1, 2))
    bad = asymmetry > 1e-5 * np.maximum(scale, np.finfo(np.float64).tiny)
    if np.any(bad):
        index = int(np.argmax(bad))
        raise ValueError(
            f"kernel {index} is not symmetric: max |K - K^T| = {asymmetry[index]:.3e} vs "
            f"max |K| = {scale[index]:.3e}"
        )
    eigenvalues = None
    if set(measures) & set(SPECTRAL_MEASURES):
        eigenvalues = _eigenvalues(stack, array.dtype)
    values: dict[str, np.ndarray] = {}
    for name in measures:
        needs_spectrum, function = _TABLE[name]
        values[name] = np.array(
            [
                function(eigenvalues[m] if needs_spectrum else None, stack[m], n_outputs)
                for m in range(stack.shape[0])
            ],
            dtype=np.float64,
        )
    return values


def kernel_measures(
    kernel, measures: Sequence[str] = ("entropy", "trace_per_sample"), *, n_outputs: int = 1
) -> dict[str, float]:
    """Measures of one eNTK matrix ``(N·O, N·O)`` from one float64 eigendecomposition:
    ``{name: float}`` (``eigenvalues``: a list of floats, descending). Formulas in the module
    docstring; ``n_outputs`` is ``O`` (it sets ``N`` for ``trace_per_sample``).

    Raises:
        ValueError: an unknown measure (the message lists the valid ones), a kernel that is
            not square or holds NaN/inf, an asymmetric or not positive semi-definite kernel.
    """
    matrix = spectrum._as_square_kernel(kernel)
    stacked = kernel_measures_stack(matrix[None], measures, n_outputs=n_outputs)
    return {
        name: [float(v) for v in value[0]] if name == "eigenvalues" else float(value[0])
        for name, value in stacked.items()
    }
