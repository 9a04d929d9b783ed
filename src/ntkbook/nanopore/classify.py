"""Event classification: inputs (scaleograms, features, raw events), networks, training, metrics.

Inputs, all computed from the relative drop ``b(t) = 1 − I(t)/I_0`` (dimensionless, so the
open-pore current of a device cancels):

- **scaleograms** (:func:`event_scaleograms`): ``log|W|`` of the ``hhhat`` (μ = 5) CWT of the
  event with its padding, at scales whose wavelets peak on a log grid of frequencies (Hz), so
  rows mean the same frequency at any sampling rate; resized to ``image_size``;
- **features** (:func:`event_features`): catch22 (``pycatch22``) of the event samples plus mean,
  standard deviation, skewness and excess kurtosis of ``b``, ``log10`` dwell and the blockade;
- **raw events** (:func:`raw_events`): ``b`` over the event and its padding, linearly resampled
  to a fixed length.

Networks (Flax, no batch statistics): :class:`ScaleogramResNet` (residual blocks with group
normalisation), :class:`EventCNN1D`, :class:`FeatureMLP`. Each ends in a ``Dense`` named
``head`` (the layer that head fine-tuning trains).

Metrics: top-k accuracy, confusion matrix, binomial standard error ``√(p(1−p)/n)``, expected
calibration error ``ECE = Σ_b (n_b/N) |acc_b − conf_b|`` over equal-width confidence bins,
temperature scaling (``softmax(z/T)`` with ``T`` minimising the validation negative
log-likelihood), and pooled accuracy: ``k`` events of one class classified together by summing
their log-probabilities (independent events).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.optimize
import scipy.special
import scipy.stats

from ntkbook.nanopore.cwt import scaleogram, scales_for_frequencies
from ntkbook.nanopore.events import Events, check_padding_inside, event_windows
from ntkbook.nanopore.simulate import Trace
from ntkbook.progress import Progress, track

__all__ = [
    "event_scaleograms",
    "event_features",
    "raw_events",
    "ScaleogramResNet",
    "EventCNN1D",
    "FeatureMLP",
    "FitResult",
    "fit",
    "predict_logits",
    "accuracy_with_error",
    "top_k_accuracy",
    "confusion_matrix",
    "reliability",
    "expected_calibration_error",
    "fit_temperature",
    "negative_log_likelihood",
    "PooledAccuracy",
    "pooled_accuracy",
    "standardize",
]


def _relative_drop(trace: Trace, events: Events, start: np.ndarray, length: int) -> np.ndarray:
    idx = start[:, None] + np.arange(length)[None, :]
    return 1.0 - trace.current[idx] / events.open_current[:, None].astype(np.float32)


def event_scaleograms(
    trace: Trace,
    events: Events,
    *,
    image_size: tuple[int, int],
    frequency_range: tuple[float, float] = (500.0, 50e3),
    n_scales: int = 32,
    padding: float = 100e-6,
    batch_size: int = 64,
) -> np.ndarray:
    """Scaleograms ``(N, height, width)`` (float32) of every event; rows from high to low f
    (``frequency_range = (lowest, highest)`` in Hz)."""
    if len(events) == 0:
        raise ValueError("no events to transform")
    if not 0 < frequency_range[0] < frequency_range[1]:
        raise ValueError(
            f"frequency_range must be (lowest, highest) with 0 < lowest < highest Hz, got "
            f"{tuple(frequency_range)}"
        )
    frequencies = np.geomspace(frequency_range[1], frequency_range[0], n_scales)
    scales = scales_for_frequencies(frequencies, trace.sampling_rate)
    window_start, bucket, crop = event_windows(events, trace.current.size, padding)
    images = np.empty((len(events), *image_size), np.float32)
    for length in np.unique(bucket):
        members = np.flatnonzero(bucket == length)
        for lo in range(0, members.size, batch_size):
            chunk = members[lo : lo + batch_size]
            # Every batch has the same shape (the last one padded by repetition), so each
            # bucket length compiles once.
            padded = np.resize(chunk, batch_size) if chunk.size < batch_size else chunk
            windows = _relative_drop(
                trace, events.select(padded), window_start[padded], int(length)
            )
            out = scaleogram(windows, scales, tuple(image_size), columns=crop[padded])
            images[chunk] = np.asarray(out)[: chunk.size]
    return images


def raw_events(
    trace: Trace, events: Events, *, length: int = 128, padding: float = 100e-6
) -> np.ndarray:
    """Relative drop over each event and its padding, resampled to ``length`` points.

    An event whose padding runs past either end of the trace is an error, as in
    :func:`event_scaleograms` (detect with ``edge_margin >= padding``)."""
    if len(events) == 0:
        raise ValueError("no events to resample")
    pad = int(round(padding * trace.sampling_rate))
    check_padding_inside(events, trace.current.size, pad)
    out = np.empty((len(events), length), np.float32)
    for i in range(len(events)):
        lo = int(events.start[i]) - pad
        hi = int(events.end[i]) + pad
        segment = 1.0 - trace.current[lo:hi] / np.float32(events.open_current[i])
        out[i] = np.interp(
            np.linspace(0, segment.size - 1, length), np.arange(segment.size), segment
        )
    return out


FEATURE_NAMES_MOMENTS = ("mean", "std", "skewness", "kurtosis", "log10_dwell", "blockade")


def event_features(trace: Trace, events: Events) -> tuple[np.ndarray, list[str]]:
    """catch22 features plus moments of each event, ``(N, 28)``, and their names.

    A feature that is NaN or infinite for an event is an error naming both (nothing is
    silently replaced)."""
    import pycatch22

    if len(events) == 0:
        raise ValueError("no events to compute features of")
    rows, names = [], None
    for i in range(len(events)):
        b = 1.0 - trace.current[events.start[i] : events.end[i]] / np.float32(
            events.open_current[i]
        )
        catch = pycatch22.catch22_all(b.astype(np.float64).tolist())
        names = names or list(catch["names"])
        moments = [
            float(b.mean()),
            float(b.std()),
            float(scipy.stats.skew(b)) if b.std() > 0 else 0.0,
            float(scipy.stats.kurtosis(b)) if b.std() > 0 else 0.0,
            float(np.log10(events.dwell[i])),
            float(events.blockade[i]),
        ]
        rows.append(list(catch["values"]) + moments)
    names = names + list(FEATURE_NAMES_MOMENTS)
    features = np.asarray(rows, dtype=np.float64)
    bad_event, bad_feature = np.nonzero(~np.isfinite(features))
    if bad_event.size:
        i, j = int(bad_event[0]), int(bad_feature[0])
        raise ValueError(
            f"feature {names[j]!r} is {features[i, j]} for event {i} (samples "
            f"{int(events.start[i])}-{int(events.end[i])}); {bad_event.size} non-finite value(s)"
        )
    return features.astype(np.float32), names


def standardize(
    train: np.ndarray, *others: np.ndarray, per_feature: bool | None = None
) -> list[np.ndarray]:
    """``(a − μ)/σ`` with the training mean ``μ`` and standard deviation ``σ``, applied to
    ``train`` and to ``others``.

    ``per_feature=True`` takes ``μ, σ`` per column of a 2-D table (statistical features, each
    in its own unit); ``False`` takes one ``μ, σ`` over all values (images and raw events,
    whose positions share one unit, so relative amplitudes are kept: the open-pore padding of
    a raw event stays near zero instead of being blown up to unit variance). The default is
    per column for 2-D ``train`` and one number otherwise.
    """
    train = np.asarray(train)
    if train.shape[0] == 0:
        raise ValueError("no training samples to standardize with")
    if per_feature is None:
        per_feature = train.ndim == 2
    if per_feature and train.ndim != 2:
        raise ValueError(f"per_feature standardisation needs a 2-D table, got shape {train.shape}")
    axis = 0 if per_feature else None
    mean = train.mean(axis=axis, keepdims=per_feature)
    std = train.std(axis=axis, keepdims=per_feature)
    std = np.where(std > 0, std, 1.0)
    return [((np.asarray(a) - mean) / std).astype(np.float32) for a in (train, *others)]


class _ResidualBlock(nn.Module):
    features: int
    stride: int

    @nn.compact
    def __call__(self, x):
        groups = min(8, self.features)
        y = nn.Conv(self.features, (3, 3), (self.stride, self.stride))(x)
        y = nn.relu(nn.GroupNorm(num_groups=groups)(y))
        y = nn.Conv(self.features, (3, 3))(y)
        y = nn.GroupNorm(num_groups=groups)(y)
        if x.shape[-1] != self.features or self.stride != 1:
            x = nn.Conv(self.features, (1, 1), (self.stride, self.stride))(x)
        return nn.relu(x + y)


class ScaleogramResNet(nn.Module):
    """Small ResNet: ``conv3×3 → [residual block]×len(widths) (stride 2 after the first) →
    global average pool → Dense(n_classes)``. Inputs ``(N, H, W)`` or ``(N, H, W, C)``."""

    widths: Sequence[int] = (16, 32, 64)
    n_classes: int = 42

    @nn.compact
    def __call__(self, x):
        if x.ndim == 3:
            x = x[..., None]
        x = nn.relu(nn.Conv(self.widths[0], (3, 3))(x))
        for i, width in enumerate(self.widths):
            x = _ResidualBlock(width, 1 if i == 0 else 2)(x)
        return nn.Dense(self.n_classes, name="head")(x.mean(axis=(1, 2)))


class EventCNN1D(nn.Module):
    """``[Conv1D(k=7) → relu → max-pool 2]×len(widths) → global average pool → Dense``."""

    widths: Sequence[int] = (16, 32, 64)
    n_classes: int = 42

    @nn.compact
    def __call__(self, x):
        if x.ndim == 2:
            x = x[..., None]
        for width in self.widths:
            x = nn.relu(nn.Conv(width, (7,))(x))
            x = nn.max_pool(x, (2,), (2,))
        return nn.Dense(self.n_classes, name="head")(x.mean(axis=1))


class FeatureMLP(nn.Module):
    """``[Dense → relu]×len(hidden) → Dense(n_classes)`` on standardised features."""

    hidden: Sequence[int] = (128, 128)
    n_classes: int = 42

    @nn.compact
    def __call__(self, x):
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.n_classes, name="head")(x)


@dataclass
class FitResult:
    """Trained parameters and the mean training loss of every epoch."""

    params: object
    losses: list[float]


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
    losses = []
    for _ in track(range(epochs), description="fit epochs", progress=progress):
        order = rng.permutation(x.shape[0])[: n_batches * batch_size].reshape(n_batches, -1)
        epoch_loss = jnp.float32(0.0)
        for batch in order:
            params, opt_state, loss = _train_step(
                model, params, opt_state, x[batch], y[batch], hyper, trainable
            )
            epoch_loss = epoch_loss + loss
        losses.append(float(epoch_loss) / n_batches)
    if not np.isfinite(losses[-1]):
        raise FloatingPointError(f"training diverged: loss {losses[-1]} after {epochs} epochs")
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


def accuracy_with_error(predictions: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Accuracy ``p`` and its binomial standard error ``√(p(1−p)/n)``."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if predictions.shape != labels.shape or labels.size == 0:
        raise ValueError(f"predictions {predictions.shape} and labels {labels.shape} must match")
    p = float(np.mean(predictions == labels))
    return p, float(np.sqrt(p * (1 - p) / labels.size))


def top_k_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of samples whose label is among the ``k`` largest logits."""
    logits, labels = np.asarray(logits), np.asarray(labels)
    if not 1 <= k <= logits.shape[1]:
        raise ValueError(f"k must be in [1, {logits.shape[1]}], got {k}")
    top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, n_classes: int) -> np.ndarray:
    """``C[i, j]`` = number of events of true class ``i`` predicted as ``j``."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if labels.shape != predictions.shape or labels.ndim != 1:
        raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} must match")
    for name, values in (("labels", labels), ("predictions", predictions)):
        if values.size and (
            not np.issubdtype(values.dtype, np.integer)
            or values.min() < 0
            or values.max() >= n_classes
        ):
            raise ValueError(
                f"{name} must be integers in [0, {n_classes}), got {values.dtype} values in "
                f"[{values.min()}, {values.max()}]"
            )
    matrix = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def _softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    return scipy.special.softmax(np.asarray(logits, np.float64) / temperature, axis=1)


def reliability(
    logits: np.ndarray, labels: np.ndarray, n_bins: int = 15, temperature: float = 1.0
) -> dict[str, np.ndarray]:
    """Per equal-width confidence bin: mean confidence, accuracy and count (empty bins: NaN)."""
    probabilities = _softmax(logits, temperature)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore"):
        mean_confidence = np.bincount(index, confidence, n_bins) / count
        accuracy = np.bincount(index, correct.astype(float), n_bins) / count
    return {"edges": edges, "confidence": mean_confidence, "accuracy": accuracy, "count": count}


def expected_calibration_error(
    logits: np.ndarray, labels: np.ndarray, n_bins: int = 15, temperature: float = 1.0
) -> float:
    """``ECE = Σ_b (n_b/N) |acc_b − conf_b|`` over ``n_bins`` equal-width confidence bins."""
    bins = reliability(logits, labels, n_bins, temperature)
    filled = bins["count"] > 0
    weights = bins["count"][filled] / bins["count"].sum()
    return float(np.sum(weights * np.abs(bins["accuracy"][filled] - bins["confidence"][filled])))


def negative_log_likelihood(
    logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0
) -> float:
    """Mean ``−ln softmax(z/T)_y``."""
    z = np.asarray(logits, np.float64) / temperature
    log_p = z - scipy.special.logsumexp(z, axis=1, keepdims=True)
    return float(-np.mean(log_p[np.arange(len(labels)), np.asarray(labels)]))


TEMPERATURE_BOUNDS = (0.01, 100.0)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature ``T`` in ``TEMPERATURE_BOUNDS`` minimising the negative log-likelihood of
    ``softmax(z/T)``. A minimum at a bound (logits carrying no information, or a degenerate
    validation set) is an error rather than a silently clipped temperature."""
    low, high = np.log(TEMPERATURE_BOUNDS[0]), np.log(TEMPERATURE_BOUNDS[1])
    result = scipy.optimize.minimize_scalar(
        lambda log_t: negative_log_likelihood(logits, labels, float(np.exp(log_t))),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-5},
    )
    if min(result.x - low, high - result.x) < 1e-3:
        raise ValueError(
            f"the best temperature lies at the bound {float(np.exp(result.x)):.3g} of "
            f"{TEMPERATURE_BOUNDS}: the validation negative log-likelihood has no interior minimum"
        )
    return float(np.exp(result.x))


