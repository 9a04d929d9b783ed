"""Recorders through ``train`` (one protocol), checkpoint resume, and the training loop itself.

Recorded measures are checked against values computed here from a ``jacrev`` kernel and
numpy formulas; the loop is checked against closed-form results of problems where the answer
does not depend on the minibatch order.
"""

from __future__ import annotations

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ntkbook.models import MLP
from ntkbook.ntk import FunctionRecorder, KernelRecorder, SubsampleRecorder, load_records
from ntkbook.ntk.record import MEASURES, Schedule, Series
from ntkbook.train import Recorder, accuracy, cross_entropy_loss, mse_loss, train

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


def run(model, params, x, y, epochs, *, recorders=(), checkpoint=None, optimizer=None, **options):
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
        **options,
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
    assert payload["format"] == "ntkbook.kernel_records/2"
    assert payload["settings_hash"].startswith("sha256:")
    assert payload["training"]["batch_size"] == 6
    assert sorted(payload["states"]) == ["0", "2", "4", "5"]
    assert payload["settings"]["every"] == 2
    assert payload["settings"]["measures"] == list(MEASURED)
    assert payload["records"] == recorder.records
    assert load_records(path) == recorder.records
    series = recorder.series("entropy")
    assert isinstance(series, Series) and series.standard_error is None
    np.testing.assert_array_equal(series.epochs, [0, 2, 4, 5])
    assert series.values[0] == pytest.approx(by_epoch[0]["entropy"])


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
    with pytest.raises(ValueError, match=r"other settings: every \(2 -> 3\)\. Its records"):
        make_recorder(model, x, y, path, every=3)
    with pytest.raises(ValueError, match=r"other settings: measures \(\[\"entropy\""):
        make_recorder(model, x, y, path, measures=("entropy",))
    for probe, message in (
        (slice(0, 8), r"other settings: n_probe \(10 -> 8\); probe_fingerprint \(\w+ -> \w+\)"),
        (slice(10, 20), r"other settings: probe_fingerprint \(\w+ -> \w+\)\. Its"),
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
    with pytest.raises(ValueError, match="every must be a positive integer, got 0"):
        KernelRecorder(model.apply, x, path, every=0)
    with pytest.raises(ValueError, match="followed by 3"):
        KernelRecorder(model.apply, x, path, every=[0, 4, 3])
    with pytest.raises(ValueError, match="measures is empty"):
        KernelRecorder(model.apply, x, path, measures=())
    recorder = KernelRecorder(model.apply, x, path)
    with pytest.raises(ValueError, match="'loss' is not recorded; recorded: entropy"):
        recorder.series("loss")
    assert not path.exists()  # nothing was recorded


def test_recorder_at_a_list_of_epochs_records_those_and_the_final_state(blobs, tmp_path):
    model, params, x, y = blobs
    path = tmp_path / "records.json"
    recorder = make_recorder(model, x, y, path, every=[0, 1, 3], measures=("entropy",))
    result = run(model, params, x, y, 5, recorders=[recorder])
    assert [r["epoch"] for r in recorder.records] == [0, 1, 3, 5]
    assert json.loads(path.read_text())["settings"]["every"] == [0, 1, 3]
    final = reference_measures(model.apply, result.params, x[:10], y[:10])
    assert recorder.records[-1]["entropy"] == pytest.approx(final["entropy"], rel=1e-9)
    # Resumed with the same list: nothing to compute; with another list: refused.
    assert make_recorder(model, x, y, path, every=[0, 1, 3], measures=("entropy",)).due(3) is False
    with pytest.raises(ValueError, match=r"every \(\[0, 1, 3\] -> \[0, 2, 3\]\)"):
        make_recorder(model, x, y, path, every=[0, 2, 3], measures=("entropy",))


@pytest.mark.parametrize(
    ("every", "message"),
    [
        (0, "every must be a positive integer, got 0"),
        (-2, "every must be a positive integer, got -2"),
        (True, "got True"),
        (1.5, "got 1.5"),
        ("10", "got '10'"),
        ([], "empty list of epochs"),
        ([0, 2, 2], "2 is followed by 2"),
        ([5, 1], "5 is followed by 1"),
        ([0, -1], "the epoch -1"),
        ([0, 1.5], "the epoch 1.5"),
        ([0, True], "the epoch True"),
    ],
)
def test_schedule_rejects_bad_every(every, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Schedule(every)


def test_schedule_due_epochs():
    interval, listed = Schedule(3), Schedule(np.array([0, 1, 2, 4, 9]))
    assert [e for e in range(10) if interval.due(e)] == [0, 3, 6, 9]
    assert [e for e in range(10) if listed.due(e)] == [0, 1, 2, 4, 9]
    assert listed.due(7, final=True) and interval.due(7, final=True)
    assert listed.as_setting() == [0, 1, 2, 4, 9] and interval.as_setting() == 3


class _Spy:
    """Follows the Recorder protocol and logs every call train makes."""

    def __init__(self):
        self.calls: list[tuple] = []

    def start_training(self, settings):
        self.calls.append(("start", settings["batch_size"]))

    def __call__(self, epoch, params, *, final=False):
        self.calls.append((epoch, final))


def test_train_calls_every_recorder_through_one_protocol(blobs, tmp_path):
    model, params, x, y = blobs
    spy = _Spy()
    kernel = make_recorder(model, x, y, tmp_path / "k.json", every=[0, 2], measures=("entropy",))
    subsample = SubsampleRecorder(
        model.apply, x, key=jax.random.PRNGKey(3), n_subsets=4, subset_size=5, every=[0, 2]
    )
    function = FunctionRecorder(
        lambda epoch, p: {"norm": float(jnp.sqrt(sum(jnp.sum(a**2) for a in jax.tree.leaves(p))))},
        every=[0, 2],
    )
    recorders = [spy, kernel, subsample, function]
    assert all(isinstance(r, Recorder) for r in recorders)
    run(model, params, x, y, 3, recorders=recorders)
    assert spy.calls == [("start", 6), (0, False), (1, False), (2, False), (3, True)]
    for recorder in recorders[1:]:
        # One record key, one series shape; the final state is recorded by every recorder.
        assert [r["epoch"] for r in recorder.records] == [0, 2, 3]
        measure = "norm" if recorder is function else "entropy"
        series = recorder.series(measure)
        assert isinstance(series, Series)
        np.testing.assert_array_equal(series.epochs, [0, 2, 3])
    assert subsample.series("entropy").standard_error.shape == (3,)
    assert kernel.training is not None and subsample.training == kernel.training


def test_train_names_a_recorder_that_does_not_follow_the_protocol(blobs):
    model, params, x, y = blobs
    with pytest.raises(ValueError, match="does not follow ntkbook.train.Recorder"):
        run(model, params, x, y, 1, recorders=[lambda epoch, p: None])


def test_function_recorder_keeps_returned_values_by_epoch():
    recorder = FunctionRecorder(lambda epoch, p: {"value": 2.0 * p}, every=2)
    for epoch in range(5):
        recorder(epoch, float(epoch))
    recorder(5, 10.0, final=True)
    recorder(5, 11.0, final=True)  # already recorded
    assert recorder.records == [
        {"epoch": 0, "value": 0.0},
        {"epoch": 2, "value": 4.0},
        {"epoch": 4, "value": 8.0},
        {"epoch": 5, "value": 20.0},
    ]
    epochs, values, error = recorder.series("value")
    assert epochs.tolist() == [0, 2, 4, 5] and values.tolist() == [0, 4, 8, 20] and error is None
    with pytest.raises(ValueError, match="'other' is not recorded; recorded: value"):
        recorder.series("other")
    with pytest.raises(ValueError, match="sets itself"):
        FunctionRecorder(lambda epoch, p: {"epoch": 1})(0, None)


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


def test_train_reports_each_finished_epoch_to_a_progress_callback(blobs):
    model, params, x, y = blobs
    calls = []
    run(model, params, x, y, 3, progress=lambda *args: calls.append(args))
    assert calls == [(1, 3, "epochs"), (2, 3, "epochs"), (3, 3, "epochs")]


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


# ------------------------------------------------------------------------------------------
# resumable state is keyed by the settings that made it
# ------------------------------------------------------------------------------------------


def _leaves_close(a, b) -> bool:
    return all(
        np.allclose(np.asarray(u), np.asarray(v), rtol=1e-12, atol=1e-14)
        for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True)
    )


def test_recorder_refuses_a_rerun_with_another_learning_rate(blobs, tmp_path):
    """The issue's finding: a rerun at another learning rate reused the old kernel records."""
    model, params, x, y = blobs
    path = tmp_path / "records.json"
    run(model, params, x, y, 3, recorders=[make_recorder(model, x, y, path)])
    before = path.read_bytes()
    rerun = make_recorder(model, x, y, path)
    calls = count_measure_calls(rerun)
    with pytest.raises(
        ValueError,
        match=r"other training settings: optimizer\.updates \(its values differ by more than "
        r"0\.001 relative\)\. Its records belong to another run",
    ):
        run(model, params, x, y, 3, recorders=[rerun], optimizer=optax.adam(0.06))
    assert calls == []
    assert path.read_bytes() == before
    # the same settings resume and compute nothing
    same = make_recorder(model, x, y, path)
    calls = count_measure_calls(same)
    run(model, params, x, y, 3, recorders=[same])
    assert calls == []


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"batch_size": 5}, r"batch_size \(6 -> 5\)"),
        ({"key": jax.random.PRNGKey(8)}, r"key \(\w+ -> \w+\)"),
        ({"loss_fn": mse_loss}, r"loss_fn \(ntkbook\.train\.cross_entropy_loss -> "),
        ({"train_data": "shifted"}, r"train_data \("),
        ({"test_data": "added"}, r"test_data \(null -> "),
        ({"params": "other seed"}, r"initial_params \(its values differ.*initial_outputs"),
    ],
)
def test_checkpoint_and_records_refuse_other_training_settings(blobs, tmp_path, change, named):
    model, params, x, y = blobs
    checkpoint, path = tmp_path / "state.msgpack", tmp_path / "records.json"
    run(model, params, x, y, 2, checkpoint=checkpoint, recorders=[make_recorder(model, x, y, path)])
    before = checkpoint.read_bytes()
    options = {
        "epochs": 3,
        "batch_size": 6,
        "key": jax.random.PRNGKey(7),
        "checkpoint_path": checkpoint,
    }
    train_data, test_data = (x, y), None
    if change.get("train_data"):
        train_data = (x + 0.1, y)
    elif change.get("test_data"):
        test_data = (x, y)
    elif change.get("params"):
        params = model.init(jax.random.PRNGKey(1), x)
    else:
        options.update(change)
    loss_fn = options.pop("loss_fn", cross_entropy_loss)

    def again(recorders=()):
        train(
            model.apply,
            params,
            optax.adam(0.05),
            loss_fn,
            train_data,
            test_data=test_data,
            recorders=recorders,
            **options,
        )

    with pytest.raises(ValueError, match=rf"checkpoint .* other settings: .*{named}"):
        again()
    assert checkpoint.read_bytes() == before
    options.pop("checkpoint_path")
    with pytest.raises(ValueError, match=rf"other training settings: .*{named}"):
        again([make_recorder(model, x, y, path)])


