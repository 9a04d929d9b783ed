"""Recording collective variables of the eNTK during training.

Every recorder here follows :class:`ntkbook.train.Recorder`, the protocol that
:func:`ntkbook.train.train` calls: ``start_training(settings)`` once, then
``recorder(epoch, params, final=...)`` before each epoch's update and once after the last
(``final=True``). Each keeps ``records``, a list of dicts keyed by ``"epoch"``, and returns one
shape from ``series(measure)``: a :class:`Series` ``(epochs, values, standard_error)``. Which
epochs are recorded is set by ``every`` (:class:`Schedule`): an interval, or a list of epochs
(for example log-spaced); the final state is always recorded. Kernel measures come from one
table, :mod:`ntkbook.ntk.measures`.

A :class:`KernelRecorder` is called before each epoch's update (epoch 0 is the initial state).
At every scheduled epoch it computes the kernel on a fixed probe set ONCE, decomposes it once
(float64 ``eigh``), derives all requested measures from that one spectrum and appends a record
to a JSON results file. The file is rewritten atomically after every record, so a crash loses
nothing that was finished, and a recorder pointed at an existing file resumes: epochs already
recorded are skipped.

A file is resumed only by the run that made it. It carries three keys (see :mod:`ntkbook.resume`),
and a resume that differs in any of them raises ``ValueError`` naming what differs, instead of
reusing records of another run:

- ``settings``: the recorder's own (name, measures, interval, probe set and targets, loss
  function) plus any ``settings`` the caller adds (for example the chapter's parameters);
- ``training``: the settings of the :func:`ntkbook.train.train` call that drives the recorder
  (model structure and outputs at initialisation, optimizer updates, data, batch size, key),
  handed over through :meth:`KernelRecorder.start_training` before the first epoch;
- a *state signature* per recorded epoch: the parameters and the outputs on the probe set. When
  an epoch already in the file comes round again, the network must be the one recorded there, so
  a changed learning rate, initialisation or model function is caught even without ``train``.
"""

from __future__ import annotations

import functools
import json
import numbers
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ntkbook.atomic import atomic_write_json
from ntkbook.ntk.kernel import ntk_fn
from ntkbook.ntk.measures import KERNEL_MEASURES, kernel_measures
from ntkbook.ntk.position import spectral_position
from ntkbook.resume import (
    callable_name,
    differences,
    fingerprint,
    settings_hash,
    signature,
    structure,
)

__all__ = [
    "KernelRecorder",
    "FunctionRecorder",
    "Schedule",
    "Series",
    "load_records",
    "log_spaced_epochs",
    "MEASURES",
    "records_series",
]

#: What a :class:`KernelRecorder` can record: the kernel measures of
#: :data:`ntkbook.ntk.measures.KERNEL_MEASURES` and measures of the probe targets.
MEASURES: tuple[str, ...] = (
    *KERNEL_MEASURES,
    "loss",
    "accuracy",
    "chi_loss",
    "chi_net",
    "chi_pos",
    "delta_loss",
)
_NEEDS_TARGETS = {"loss", "accuracy", "chi_loss", "chi_net", "chi_pos", "delta_loss"}
_SPECTRAL_POSITION = {"chi_loss", "chi_net", "chi_pos", "delta_loss"}
_FORMAT = "ntkbook.kernel_records/2"
# Files of format 1 carry no training settings and no state signatures: readable, not resumable.
_READABLE = (_FORMAT, "ntkbook.kernel_records/1")


@functools.lru_cache(maxsize=64)
def _cached_kernel_function(apply_fn: Callable, options: tuple) -> Callable:
    return ntk_fn(apply_fn, **dict(options))


def kernel_function(apply_fn: Callable, **options) -> Callable:
    """:func:`ntkbook.ntk.ntk_fn` of ``apply_fn``, shared by the recorders of the same model
    function and options, so that the seeds of one configuration compile its kernel once."""
    try:
        return _cached_kernel_function(apply_fn, tuple(sorted(options.items())))
    except TypeError:  # an unhashable model function: a kernel function of its own
        return ntk_fn(apply_fn, **options)


