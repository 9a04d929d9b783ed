"""Training of the nanopore classifiers: AdamW, a cosine schedule and early stopping.

:func:`fit` minimises softmax cross-entropy; with a validation set it keeps the parameters of
the epoch with the lowest validation loss and can stop early (the authors split their events
70/15/15 into training, validation and test sets and select on validation).
:func:`predict_logits` applies a trained network in batches of one shape.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.special

from ntkbook.progress import Progress, track

__all__ = ["FitResult", "fit", "predict_logits"]


@dataclass
class FitResult:
    """Trained parameters and the mean training loss of every epoch run.

    With a validation set, ``params`` are those of ``best_epoch`` (lowest validation loss;
    epochs counted from 1), ``validation_losses``/``validation_accuracies`` hold every epoch's
    values, and ``stopped_early`` says whether ``patience`` ended the run before ``epochs``."""

    params: object
    losses: list[float]
    validation_losses: list[float] = field(default_factory=list)
    validation_accuracies: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False


def _cosine_learning_rate(count, peak, total_steps):
    """``η_t = η·½(1 + cos(π·min(t, T)/T))``: cosine decay from ``peak`` to 0 over ``T`` steps."""
    progress = jnp.minimum(count, total_steps) / total_steps
    return peak * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))


def _optimizer(params, trainable: str, peak, total_steps, weight_decay):
    """AdamW with the cosine schedule; with ``trainable="head"`` every layer but ``head`` frozen.

    The hyperparameters may be traced: the optimizer state's structure does not depend on
    them, so one compiled step serves every learning rate, run length and weight decay.
    """
    optimizer = optax.adamw(
        lambda count: _cosine_learning_rate(count, peak, total_steps), weight_decay=weight_decay
    )
    if trainable == "all":
        return optimizer
    labels = {
        name: jax.tree_util.tree_map(lambda _, n=name: "train" if n == "head" else "freeze", sub)
        for name, sub in params["params"].items()
    }
    return optax.multi_transform(
        {"train": optimizer, "freeze": optax.set_to_zero()}, {"params": labels}
    )


@functools.partial(jax.jit, static_argnames=("model", "trainable"))
def _train_step(model, params, opt_state, xb, yb, hyper, trainable):
    """One AdamW step on a minibatch; compiled once per (model, trainable, batch shape)."""
    optimizer = _optimizer(params, trainable, *hyper)

    def loss_fn(p):
        logits = model.apply(p, xb)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


def fit(
    model: nn.Module,
    params,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    key: jax.Array,
    trainable: str = "all",
    weight_decay: float = 1e-4,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    patience: int | None = None,
    progress: Progress = False,
) -> FitResult:
    """Minimise softmax cross-entropy with AdamW, learning rate ``η_t = η·½(1 + cos(πt/T))``
    over the ``T = epochs·⌊N/batch⌋`` steps.

    Each epoch draws a fresh permutation and takes ``⌊N/batch⌋`` minibatches (a different
    remainder is left out each epoch). The step is jitted once per model, ``trainable`` and
    batch shape and reused by every later call (other data, learning rates, run lengths), so a
    sweep of fits compiles once. ``trainable="head"`` updates only the final ``head`` layer
    (the rest is frozen, weight decay included), ``"all"`` every parameter. ``progress``
    reports finished epochs (see :func:`ntkbook.progress.track`; silent by default).

    Early stopping: with ``validation = (x_val, y_val)`` the validation cross-entropy and
    accuracy are measured after every epoch, the parameters of the epoch with the lowest
    validation loss are returned, and with ``patience = p`` training stops once ``p`` epochs in
    a row have not lowered it (the learning-rate schedule still spans ``epochs``).
    """
    if trainable not in ("all", "head"):
        raise ValueError(f"trainable must be 'all' or 'head', got {trainable!r}")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if not (np.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning_rate must be positive, got {learning_rate!r}")
    x, y = np.asarray(x, np.float32), np.asarray(y)
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"x has {x.shape[0]} samples and y {y.shape[0]}; need equal, > 0")
    if not np.all(np.isfinite(x)):
        raise ValueError("training inputs contain NaN or inf")
    n_outputs = jax.eval_shape(model.apply, params, x[:1]).shape[-1]
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= n_outputs:
        raise ValueError(
            f"labels must be integers in [0, {n_outputs}) for a model with {n_outputs} "
            f"outputs, got {y.dtype} values in [{y.min()}, {y.max()}]"
        )
    y = y.astype(np.int32)
    if patience is not None:
        if validation is None:
            raise ValueError("patience needs a validation set (validation=(x_val, y_val))")
        if not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience must be a positive int, got {patience!r}")
    if validation is not None:
        x_val, y_val = np.asarray(validation[0], np.float32), np.asarray(validation[1])
        if x_val.shape[0] != y_val.shape[0] or x_val.shape[0] == 0:
            raise ValueError(
                f"validation has {x_val.shape[0]} inputs and {y_val.shape[0]} labels; need "
                "equal, > 0"
            )
        if x_val.shape[1:] != x.shape[1:]:
            raise ValueError(f"validation inputs {x_val.shape[1:]} differ from {x.shape[1:]}")
    batch_size = min(batch_size, x.shape[0])
    n_batches = x.shape[0] // batch_size
    total_steps = epochs * n_batches
    hyper = (
        jnp.float32(learning_rate),
        jnp.float32(total_steps),
        jnp.float32(weight_decay),
    )
    opt_state = _optimizer(params, trainable, *hyper).init(params)
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
    losses, val_losses, val_accuracies = [], [], []
    best = (np.inf, params, None)
    stopped_early = False
    for epoch in track(range(epochs), description="fit epochs", progress=progress):
        order = rng.permutation(x.shape[0])[: n_batches * batch_size].reshape(n_batches, -1)
        epoch_loss = jnp.float32(0.0)
        for batch in order:
            params, opt_state, loss = _train_step(
                model, params, opt_state, x[batch], y[batch], hyper, trainable
            )
            epoch_loss = epoch_loss + loss
        losses.append(float(epoch_loss) / n_batches)
        if validation is None:
            continue
        logits = predict_logits(model, params, x_val)
        log_p = scipy.special.log_softmax(logits, axis=1)
        val_losses.append(float(-np.mean(log_p[np.arange(y_val.size), y_val])))
        val_accuracies.append(float(np.mean(logits.argmax(1) == y_val)))
        if val_losses[-1] < best[0]:
            best = (val_losses[-1], params, epoch + 1)
        elif patience is not None and epoch + 1 - best[2] >= patience:
            stopped_early = epoch + 1 < epochs
            break
    if not np.isfinite(losses[-1]):
        raise FloatingPointError(f"training diverged: loss {losses[-1]} after {epochs} epochs")
    if validation is not None and best[2] is not None:
        return FitResult(
            params=best[1],
            losses=losses,
            validation_losses=val_losses,
            validation_accuracies=val_accuracies,
            best_epoch=best[2],
            stopped_early=stopped_early,
        )
    return FitResult(params=params, losses=losses)


@functools.partial(jax.jit, static_argnames=("model",))
def _apply(model, params, x):
    return model.apply(params, x)


def predict_logits(model: nn.Module, params, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Logits ``(N, n_classes)`` in float64, in batches of one shape (the last one padded), so
    the forward pass compiles once per model and batch size."""
    x = np.asarray(x, np.float32)
    if x.shape[0] == 0:
        raise ValueError("no inputs to predict")
    batch_size = min(batch_size, x.shape[0])
    out = []
    for lo in range(0, x.shape[0], batch_size):
        chunk = x[lo : lo + batch_size]
        padded = np.resize(chunk, (batch_size, *chunk.shape[1:]))
        out.append(np.asarray(_apply(model, params, padded))[: chunk.shape[0]])
    return np.concatenate(out).astype(np.float64)
