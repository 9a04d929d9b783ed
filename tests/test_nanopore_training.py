"""Classifier metrics against direct formulas; fine-tuning the head leaves the body unchanged."""

import jax
import numpy as np
import pytest
import scipy.special

from ntkbook.models.nanopore import FeatureMLP
from ntkbook.nanopore import inputs, metrics, training
from ntkbook.nanopore.simulate import PoreParameters
from ntkbook.nanopore.transfer import few_shot_indices, hardware_shift


@pytest.fixture(scope="module")
def logits_labels():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 400)
    logits = rng.normal(size=(400, 5)) * 2
    logits[np.arange(400), labels] += rng.normal(1.0, 1.0, 400)
    return logits, labels


def test_top_k_and_confusion(logits_labels):
    logits, labels = logits_labels
    rank = (logits > logits[np.arange(len(labels)), labels][:, None]).sum(axis=1)
    for k in (1, 2, 5):
        assert metrics.top_k_accuracy(logits, labels, k) == pytest.approx(np.mean(rank < k))
    matrix = metrics.confusion_matrix(labels, logits.argmax(1), 5)
    assert matrix.sum() == 400 and np.trace(matrix) == np.sum(logits.argmax(1) == labels)
    np.testing.assert_array_equal(matrix.sum(axis=1), np.bincount(labels, minlength=5))
    with pytest.raises(ValueError, match=r"labels must be integers in \[0, 5\)"):
        metrics.confusion_matrix(np.array([0, -1]), np.array([0, 1]), 5)
    with pytest.raises(ValueError, match="predictions must be integers"):
        metrics.confusion_matrix(np.array([0, 1]), np.array([0, 5]), 5)
    p, se = metrics.accuracy_with_error(logits.argmax(1), labels)
    assert se == pytest.approx(np.sqrt(p * (1 - p) / 400))


def test_ece_direct_formula(logits_labels):
    logits, labels = logits_labels
    prob = scipy.special.softmax(logits, axis=1)
    conf, correct = prob.max(1), prob.argmax(1) == labels
    ece = 0.0
    for lo, hi in zip(np.linspace(0, 1, 11)[:-1], np.linspace(0, 1, 11)[1:], strict=True):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - conf[inside].mean())
    assert metrics.expected_calibration_error(logits, labels, n_bins=10) == pytest.approx(ece)


def test_temperature_scaling_recovers_known_temperature():
    rng = np.random.default_rng(1)
    true_logits = rng.normal(size=(4000, 6)) * 2
    labels = np.array([rng.choice(6, p=p) for p in scipy.special.softmax(true_logits, axis=1)])
    # A model three times over-confident: T = 3 undoes it.
    t = metrics.fit_temperature(3 * true_logits, labels)
    assert t == pytest.approx(3.0, rel=0.1)
    nll = [
        metrics.negative_log_likelihood(3 * true_logits, labels, s) for s in (t * 0.9, t, t * 1.1)
    ]
    assert nll[1] <= min(nll[0], nll[2])
    # Logits unrelated to the labels: the likelihood keeps improving as T grows, no minimum.
    with pytest.raises(ValueError, match="at the bound"):
        metrics.fit_temperature(rng.normal(size=(500, 6)), rng.integers(0, 6, 500))


def test_pooling_perfect_and_uninformative_models():
    labels = np.repeat(np.arange(4), 10)
    perfect = np.eye(4)[labels] * 10
    out = metrics.pooled_accuracy(perfect, labels, [1, 3], jax.random.key(0), n_trials=200)
    assert out.accuracy[1][0] == 1.0 and out.accuracy[3][0] == 1.0
    np.testing.assert_array_equal(out.classes, np.arange(4))
    # Equal logits for every class (the argmax falls on class 0): with classes drawn
    # uniformly, every k gives chance 1/C.
    uniform = np.zeros((labels.size, 4))
    useless = metrics.pooled_accuracy(uniform, labels, [1, 5], jax.random.key(1), n_trials=4000)
    for k in (1, 5):
        p, se = useless.accuracy[k]
        assert abs(p - 0.25) < 4 * se
    with pytest.raises(ValueError, match="no class has 11"):
        metrics.pooled_accuracy(perfect, labels, [11], jax.random.key(0))