def test_checkpoint_of_another_width_is_a_checkpoint_message(blobs, tmp_path):
    model, params, x, y = blobs
    checkpoint = tmp_path / "state.msgpack"
    run(model, params, x, y, 2, checkpoint=checkpoint)
    wide = MLP(hidden=(16,), n_outputs=2, activation="tanh", param_dtype=F64)
    wide_params = wide.init(jax.random.PRNGKey(0), x)
    with pytest.raises(
        ValueError,
        match=r"checkpoint .*state\.msgpack was written by a training with other settings: "
        r"model \(\['params'\]\['Dense_0'\]\['bias'\] \(8,\) float64 -> "
        r"\['params'\]\['Dense_0'\]\['bias'\] \(16,\) float64",
    ):
        run(wide, wide_params, x, y, 3, checkpoint=checkpoint)


def test_checkpoint_refuses_another_activation_of_the_same_shapes(blobs, tmp_path):
    model, params, x, y = blobs
    checkpoint = tmp_path / "state.msgpack"
    run(model, params, x, y, 2, checkpoint=checkpoint)
    relu = MLP(hidden=(8,), n_outputs=2, activation="relu", param_dtype=F64)
    with pytest.raises(ValueError, match=r"other settings: initial_outputs \(its values differ"):
        run(relu, params, x, y, 3, checkpoint=checkpoint)


