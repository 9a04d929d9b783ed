"""Metrics of a classifier's predictions, and the naive-Bayes floor on the blockade level.

Top-k accuracy, confusion matrix, binomial standard error ``√(p(1−p)/n)``, expected
calibration error ``ECE = Σ_b (n_b/N) |acc_b − conf_b|`` over equal-width confidence bins,
temperature scaling (``softmax(z/T)`` with ``T`` minimising the validation negative
log-likelihood), pooled accuracy (``k`` events of one class classified together by summing
their log-probabilities, independent events) and :func:`level_floor`: Gaussian naive Bayes on
the blockade alone, the accuracy every model must beat to show it uses more than the level.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jax
import numpy as np
import scipy.optimize
import scipy.special

__all__ = [
    "accuracy_with_error",
    "top_k_accuracy",
    "confusion_matrix",
    "reliability",
    "expected_calibration_error",
    "fit_temperature",
    "negative_log_likelihood",
    "PooledAccuracy",
    "pooled_accuracy",
    "level_floor",
    "level_readout_error",
    "TEMPERATURE_BOUNDS",
]


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


def level_floor(
    train_level: np.ndarray,
    train_labels: np.ndarray,
    test_level: np.ndarray,
) -> np.ndarray:
    """Predictions of Gaussian naive Bayes on one feature (the blockade level): per class the
    training mean ``μ_c``, variance ``σ_c²`` and prior ``π_c``, and the prediction
    ``argmax_c ln π_c − ½ ln(2π σ_c²) − (x − μ_c)²/(2σ_c²)`` (scikit-learn's ``GaussianNB``,
    with the same variance smoothing ``10⁻⁹ · max var``). Returns the predicted classes of
    ``test_level``."""
    from sklearn.naive_bayes import GaussianNB

    x_train = np.asarray(train_level, np.float64).reshape(-1, 1)
    x_test = np.asarray(test_level, np.float64).reshape(-1, 1)
    y_train = np.asarray(train_labels)
    if x_train.shape[0] != y_train.shape[0] or x_train.shape[0] == 0 or x_test.shape[0] == 0:
        raise ValueError(
            f"need as many training levels ({x_train.shape[0]}) as labels ({y_train.shape[0]}), "
            f"and some test levels ({x_test.shape[0]})"
        )
    if not (np.all(np.isfinite(x_train)) and np.all(np.isfinite(x_test))):
        raise ValueError("levels contain NaN or inf")
    return GaussianNB().fit(x_train, y_train).predict(x_test)


def level_readout_error(
    train_inputs: np.ndarray,
    train_level: np.ndarray,
    test_inputs: np.ndarray,
    test_level: np.ndarray,
) -> float:
    """How well a linear read-out recovers the level from an input: the RMS error on the test
    set of a ridge regression (regularisation chosen by leave-one-out over a log grid, inputs
    flattened and standardised per column with training statistics) from the inputs to the
    level. Compare it with the spacing of the class means: a read-out error larger than the
    spacing means the input hides the level from a linear model."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train = np.asarray(train_inputs, np.float64).reshape(len(train_inputs), -1)
    x_test = np.asarray(test_inputs, np.float64).reshape(len(test_inputs), -1)
    if x_train.shape[0] != np.size(train_level) or x_test.shape[0] != np.size(test_level):
        raise ValueError("inputs and levels must have one row per event")
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 4, 15)))
    model.fit(x_train, np.asarray(train_level, np.float64))
    residual = model.predict(x_test) - np.asarray(test_level, np.float64)
    return float(np.sqrt(np.mean(residual**2)))