def test_pooling_uses_one_class_set_for_every_k():
    """Class 2 has only 2 test events: it is left out of k = 1 too, so the curve compares like
    with like (a model right only on class 2 scores 0 at every k, not 1/3 at k = 1)."""
    labels = np.array([0] * 10 + [1] * 10 + [2] * 2)
    always_two = np.tile([0.0, 0.0, 5.0], (labels.size, 1))
    out = metrics.pooled_accuracy(always_two, labels, [1, 3], jax.random.key(2), n_trials=300)
    np.testing.assert_array_equal(out.classes, [0, 1])
    assert out.accuracy[1][0] == 0.0 and out.accuracy[3][0] == 0.0


def test_head_fine_tuning_freezes_the_body():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    model = FeatureMLP(hidden=(16,), n_classes=2)
    params = model.init(jax.random.key(0), x[:1])
    tuned = training.fit(
        model,
        params,
        x,
        y,
        epochs=3,
        batch_size=16,
        learning_rate=1e-2,
        key=jax.random.key(1),
        trainable="head",
    )
    body_before = params["params"]["Dense_0"]["kernel"]
    np.testing.assert_array_equal(tuned.params["params"]["Dense_0"]["kernel"], body_before)
    assert not np.allclose(
        tuned.params["params"]["head"]["kernel"], params["params"]["head"]["kernel"]
    )


def test_fit_reports_each_finished_epoch_to_a_progress_callback():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(32, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    model = FeatureMLP(hidden=(8,), n_classes=2)
    calls = []
    training.fit(
        model,
        model.init(jax.random.key(0), x[:1]),
        x,
        y,
        epochs=3,
        batch_size=16,
        learning_rate=1e-2,
        key=jax.random.key(1),
        progress=lambda *args: calls.append(args),
    )
    assert calls == [(1, 3, "fit epochs"), (2, 3, "fit epochs"), (3, 3, "fit epochs")]


def test_few_shot_and_shift():
    labels = np.repeat(np.arange(3), 5)
    chosen = few_shot_indices(labels, 2, jax.random.key(0))
    assert np.all(np.bincount(labels[chosen]) == 2)
    with pytest.raises(ValueError, match="fewer than shots"):
        few_shot_indices(labels, 6, jax.random.key(0))
    shifted = hardware_shift(PoreParameters(), noise_factor=2.0)
    assert shifted.white == pytest.approx(2 * PoreParameters().white)


def test_fit_learns_and_compiles_once_per_model_shape():
    """A sweep of fits (other data, sizes, learning rates, run lengths) reuses one compiled
    step: a chapter fits each network many times, and recompiling for every fit would cost more
    than the training itself on a CPU."""
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(6, 10)) * 3
    model = FeatureMLP(hidden=(32,), n_classes=6)
    params = model.init(jax.random.key(0), np.zeros((1, 10), np.float32))
    before = training._train_step._cache_size()
    for n, learning_rate, epochs in ((300, 1e-2, 12), (420, 3e-3, 20)):
        y = rng.integers(0, 6, n)
        x = (centres[y] + rng.normal(size=(n, 10))).astype(np.float32)
        fitted = training.fit(
            model,
            params,
            x,
            y,
            epochs=epochs,
            batch_size=20,
            learning_rate=learning_rate,
            key=jax.random.key(n),
        )
        # Clusters 3σ apart per coordinate in 10 dimensions: a trained MLP is nearly perfect.
        predictions = training.predict_logits(model, fitted.params, x).argmax(1)
        assert np.mean(predictions == y) > 0.95
        assert fitted.losses[-1] < 0.2 * fitted.losses[0]
    assert training._train_step._cache_size() == before + 1
    with pytest.raises(ValueError, match=r"labels must be integers in \[0, 6\).*\[1, 6\]"):
        training.fit(
            model,
            params,
            x,
            np.minimum(y + 1, 6),
            epochs=1,
            batch_size=20,
            learning_rate=1e-3,
            key=jax.random.key(0),
        )