class Series(NamedTuple):
    """One recorded measure over training: the record epochs, the values and their standard
    errors (``None`` where a record is a single measurement, as in :class:`KernelRecorder`)."""

    epochs: np.ndarray
    values: np.ndarray
    standard_error: np.ndarray | None


class Schedule:
    """The epochs at which a recorder records, from ``every``.

    ``every`` is a positive integer ``k`` (every ``k``-th epoch: 0, k, 2k, …) or a sequence of
    epochs (non-negative integers, strictly increasing, e.g. log-spaced ones). The final state
    (``final=True``) is recorded whatever the schedule.

    Raises:
        ValueError: ``every`` is neither, naming the bad value.
    """

    def __init__(self, every: int | Sequence[int]) -> None:
        if isinstance(every, bool):
            raise ValueError(f"every must be a positive integer or a list of epochs, got {every!r}")
        if isinstance(every, numbers.Integral):
            if every < 1:
                raise ValueError(f"every must be a positive integer, got {every!r}")
            self.interval: int | None = int(every)
            self.epochs: tuple[int, ...] | None = None
            return
        if isinstance(every, str) or not isinstance(every, Sequence | np.ndarray):
            raise ValueError(f"every must be a positive integer or a list of epochs, got {every!r}")
        epochs = list(every)
        if not epochs:
            raise ValueError("every is an empty list of epochs: nothing would be recorded")
        for value in epochs:
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ValueError(
                    f"every lists the epoch {value!r}; epochs must be non-negative integers"
                )
        for before, after in zip(epochs, epochs[1:], strict=False):
            if after <= before:
                raise ValueError(
                    f"every must list epochs in increasing order without repeats; {before} is "
                    f"followed by {after}"
                )
        self.interval = None
        self.epochs = tuple(int(e) for e in epochs)

    def due(self, epoch: int, final: bool = False) -> bool:
        """Whether ``epoch`` is scheduled (or is the ``final`` state)."""
        if final:
            return True
        if self.interval is not None:
            return epoch % self.interval == 0
        return int(epoch) in self.epochs

    def as_setting(self) -> int | list[int]:
        """``every`` as a JSON value."""
        return self.interval if self.interval is not None else list(self.epochs)


def records_series(records: Sequence[Mapping], measure: str) -> Series:
    """:class:`Series` of ``measure`` from records keyed by ``"epoch"`` (sorted by epoch); the
    standard error is read from ``"<measure>_standard_error"`` where the records carry it."""
    rows = sorted(records, key=lambda r: r["epoch"])
    error_key = f"{measure}_standard_error"
    errors = None
    if rows and all(error_key in r for r in rows):
        errors = np.array([r[error_key] for r in rows], dtype=float)
    return Series(
        np.array([r["epoch"] for r in rows], dtype=int),
        np.array([r[measure] for r in rows]),
        errors,
    )


def load_records(path: str | Path) -> list[dict]:
    """Records of a results file written by :class:`KernelRecorder`, ordered by epoch."""
    payload = _read(Path(path))
    return payload["records"]


def _read(path: Path) -> dict:
    try:
        payload = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"kernel records file {path} is not valid JSON: {error}") from error
    if not isinstance(payload, dict) or payload.get("format") not in _READABLE:
        raise ValueError(f"{path} is not a kernel records file (format {_FORMAT!r})")
    return payload