@dataclass(frozen=True)
class PooledAccuracy:
    """Pooled accuracy ``{k: (p, SE)}`` and the classes every ``k`` was measured on."""

    accuracy: dict[int, tuple[float, float]]
    classes: np.ndarray


def pooled_accuracy(
    logits: np.ndarray,
    labels: np.ndarray,
    n_events: Sequence[int],
    key: jax.Array,
    n_trials: int = 2000,
    temperature: float = 1.0,
) -> PooledAccuracy:
    """Accuracy (and binomial SE over trials) when ``k`` events of one class are classified
    together: draw a class uniformly, ``k`` of its test events without replacement, and predict
    ``argmax Σ_i ln p(c | event_i)``.

    Every ``k`` uses the same classes, those with at least ``max(n_events)`` test events, so
    the points of an accuracy-vs-``k`` curve are comparable; a class with fewer events is left
    out of every ``k`` (``classes`` says which remain). Classes are drawn uniformly, so ``k = 1``
    is the class-balanced accuracy over ``classes``, not the plain test accuracy."""
    log_p = scipy.special.log_softmax(np.asarray(logits, np.float64) / temperature, axis=1)
    labels = np.asarray(labels)
    ks = [int(k) for k in n_events]
    if not ks or min(ks) < 1:
        raise ValueError(f"n_events must be positive counts, got {list(n_events)}")
    counts = {c: int(np.sum(labels == c)) for c in np.unique(labels)}
    classes = np.asarray([c for c, n in counts.items() if n >= max(ks)])
    if classes.size == 0:
        raise ValueError(
            f"no class has {max(ks)} test events (the most any class has is "
            f"{max(counts.values(), default=0)})"
        )
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
    members_of = {c: np.flatnonzero(labels == c) for c in classes}
    out = {}
    for k in ks:
        correct = 0
        for _ in range(n_trials):
            c = classes[rng.integers(classes.size)]
            members = rng.choice(members_of[c], size=k, replace=False)
            correct += int(np.argmax(log_p[members].sum(axis=0)) == c)
        p = correct / n_trials
        out[k] = (p, float(np.sqrt(p * (1 - p) / n_trials)))
    return PooledAccuracy(accuracy=out, classes=classes)
