"""Collective variables of the eNTK estimated on many small random subsets of the data.

For networks whose kernel on the whole data set is too large to form, Tovey et al. (2024,
"Collective variables of neural networks") average the measures of the kernel over many small
random subsets (200 subsets of 20 points). For subsets ``s = 1 … M`` of size ``n``, each with
kernel ``Θ⁽ˢ⁾`` (the principal submatrix of the full kernel on those points),

    S̄ = (1/M) Σ_s S(Θ⁽ˢ⁾),    S(Θ) = −Σ_k p_k ln p_k,  p_k = λ_k / Tr Θ   (nats)
    T̄ = (1/M) Σ_s Tr Θ⁽ˢ⁾ / n                                              (trace per sample)

with the standard error ``std_s / √M`` (sample standard deviation, ``ddof = 1``). The
standard error measures the spread over subsets drawn from the given pool; subsets overlap when
the pool is small, so it is a measure of the estimator's subset noise, not of the pool.

Computation: the kernel of the union of all subsets is formed once and each subset's kernel is
sliced from it, which gives exactly the numbers of computing every subset separately (a kernel
entry depends only on its two samples). When the union exceeds ``max_union`` samples, every
subset's kernel is computed on its own instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from ntkbook.ntk.measures import KERNEL_MEASURES, kernel_measures_stack
from ntkbook.ntk.record import Schedule, Series, kernel_function, records_series

__all__ = [
    "SUBSAMPLE_MEASURES",
    "SubsampledMeasures",
    "draw_subsets",
    "subsampled_measures",
    "SubsampleRecorder",
]

#: The scalar measures of :data:`ntkbook.ntk.measures.KERNEL_MEASURES` (one table, one set of
#: formulas), averaged over subsets.
SUBSAMPLE_MEASURES: tuple[str, ...] = tuple(m for m in KERNEL_MEASURES if m != "eigenvalues")


@dataclass(frozen=True)
class SubsampledMeasures:
    """Per-measure mean over subsets, its standard error ``std/√M``, and the per-subset values."""

    mean: dict[str, float]
    standard_error: dict[str, float]
    values: dict[str, np.ndarray]
    n_subsets: int
    subset_size: int


def draw_subsets(
    key: jax.Array, n_samples: int, *, n_subsets: int = 200, subset_size: int = 20
) -> np.ndarray:
    """``(n_subsets, subset_size)`` sample indices; each subset is drawn without replacement
    from ``range(n_samples)``, independently of the others."""
    for name, value in (("n_subsets", n_subsets), ("subset_size", subset_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if subset_size < 2:
        raise ValueError(
            f"subset_size must be at least 2 (one eigenvalue has no entropy), got {subset_size}"
        )
    if subset_size > n_samples:
        raise ValueError(f"subset_size={subset_size} exceeds the {n_samples} available samples")
    keys = jax.random.split(key, n_subsets)
    subsets = jax.vmap(lambda k: jax.random.choice(k, n_samples, (subset_size,), replace=False))(
        keys
    )
    return np.asarray(subsets, dtype=np.int64)


def subsampled_measures(
    kernel_fn: Callable,
    params,
    x,
    subsets,
    *,
    measures: Sequence[str] = ("entropy", "trace_per_sample"),
    max_union: int = 1024,
) -> SubsampledMeasures:
    """Mean and standard error of eNTK measures over the kernels of ``x[subsets[s]]``.

    ``kernel_fn(params, x) -> (N, N)`` is a traced kernel function, e.g.
    :func:`ntkbook.ntk.ntk_fn` of the model. ``subsets`` is ``(M, n)`` (see
    :func:`draw_subsets`); ``measures`` any of :data:`SUBSAMPLE_MEASURES`.
    """
    unknown = [m for m in measures if m not in SUBSAMPLE_MEASURES]
    if unknown or not measures:
        raise ValueError(
            f"measures must be a non-empty selection of {', '.join(SUBSAMPLE_MEASURES)}; "
            f"got unknown {unknown}"
        )
    subsets = np.asarray(subsets)
    if subsets.ndim != 2 or subsets.shape[0] < 2 or subsets.shape[1] < 2:
        raise ValueError(
            f"subsets must be (M, n) with M >= 2 subsets of n >= 2 samples, got {subsets.shape}"
        )
    if not np.issubdtype(subsets.dtype, np.integer):
        raise ValueError(f"subsets must hold integer indices, got dtype {subsets.dtype}")
    n_samples = len(x)
    if subsets.min() < 0 or subsets.max() >= n_samples:
        raise ValueError(
            f"subset indices must lie in [0, {n_samples}); got {subsets.min()}..{subsets.max()}"
        )
    if any(len(np.unique(row)) != row.size for row in subsets):
        raise ValueError("a subset holds the same sample twice; draw subsets without replacement")
    union, positions = np.unique(subsets, return_inverse=True)
    positions = positions.reshape(subsets.shape)
    if union.size <= max_union:
        full = np.asarray(kernel_fn(params, x[union]))
        if full.shape != (union.size, union.size):
            raise ValueError(
                f"kernel_fn must return a traced (N, N) kernel, got shape {full.shape} for "
                f"N = {union.size}"
            )
        kernels = full[positions[:, :, None], positions[:, None, :]]
    else:
        kernels = np.stack([np.asarray(kernel_fn(params, x[row])) for row in subsets])
    # The kernels keep their dtype: it sets the round-off tolerance of the eigenvalues.
    values = kernel_measures_stack(kernels, measures)
    m = subsets.shape[0]
    return SubsampledMeasures(
        mean={k: float(v.mean()) for k, v in values.items()},
        standard_error={k: float(v.std(ddof=1) / np.sqrt(m)) for k, v in values.items()},
        values=values,
        n_subsets=m,
        subset_size=int(subsets.shape[1]),
    )


class SubsampleRecorder:
    """Record subset-averaged eNTK measures at scheduled epochs (a
    :class:`ntkbook.train.Recorder`: ``train`` calls ``recorder(epoch, params, final=...)``).

    The subsets are drawn once from ``key`` and reused at every epoch, so the change of a
    measure over training is not blurred by drawing new subsets (common random numbers).
    ``every`` is an interval or a list of epochs (e.g. log-spaced ones; see
    :class:`ntkbook.ntk.record.Schedule`); the final state is always recorded. Records are
    ``{"epoch": e, "<measure>": mean, "<measure>_standard_error": std/√M}``.
    """

    def __init__(
        self,
        apply_fn: Callable,
        x,
        *,
        key: jax.Array,
        n_subsets: int = 200,
        subset_size: int = 20,
        every: int | Sequence[int] = 1,
        measures: Sequence[str] = ("entropy", "trace_per_sample"),
        method: str = "auto",
        max_union: int = 1024,
    ) -> None:
        unknown = [m for m in measures if m not in SUBSAMPLE_MEASURES]
        if unknown or not measures or isinstance(measures, str):
            raise ValueError(
                f"measures must be a non-empty selection of {', '.join(SUBSAMPLE_MEASURES)}; "
                f"got unknown {unknown}"
            )
        self.x = x
        self.subsets = draw_subsets(key, len(x), n_subsets=n_subsets, subset_size=subset_size)
        self.schedule = Schedule(every)
        self.measures = tuple(measures)
        self.max_union = max_union
        self.kernel_fn = kernel_function(apply_fn, method=method)
        self.records: list[dict] = []
        self.values: dict[int, dict[str, np.ndarray]] = {}
        self.training: dict[str, Any] | None = None

    def start_training(self, training: Mapping[str, Any]) -> None:
        """Keep the settings of the training that drives this recorder."""
        self.training = dict(training)

    def __call__(self, epoch: int, params, *, final: bool = False) -> dict | None:
        """Record at ``epoch`` if it is scheduled (or ``final``) and not yet recorded; return
        the new record."""
        if not self.schedule.due(epoch, final) or int(epoch) in self.values:
            return None
        result = subsampled_measures(
            self.kernel_fn,
            params,
            self.x,
            self.subsets,
            measures=self.measures,
            max_union=self.max_union,
        )
        record = {"epoch": int(epoch)}
        for name in self.measures:
            record[name] = result.mean[name]
            record[f"{name}_standard_error"] = result.standard_error[name]
        self.records.append(record)
        self.records.sort(key=lambda r: r["epoch"])
        self.values[int(epoch)] = result.values
        return record

    def paired_differences(
        self, measure: str, *, start: int | None = None, end: int | None = None
    ) -> np.ndarray:
        """Per-subset change ``m_s(end) − m_s(start)`` of ``measure``, one value per subset.

        ``start`` and ``end`` are recorded epochs (default: the first and the last). The same
        subsets are used at every epoch, so the differences are paired: their mean is the
        change of the subset average and their spread measures the subset noise of that change.
        """
        if measure not in self.measures:
            raise ValueError(f"{measure!r} is not recorded; recorded: {', '.join(self.measures)}")
        if len(self.values) < 2:
            raise ValueError(f"a change needs two recorded epochs, have {sorted(self.values)}")
        start = min(self.values) if start is None else int(start)
        end = max(self.values) if end is None else int(end)
        for name, epoch in (("start", start), ("end", end)):
            if epoch not in self.values:
                raise ValueError(
                    f"{name} epoch {epoch} was not recorded; recorded: {sorted(self.values)}"
                )
        if start >= end:
            raise ValueError(f"start epoch {start} must come before end epoch {end}")
        return self.values[end][measure] - self.values[start][measure]

    def paired_change(
        self, measure: str, *, start: int | None = None, end: int | None = None
    ) -> tuple[float, float]:
        """Change of ``measure`` from epoch ``start`` to epoch ``end`` (default: the first and
        the last recorded epoch), with its error.

        The same subsets are used at every epoch, so the change is averaged per subset,
        ``Δ = (1/M) Σ_s [m_s(end) − m_s(start)]``, and its standard error is that of the
        paired differences, ``std_s(Δ_s)/√M``, usually far smaller than either epoch's error
        (see :meth:`paired_differences`).
        """
        differences = self.paired_differences(measure, start=start, end=end)
        return (
            float(differences.mean()),
            float(differences.std(ddof=1) / np.sqrt(differences.size)),
        )

    def series(self, measure: str) -> Series:
        """:class:`~ntkbook.ntk.record.Series` ``(epochs, mean, standard_error)`` of one
        recorded measure."""
        if measure not in self.measures:
            raise ValueError(f"{measure!r} is not recorded; recorded: {', '.join(self.measures)}")
        return records_series(self.records, measure)
