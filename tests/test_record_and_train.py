"""KernelRecorder through ``train``, checkpoint resume, and the training loop itself.

Recorded measures are checked against values computed here from a ``jacrev`` kernel and
numpy formulas; the loop is checked against closed-form results of problems where the answer
does not depend on the minibatch order.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ntkbook.models import MLP
from ntkbook.ntk import KernelRecorder, load_records
from ntkbook.ntk.record import MEASURES
from ntkbook.train import accuracy, cross_entropy_loss, mse_loss, train

F64 = jnp.float64
MEASURED = (
    "entropy",
    "effective_entropy",
    "trace",
    "trace_per_sample",
    "effective_rank",
    "eigenvalues",
    "loss",
    "accuracy",
)


@pytest.fixture(autouse=True, scope="module")
def _float64():
    with jax.enable_x64(True):
        yield


@pytest.fixture(scope="module")
def blobs(_float64):
    """Two separable Gaussian blobs in 2-D: 22 training samples (not a multiple of 6)."""
    rng = np.random.default_rng(0)
    labels = np.arange(22) % 2
    centres = np.array([[-2.0, 0.0], [2.0, 0.0]])
    x = centres[labels] + 0.5 * rng.normal(size=(22, 2))
    model = MLP(hidden=(8,), n_outputs=2, activation="tanh", param_dtype=F64)
    params = model.init(jax.random.PRNGKey(0), jnp.asarray(x))
    return model, params, jnp.asarray(x), jnp.asarray(labels, dtype=jnp.int32)


def reference_measures(apply_fn, params, x, y) -> dict:
    """The recorded measures computed independently (traced kernel, natural log)."""
    leaves = jax.tree_util.tree_leaves(jax.jit(jax.jacrev(apply_fn))(params, x))
    n = x.shape[0]
    jac = np.concatenate([np.asarray(leaf).reshape(n, -1) for leaf in leaves], axis=1)
    kernel = jac @ jac.T  # flattening (O, P) per sample sums the outputs
    eigenvalues = np.clip(np.sort(np.linalg.eigvalsh(kernel))[::-1], 0.0, None)
    p = eigenvalues / eigenvalues.sum()
    p = p[p > 0]
    entropy = float(-np.sum(p * np.log(p)))
    logits = np.asarray(apply_fn(params, x))
    log_softmax = logits - logits.max(1, keepdims=True)
    log_softmax -= np.log(np.exp(log_softmax).sum(1, keepdims=True))
    y = np.asarray(y)
    return {
        "entropy": entropy,
        "effective_entropy": entropy / np.log(n),
        "trace": float(np.trace(kernel)),
        "trace_per_sample": float(np.trace(kernel)) / n,
        "effective_rank": float(np.exp(entropy)),
        "eigenvalues": eigenvalues,
        "loss": float(-np.mean(log_softmax[np.arange(n), y])),
        "accuracy": float(np.mean(logits.argmax(1) == y)),
    }


def assert_record_matches(record: dict, reference: dict) -> None:
    for name in MEASURED:
        if name == "eigenvalues":
            np.testing.assert_allclose(
                record[name], reference[name], rtol=0, atol=1e-10 * reference[name][0]
            )
        else:
            assert record[name] == pytest.approx(reference[name], rel=1e-9, abs=1e-12), name


def make_recorder(model, x, y, path, **kwargs) -> KernelRecorder:
    options = {"every": 2, "measures": MEASURED}
    options.update(kwargs)
    return KernelRecorder(
        model.apply, x[:10], path, probe_y=y[:10], loss_fn=cross_entropy_loss, **options
    )


def run(model, params, x, y, epochs, *, recorders=(), checkpoint=None, optimizer=None):
    return train(
        model.apply,
        params,
        optimizer or optax.adam(0.05),
        cross_entropy_loss,
        (x, y),
        epochs=epochs,
        batch_size=6,
        key=jax.random.PRNGKey(7),
        recorders=recorders,
        checkpoint_path=checkpoint,
    )


def count_measure_calls(recorder: KernelRecorder) -> list[int]:
    calls: list[int] = []
    measure = recorder.measure

    def counting(params):
        calls.append(1)
        return measure(params)

    recorder.measure = counting
    return calls


# ------------------------------------------------------------------------------------------
# KernelRecorder
# ------------------------------------------------------------------------------------------


def test_recorder_epochs_and_values_through_train(blobs, tmp_path):
    model, params, x, y = blobs
    path = tmp_path / "records.json"
    recorder = make_recorder(model, x, y, path)
    result = run(model, params, x, y, 5, recorders=[recorder])

    # Epochs 0, every, 2·every and the final one; records come BEFORE each epoch's update.
    assert [r["epoch"] for r in recorder.records] == [0, 2, 4, 5]
    assert result.history["epoch"] == [0, 1, 2, 3, 4, 5]
    by_epoch = {r["epoch"]: r for r in recorder.records}
    probe_x, probe_y = x[:10], y[:10]
    assert_record_matches(by_epoch[0], reference_measures(model.apply, params, probe_x, probe_y))
    after_two = run(model, params, x, y, 2).params
    assert_record_matches(by_epoch[2], reference_measures(model.apply, after_two, probe_x, probe_y))
    final = reference_measures(model.apply, result.params, probe_x, probe_y)
    assert_record_matches(by_epoch[5], final)
    # The training moved the kernel: the records are not all the same.
    assert by_epoch[5]["trace"] != pytest.approx(by_epoch[0]["trace"], rel=1e-3)

    # The file is valid JSON holding the same records and the settings.
    payload = json.loads(path.read_text())
    assert payload["format"] == "ntkbook.kernel_records/1"
    assert payload["settings"]["every"] == 2
    assert payload["settings"]["measures"] == list(MEASURED)
    assert payload["records"] == recorder.records
    assert load_records(path) == recorder.records
    epochs, entropies = recorder.series("entropy")
    np.testing.assert_array_equal(epochs, [0, 2, 4, 5])
    assert entropies[0] == pytest.approx(by_epoch[0]["entropy"])


def test_recorder_resumes_with_checkpointed_training(blobs, tmp_path):
    model, params, x, y = blobs
    path, checkpoint = tmp_path / "records.json", tmp_path / "state.msgpack"
    first = make_recorder(model, x, y, path)
    run(model, params, x, y, 3, recorders=[first], checkpoint=checkpoint)
    assert [r["epoch"] for r in first.records] == [0, 2, 3]
    first_records = json.loads(path.read_text())["records"]

    second = make_recorder(model, x, y, path)
    assert second.recorded_epochs == {0, 2, 3}
    calls = count_measure_calls(second)
    run(model, params, x, y, 5, recorders=[second], checkpoint=checkpoint)
    assert len(calls) == 2  # epochs 4 and 5 only: 3 is already in the file
    assert [r["epoch"] for r in second.records] == [0, 2, 3, 4, 5]
    assert second.records[:3] == first_records

    # Everything is recorded: a rerun computes nothing.
    third = make_recorder(model, x, y, path)
    calls = count_measure_calls(third)
    run(model, params, x, y, 5, recorders=[third], checkpoint=checkpoint)
    assert calls == []
    assert load_records(path) == second.records


def test_recorder_refuses_other_settings_on_the_same_file(blobs, tmp_path):
    model, params, x, y = blobs
    path = tmp_path / "records.json"
    make_recorder(model, x, y, path)(0, params)
    assert json.loads(path.read_text())["records"][0]["epoch"] == 0
    with pytest.raises(ValueError, match=r"other settings \(every\)"):
        make_recorder(model, x, y, path, every=3)
    with pytest.raises(ValueError, match=r"other settings \(measures\)"):
        make_recorder(model, x, y, path, measures=("entropy",))
    for probe, message in (
        (slice(0, 8), r"other settings \(n_probe, probe_fingerprint\)"),
        (slice(10, 20), r"other settings \(probe_fingerprint\)"),
    ):
        with pytest.raises(ValueError, match=message):
            KernelRecorder(
                model.apply,
                x[probe],
                path,
                probe_y=y[probe],
                loss_fn=cross_entropy_loss,
                every=2,
                measures=MEASURED,
            )
    # The original file is untouched and still resumes.
    assert make_recorder(model, x, y, path).recorded_epochs == {0}

    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        make_recorder(model, x, y, broken)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"records": []}))
    with pytest.raises(ValueError, match="is not a kernel records file"):
        make_recorder(model, x, y, other)


def test_recorder_argument_errors(blobs, tmp_path):
    model, _, x, y = blobs
    path = tmp_path / "records.json"
    with pytest.raises(ValueError, match=r"unknown measures \['entropie'\]; valid measures: "):
        KernelRecorder(model.apply, x, path, measures=("entropy", "entropie"))
    with pytest.raises(ValueError) as error:
        KernelRecorder(model.apply, x, path, measures=("nope",))
    assert all(name in str(error.value) for name in MEASURES)
    with pytest.raises(ValueError, match=r"measures \['accuracy', 'loss'\] need probe_y"):
        KernelRecorder(model.apply, x, path, measures=("loss", "accuracy"))
    with pytest.raises(ValueError, match="need loss_fn"):
        KernelRecorder(model.apply, x, path, probe_y=y, measures=("chi_pos",))
    with pytest.raises(ValueError, match="every must be a positive integer"):
        KernelRecorder(model.apply, x, path, every=0)
    with pytest.raises(ValueError, match="measures is empty"):
        KernelRecorder(model.apply, x, path, measures=())
    recorder = KernelRecorder(model.apply, x, path)
    with pytest.raises(ValueError, match="'loss' is not recorded; recorded: entropy"):
        recorder.series("loss")
    assert not path.exists()  # nothing was recorded


# ------------------------------------------------------------------------------------------
# train
# ------------------------------------------------------------------------------------------


def test_checkpoint_resume_equals_uninterrupted_run(blobs, tmp_path):
    model, params, x, y = blobs
    checkpoint = tmp_path / "state.msgpack"
    interrupted = run(model, params, x, y, 2, checkpoint=checkpoint)
    assert checkpoint.exists()
    assert interrupted.history["epoch"] == [0, 1, 2]
    resumed = run(model, params, x, y, 4, checkpoint=checkpoint)
    straight = run(model, params, x, y, 4)
    for a, b in zip(
        jax.tree_util.tree_leaves(resumed.params),
        jax.tree_util.tree_leaves(straight.params),
        strict=True,
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-14)
    assert resumed.history["epoch"] == straight.history["epoch"] == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(
        resumed.history["train_loss"], straight.history["train_loss"], rtol=1e-12
    )
    # Adam's moments were restored too: resuming with fresh optimizer state would differ.
    fresh = run(model, interrupted.params, x, y, 2)
    leaf = jax.tree_util.tree_leaves(fresh.params)[0]
    assert not np.allclose(
        np.asarray(leaf), np.asarray(jax.tree_util.tree_leaves(straight.params)[0])
    )


def test_corrupt_or_future_checkpoint_is_a_clear_error(blobs, tmp_path):
    model, params, x, y = blobs
    corrupt = tmp_path / "corrupt.msgpack"
    corrupt.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match=r"checkpoint .*corrupt.msgpack cannot be restored"):
        run(model, params, x, y, 2, checkpoint=corrupt)
    checkpoint = tmp_path / "state.msgpack"
    run(model, params, x, y, 3, checkpoint=checkpoint)
    with pytest.raises(ValueError, match="is at epoch 3, past epochs=2"):
        run(model, params, x, y, 2, checkpoint=checkpoint)


def test_train_learns_a_separable_problem(blobs):
    model, params, x, y = blobs
    result = run(model, params, x, y, 30)
    losses = result.history["train_loss"]
    assert len(losses) == 31
    assert losses[-1] < 0.2 * losses[0]
    assert result.history["train_accuracy"][-1] == 1.0
    assert losses[0] == pytest.approx(float(cross_entropy_loss(model.apply(params, x), y)))


def test_no_sample_is_dropped_or_repeated(_float64):
    """Linear model, summed linear loss: each sample's gradient is ``y_i x_i`` whatever the
    parameters, so after ``E`` epochs of SGD ``w = w0 − E·η·Σ_i y_i x_i`` exactly when every
    sample is used once per epoch (10 samples in batches of 4: two full and one of 2)."""
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(10, 3)))
    y = jnp.asarray(rng.normal(size=10))
    w0 = {"w": jnp.asarray(rng.normal(size=(3, 1)))}

    def apply_fn(params, inputs):
        return inputs @ params["w"]

    def loss_fn(predictions, targets):
        return jnp.sum(predictions[:, 0] * targets)

    expected = np.asarray(w0["w"]) - 2 * 0.05 * (np.asarray(y) @ np.asarray(x))[:, None]
    for batch_size in (4, 3, 10, 64):
        result = train(
            apply_fn,
            w0,
            optax.sgd(0.05),
            loss_fn,
            (x, y),
            epochs=2,
            batch_size=batch_size,
            key=jax.random.PRNGKey(1),
        )
        np.testing.assert_allclose(np.asarray(result.params["w"]), expected, rtol=1e-12)
        assert "train_accuracy" not in result.history  # float targets: regression


def test_train_rejects_bad_arguments(blobs):
    model, params, x, y = blobs
    with pytest.raises(ValueError, match="epochs must be a non-negative integer"):
        run(model, params, x, y, -1)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        train(
            model.apply,
            params,
            optax.sgd(0.1),
            cross_entropy_loss,
            (x, y),
            epochs=1,
            batch_size=0,
            key=jax.random.PRNGKey(0),
        )
    with pytest.raises(ValueError, match="x has 22 samples but y has 21"):
        run(model, params, x, y[:21], 1)
    with pytest.raises(ValueError, match="train_data: x contains NaN or inf"):
        run(model, params, x.at[0, 0].set(jnp.nan), y, 1)
    with pytest.raises(ValueError, match="train_data is empty"):
        run(model, params, x[:0], y[:0], 1)


# ------------------------------------------------------------------------------------------
# losses
# ------------------------------------------------------------------------------------------


def test_cross_entropy_by_hand():
    logits = jnp.array([[1.0, 2.0, 3.0], [1.0, 0.0, -1.0]], dtype=F64)
    # log Σ exp over either row is max + ln(1 + e⁻¹ + e⁻²) = max + 0.4076059644443806.
    # Row 0, class 2: 0.4076059644443806; row 1, class 1: 1.4076059644443806.
    expected = 0.9076059644443806
    assert float(cross_entropy_loss(logits, jnp.array([2, 1]))) == pytest.approx(
        expected, abs=1e-14
    )
    one_hot = jnp.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=F64)
    assert float(cross_entropy_loss(logits, one_hot)) == pytest.approx(expected, abs=1e-14)
    with pytest.raises(ValueError, match=r"labels shape \(2, 2\) does not match logits \(2, 3\)"):
        cross_entropy_loss(logits, jnp.ones((2, 2)))


def test_mse_and_accuracy_formulas():
    predictions = jnp.array([[1.0, 2.0], [3.0, 4.0]], dtype=F64)
    targets = jnp.array([[0.0, 0.0], [1.0, 1.0]], dtype=F64)
    # (1² + 2²) and (2² + 3²): summed over outputs, averaged over samples.
    assert float(mse_loss(predictions, targets)) == pytest.approx(9.0, abs=1e-14)
    assert float(mse_loss(predictions, targets.reshape(-1))) == pytest.approx(9.0, abs=1e-14)
    logits = jnp.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]], dtype=F64)
    assert float(accuracy(logits, jnp.array([1, 1, 1]))) == pytest.approx(2 / 3)
    assert float(accuracy(logits, jnp.eye(2)[jnp.array([1, 0, 0])])) == pytest.approx(2 / 3)