def test_checkpoint_refuses_another_learning_rate_or_schedule(blobs, tmp_path):
    model, params, x, y = blobs
    checkpoint = tmp_path / "state.msgpack"
    run(model, params, x, y, 2, checkpoint=checkpoint, optimizer=optax.adam(1e-2))
    with pytest.raises(ValueError, match=r"other settings: optimizer\.updates"):
        run(model, params, x, y, 3, checkpoint=checkpoint, optimizer=optax.adam(0.1))
    with pytest.raises(ValueError, match=r"optimizer\.state \("):
        run(model, params, x, y, 3, checkpoint=checkpoint, optimizer=optax.sgd(1e-2))
    # same optimizer: resumes, and equals the uninterrupted run
    resumed = run(model, params, x, y, 3, checkpoint=checkpoint, optimizer=optax.adam(1e-2))
    assert _leaves_close(
        resumed.params, run(model, params, x, y, 3, optimizer=optax.adam(1e-2)).params
    )

    schedule = tmp_path / "schedule.msgpack"

    def cosine(decay_steps):
        return optax.adam(optax.cosine_decay_schedule(1e-2, decay_steps))

    run(model, params, x, y, 2, checkpoint=schedule, optimizer=cosine(1000))
    with pytest.raises(ValueError, match=r"optimizer\.updates"):
        run(model, params, x, y, 3, checkpoint=schedule, optimizer=cosine(2000))


