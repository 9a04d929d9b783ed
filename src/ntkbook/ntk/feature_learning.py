"""How far training moves the eNTK, and how well the kernel matches the task.

Two measures of feature learning, both taking kernels already computed on one fixed probe set:

- :func:`relative_kernel_change`, ``‖Θ_T − Θ_0‖_F / ‖Θ_0‖_F``: zero for a network in its
  linearised (lazy, frozen-kernel) regime, of order one when training rewrites the features.
- :func:`kernel_target_alignment`, the (centred) cosine between the kernel and the target
  Gram matrix ``Y Yᵀ``: how much of the kernel's weight lies on directions that separate the
  targets. Feature learning typically raises it over training; a frozen kernel keeps its
  initial value.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["relative_kernel_change", "kernel_target_alignment"]


def _square_kernel(name: str, kernel: ArrayLike) -> np.ndarray:
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty square matrix, got shape {kernel.shape}")
    if not np.all(np.isfinite(kernel)):
        raise ValueError(f"{name} contains NaN or inf")
    return kernel


def relative_kernel_change(initial: ArrayLike, final: ArrayLike) -> float:
    """``‖Θ_T − Θ_0‖_F / ‖Θ_0‖_F`` between two kernels on the same probe set (dimensionless).

    ``initial`` is Θ_0 (at initialisation), ``final`` is Θ_T (after training); both ``(N, N)``
    traced or ``(N·O, N·O)`` full kernels, computed in float64.
    """
    initial = _square_kernel("initial kernel", initial)
    final = _square_kernel("final kernel", final)
    if initial.shape != final.shape:
        raise ValueError(f"kernel shapes differ: {initial.shape} and {final.shape}")
    norm = np.linalg.norm(initial)
    if norm == 0:
        raise ValueError("the initial kernel is zero, so a relative change is undefined")
    return float(np.linalg.norm(final - initial) / norm)


def kernel_target_alignment(
    kernel: ArrayLike, targets: ArrayLike, *, centered: bool = True
) -> float:
    """Kernel–target alignment ``A(Θ, Y) = ⟨Θ_c, T_c⟩_F / (‖Θ_c‖_F ‖T_c‖_F)``, in ``[−1, 1]``.

    ``T = Y Yᵀ`` is the Gram matrix of the targets ``Y`` (``(N,)`` or ``(N, C)``, e.g. one-hot
    labels). For a full kernel of shape ``(N·C, N·C)`` (row index ``i·C + a``) the target is the
    flattened ``vec(Y)``, so ``T = vec(Y) vec(Y)ᵀ``.

    ``centered=True`` (default) is the centred alignment of Cortes, Mohri & Rostamizadeh
    (2012, "Algorithms for learning kernels based on centered alignment", JMLR 13:795):
    ``Θ_c = H Θ H``, ``T_c = H T H`` with ``H = I − 11ᵀ/N``. Centring removes the constant
    mode, which otherwise makes any kernel with a large mean look aligned with one-hot targets.
    ``centered=False`` is the original alignment of Cristianini et al. (2002),
    ``⟨Θ, T⟩_F / (‖Θ‖_F ‖T‖_F)``.

    Computed without forming ``T``: with ``Y_c = H Y`` (``H`` is idempotent and symmetric),
    ``⟨Θ_c, T_c⟩ = tr(Y_cᵀ Θ Y_c)`` and ``‖T_c‖_F = ‖Y_cᵀ Y_c‖_F``.
    """
    kernel = _square_kernel("kernel", kernel)
    y = np.asarray(targets, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[0] == 0:
        raise ValueError(f"targets must be (N,) or (N, C), got shape {np.shape(targets)}")
    if not np.all(np.isfinite(y)):
        raise ValueError("targets contain NaN or inf")
    n = kernel.shape[0]
    if y.shape[0] != n and y.size == n:
        y = y.reshape(-1, 1)  # full kernel: row i·C + a pairs with Y[i, a]
    if y.shape[0] != n:
        raise ValueError(
            f"kernel of shape {kernel.shape} does not match targets of shape {np.shape(targets)}"
        )
    if centered:
        y = y - y.mean(axis=0, keepdims=True)
        # H Θ H = Θ − row means − column means + grand mean.
        kernel = (
            kernel
            - kernel.mean(axis=0, keepdims=True)
            - kernel.mean(axis=1, keepdims=True)
            + kernel.mean()
        )
    kernel_norm = np.linalg.norm(kernel)
    target_norm = np.linalg.norm(y.T @ y)
    if kernel_norm == 0 or target_norm == 0:
        what = "kernel" if kernel_norm == 0 else "target Gram matrix"
        raise ValueError(f"the {'centred ' if centered else ''}{what} is zero: alignment undefined")
    return float(np.trace(y.T @ kernel @ y) / (kernel_norm * target_norm))
