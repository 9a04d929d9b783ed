"""Training runs that record eNTK collective variables, as the chapters run them.

:func:`dense_run` trains an MLP and records the kernel on fixed probe sets of the train and the
test data (:class:`~ntkbook.ntk.KernelRecorder`); :func:`subsample_run` trains any model and
records subset averages of its kernel (:class:`~ntkbook.ntk.SubsampleRecorder`), for models
whose kernel on a whole data set is too large. Both return a :class:`Run`, whose
:meth:`Run.series` and :meth:`Run.regime` read the records; :func:`run_regimes` and
:func:`summarise_runs` summarise the seeds of one configuration.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax

from ntkbook.models import MLP
from ntkbook.ntk.record import KernelRecorder, Series, records_series
from ntkbook.ntk.regime import Regime, SeedRegimes, regime, seed_regimes
from ntkbook.ntk.subsample import SubsampleRecorder
from ntkbook.train import cross_entropy_loss, train

__all__ = ["Run", "dense_run", "subsample_run", "n_parameters", "run_regimes", "summarise_runs"]


# Adam at 10⁻³, the authors' optimizer; one object, so that runs share compiled programs.
_ADAM = optax.adam(1e-3)


@functools.lru_cache(maxsize=64)
def _mlp(hidden: tuple[int, ...], n_outputs: int, activation: str) -> MLP:
    # One module object per configuration: its seeds then share compiled programs.
    return MLP(hidden=hidden, n_outputs=n_outputs, activation=activation)


def n_parameters(params) -> int:
    """Number of scalars in a parameter pytree."""
    return int(sum(leaf.size for leaf in jax.tree_util.tree_leaves(params)))


@dataclass(frozen=True)
class Run:
    """One training run: the parameter count, the history of :func:`ntkbook.train.train`
    (or any per-step metrics), the initial and final parameters, and the records of each probe
    (``{"train": [...], "test": [...]}`` for :func:`dense_run`, ``{"subsets": [...]}`` for
    :func:`subsample_run`), every record keyed by ``"epoch"``."""

    n_parameters: int
    history: dict[str, list[float]]
    initial_params: Any
    params: Any
    records: dict[str, list[dict]] = field(default_factory=dict)

    def _records(self, probe: str) -> list[dict]:
        if probe not in self.records:
            raise ValueError(f"no probe {probe!r}; recorded probes: {', '.join(self.records)}")
        return self.records[probe]

    def series(self, measure: str, probe: str | None = None) -> Series:
        """:class:`~ntkbook.ntk.Series` of ``measure`` on ``probe`` (default: the first)."""
        records = self._records(probe or next(iter(self.records)))
        if not records or measure not in records[0]:
            raise ValueError(f"{measure!r} is not recorded on probe {probe!r}")
        return records_series(records, measure)

    def regime(self, probe: str | None = None, **rule) -> Regime:
        """:func:`ntkbook.ntk.regime` of the entropy on ``probe`` (``rule``: its options)."""
        epochs, entropy, _ = self.series("entropy", probe)
        return regime(epochs, entropy, **rule)


def dense_run(
    train_data: tuple,
    test_data: tuple | None = None,
    *,
    hidden: Sequence[int],
    n_outputs: int,
    key: jax.Array,
    epochs: int,
    batch_size: int,
    activation: str = "relu",
    loss_fn: Callable = cross_entropy_loss,
    optimizer: optax.GradientTransformation | None = None,
    every: int | Sequence[int] = 1,
    n_probe: int = 50,
    probes: Sequence[str] = ("train", "test"),
    measures: Sequence[str] = ("entropy", "trace_per_sample"),
    records_dir: str | Path | None = None,
    name: str = "dense",
    classification: bool | None = None,
) -> Run:
    """Train ``MLP(hidden, n_outputs, activation)`` and record its kernel measures.

    The network is initialised from the first half of ``key`` and trained with ``optimizer``
    (default Adam, learning rate 10⁻³, as in the authors' grid) on ``loss_fn`` with the order
    drawn from the second half. The kernel is recorded (:class:`~ntkbook.ntk.KernelRecorder`,
    before the epochs scheduled by ``every`` and at the end) on the first ``n_probe`` samples
    of the train and/or test data, as ``probes`` says. Records go to
    ``records_dir/<name>_<probe>.json`` (resumed when they exist with the same settings), or to
    a temporary directory that is removed afterwards.

    Raises:
        ValueError: bad arguments (from the model, the recorders or :func:`~ntkbook.train.train`),
            an unknown probe, or a probe set smaller than ``n_probe``.
    """
    data = {"train": train_data, "test": test_data}
    unknown = [p for p in probes if p not in data]
    if unknown or not probes:
        raise ValueError(f"probes must be a non-empty selection of train, test; got {probes!r}")
    if "test" in probes and test_data is None:
        raise ValueError("probe 'test' needs test_data")
    if isinstance(n_probe, bool) or not isinstance(n_probe, int) or n_probe < 2:
        raise ValueError(f"n_probe must be an integer of at least 2, got {n_probe!r}")
    for probe in probes:
        if len(data[probe][0]) < n_probe:
            raise ValueError(f"n_probe={n_probe} exceeds the {len(data[probe][0])} {probe} samples")
    init_key, train_key = jax.random.split(key)
    model = _mlp(tuple(int(w) for w in hidden), int(n_outputs), str(activation))
    params = model.init(init_key, train_data[0][:1])
    with tempfile.TemporaryDirectory(prefix="kernel_records_") as scratch:
        directory = Path(records_dir) if records_dir is not None else Path(scratch)
        recorders = {
            probe: KernelRecorder(
                model.apply,
                data[probe][0][:n_probe],
                directory / f"{name}_{probe}.json",
                every=every,
                measures=measures,
                name=probe,
            )
            for probe in probes
        }
        result = train(
            model.apply,
            params,
            optimizer if optimizer is not None else _ADAM,
            loss_fn,
            train_data,
            epochs=epochs,
            batch_size=batch_size,
            key=train_key,
            test_data=test_data,
            recorders=list(recorders.values()),
            classification=classification,
        )
        records = {probe: list(recorder.records) for probe, recorder in recorders.items()}
    return Run(n_parameters(params), result.history, params, result.params, records)


def subsample_run(
    apply_fn: Callable,
    params,
    train_data: tuple,
    test_data: tuple | None = None,
    *,
    pool_x,
    key: jax.Array,
    epochs: int,
    batch_size: int,
    loss_fn: Callable,
    optimizer: optax.GradientTransformation,
    every: int | Sequence[int] = 1,
    n_subsets: int = 200,
    subset_size: int = 20,
    measures: Sequence[str] = ("entropy", "trace_per_sample"),
) -> Run:
    """Train ``params`` of ``apply_fn`` and record subset averages of its kernel.

    The subsets (:class:`~ntkbook.ntk.SubsampleRecorder`: ``n_subsets`` of ``subset_size``
    samples of ``pool_x``, fixed through training) are drawn from the first half of ``key``,
    the training order from the second. Records are under the probe ``"subsets"``, with the
    standard error over subsets.
    """
    subset_key, train_key = jax.random.split(key)
    recorder = SubsampleRecorder(
        apply_fn,
        pool_x,
        key=subset_key,
        n_subsets=n_subsets,
        subset_size=subset_size,
        every=every,
        measures=measures,
    )
    result = train(
        apply_fn,
        params,
        optimizer,
        loss_fn,
        train_data,
        epochs=epochs,
        batch_size=batch_size,
        key=train_key,
        test_data=test_data,
        recorders=[recorder],
    )
    return Run(
        n_parameters(params), result.history, params, result.params, {"subsets": recorder.records}
    )


def run_regimes(
    runs: Sequence[Run], probe: str | None = None, *, confidence: float = 0.95, **rule
) -> SeedRegimes:
    """:func:`ntkbook.ntk.seed_regimes` of the entropy curves of ``runs`` (the seeds of one
    configuration) on ``probe``: the agreed regime and means over seeds with intervals."""
    curves = [run.series("entropy", probe)[:2] for run in runs]
    return seed_regimes(curves, confidence=confidence, **rule)


def summarise_runs(
    runs: Sequence[Run], probe: str | None = None, *, confidence: float = 0.95, **rule
) -> dict:
    """One configuration's seeds in one row: ``n_parameters``, ``regimes``
    (:func:`run_regimes`), ``trace_ratio`` (mean over seeds of ``Tr_final / Tr_initial`` of
    the trace per sample) and ``final_test_loss`` (mean over seeds; ``None`` without a test
    loss in the history)."""
    if not runs:
        raise ValueError("summarise_runs needs at least one run")
    traces = [run.series("trace_per_sample", probe).values for run in runs]
    losses = [run.history.get("test_loss") for run in runs]
    return {
        "n_parameters": runs[0].n_parameters,
        "regimes": run_regimes(runs, probe, confidence=confidence, **rule),
        "trace_ratio": float(np.mean([t[-1] / t[0] for t in traces])),
        "final_test_loss": None
        if any(loss is None for loss in losses)
        else float(np.mean([loss[-1] for loss in losses])),
    }