def test_checkpoint_without_settings_is_refused(blobs, tmp_path):
    import flax.serialization

    model, params, x, y = blobs
    checkpoint = tmp_path / "state.msgpack"
    run(model, params, x, y, 2, checkpoint=checkpoint)
    payload = flax.serialization.msgpack_restore(checkpoint.read_bytes())
    del payload["settings"]
    checkpoint.write_bytes(flax.serialization.msgpack_serialize(payload))
    with pytest.raises(ValueError, match="written without the settings of its training"):
        run(model, params, x, y, 3, checkpoint=checkpoint)


def test_recorder_outside_train_checks_the_network_at_recorded_epochs(blobs, tmp_path):
    model, params, x, y = blobs
    path = tmp_path / "records.json"
    slow = run(model, params, x, y, 2, optimizer=optax.adam(0.01)).params
    fast = run(model, params, x, y, 2, optimizer=optax.adam(0.1)).params
    first = make_recorder(model, x, y, path)
    first(0, params)
    first(2, slow)
    second = make_recorder(model, x, y, path)
    assert second(0, params) is None  # the same initial network: already recorded
    with pytest.raises(ValueError, match="the network at epoch 2 is not the one recorded there"):
        second(2, fast)
    relu = MLP(hidden=(8,), n_outputs=2, activation="relu", param_dtype=F64)
    third = KernelRecorder(
        relu.apply,
        x[:10],
        path,
        probe_y=y[:10],
        loss_fn=cross_entropy_loss,
        every=2,
        measures=MEASURED,
    )
    with pytest.raises(ValueError, match="the network at epoch 0 is not the one recorded there"):
        third(0, params)


def test_recorder_of_another_width_names_the_parameters(blobs, tmp_path):
    model, params, x, y = blobs
    path = tmp_path / "records.json"
    make_recorder(model, x, y, path)(0, params)
    wide = MLP(hidden=(16,), n_outputs=2, activation="tanh", param_dtype=F64)
    recorder = make_recorder(wide, x, y, path)
    with pytest.raises(
        ValueError,
        match=r"other model parameters: model \(\['params'\]\['Dense_0'\]\['bias'\] \(8,\)",
    ):
        recorder(0, wide.init(jax.random.PRNGKey(0), x))


