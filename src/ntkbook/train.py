"""One optax training loop, for classification and regression, with recording callbacks.

``train`` shuffles with an explicit key, runs each epoch's minibatch updates as one jitted
``lax.scan`` (plus one step for a final smaller batch, so no sample is dropped), and calls every
recorder BEFORE each epoch's update: epoch 0 is the initial state and epoch ``epochs`` the final
one. Losses and accuracies in the history are measured at those same points on the full train
and test sets. With ``checkpoint_path`` the state is saved atomically after every epoch and a
rerun resumes from it.

A checkpoint resumes only the training that wrote it. It carries the training's settings
(:func:`training_settings`: the model's parameter structure, its parameters and outputs at
initialisation, what the optimizer does, the loss function, the data, the batch size and the key),
and a resume with other settings raises ``ValueError`` naming each one that differs (a different
width, for example, is a checkpoint message, not a shape error in Flax). The number of epochs is
not part of the key: the state after epoch ``k`` does not depend on it (each epoch's order is
``fold_in(key, epoch)``), so a checkpoint of a shorter run extends to a longer one.

Every recorder follows one protocol, :class:`Recorder`: ``train`` calls
``recorder.start_training(settings)`` once before the first epoch (so that a recorder's file is
keyed by the training too), then ``recorder(epoch, params, final=False)`` before each epoch's
update and ``recorder(epochs, params, final=True)`` after the last. ``ntkbook.ntk`` has three:
:class:`~ntkbook.ntk.KernelRecorder` (the kernel on a probe set, resumable from its file),
:class:`~ntkbook.ntk.SubsampleRecorder` (averages over random subsets) and
:class:`~ntkbook.ntk.FunctionRecorder` (any function of the parameters).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ntkbook.atomic import write_bytes_atomic
from ntkbook.progress import Progress, track
from ntkbook.resume import (
    callable_name,
    differences,
    fingerprint,
    key_fingerprint,
    optimizer_signature,
    params_signature,
    settings_hash,
    signature,
    structure,
)

if TYPE_CHECKING:  # the data package imports this module
    from ntkbook.data.next_pixel import PixelStream

__all__ = [
    "Recorder",
    "cross_entropy_loss",
    "mse_loss",
    "accuracy",
    "train",
    "training_settings",
    "TrainResult",
    "StreamResult",
    "train_on_stream",
]

# Samples whose outputs at initialisation are part of the settings (they tell model functions
# with the same parameter shapes apart, e.g. tanh from relu).
_OUTPUT_PROBES = 8


@runtime_checkable
class Recorder(Protocol):
    """What :func:`train` calls on every recorder.

    - ``start_training(settings)``: once, before the first epoch, with the
      :func:`training_settings` of the run (a recorder that resumes from a file refuses a
      training with other settings by raising ``ValueError``);
    - ``recorder(epoch, params, final=False)``: before each epoch's update (epoch 0 is the
      initial state), and with ``final=True`` for the state after the last epoch, which a
      recorder records whatever its schedule. It returns the new record (a dict with the key
      ``"epoch"``) or ``None``.

    Recorders also keep ``records`` and give ``series(measure)``, a
    :class:`ntkbook.ntk.record.Series` ``(epochs, values, standard_error)``; ``train`` does
    not use them.
    """

    def start_training(self, settings: Mapping[str, Any]) -> None: ...

    def __call__(self, epoch: int, params: Any, *, final: bool = False) -> Mapping | None: ...


def cross_entropy_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Softmax cross-entropy, ``L = −(1/N) Σ_i Σ_a y_ia ln softmax(f_i)_a``.

    ``labels`` are integer classes ``(N,)`` or one-hot/probabilities ``(N, O)``.
    """
    if labels.ndim == 1:
        labels = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    if labels.shape != logits.shape:
        raise ValueError(f"labels shape {labels.shape} does not match logits {logits.shape}")
    return jnp.mean(optax.softmax_cross_entropy(logits, labels))


