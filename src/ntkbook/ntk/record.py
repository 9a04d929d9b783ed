"""Recording collective variables of the eNTK during training.

A :class:`KernelRecorder` is called before each epoch's update (epoch 0 is the initial state).
At every ``every``-th epoch it computes the kernel on a fixed probe set ONCE, decomposes it once
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

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ntkbook.atomic import atomic_write_json
from ntkbook.ntk import spectrum
from ntkbook.ntk.kernel import ntk_fn
from ntkbook.ntk.position import spectral_position
from ntkbook.resume import (
    callable_name,
    differences,
    fingerprint,
    settings_hash,
    signature,
    structure,
)

__all__ = ["KernelRecorder", "load_records", "MEASURES"]

MEASURES: tuple[str, ...] = (
    "entropy",
    "effective_entropy",
    "trace",
    "trace_per_sample",
    "effective_rank",
    "covariance_entropy",
    "self_entropy",
    "eigenvalues",
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
    """Compute eNTK measures on a fixed probe set before every ``every``-th epoch's update.

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
        Any of :data:`MEASURES`. ``entropy`` is ``−Σ p ln p`` (nats), ``effective_entropy`` the
        same divided by ``ln N``; ``trace`` is ``Tr Θ`` and ``trace_per_sample`` ``Tr Θ / N``.
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
        every: int = 1,
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
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive integer, got {every!r}")
        needs = sorted(set(measures) & _NEEDS_TARGETS)
        if needs and probe_y is None:
            raise ValueError(f"measures {needs} need probe_y")
        if set(measures) & (_SPECTRAL_POSITION | {"loss"}) and loss_fn is None:
            raise ValueError("measures 'loss' and 'chi_*' need loss_fn")
        self.apply_fn = apply_fn
        self.probe_x = jnp.asarray(probe_x)
        self.probe_y = None if probe_y is None else jnp.asarray(probe_y)
        self.loss_fn = loss_fn
        self.every = every
        self.measures = tuple(measures)
        self.trace_outputs = trace_outputs
        self.path = Path(path)
        self.name = name
        self._kernel_fn = ntk_fn(
            apply_fn, trace_outputs=trace_outputs, method=method, check_per_sample=check_per_sample
        )
        self.settings: dict[str, Any] = {
            "name": name,
            "measures": list(self.measures),
            "every": every,
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
        :func:`ntkbook.train.train` before the first epoch).

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
        """Whether ``epoch`` is a recording epoch (every ``every``-th, or the ``final`` state)
        not yet in the results file."""
        return (final or epoch % self.every == 0) and epoch not in self.recorded_epochs

    @property
    def settings_hash(self) -> str:
        """Hash of the recorder's settings and (once started) its training's settings."""
        return settings_hash({"settings": self.settings, "training": self.training})

    def measure(self, params) -> dict:
        """All requested measures for ``params``, from one kernel and one eigendecomposition."""
        wanted = set(self.measures)
        values: dict = {}
        spectral = wanted - _NEEDS_TARGETS
        if spectral:
            kernel = np.asarray(self._kernel_fn(params, self.probe_x))
            n_outputs = 1 if self.trace_outputs else kernel.shape[0] // self.probe_x.shape[0]
            if spectral & {"entropy", "effective_entropy", "effective_rank", "eigenvalues"}:
                eigenvalues = spectrum.eigensystem(kernel).eigenvalues
            if "entropy" in wanted:
                values["entropy"] = spectrum.entropy(eigenvalues)
            if "effective_entropy" in wanted:
                values["effective_entropy"] = spectrum.entropy(eigenvalues, effective=True)
            if "effective_rank" in wanted:
                values["effective_rank"] = spectrum.effective_rank(eigenvalues)
            if "eigenvalues" in wanted:
                values["eigenvalues"] = eigenvalues.tolist()
            if "trace" in wanted:
                values["trace"] = spectrum.trace(kernel, n_outputs=n_outputs)
            if "trace_per_sample" in wanted:
                values["trace_per_sample"] = spectrum.trace(
                    kernel, per_sample=True, n_outputs=n_outputs
                )
            if "covariance_entropy" in wanted:
                values["covariance_entropy"] = spectrum.covariance_entropy(kernel)
            if "self_entropy" in wanted:
                values["self_entropy"] = spectrum.self_entropy(kernel)
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
        final state even when ``epoch`` is not a multiple of ``every``. At an epoch already in
        the file nothing is computed, but the network must be the one recorded there.

        Raises:
            ValueError: the network differs from the one the file recorded (see the module
                docstring).
        """
        if not (final or epoch % self.every == 0):
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

    def series(self, measure: str) -> tuple[np.ndarray, np.ndarray]:
        """``(epochs, values)`` of one recorded measure."""
        if measure not in self.measures:
            raise ValueError(f"{measure!r} is not recorded; recorded: {', '.join(self.measures)}")
        epochs = np.array([r["epoch"] for r in self.records])
        return epochs, np.array([r[measure] for r in self.records])