class KernelRecorder:
    """Compute eNTK measures on a fixed probe set before the scheduled epochs' updates.

    Parameters
    ----------
    apply_fn:
        ``apply_fn(params, x) -> (N, O)``.
    probe_x, probe_y:
        The fixed probe set; ``probe_y`` (class labels or regression targets) is needed for
        ``loss``, ``accuracy`` and the spectral-position measures ``chi_*``/``delta_loss``.
    path:
        JSON results file; resumed if it exists with the same settings.
    measures:
        Any of :data:`MEASURES`: the kernel measures of :mod:`ntkbook.ntk.measures` (formulas
        there: ``entropy`` is ``−Σ p ln p`` in nats, ``trace_per_sample`` is ``Tr Θ / N``, …),
        ``loss`` and ``accuracy`` on the probe set, and the spectral-position measures.
    every:
        A positive integer ``k`` (record before every ``k``-th epoch) or a list of epochs
        (strictly increasing, e.g. log-spaced); see :class:`Schedule`. The final state is
        recorded whatever ``every`` says.
    loss_fn:
        ``loss_fn(predictions, y) -> scalar``, for ``loss`` and ``chi_*``.
    settings:
        Anything else that changes the records, as JSON values (for example
        ``{"learning_rate": 0.01, "width": 64}``); folded into the file's settings, so that a
        file recorded with other values is refused rather than resumed.
    check_per_sample:
        Passed to :func:`ntkbook.ntk.ntk_fn` (the check that ``apply_fn`` treats samples
        independently).
    """

    def __init__(
        self,
        apply_fn: Callable,
        probe_x,
        path: str | Path,
        *,
        probe_y=None,
        loss_fn: Callable | None = None,
        every: int | Sequence[int] = 1,
        measures: Sequence[str] = ("entropy", "trace_per_sample"),
        trace_outputs: bool = True,
        method: str = "auto",
        name: str = "probe",
        settings: Mapping[str, Any] | None = None,
        check_per_sample: bool = True,
    ) -> None:
        unknown = [m for m in measures if m not in MEASURES]
        if unknown:
            raise ValueError(f"unknown measures {unknown}; valid measures: {', '.join(MEASURES)}")
        if not measures:
            raise ValueError("measures is empty: nothing to record")
        self.schedule = Schedule(every)
        needs = sorted(set(measures) & _NEEDS_TARGETS)
        if needs and probe_y is None:
            raise ValueError(f"measures {needs} need probe_y")
        if set(measures) & (_SPECTRAL_POSITION | {"loss"}) and loss_fn is None:
            raise ValueError("measures 'loss' and 'chi_*' need loss_fn")
        self.apply_fn = apply_fn
        self.probe_x = jnp.asarray(probe_x)
        self.probe_y = None if probe_y is None else jnp.asarray(probe_y)
        self.loss_fn = loss_fn
        self.every = self.schedule.as_setting()
        self.measures = tuple(measures)
        self.trace_outputs = trace_outputs
        self.path = Path(path)
        self.name = name
        self._kernel_fn = kernel_function(
            apply_fn, trace_outputs=trace_outputs, method=method, check_per_sample=check_per_sample
        )
        self.settings: dict[str, Any] = {
            "name": name,
            "measures": list(self.measures),
            "every": self.every,
            "trace_outputs": trace_outputs,
            "n_probe": int(self.probe_x.shape[0]),
            "probe_fingerprint": fingerprint(self.probe_x),
            "probe_targets": None if self.probe_y is None else fingerprint(self.probe_y),
            "loss_fn": None if loss_fn is None else callable_name(loss_fn),
        }
        for key, value in dict(settings or {}).items():
            if key in self.settings:
                raise ValueError(f"settings key {key!r} is one of the recorder's own settings")
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError) as error:
                raise ValueError(f"settings[{key!r}] is not a JSON value: {value!r}") from error
            self.settings[key] = json.loads(json.dumps(value))
        self.training: dict[str, Any] | None = None
        self.records: list[dict] = []
        self._model: str | None = None
        self._states: dict[str, Any] = {}
        if self.path.exists():
            self._resume(_read(self.path))

    def _refuse(self, what: str, differing: list[str]) -> ValueError:
        return ValueError(
            f"{self.path} was recorded with other {what}: {'; '.join(differing)}. Its records "
            "belong to another run: remove the file or choose another path"
        )

    def _resume(self, payload: dict) -> None:
        if payload["format"] != _FORMAT:
            raise ValueError(
                f"{self.path} was written by an older ntkbook ({payload['format']}) without the "
                "settings of its training, so resuming it cannot be checked: remove the file or "
                "choose another path"
            )
        differing = differences(payload.get("settings", {}), self.settings)
        if differing:
            raise self._refuse("settings", differing)
        self.records = payload["records"]
        self.training = payload.get("training")
        self._model = payload.get("model")
        self._states = payload.get("states", {})

    def start_training(self, training: Mapping[str, Any]) -> None:
        """Take the settings of the training that drives this recorder (called by
        :func:`ntkbook.train.train` before the first epoch), so that the file is keyed by them.

        Raises:
            ValueError: the file was recorded from a training with other settings.
        """
        training = dict(training)
        if self.training is not None:
            differing = differences(self.training, training)
            if differing:
                raise self._refuse("training settings", differing)
        self.training = training

    def _check_state(self, epoch: int, params) -> tuple[str, dict]:
        """The model structure and state signature of ``params``; raise if they differ from
        those recorded (the structure always, the signature at an epoch already recorded)."""
        model = structure(params)
        if self._model is not None and model != self._model:
            differing = differences({"model": self._model}, {"model": model})
            raise self._refuse("model parameters", differing)
        outputs = np.asarray(self.apply_fn(params, self.probe_x))
        state = signature(*jax.tree_util.tree_leaves(params), outputs)
        stored = self._states.get(str(epoch))
        if stored is not None and differences({"state": stored}, {"state": state}):
            raise ValueError(
                f"{self.path}: the network at epoch {epoch} is not the one recorded there (its "
                "parameters or its outputs on the probe set differ): the model, its "
                "initialisation or its training (learning rate, optimizer, data, seed) changed "
                "since the file was written. Its records belong to another run: remove the "
                "file or choose another path"
            )
        return model, state

    @property
    def recorded_epochs(self) -> set[int]:
        return {int(r["epoch"]) for r in self.records}

    def due(self, epoch: int, final: bool = False) -> bool:
        """Whether ``epoch`` is a recording epoch (scheduled by ``every``, or the ``final``
        state) not yet in the results file."""
        return self.schedule.due(epoch, final) and epoch not in self.recorded_epochs

    @property
    def settings_hash(self) -> str:
        """Hash of the recorder's settings and (once started) its training's settings."""
        return settings_hash({"settings": self.settings, "training": self.training})

    def measure(self, params) -> dict:
        """All requested measures for ``params``, from one kernel and one eigendecomposition."""
        wanted = set(self.measures)
        values: dict = {}
        spectral = [m for m in self.measures if m in KERNEL_MEASURES]
        if spectral:
            kernel = np.asarray(self._kernel_fn(params, self.probe_x))
            n_outputs = 1 if self.trace_outputs else kernel.shape[0] // self.probe_x.shape[0]
            values.update(kernel_measures(kernel, spectral, n_outputs=n_outputs))
        if wanted & {"loss", "accuracy"}:
            predictions = self.apply_fn(params, self.probe_x)
            if "loss" in wanted:
                values["loss"] = float(self.loss_fn(predictions, self.probe_y))
            if "accuracy" in wanted:
                labels = self.probe_y if self.probe_y.ndim == 1 else self.probe_y.argmax(-1)
                values["accuracy"] = float(jnp.mean(predictions.argmax(-1) == labels))
        if wanted & _SPECTRAL_POSITION:
            position = spectral_position(
                self.apply_fn, params, self.probe_x, self.probe_y, self.loss_fn
            )
            for key, value in position.as_dict().items():
                if key in wanted:
                    values[key] = value
        return values

    def __call__(self, epoch: int, params, *, final: bool = False) -> dict | None:
        """Record at ``epoch`` if due (before that epoch's update); return the new record.

        ``final=True`` (passed by :func:`ntkbook.train.train` after the last epoch) records the
        final state even when ``every`` does not schedule ``epoch``. At an epoch already in
        the file nothing is computed, but the network must be the one recorded there.

        Raises:
            ValueError: the network differs from the one the file recorded (see the module
                docstring).
        """
        if not self.schedule.due(epoch, final):
            return None
        model, state = self._check_state(epoch, params)
        if epoch in self.recorded_epochs:
            return None
        record = {"epoch": int(epoch), **self.measure(params)}
        self.records.append(record)
        self.records.sort(key=lambda r: r["epoch"])
        self._model = model
        self._states[str(int(epoch))] = state
        payload = {
            "format": _FORMAT,
            "settings": self.settings,
            "settings_hash": self.settings_hash,
            "model": self._model,
            "states": self._states,
            "records": self.records,
        }
        if self.training is not None:
            payload["training"] = self.training
        atomic_write_json(self.path, payload)
        return record

    def series(self, measure: str) -> Series:
        """:class:`Series` ``(epochs, values, None)`` of one recorded measure (one kernel per
        record, so no standard error)."""
        if measure not in self.measures:
            raise ValueError(f"{measure!r} is not recorded; recorded: {', '.join(self.measures)}")
        return records_series(self.records, measure)