def test_recorder_folds_in_the_callers_settings(blobs, tmp_path):
    model, params, x, y = blobs
    path = tmp_path / "records.json"
    make_recorder(model, x, y, path, settings={"learning_rate": 0.001, "hidden": [64]})(0, params)
    assert json.loads(path.read_text())["settings"]["learning_rate"] == 0.001
    with pytest.raises(ValueError, match=r"other settings: learning_rate \(0\.001 -> 0\.01\)"):
        make_recorder(model, x, y, path, settings={"learning_rate": 0.01, "hidden": [64]})
    with pytest.raises(ValueError, match=r"hidden \(\[64\] -> not given now\)|hidden \(was"):
        make_recorder(model, x, y, path, settings={"learning_rate": 0.001})
    resumed = make_recorder(model, x, y, path, settings={"learning_rate": 0.001, "hidden": [64]})
    assert resumed.recorded_epochs == {0}
    with pytest.raises(ValueError, match="settings key 'every' is one of the recorder's own"):
        make_recorder(model, x, y, tmp_path / "b.json", settings={"every": 3})
    with pytest.raises(ValueError, match=r"settings\['lr'\] is not a JSON value"):
        make_recorder(model, x, y, tmp_path / "c.json", settings={"lr": object()})


def test_recorder_refuses_an_older_file_but_load_records_reads_it(blobs, tmp_path):
    model, _, x, y = blobs
    path = tmp_path / "records.json"
    old = {"format": "ntkbook.kernel_records/1", "settings": {}, "records": [{"epoch": 0}]}
    path.write_text(json.dumps(old))
    assert load_records(path) == [{"epoch": 0}]
    with pytest.raises(ValueError, match=r"older ntkbook \(ntkbook\.kernel_records/1\)"):
        make_recorder(model, x, y, path)


def test_signatures_ignore_round_off_and_see_real_changes():
    from ntkbook.resume import differences, optimizer_signature, signature

    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 7))
    same = differences({"s": signature(a)}, {"s": signature(a * (1 + 1e-7) + 1e-9)})
    assert same == []
    changed = differences({"s": signature(a)}, {"s": signature(a * 1.01)})
    assert changed == ["s (its values differ by more than 0.001 relative)"]
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    assert optimizer_signature(optax.adam(1e-3), params) == optimizer_signature(
        optax.adam(1e-3), params
    )
    for other in (optax.adam(1.1e-3), optax.adam(1e-3, b1=0.8), optax.adamw(1e-3)):
        assert differences(
            {"o": optimizer_signature(optax.adam(1e-3), params)},
            {"o": optimizer_signature(other, params)},
        )


def test_runs_of_one_setup_share_programs_but_not_data(blobs):
    from ntkbook.train import _programs

    model, params, x, y = blobs
    optimizer = optax.adam(0.05)
    options = dict(epochs=2, batch_size=6, key=jax.random.PRNGKey(7))
    first = train(model.apply, params, optimizer, cross_entropy_loss, (x, y), **options)
    step, epoch_update, evaluate = _programs(model.apply, cross_entropy_loss, optimizer, True)
    compiled = epoch_update._cache_size()
    shifted = train(model.apply, params, optimizer, cross_entropy_loss, (x + 1.0, y), **options)
    again = train(model.apply, params, optimizer, cross_entropy_loss, (x, y), **options)
    assert epoch_update._cache_size() == compiled  # the same shapes: no new program
    assert _leaves_close(first.params, again.params)
    assert first.history == again.history
    assert shifted.history["train_loss"] != first.history["train_loss"]
    # A fresh optimizer object with the same settings gives the same training.
    fresh = train(model.apply, params, optax.adam(0.05), cross_entropy_loss, (x, y), **options)
    assert _leaves_close(first.params, fresh.params)
