"""One optax training loop, for classification and regression, with recording callbacks.

``train`` shuffles with an explicit key, runs each epoch's minibatch updates as one jitted
``lax.scan`` (plus one step for a final smaller batch, so no sample is dropped), and calls every
recorder BEFORE each epoch's update: epoch 0 is the initial state and epoch ``epochs`` the final
one. Losses and accuracies in the history are measured at those same points on the full train
and test sets. With ``checkpoint_path`` the state is saved atomically after every epoch and a
rerun resumes from it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import flax.serialization
import jax
import jax.numpy as jnp
import optax

from ntkbook.atomic import write_bytes_atomic
from ntkbook.ntk.record import KernelRecorder

__all__ = ["cross_entropy_loss", "mse_loss", "accuracy", "train", "TrainResult"]


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
    recorders: Sequence[Callable] = (),
    classification: bool | None = None,
    checkpoint_path: str | Path | None = None,
) -> TrainResult:
    """Train ``params`` of ``apply_fn`` with ``optimizer`` on ``loss_fn(predictions, y)``.

    ``recorders`` are called as ``recorder(epoch, params)`` before each epoch's update and once
    after the last (epoch ``epochs``); a :class:`~ntkbook.ntk.KernelRecorder` gets
    ``final=True`` on that last call, so the final state is recorded whatever its interval.
    ``classification`` (default: integer labels) adds accuracies to the history.
    """
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
    x, y = _check_data("train_data", train_data)
    if not isinstance(batch_size, int) or not 1 <= batch_size:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    batch_size = min(batch_size, x.shape[0])
    test = _check_data("test_data", test_data) if test_data is not None else None
    if classification is None:
        classification = jnp.issubdtype(y.dtype, jnp.integer)

    def batch_loss(p, xb, yb):
        return loss_fn(apply_fn(p, xb), yb)

    @jax.jit
    def step(state, batch):
        p, opt_state = state
        xb, yb = batch
        grads = jax.grad(batch_loss)(p, xb, yb)
        updates, opt_state = optimizer.update(grads, opt_state, p)
        return (optax.apply_updates(p, updates), opt_state), None

    n_full = x.shape[0] // batch_size

    @jax.jit
    def epoch_update(p, opt_state, permutation):
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

    opt_state = optimizer.init(params)
    history: dict[str, list[float]] = {"epoch": []}
    start_epoch = 0
    checkpoint = Path(checkpoint_path) if checkpoint_path is not None else None
    if checkpoint is not None and checkpoint.exists():
        params, opt_state, start_epoch, history = _restore(checkpoint, params, opt_state)
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
            if final and isinstance(recorder, KernelRecorder):
                recorder(epoch, p, final=True)
            else:
                recorder(epoch, p)

    for epoch in range(start_epoch, epochs):
        log(epoch, params)
        permutation = jax.random.permutation(jax.random.fold_in(key, epoch), x.shape[0])
        params, opt_state = epoch_update(params, opt_state, permutation)
        remainder = permutation[n_full * batch_size :]
        if remainder.shape[0]:
            (params, opt_state), _ = step((params, opt_state), (x[remainder], y[remainder]))
        if checkpoint is not None:
            _save(checkpoint, params, opt_state, epoch + 1, history)
    if not history["epoch"] or history["epoch"][-1] != epochs:
        log(epochs, params, final=True)
    return TrainResult(params=params, history=history)


def _save(path: Path, params, opt_state, epoch: int, history: dict) -> None:
    payload = {
        "state": flax.serialization.to_state_dict({"params": params, "opt_state": opt_state}),
        "epoch": epoch,
        "history": json.dumps(history),
    }
    write_bytes_atomic(path, flax.serialization.msgpack_serialize(payload))


def _restore(path: Path, params, opt_state):
    try:
        payload = flax.serialization.msgpack_restore(path.read_bytes())
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
