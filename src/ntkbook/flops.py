"""Training compute in FLOPs: the ``6·N·D`` rule and XLA's own count of a compiled function.

Training compute is counted as in Kaplan et al. (2020), ``C ≈ 6·N·D`` FLOPs for ``N``
parameters and ``D`` tokens: a forward pass costs about ``2N`` FLOPs per token (one multiply
and one add per weight) and the backward pass about twice that. :func:`compiled_flops` gives
the count that XLA's cost model assigns to a compiled function, to check the rule against the
model's own arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np

__all__ = ["training_flops", "compiled_flops"]


def training_flops(n_parameters: int, n_tokens) -> np.ndarray | float:
    """Training compute ``C = 6·N·D`` FLOPs for ``N`` parameters and ``D`` tokens (Kaplan et al.).

    ``n_tokens`` may be an array (e.g. tokens seen after each epoch); zero tokens is zero compute.
    """
    if (
        isinstance(n_parameters, bool)
        or not isinstance(n_parameters, (int, np.integer))
        or n_parameters < 1
    ):
        raise ValueError(f"n_parameters must be a positive integer, got {n_parameters!r}")
    tokens = np.asarray(n_tokens, dtype=np.float64)
    if not np.all(np.isfinite(tokens)) or np.any(tokens < 0):
        raise ValueError(f"n_tokens must be finite and non-negative, got {n_tokens!r}")
    flops = 6.0 * int(n_parameters) * tokens
    return float(flops) if flops.ndim == 0 else flops


def compiled_flops(fn: Callable, *args) -> float:
    """FLOPs of one call ``fn(*args)`` as counted by XLA's cost model after compilation.

    A matrix product ``(m, k) @ (k, n)`` counts ``2·m·k·n``. Divide the count for one gradient
    step on a batch by the batch size to compare a model's own training cost per token with
    ``6·N``. Raises if the backend reports no count.
    """
    analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else None
    if not analysis or "flops" not in analysis:
        raise ValueError(f"the {jax.default_backend()} backend reports no FLOP count for {fn}")
    return float(analysis["flops"])