def mse_loss(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean squared error, ``L = (1/N) Σ_i ‖f(x_i) − y_i‖²`` (summed over outputs)."""
    targets = targets.reshape(predictions.shape)
    return jnp.mean(jnp.sum(jnp.square(predictions - targets), axis=-1))


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of samples whose arg-max output is the label (labels as classes or one-hot)."""
    if labels.ndim > 1:
        labels = labels.argmax(-1)
    return jnp.mean(logits.argmax(-1) == labels)


@dataclass
class TrainResult:
    """Final parameters and the per-epoch history (index ``k`` is the state before epoch ``k``)."""

    params: object
    history: dict[str, list[float]] = field(default_factory=dict)


def _check_data(name: str, data) -> tuple[jax.Array, jax.Array]:
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError(f"{name} must be a pair (x, y)")
    x, y = jnp.asarray(data[0]), jnp.asarray(data[1])
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{name}: x has {x.shape[0]} samples but y has {y.shape[0]}")
    for label, array in (("x", x), ("y", y)):
        if jnp.issubdtype(array.dtype, jnp.inexact) and bool(jnp.any(~jnp.isfinite(array))):
            raise ValueError(f"{name}: {label} contains NaN or inf")
    return x, y


def training_settings(
    apply_fn: Callable,
    params,
    optimizer: optax.GradientTransformation,
    loss_fn: Callable,
    train_data: tuple,
    *,
    batch_size: int,
    key: jax.Array,
    test_data: tuple | None = None,
    classification: bool | None = None,
) -> dict:
    """The settings that determine a training's trajectory, as JSON values (see
    :mod:`ntkbook.resume`): what a checkpoint and a recorder's file are keyed by.

    ``model`` (parameter paths, shapes, dtypes) is compared exactly, ``initial_params`` and
    ``initial_outputs`` (on the first training samples) and ``optimizer`` (its update of a fixed
    gradient at several steps) by signature, the data and the key by fingerprint.
    """
    x, y = (jnp.asarray(a) for a in train_data)
    if classification is None:
        classification = bool(jnp.issubdtype(y.dtype, jnp.integer))
    outputs = apply_fn(params, x[:_OUTPUT_PROBES])
    return {
        "model": structure(params),
        "initial_params": params_signature(params),
        "initial_outputs": signature(outputs),
        "optimizer": optimizer_signature(optimizer, params),
        "loss_fn": callable_name(loss_fn),
        "train_data": f"{fingerprint(x)}/{fingerprint(y)}",
        "test_data": None
        if test_data is None
        else f"{fingerprint(test_data[0])}/{fingerprint(test_data[1])}",
        "batch_size": int(min(batch_size, x.shape[0])),
        "key": key_fingerprint(key),
        "classification": bool(classification),
    }


def _build_programs(apply_fn: Callable, loss_fn: Callable, optimizer, classification: bool):
    """The jitted minibatch step, epoch update and evaluation of one training setup. The data
    are arguments, not constants, so one compiled program serves every run of the setup."""

    def batch_loss(p, xb, yb):
        return loss_fn(apply_fn(p, xb), yb)

    @jax.jit
    def step(state, batch):
        p, opt_state = state
        xb, yb = batch
        grads = jax.grad(batch_loss)(p, xb, yb)
        updates, opt_state = optimizer.update(grads, opt_state, p)
        return (optax.apply_updates(p, updates), opt_state), None

    @functools.partial(jax.jit, static_argnames=("n_full", "batch_size"))
    def epoch_update(p, opt_state, x, y, permutation, *, n_full, batch_size):
        idx = permutation[: n_full * batch_size].reshape(n_full, batch_size)
        (p, opt_state), _ = jax.lax.scan(step, (p, opt_state), (x[idx], y[idx]))
        return p, opt_state

    @jax.jit
    def evaluate(p, xe, ye):
        predictions = apply_fn(p, xe)
        out = {"loss": loss_fn(predictions, ye)}
        if classification:
            out["accuracy"] = accuracy(predictions, ye)
        return out

    return step, epoch_update, evaluate


_cached_programs = functools.lru_cache(maxsize=64)(_build_programs)


def _programs(apply_fn: Callable, loss_fn: Callable, optimizer, classification: bool):
    """:func:`_build_programs`, reused while the same model function, loss and optimizer object
    train again (seeds of one configuration), so that they are traced and compiled once."""
    try:
        return _cached_programs(apply_fn, loss_fn, optimizer, classification)
    except TypeError:  # an unhashable collaborator: build the programs for this run only
        return _build_programs(apply_fn, loss_fn, optimizer, classification)


def train(
    apply_fn: Callable,
    params,
    optimizer: optax.GradientTransformation,
    loss_fn: Callable,
    train_data: tuple,
    *,
    epochs: int,
    batch_size: int,
    key: jax.Array,
    test_data: tuple | None = None,
    recorders: Sequence[Recorder] = (),
    classification: bool | None = None,
    checkpoint_path: str | Path | None = None,
    progress: Progress = False,
) -> TrainResult:
    """Train ``params`` of ``apply_fn`` with ``optimizer`` on ``loss_fn(predictions, y)``.

    ``recorders`` follow :class:`Recorder`: each gets ``start_training(settings)`` with the
    :func:`training_settings`, then ``recorder(epoch, params, final=False)`` before each epoch's
    update and ``recorder(epochs, params, final=True)`` after the last. ``classification``
    (default: integer labels) adds accuracies to the history. ``checkpoint_path``: see the
    module docstring. ``progress`` reports finished epochs (``True`` for a bar, or a callback;
    see :mod:`ntkbook.progress`).

    Raises:
        ValueError: bad arguments (a recorder that does not follow :class:`Recorder` is named);
            a checkpoint or a recorder's file made by a training with
            other settings (the message names them), or a corrupt checkpoint.
    """
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
    x, y = _check_data("train_data", train_data)
    if not isinstance(batch_size, int) or not 1 <= batch_size:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    batch_size = min(batch_size, x.shape[0])
    test = _check_data("test_data", test_data) if test_data is not None else None
    for recorder in recorders:
        if not isinstance(recorder, Recorder):
            raise ValueError(
                f"recorder {recorder!r} does not follow ntkbook.train.Recorder: it needs "
                "start_training(settings) and __call__(epoch, params, *, final=False) (wrap a "
                "function of the parameters in ntkbook.ntk.FunctionRecorder)"
            )
    if classification is None:
        classification = jnp.issubdtype(y.dtype, jnp.integer)

    step, epoch_update, evaluate = _programs(apply_fn, loss_fn, optimizer, bool(classification))
    n_full = x.shape[0] // batch_size

    opt_state = optimizer.init(params)
    history: dict[str, list[float]] = {"epoch": []}
    start_epoch = 0
    checkpoint = Path(checkpoint_path) if checkpoint_path is not None else None
    settings = None
    if checkpoint is not None or recorders:
        settings = training_settings(
            apply_fn,
            params,
            optimizer,
            loss_fn,
            (x, y),
            batch_size=batch_size,
            key=key,
            test_data=test,
            classification=classification,
        )
    for recorder in recorders:
        recorder.start_training(settings)
    if checkpoint is not None and checkpoint.exists():
        params, opt_state, start_epoch, history = _restore(checkpoint, params, opt_state, settings)
        if start_epoch > epochs:
            raise ValueError(
                f"checkpoint {checkpoint} is at epoch {start_epoch}, past epochs={epochs}; "
                "raise epochs or remove the checkpoint"
            )

    def log(epoch, p, final=False):
        history["epoch"].append(epoch)
        for split, data in (("train", (x, y)), ("test", test)):
            if data is None:
                continue
            for name, value in evaluate(p, *data).items():
                history.setdefault(f"{split}_{name}", []).append(float(value))
        for recorder in recorders:
            recorder(epoch, p, final=final)

    for epoch in track(range(start_epoch, epochs), description="epochs", progress=progress):
        log(epoch, params)
        permutation = jax.random.permutation(jax.random.fold_in(key, epoch), x.shape[0])
        params, opt_state = epoch_update(
            params, opt_state, x, y, permutation, n_full=n_full, batch_size=batch_size
        )
        remainder = permutation[n_full * batch_size :]
        if remainder.shape[0]:
            (params, opt_state), _ = step((params, opt_state), (x[remainder], y[remainder]))
        if checkpoint is not None:
            _save(checkpoint, params, opt_state, epoch + 1, history, settings)
    if not history["epoch"] or history["epoch"][-1] != epochs:
        log(epochs, params, final=True)
    return TrainResult(params=params, history=history)


def _save(path: Path, params, opt_state, epoch: int, history: dict, settings: dict) -> None:
    payload = {
        "state": flax.serialization.to_state_dict({"params": params, "opt_state": opt_state}),
        "epoch": epoch,
        "history": json.dumps(history),
        "settings": json.dumps(settings, sort_keys=True),
        "settings_hash": settings_hash(settings),
    }
    write_bytes_atomic(path, flax.serialization.msgpack_serialize(payload))


def _restore(path: Path, params, opt_state, settings: dict):
    try:
        payload = flax.serialization.msgpack_restore(path.read_bytes())
        stored = payload.get("settings") if isinstance(payload, dict) else None
        stored = None if stored is None else json.loads(stored)
    except Exception as error:  # noqa: BLE001 - any decoding failure means a corrupt file
        raise ValueError(
            f"checkpoint {path} cannot be restored ({type(error).__name__}: {error}); "
            "remove it to start from scratch"
        ) from error
    if stored is None:
        raise ValueError(
            f"checkpoint {path} was written without the settings of its training (by an older "
            "ntkbook), so resuming it cannot be checked; remove it to start from scratch"
        )
    differing = differences(stored, settings)
    if differing:
        raise ValueError(
            f"checkpoint {path} was written by a training with other settings: "
            f"{'; '.join(differing)}. Remove it to start from scratch, or choose another "
            "checkpoint_path"
        )
    try:
        state = flax.serialization.from_state_dict(
            {"params": params, "opt_state": opt_state}, payload["state"]
        )
        return (
            state["params"],
            state["opt_state"],
            int(payload["epoch"]),
            json.loads(payload["history"]),
        )
    except Exception as error:  # noqa: BLE001 - any decoding failure means a corrupt file
        raise ValueError(
            f"checkpoint {path} cannot be restored ({type(error).__name__}: {error}); "
            "remove it to start from scratch"
        ) from error


@dataclass
class StreamResult:
    """Final parameters of :func:`train_on_stream` and the loss of every minibatch, measured
    before the update that used it (``batch_loss[s]``: step ``s``, a held-out loss, since the
    batch is fresh)."""

    params: object
    batch_loss: np.ndarray


@functools.lru_cache(maxsize=32)
def _stream_segment(apply_fn: Callable, loss_fn: Callable, optimizer) -> Callable:
    """Jitted updates ``start … stop − 1`` of a stream, one compiled program for every
    segment (the bounds are traced, so the log-spaced record steps do not recompile)."""

    def body(step, carry):
        params, opt_state, losses, xs, ys = carry
        loss, grads = jax.value_and_grad(lambda p: loss_fn(apply_fn(p, xs[step]), ys[step]))(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, losses.at[step].set(loss), xs, ys

    @jax.jit
    def segment(params, opt_state, losses, xs, ys, start, stop):
        params, opt_state, losses, _, _ = jax.lax.fori_loop(
            start, stop, body, (params, opt_state, losses, xs, ys)
        )
        return params, opt_state, losses

    return segment


def train_on_stream(
    apply_fn: Callable,
    params,
    optimizer: optax.GradientTransformation,
    loss_fn: Callable,
    stream: PixelStream,
    *,
    record_steps: Sequence[int],
    recorders: Sequence = (),
    key: jax.Array,
    progress: Progress = False,
) -> StreamResult:
    """One ``optimizer`` update of ``loss_fn(apply_fn(params, x), y)`` per minibatch of
    ``stream``, in order (the data are read once).

    Recorders follow :class:`ntkbook.train.Recorder`: ``start_training(settings)`` once, then
    ``recorder(s, params)`` before the update of every step ``s`` in ``record_steps`` (so the
    protocol's ``epoch`` counts updates here: with the data read once, one update is the only
    pass the batch gets) and ``recorder(n_steps, params, final=True)`` after the last update.
    ``key`` only enters the settings handed to the recorders (it is the key that dealt the
    stream). ``progress`` reports the finished segments between records.

    Raises:
        ValueError: ``record_steps`` not increasing integers in ``[0, n_steps]``.
    """
    steps = [int(s) for s in record_steps]
    if any(b <= a for a, b in zip(steps, steps[1:], strict=False)) or (
        steps and (steps[0] < 0 or steps[-1] > stream.n_steps)
    ):
        raise ValueError(
            f"record_steps must increase strictly within [0, {stream.n_steps}], got {steps}"
        )
    if recorders:
        settings = training_settings(
            apply_fn,
            params,
            optimizer,
            loss_fn,
            (stream.x[0], stream.y[0]),
            batch_size=stream.batch_size,
            key=key,
        )
        settings["n_steps"] = stream.n_steps
        for recorder in recorders:
            recorder.start_training(settings)
    segment = _stream_segment(apply_fn, loss_fn, optimizer)
    opt_state = optimizer.init(params)
    losses = jnp.zeros(stream.n_steps, dtype=jnp.float32)
    bounds = sorted({*steps, stream.n_steps})
    start = 0
    for stop in track(bounds, description="stream segments", progress=progress):
        if stop > start:
            params, opt_state, losses = segment(
                params, opt_state, losses, stream.x, stream.y, start, stop
            )
            start = stop
        if stop in steps and stop < stream.n_steps:
            for recorder in recorders:
                recorder(stop, params)
    for recorder in recorders:
        recorder(stream.n_steps, params, final=True)
    return StreamResult(params=params, batch_loss=np.asarray(losses))
