"""``dense_run`` and ``subsample_run`` against the same training done by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ntkbook.experiments import dense_run, n_parameters, subsample_run
from ntkbook.models import MLP
from ntkbook.ntk import KernelRecorder, SubsampleRecorder, ntk_fn, regime, spectrum
from ntkbook.train import cross_entropy_loss, mse_loss, train


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(0)
    labels = np.arange(40) % 3
    x = rng.normal(size=(40, 4)) + labels[:, None]
    return jnp.asarray(x, jnp.float32), jnp.asarray(labels, jnp.int32)


def test_dense_run_equals_the_training_done_by_hand(blobs, tmp_path):
    x, y = blobs
    key = jax.random.PRNGKey(4)
    run = dense_run(
        (x[:30], y[:30]),
        (x[30:], y[30:]),
        hidden=[8, 8],
        n_outputs=3,
        key=key,
        epochs=6,
        batch_size=8,
        every=[0, 1, 3],
        n_probe=10,
    )
    init_key, train_key = jax.random.split(key)
    model = MLP(hidden=(8, 8), n_outputs=3)
    params = model.init(init_key, x[:1])
    recorder = KernelRecorder(model.apply, x[:10], tmp_path / "r.json", every=[0, 1, 3])
    result = train(
        model.apply,
        params,
        optax.adam(1e-3),
        cross_entropy_loss,
        (x[:30], y[:30]),
        epochs=6,
        batch_size=8,
        key=train_key,
        test_data=(x[30:], y[30:]),
        recorders=[recorder],
    )
    assert run.n_parameters == 4 * 8 + 8 + 8 * 8 + 8 + 8 * 3 + 3
    assert run.history == result.history
    epochs, entropy, error = run.series("entropy", "train")
    assert epochs.tolist() == [0, 1, 3, 6] and error is None
    np.testing.assert_allclose(entropy, recorder.series("entropy").values, rtol=1e-6)
    # The test probe is the first n_probe test samples: its final entropy by hand.
    kernel = np.asarray(ntk_fn(model.apply)(result.params, x[30:40]))
    final = spectrum.entropy(spectrum.eigensystem(kernel).eigenvalues)
    assert run.series("entropy", "test").values[-1] == pytest.approx(final, rel=1e-5)
    assert run.regime("train") == regime(epochs, entropy)


def test_dense_run_keeps_records_in_a_given_directory_and_checks_arguments(blobs, tmp_path):
    x, y = blobs
    options = dict(hidden=[4], n_outputs=1, key=jax.random.PRNGKey(0), epochs=2, batch_size=10)
    small = {**options, "n_probe": 10}
    targets = y.astype(jnp.float32)
    run = dense_run(
        (x, targets),
        loss_fn=mse_loss,
        probes=("train",),
        records_dir=tmp_path,
        name="fuel",
        **small,
    )
    assert (tmp_path / "fuel_train.json").exists()
    assert list(run.records) == ["train"]
    with pytest.raises(ValueError, match="probe 'test' needs test_data"):
        dense_run((x, targets), loss_fn=mse_loss, **small)
    with pytest.raises(ValueError, match="n_probe=50 exceeds the 40 train samples"):
        dense_run((x, targets), loss_fn=mse_loss, probes=("train",), n_probe=50, **options)
    with pytest.raises(ValueError, match="no probe 'test'"):
        run.series("entropy", "test")


def test_subsample_run_equals_a_recorder_through_train(blobs):
    x, y = blobs
    model = MLP(hidden=(6,), n_outputs=3)
    params = model.init(jax.random.PRNGKey(1), x[:1])
    key = jax.random.PRNGKey(2)
    options = dict(epochs=4, batch_size=10, loss_fn=cross_entropy_loss, optimizer=optax.sgd(0.1))
    run = subsample_run(
        model.apply,
        params,
        (x, y),
        pool_x=x,
        key=key,
        every=[0, 2],
        n_subsets=6,
        subset_size=5,
        **options,
    )
    subset_key, train_key = jax.random.split(key)
    recorder = SubsampleRecorder(
        model.apply, x, key=subset_key, n_subsets=6, subset_size=5, every=[0, 2]
    )
    train(
        model.apply,
        params,
        options["optimizer"],
        cross_entropy_loss,
        (x, y),
        epochs=4,
        batch_size=10,
        key=train_key,
        recorders=[recorder],
    )
    series = run.series("entropy")
    assert series.epochs.tolist() == [0, 2, 4]
    np.testing.assert_allclose(series.values, recorder.series("entropy").values, rtol=1e-6)
    np.testing.assert_allclose(
        series.standard_error, recorder.series("entropy").standard_error, rtol=1e-5
    )
    assert run.n_parameters == n_parameters(params) == 4 * 6 + 6 + 6 * 3 + 3


def test_summarise_runs_over_seeds(blobs):
    from ntkbook.experiments import Run, summarise_runs

    epochs = list(range(0, 41, 2))

    def fake(slope, trace_end, loss):
        records = [
            {"epoch": e, "entropy": 2.0 + slope * np.log(max(e, 1)), "trace_per_sample": 1.0}
            for e in epochs
        ]
        records[-1]["trace_per_sample"] = trace_end
        return Run(7, {"test_loss": [1.0, loss]}, None, None, {"train": records})

    row = summarise_runs([fake(0.05, 2.0, 0.5), fake(0.07, 4.0, 0.3)])
    assert row["n_parameters"] == 7
    assert row["trace_ratio"] == pytest.approx(3.0)
    assert row["final_test_loss"] == pytest.approx(0.4)
    assert row["regimes"].label == "structure_formation"
    assert row["regimes"].slope.value == pytest.approx(0.06, rel=1e-6)
    mixed = summarise_runs([fake(0.05, 2.0, 0.5), fake(-0.05, 2.0, 0.5)])
    assert mixed["regimes"].label == "mixed"
