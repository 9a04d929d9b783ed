"""Recording collective variables of the eNTK during training.

A :class:`KernelRecorder` is called before each epoch's update (epoch 0 is the initial state).
At every ``every``-th epoch it computes the kernel on a fixed probe set ONCE, decomposes it once
(float64 ``eigh``), derives all requested measures from that one spectrum and appends a record
to a JSON results file. The file is rewritten atomically after every record, so a crash loses
nothing that was finished, and a recorder pointed at an existing file resumes: epochs already
recorded are skipped. A file written with different settings (probe set, measures, interval)
is never silently overwritten.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from ntkbook.atomic import atomic_write_json
from ntkbook.ntk import spectrum
from ntkbook.ntk.kernel import ntk_fn
from ntkbook.ntk.position import spectral_position

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
_FORMAT = "ntkbook.kernel_records/1"


def _fingerprint(array) -> str:
    data = np.ascontiguousarray(np.asarray(array))
    digest = hashlib.sha256(data.tobytes())
    digest.update(str((data.shape, data.dtype.str)).encode())
    return digest.hexdigest()[:16]


def load_records(path: str | Path) -> list[dict]:
    """Records of a results file written by :class:`KernelRecorder`, ordered by epoch."""
    payload = _read(Path(path))
    return payload["records"]


def _read(path: Path) -> dict:
    try:
        payload = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"kernel records file {path} is not valid JSON: {error}") from error
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
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
        self._kernel_fn = ntk_fn(apply_fn, trace_outputs=trace_outputs, method=method)
        self.settings = {
            "name": name,
            "measures": list(self.measures),
            "every": every,
            "trace_outputs": trace_outputs,
            "n_probe": int(self.probe_x.shape[0]),
            "probe_fingerprint": _fingerprint(self.probe_x),
        }
        self.records: list[dict] = []
        if self.path.exists():
            payload = _read(self.path)
            stored = payload.get("settings", {})
            differing = sorted(k for k in self.settings if stored.get(k) != self.settings[k])
            if differing:
                raise ValueError(
                    f"{self.path} was recorded with other settings ({', '.join(differing)}); "
                    "remove it or choose another path"
                )
            self.records = payload["records"]

    @property
    def recorded_epochs(self) -> set[int]:
        return {int(r["epoch"]) for r in self.records}

    def due(self, epoch: int, final: bool = False) -> bool:
        """Whether ``epoch`` is a recording epoch (every ``every``-th, or the ``final`` state)
        not yet in the results file."""
        return (final or epoch % self.every == 0) and epoch not in self.recorded_epochs

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
        final state even when ``epoch`` is not a multiple of ``every``.
        """
        if not self.due(epoch, final):
            return None
        record = {"epoch": int(epoch), **self.measure(params)}
        self.records.append(record)
        self.records.sort(key=lambda r: r["epoch"])
        atomic_write_json(
            self.path, {"format": _FORMAT, "settings": self.settings, "records": self.records}
        )
        return record

    def series(self, measure: str) -> tuple[np.ndarray, np.ndarray]:
        """``(epochs, values)`` of one recorded measure."""
        if measure not in self.measures:
            raise ValueError(f"{measure!r} is not recorded; recorded: {', '.join(self.measures)}")
        epochs = np.array([r["epoch"] for r in self.records])
        return epochs, np.array([r[measure] for r in self.records])
