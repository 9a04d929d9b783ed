"""Training runs that record eNTK collective variables, as the chapters run them.

:func:`dense_run` trains an MLP and records the kernel on fixed probe sets of the train and the
test data (:class:`~ntkbook.ntk.KernelRecorder`); :func:`subsample_run` trains any model and
records subset averages of its kernel (:class:`~ntkbook.ntk.SubsampleRecorder`), for models
whose kernel on a whole data set is too large. Both return a :class:`Run`, whose
:meth:`Run.series` and :meth:`Run.regime` read the records; :func:`run_regimes` and
:func:`summarise_runs` summarise the seeds of one configuration.

:func:`dense_run` also runs the scaling chapter's sweeps: plain SGD at one fixed learning
rate (``learning_rate``, the standard parametrisation's practice) or at a rate set from the
network's kernel at initialisation (``kernel_eta``, :func:`kernel_learning_rate`), optionally
the network's linearised twin (:func:`ntkbook.ntk.linearize`) trained alongside on the same
data, order and rate; :func:`run_measures` reads the numbers of a run, and
:func:`agreement_width` reads off the width from which a network and its
linearised twin reach the same test loss.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ntkbook.models import MLP
from ntkbook.ntk.feature_learning import kernel_target_alignment, relative_kernel_change
from ntkbook.ntk.linearize import linearize
from ntkbook.ntk.record import KernelRecorder, Series, kernel_function, records_series
from ntkbook.ntk.regime import Regime, SeedRegimes, regime, seed_regimes
from ntkbook.ntk.subsample import SubsampleRecorder
from ntkbook.train import cross_entropy_loss, train

__all__ = [
    "Run",
    "dense_run",
    "initial_mlp",
    "kernel_learning_rate",
    "agreement_width",
    "run_measures",
    "subsample_run",
    "n_parameters",
    "run_regimes",
    "summarise_runs",
]


# Adam at 10⁻³, the authors' optimizer; one object, so that runs share compiled programs.
_ADAM = optax.adam(1e-3)


@functools.lru_cache(maxsize=64)
def _mlp(hidden: tuple[int, ...], n_outputs: int, activation: str) -> MLP:
    # One module object per configuration: its seeds then share compiled programs.
    return MLP(hidden=hidden, n_outputs=n_outputs, activation=activation)


def initial_mlp(
    hidden: Sequence[int], n_outputs: int, activation: str, key: jax.Array, x
) -> tuple[Callable, Any]:
    """``(apply_fn, params)`` of ``MLP(hidden, n_outputs, activation)`` initialised from
    ``key`` for inputs shaped like ``x``: the network :func:`dense_run` trains when given the
    first half of its key."""
    model = _mlp(tuple(int(w) for w in hidden), int(n_outputs), str(activation))
    return model.apply, model.init(key, jnp.asarray(x)[:1])


def kernel_learning_rate(apply_fn: Callable, params, probe_x, eta: float) -> float:
    """``lr = η · N / λ_max(Θ₀)``: the SGD rate that takes a step of size ``η`` along the
    kernel's top direction in function space.

    ``Θ₀`` is the traced eNTK (outputs summed) of ``apply_fn`` at ``params`` on the ``N``
    samples of ``probe_x``; ``λ_max`` its largest eigenvalue (float64). For the mean squared
    error over a batch, gradient descent changes the outputs by ``−(2 lr/N) Θ (f − y)``, so
    the rate in units of ``N/λ_max`` fixes the step in function space whatever the width. In
    the standard parametrisation ``λ_max`` grows with the width, so this rule shrinks the rate
    as the network widens, which is the NTK (lazy) scaling.
    """
    if isinstance(eta, bool) or not np.isfinite(eta) or eta <= 0:
        raise ValueError(f"eta must be a positive finite number, got {eta!r}")
    # The kernel function the train probe's recorder uses, so that it is compiled once.
    kernel_fn = kernel_function(apply_fn, trace_outputs=True, method="auto", check_per_sample=True)
    kernel = np.asarray(kernel_fn(params, jnp.asarray(probe_x)), dtype=np.float64)
    largest = float(np.linalg.eigvalsh(0.5 * (kernel + kernel.T))[-1])
    if not largest > 0:
        raise ValueError(f"the initial kernel's largest eigenvalue is {largest}, not positive")
    return float(eta) * kernel.shape[0] / largest


@functools.lru_cache(maxsize=64)
def _sgd(learning_rate: float) -> optax.GradientTransformation:
    # One object per rate, so that the seeds of one configuration share compiled programs.
    return optax.sgd(learning_rate)


def n_parameters(params) -> int:
    """Number of scalars in a parameter pytree."""
    return int(sum(leaf.size for leaf in jax.tree_util.tree_leaves(params)))


@dataclass(frozen=True)
class Run:
    """One training run: the parameter count, the history of :func:`ntkbook.train.train`
    (or any per-step metrics), the initial and final parameters, and the records of each probe
    (``{"train": [...], "test": [...]}`` for :func:`dense_run`, ``{"subsets": [...]}`` for
    :func:`subsample_run`), every record keyed by ``"epoch"``.

    :func:`dense_run` also fills ``apply_fn`` (the network), ``learning_rate`` (the SGD rate
    when it was given ``learning_rate`` or ``kernel_eta``; ``None`` with an ``optimizer``) and,
    with ``linearised=True``, ``linearised_history`` and ``linearised_params``: the history and
    final parameters of the linearised twin."""

    n_parameters: int
    history: dict[str, list[float]]
    initial_params: Any
    params: Any
    records: dict[str, list[dict]] = field(default_factory=dict)
    apply_fn: Callable | None = None
    learning_rate: float | None = None
    linearised_history: dict[str, list[float]] | None = None
    linearised_params: Any = None

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

    def to_result(self) -> dict[str, Any]:
        """The run as a result of the results store (:mod:`ntkbook.store`): arrays and numbers.

        Keeps ``n_parameters``, ``learning_rate`` (``None`` when not set), ``history`` (one
        array per metric), ``records`` (per probe, one array per recorded field, in record
        order), ``probes`` (the probes in order: the first is :meth:`series`'s default, and a
        store may sort the keys of a dict) and, with a linearised twin, ``linearised_history``.
        The network itself (``apply_fn``) and its parameters are not kept; :meth:`from_result`
        reads the result back into a :class:`Run` whose series, regimes and histories equal
        this run's.

        Raises:
            ValueError: a history or record field that is not numbers (or equal-shaped arrays),
                or a probe whose records do not all have the same fields; the message names it.
        """
        result: dict[str, Any] = {
            "n_parameters": int(self.n_parameters),
            "learning_rate": None if self.learning_rate is None else float(self.learning_rate),
            "history": _numeric_columns(self.history, "history"),
            "records": {
                probe: _record_columns(records, probe) for probe, records in self.records.items()
            },
            "probes": list(self.records),
        }
        if self.linearised_history is not None:
            result["linearised_history"] = _numeric_columns(
                self.linearised_history, "linearised_history"
            )
        return result

    @classmethod
    def from_result(cls, result: dict[str, Any]) -> Run:
        """The :class:`Run` of a result written by :meth:`to_result` (e.g. read from the
        store): histories as lists of numbers, records as dicts keyed by ``"epoch"``;
        ``initial_params``, ``params`` and ``apply_fn`` are ``None``.

        Raises:
            ValueError: ``result`` lacks a field of :meth:`to_result`, or a probe's columns
                differ in length; the message names it.
        """
        if not isinstance(result, dict):
            raise ValueError(f"a run's result must be a dict, got {type(result).__name__}")
        missing = [name for name in ("n_parameters", "history", "records") if name not in result]
        if missing:
            raise ValueError(f"a run's result needs {missing}; it has {sorted(result)}")
        order = result.get("probes", list(result["records"]))
        if sorted(order) != sorted(result["records"]):
            recorded = list(result["records"])
            raise ValueError(f"probes {order} are not the recorded probes {recorded}")
        records = {}
        for probe in order:
            columns = result["records"][probe]
            lengths = {name: len(column) for name, column in columns.items()}
            if len(set(lengths.values())) > 1:
                raise ValueError(f"records of probe {probe!r} differ in length: {lengths}")
            n = next(iter(lengths.values()), 0)
            records[probe] = [
                {name: _item(column[i]) for name, column in columns.items()} for i in range(n)
            ]
        twin = result.get("linearised_history")
        rate = result.get("learning_rate")
        return cls(
            int(result["n_parameters"]),
            _lists(result["history"]),
            None,
            None,
            records,
            learning_rate=None if rate is None else float(rate),
            linearised_history=None if twin is None else _lists(twin),
        )


def _numeric_columns(columns: dict[str, Sequence], where: str) -> dict[str, np.ndarray]:
    out = {}
    for name, values in columns.items():
        try:
            array = np.asarray(values)
        except ValueError as error:  # ragged
            raise ValueError(f"{where}[{name!r}] is not an array of numbers: {error}") from error
        if array.dtype.kind not in "biuf":
            raise ValueError(f"{where}[{name!r}] is not numbers (dtype {array.dtype})")
        out[name] = array
    return out


def _record_columns(records: Sequence[dict], probe: str) -> dict[str, np.ndarray]:
    fields = {frozenset(record) for record in records}
    if len(fields) > 1:
        found = [sorted(names) for names in fields]
        raise ValueError(f"records of probe {probe!r} differ in their fields: {found}")
    names = list(records[0]) if records else ["epoch"]
    columns = {name: [record[name] for record in records] for name in names}
    return _numeric_columns(columns, f"records[{probe!r}]")


def _item(value):
    # A scalar back as the Python number it was recorded as; an array field stays an array.
    value = np.asarray(value)
    return value.item() if value.ndim == 0 else value


def _lists(columns: dict[str, np.ndarray]) -> dict[str, list]:
    return {name: np.asarray(values).tolist() for name, values in columns.items()}


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
    kernel_eta: float | None = None,
    linearised: bool = False,
    learning_rate: float | None = None,
) -> Run:
    """Train ``MLP(hidden, n_outputs, activation)`` and record its kernel measures.

    The network is initialised from the first half of ``key`` (:func:`initial_mlp`) and
    trained with ``optimizer`` (default Adam, learning rate 10⁻³, as in the authors' grid) on
    ``loss_fn`` with the order drawn from the second half. The kernel is recorded
    (:class:`~ntkbook.ntk.KernelRecorder`, before the epochs scheduled by ``every`` and at the
    end) on the first ``n_probe`` samples of the train and/or test data, as ``probes`` says.
    Records go to ``records_dir/<name>_<probe>.json`` (resumed when they exist with the same
    settings), or to a temporary directory that is removed afterwards.

    Learning rate (at most one of ``optimizer``, ``kernel_eta``, ``learning_rate``):
    ``learning_rate`` trains with plain SGD at that fixed rate, the same for every width (the
    standard parametrisation's practice); ``kernel_eta`` trains with plain SGD at
    :func:`kernel_learning_rate` ``(η = kernel_eta)`` of the network's own kernel at
    initialisation on the train probe (the NTK-style rule, a rate that shrinks with width).
    Both are kept in :attr:`Run.learning_rate`.

    ``linearised=True`` also trains the linearised twin ``f(θ₀) + J(θ₀)(θ − θ₀)``
    (:func:`~ntkbook.ntk.linearize`) from the same initialisation with the same optimizer,
    loss, data, order and test data (without kernel records); its history is
    :attr:`Run.linearised_history`.

    Raises:
        ValueError: bad arguments (from the model, the recorders or :func:`~ntkbook.train.train`),
            an unknown probe, a probe set smaller than ``n_probe``, more than one learning-rate
            option, or a training whose final loss is not finite (a diverged rate, named).
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
    chosen = [
        option
        for option, value in (
            ("optimizer", optimizer),
            ("kernel_eta", kernel_eta),
            ("learning_rate", learning_rate),
        )
        if value is not None
    ]
    if len(chosen) > 1:
        raise ValueError(f"give at most one of optimizer, kernel_eta, learning_rate; got {chosen}")
    if not isinstance(linearised, bool):
        raise ValueError(f"linearised must be True or False, got {linearised!r}")
    init_key, train_key = jax.random.split(key)
    apply_fn, params = initial_mlp(hidden, n_outputs, activation, init_key, train_data[0])
    rate = None
    if learning_rate is not None:
        if isinstance(learning_rate, bool) or not np.isfinite(learning_rate) or learning_rate <= 0:
            raise ValueError(
                f"learning_rate must be a positive finite number, got {learning_rate!r}"
            )
        rate = float(learning_rate)
    elif kernel_eta is not None:
        rate = kernel_learning_rate(apply_fn, params, train_data[0][:n_probe], kernel_eta)
    if rate is not None:
        optimizer = _sgd(rate)
    optimizer = optimizer if optimizer is not None else _ADAM
    with tempfile.TemporaryDirectory(prefix="kernel_records_") as scratch:
        directory = Path(records_dir) if records_dir is not None else Path(scratch)
        recorders = {
            probe: KernelRecorder(
                apply_fn,
                data[probe][0][:n_probe],
                directory / f"{name}_{probe}.json",
                every=every,
                measures=measures,
                name=probe,
            )
            for probe in probes
        }
        settings = dict(
            epochs=epochs,
            batch_size=batch_size,
            key=train_key,
            test_data=test_data,
            classification=classification,
        )
        try:
            result = train(
                apply_fn,
                params,
                optimizer,
                loss_fn,
                train_data,
                recorders=list(recorders.values()),
                **settings,
            )
        except ValueError as error:
            # A recorder meets the parameters of a diverged run first; say what diverged.
            if rate is None or "NaN or inf" not in str(error):
                raise
            raise ValueError(
                f"training the network at learning rate {rate:.4g} diverged ({error}); lower "
                "the learning rate"
            ) from error
        _check_finite(result.history, "the network", rate)
        records = {probe: list(recorder.records) for probe, recorder in recorders.items()}
    twin = None
    if linearised:
        twin = train(
            linearize(apply_fn, params), params, optimizer, loss_fn, train_data, **settings
        )
        _check_finite(twin.history, "the linearised network", rate)
    return Run(
        n_parameters(params),
        result.history,
        params,
        result.params,
        records,
        apply_fn=apply_fn,
        learning_rate=rate,
        linearised_history=None if twin is None else twin.history,
        linearised_params=None if twin is None else twin.params,
    )


def _check_finite(history: dict[str, list[float]], what: str, rate: float | None) -> None:
    final = {name: values[-1] for name, values in history.items() if name.endswith("_loss")}
    bad = {name: value for name, value in final.items() if not np.isfinite(value)}
    if bad:
        at = f" at learning rate {rate:.4g}" if rate is not None else ""
        raise ValueError(f"training {what}{at} diverged: final {bad}; lower the learning rate")


def run_measures(run: Run, probe_x=None, probe_targets=None) -> dict[str, float]:
    """The end-of-training numbers of one :func:`dense_run`, as one flat dict.

    Always: ``test_loss`` (and ``test_accuracy`` when recorded) after the last epoch,
    ``entropy_change`` ``S_T − S_0`` and ``trace_ratio`` ``(Tr Θ_T/N)/(Tr Θ_0/N)`` from the
    first and last records of the train probe, ``n_parameters`` and ``learning_rate`` (NaN
    when not set by :func:`dense_run`). With a linearised twin: ``test_loss_linearised`` (and
    ``test_accuracy_linearised``). With ``probe_x``: ``relative_kernel_change``
    ``‖Θ_T − Θ_0‖_F / ‖Θ_0‖_F`` of the traced kernel on ``probe_x``; with ``probe_targets``
    as well, the centred kernel–target alignment before (``alignment_initial``) and after
    (``alignment_final``) training (:mod:`ntkbook.ntk.feature_learning`).
    """
    if "test_loss" not in run.history:
        raise ValueError("run_measures needs a run with test data (no test_loss in its history)")
    _, entropy, _ = run.series("entropy", "train")
    _, trace, _ = run.series("trace_per_sample", "train")
    out = {
        "test_loss": float(run.history["test_loss"][-1]),
        "entropy_change": float(entropy[-1] - entropy[0]),
        "trace_ratio": float(trace[-1] / trace[0]),
        "n_parameters": float(run.n_parameters),
        "learning_rate": float("nan") if run.learning_rate is None else run.learning_rate,
    }
    if "test_accuracy" in run.history:
        out["test_accuracy"] = float(run.history["test_accuracy"][-1])
    if run.linearised_history is not None:
        out["test_loss_linearised"] = float(run.linearised_history["test_loss"][-1])
        if "test_accuracy" in run.linearised_history:
            out["test_accuracy_linearised"] = float(run.linearised_history["test_accuracy"][-1])
    if probe_x is not None:
        if run.apply_fn is None:
            raise ValueError("the run has no apply_fn, so its kernels cannot be computed")
        kernel_fn = kernel_function(
            run.apply_fn, trace_outputs=True, method="auto", check_per_sample=True
        )
        initial = np.asarray(kernel_fn(run.initial_params, jnp.asarray(probe_x)), np.float64)
        final = np.asarray(kernel_fn(run.params, jnp.asarray(probe_x)), np.float64)
        out["relative_kernel_change"] = relative_kernel_change(initial, final)
        if probe_targets is not None:
            out["alignment_initial"] = kernel_target_alignment(initial, probe_targets)
            out["alignment_final"] = kernel_target_alignment(final, probe_targets)
    return out


def agreement_width(
    gaps, widths: Sequence[float], *, n_standard_errors: float = 2.0, standard_error=None
) -> float:
    """The narrowest width from which on a network and its linearised twin agree.

    ``gaps`` is ``(n_seeds, K)``: per seed and width, the test loss of the network minus that
    of its linearised twin (paired: same initialisation and data order). At width ``k`` they
    agree when ``|ḡ_k| ≤ n_standard_errors · s_k/√n`` (``ḡ_k`` the mean over seeds, ``s_k``
    the standard deviation, ``ddof=1``). Returns the narrowest ``widths[k]`` such that every
    width from ``k`` on agrees; when the widest does not agree, the next step of the grid
    beyond it, ``widths[-1]² / widths[-2]`` (agreement is not reached in the measured range).
    ``widths`` must be strictly increasing and positive.

    ``standard_error`` (one per width) replaces ``s_k/√n``: a bootstrap over seeds passes the
    standard errors of the original sample, so that a resample that repeats one seed is
    compared on the same scale instead of with a standard error of zero.
    """
    gaps = np.asarray(gaps, dtype=np.float64)
    widths = np.asarray(widths, dtype=np.float64)
    if widths.ndim != 1 or widths.size < 2:
        raise ValueError(f"widths must be 1-D with at least 2 values, got {widths}")
    if np.any(widths <= 0) or np.any(np.diff(widths) <= 0):
        raise ValueError(f"widths must be positive and strictly increasing, got {widths}")
    if gaps.ndim != 2 or gaps.shape[1] != widths.size or gaps.shape[0] < 2:
        raise ValueError(
            f"gaps must be (n_seeds >= 2, {widths.size}) for {widths.size} widths, "
            f"got shape {gaps.shape}"
        )
    if not np.all(np.isfinite(gaps)):
        raise ValueError("gaps contain NaN or inf")
    if not np.isfinite(n_standard_errors) or n_standard_errors <= 0:
        raise ValueError(f"n_standard_errors must be positive, got {n_standard_errors!r}")
    if standard_error is None:
        standard_error = gaps.std(axis=0, ddof=1) / np.sqrt(gaps.shape[0])
    standard_error = np.asarray(standard_error, dtype=np.float64)
    if standard_error.shape != widths.shape or np.any(~(standard_error >= 0)):
        raise ValueError(
            f"standard_error must be {widths.size} non-negative values, got {standard_error}"
        )
    agree = np.abs(gaps.mean(axis=0)) <= n_standard_errors * standard_error
    if not agree[-1]:
        return float(widths[-1] ** 2 / widths[-2])
    first = widths.size - 1
    while first > 0 and agree[first - 1]:
        first -= 1
    return float(widths[first])


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