class FunctionRecorder:
    """A recorder (:class:`ntkbook.train.Recorder`) around a function of the parameters.

    At every epoch scheduled by ``every`` (and at the final state) it calls
    ``measure(epoch, params)``; a returned mapping of JSON values is kept as the record
    ``{"epoch": epoch, **values}`` (``None`` keeps nothing). For measures that are not kernel
    measures, for example the spectral position on a probe set.
    """

    def __init__(self, measure: Callable, *, every: int | Sequence[int] = 1) -> None:
        if not callable(measure):
            raise ValueError(f"measure must be callable, got {measure!r}")
        self.measure = measure
        self.schedule = Schedule(every)
        self.records: list[dict] = []
        self.training: dict[str, Any] | None = None

    def start_training(self, training: Mapping[str, Any]) -> None:
        """Keep the settings of the training that drives this recorder."""
        self.training = dict(training)

    def __call__(self, epoch: int, params, *, final: bool = False) -> dict | None:
        if not self.schedule.due(epoch, final) or int(epoch) in {r["epoch"] for r in self.records}:
            return None
        values = self.measure(int(epoch), params)
        if values is None:
            return None
        if "epoch" in values:
            raise ValueError("measure returned the key 'epoch', which the recorder sets itself")
        record = {"epoch": int(epoch), **values}
        self.records.append(record)
        return record

    def series(self, measure: str) -> Series:
        """:class:`Series` ``(epochs, values, standard_error)`` of one recorded measure (the
        standard error only where the records carry ``"<measure>_standard_error"``)."""
        if not self.records or any(measure not in r for r in self.records):
            present = sorted({k for r in self.records for k in r} - {"epoch"})
            raise ValueError(f"{measure!r} is not recorded; recorded: {', '.join(present)}")
        return records_series(self.records, measure)


def log_spaced_epochs(last: int, count: int) -> list[int]:
    """About ``count`` log-spaced integer epochs from 0 to ``last``, both included: the
    rounded values of ``geomspace(1, last + 1, count) − 1``, without repeats (so fewer than
    ``count`` when the early ones coincide). A schedule for ``every``.

    Raises:
        ValueError: ``last`` negative or ``count`` below 2, naming the value.
    """
    if isinstance(last, bool) or not isinstance(last, numbers.Integral) or last < 0:
        raise ValueError(f"last must be a non-negative integer, got {last!r}")
    if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 2:
        raise ValueError(f"count must be an integer of at least 2, got {count!r}")
    epochs = np.round(np.geomspace(1, last + 1, int(count))).astype(int) - 1
    return sorted({0, int(last), *epochs.tolist()})