def test_standardize_one_number_keeps_relative_amplitudes():
    """Raw events share one unit: open-pore padding (small spread) must stay small, not be
    blown up to unit variance as a per-column standardisation would."""
    rng = np.random.default_rng(4)
    raw = np.concatenate(
        [rng.normal(0.0, 0.005, (200, 8)), rng.normal(0.5, 0.1, (200, 16))], axis=1
    )
    (per_column,) = inputs.standardize(raw, per_feature=True)
    (one_number,) = inputs.standardize(raw, per_feature=False)
    np.testing.assert_allclose(per_column.std(axis=0), 1.0, rtol=1e-4)
    assert one_number.mean() == pytest.approx(0.0, abs=1e-5)
    assert one_number.std() == pytest.approx(1.0, rel=1e-4)
    ratio = one_number[:, :8].std() / one_number[:, 8:].std()
    assert ratio == pytest.approx(raw[:, :8].std() / raw[:, 8:].std(), rel=1e-4)
    assert ratio < 0.1
    with pytest.raises(ValueError, match="2-D table"):
        inputs.standardize(np.zeros((4, 3, 3)), per_feature=True)


def test_early_stopping_returns_the_best_validation_epoch():
    """Labels that are pure noise: the training loss falls while the validation loss rises,
    so patience stops the run, and the parameters returned are those of the epoch with the
    lowest validation loss (recomputed here from the returned parameters)."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(240, 12)).astype(np.float32)
    y = rng.integers(0, 4, 240)
    x_val = rng.normal(size=(80, 12)).astype(np.float32)
    y_val = rng.integers(0, 4, 80)
    model = FeatureMLP(hidden=(64, 64), n_classes=4)
    params = model.init(jax.random.key(1), x[:1])
    fitted = training.fit(
        model,
        params,
        x,
        y,
        epochs=60,
        batch_size=16,
        learning_rate=3e-3,
        key=jax.random.key(2),
        validation=(x_val, y_val),
        patience=3,
    )
    assert fitted.stopped_early and len(fitted.losses) < 60
    assert len(fitted.validation_losses) == len(fitted.losses)
    assert fitted.best_epoch == 1 + int(np.argmin(fitted.validation_losses))
    assert len(fitted.losses) - fitted.best_epoch == 3
    logits = training.predict_logits(model, fitted.params, x_val)
    recomputed = metrics.negative_log_likelihood(logits, y_val)
    assert recomputed == pytest.approx(min(fitted.validation_losses), rel=1e-5)
    assert fitted.validation_accuracies[fitted.best_epoch - 1] == pytest.approx(
        np.mean(logits.argmax(1) == y_val)
    )
    with pytest.raises(ValueError, match="patience needs a validation set"):
        training.fit(
            model,
            params,
            x,
            y,
            epochs=2,
            batch_size=16,
            learning_rate=1e-3,
            key=jax.random.key(0),
            patience=2,
        )


def test_level_floor_is_gaussian_naive_bayes():
    """Two well separated levels are told apart; the decision follows the direct formula."""
    rng = np.random.default_rng(6)
    labels = np.repeat([0, 1, 2], 200)
    levels = np.array([0.3, 0.35, 0.5])[labels] + 0.01 * rng.standard_normal(600)
    predictions = metrics.level_floor(levels, labels, levels)
    mean = np.array([levels[labels == c].mean() for c in range(3)])
    var = np.array([levels[labels == c].var() for c in range(3)]) + 1e-9 * levels.var()
    log_like = -0.5 * np.log(2 * np.pi * var) - (levels[:, None] - mean) ** 2 / (2 * var)
    np.testing.assert_array_equal(predictions, log_like.argmax(1))
    assert np.mean(predictions == labels) > 0.98
    with pytest.raises(ValueError, match="NaN"):
        metrics.level_floor(np.array([np.nan, 0.3]), np.array([0, 1]), np.array([0.3]))
