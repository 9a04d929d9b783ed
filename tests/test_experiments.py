"""``dense_run`` and ``subsample_run`` against the same training done by hand."""

import jax
import jax.flatten_util
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


def test_kernel_eta_is_sgd_at_eta_n_over_the_top_kernel_eigenvalue_with_a_linearised_twin(blobs):
    x, y = blobs
    targets = jax.nn.one_hot(y, 3)
    key = jax.random.PRNGKey(7)
    options = dict(epochs=5, batch_size=10, key=key, test_data=(x[30:], targets[30:]))
    run = dense_run(
        (x[:30], targets[:30]),
        hidden=[16],
        n_outputs=3,
        activation="tanh",
        loss_fn=mse_loss,
        probes=("train",),
        n_probe=12,
        every=5,
        kernel_eta=0.5,
        linearised=True,
        **{k: v for k, v in options.items() if k != "key"},
        key=key,
    )
    # The rate by hand: the kernel as an explicit Jacobian product, its top eigenvalue.
    init_key, train_key = jax.random.split(key)
    model = MLP(hidden=(16,), n_outputs=3, activation="tanh")
    params = model.init(init_key, x[:1])
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    jac = jax.jacobian(lambda p: model.apply(unravel(p), x[:12]))(flat)  # (12, 3, P)
    kernel = np.einsum("iap,jap->ij", np.asarray(jac, np.float64), np.asarray(jac, np.float64))
    rate = 0.5 * 12 / np.linalg.eigvalsh(kernel)[-1]
    assert run.learning_rate == pytest.approx(rate, rel=1e-4)
    settings = dict(epochs=5, batch_size=10, key=train_key, test_data=options["test_data"])
    by_hand = train(
        model.apply, params, optax.sgd(rate), mse_loss, (x[:30], targets[:30]), **settings
    )
    np.testing.assert_allclose(run.history["test_loss"], by_hand.history["test_loss"], rtol=1e-4)
    # The twin: f(θ₀) + J(θ₀)(θ − θ₀) trained the same way, a different trajectory.
    from ntkbook.ntk.linearize import linearize

    twin = train(
        linearize(model.apply, params),
        params,
        optax.sgd(rate),
        mse_loss,
        (x[:30], targets[:30]),
        **settings,
    )
    np.testing.assert_allclose(
        run.linearised_history["test_loss"], twin.history["test_loss"], rtol=1e-4
    )
    assert run.linearised_history["test_loss"][0] == run.history["test_loss"][0]
    assert run.linearised_history["test_loss"][-1] != pytest.approx(
        run.history["test_loss"][-1], rel=1e-6
    )
    np.testing.assert_allclose(
        run.apply_fn(run.params, x[:4]), model.apply(by_hand.params, x[:4]), rtol=1e-4, atol=1e-6
    )
    # run_measures: the kernels before and after training, by hand from the Jacobians.
    from ntkbook.experiments import run_measures
    from ntkbook.ntk.feature_learning import kernel_target_alignment

    final_flat, _ = jax.flatten_util.ravel_pytree(by_hand.params)
    jac_t = np.asarray(
        jax.jacobian(lambda p: model.apply(unravel(p), x[:12]))(final_flat), np.float64
    )
    kernel_t = np.einsum("iap,jap->ij", jac_t, jac_t)
    measures = run_measures(run, x[:12], targets[:12])
    change = np.linalg.norm(kernel_t - kernel) / np.linalg.norm(kernel)
    assert measures["relative_kernel_change"] == pytest.approx(change, rel=1e-3)
    assert measures["alignment_final"] == pytest.approx(
        kernel_target_alignment(kernel_t, targets[:12]), rel=1e-4
    )
    entropy = [spectrum.entropy(spectrum.eigensystem(k).eigenvalues) for k in (kernel, kernel_t)]
    assert measures["entropy_change"] == pytest.approx(entropy[1] - entropy[0], abs=1e-4)
    assert measures["trace_ratio"] == pytest.approx(np.trace(kernel_t) / np.trace(kernel), 1e-4)
    assert measures["test_loss_linearised"] == twin.history["test_loss"][-1]
    assert measures["learning_rate"] == run.learning_rate


def test_fixed_learning_rate_is_plain_sgd_and_rate_options_are_exclusive(blobs):
    x, y = blobs
    targets = jax.nn.one_hot(y, 3)
    options = dict(
        hidden=[8],
        n_outputs=3,
        key=jax.random.PRNGKey(1),
        epochs=3,
        batch_size=10,
        loss_fn=mse_loss,
        probes=("train",),
        n_probe=10,
    )
    run = dense_run((x, targets), learning_rate=0.05, **options)
    init_key, train_key = jax.random.split(options["key"])
    model = MLP(hidden=(8,), n_outputs=3)
    params = model.init(init_key, x[:1])
    by_hand = train(
        model.apply,
        params,
        optax.sgd(0.05),
        mse_loss,
        (x, targets),
        epochs=3,
        batch_size=10,
        key=train_key,
    )
    assert run.learning_rate == 0.05 and run.linearised_history is None
    np.testing.assert_allclose(run.history["train_loss"], by_hand.history["train_loss"], rtol=1e-5)
    with pytest.raises(ValueError, match=r"at most one of .*\['kernel_eta', 'learning_rate'\]"):
        dense_run((x, targets), learning_rate=0.05, kernel_eta=1.0, **options)
    with pytest.raises(ValueError, match="learning_rate must be a positive finite number, got -1"):
        dense_run((x, targets), learning_rate=-1, **options)
    with pytest.raises(ValueError, match="at learning rate 1e\\+06 diverged"):
        dense_run((x, targets * 1e3), learning_rate=1e6, **options)


def test_agreement_width_is_where_the_gap_stays_within_two_standard_errors():
    from ntkbook.experiments import agreement_width

    widths = [4, 8, 16, 32]
    noise = np.array([[-1.0, 1.0, 0.5, -0.5], [1.0, -1.0, -0.5, 0.5], [0.0, 0.0, 0.0, 0.0]])
    # Standard errors: 1/√3 ≈ 0.577 at widths 4 and 8, 0.289 at 16 and 32.
    assert agreement_width(noise + [5.0, 0.0, 0.0, 0.0], widths) == 8
    assert agreement_width(noise + [5.0, 1.1, 0.0, 0.0], widths) == 8  # 1.1 < 2·0.577
    assert agreement_width(noise + [5.0, 1.2, 0.0, 0.0], widths) == 16  # 1.2 > 1.155: not 8
    # Agreement at a narrower width does not count once a wider width disagrees again.
    assert agreement_width(noise + [0.0, 5.0, 0.0, 0.0], widths) == 16
    assert agreement_width(noise, widths) == 4
    # No agreement at the widest: the next grid step beyond the range.
    assert agreement_width(noise + [0.0, 0.0, 0.0, 3.0], widths) == 64
    assert agreement_width(noise + [0.0, 0.0, 0.0, 0.5], widths, n_standard_errors=1.0) == 64
    # A resample that repeats one seed, judged on the original standard errors.
    repeated = np.repeat(noise[:1] + [5.0, 0.4, 0.0, 0.0], 3, axis=0)
    original = (noise + [5.0, 0.4, 0.0, 0.0]).std(axis=0, ddof=1) / np.sqrt(3)
    assert agreement_width(repeated, widths) == 64  # its own standard errors are 0
    assert agreement_width(repeated, widths, standard_error=original) == 16  # |1.4| > 1.155
    with pytest.raises(ValueError, match="standard_error must be 4 non-negative values"):
        agreement_width(noise, widths, standard_error=[1.0, 1.0])
    with pytest.raises(ValueError, match="strictly increasing"):
        agreement_width(noise, [4, 8, 8, 32])
    with pytest.raises(ValueError, match=r"gaps must be \(n_seeds >= 2, 4\)"):
        agreement_width(noise[:1], widths)


def test_a_run_survives_the_store_with_its_probe_order_and_exact_numbers(tmp_path):
    from ntkbook.experiments import Run
    from ntkbook.store import Store

    def records(offset):
        return [
            {"epoch": e, "entropy": offset + 0.1 * e + 1e-17 * e, "trace_per_sample": 2.0 / 3.0}
            for e in (0, 1, 3)
        ]

    history = {"epoch": [0, 1, 2], "train_loss": [0.7, 0.3, 0.1], "test_accuracy": [0.5, 1 / 3]}
    # "train" first although "test" sorts first: the first probe is the series' default.
    run = Run(
        123,
        history,
        None,
        None,
        {"train": records(1.0), "test": records(2.0)},
        learning_rate=0.05,
        linearised_history={"epoch": [0, 1, 2], "test_loss": [1.0, 0.5, 0.25]},
    )
    store = Store(str(tmp_path))
    store.put("test.run", "k" * 64, run.to_result(), {"parameters": {}})
    back = Run.from_result(store.get("test.run", "k" * 64).result)
    assert back.n_parameters == 123 and back.learning_rate == 0.05
    assert back.history == history and back.linearised_history == run.linearised_history
    assert back.records == run.records and list(back.records) == ["train", "test"]
    assert type(back.history["epoch"][0]) is int and type(back.records["test"][0]["epoch"]) is int
    np.testing.assert_array_equal(back.series("entropy").values, run.series("entropy").values)
    assert back.regime() == run.regime()
    assert back.params is None and back.apply_fn is None
    plain = Run.from_result(Run(5, {"loss": []}, None, None, {}).to_result())
    assert (plain.learning_rate, plain.linearised_history, plain.records) == (None, None, {})


def test_to_result_and_from_result_name_what_they_cannot_read():
    from ntkbook.experiments import Run

    labelled = Run(1, {"label": ["a", "b"]}, None, None, {})
    with pytest.raises(ValueError, match=r"history\['label'\] is not numbers"):
        labelled.to_result()
    uneven = [{"epoch": 0, "entropy": 1.0}, {"epoch": 1, "trace_per_sample": 1.0}]
    with pytest.raises(ValueError, match="records of probe 'train' differ in their fields"):
        Run(1, {}, None, None, {"train": uneven}).to_result()
    with pytest.raises(ValueError, match=r"needs \['records'\]"):
        Run.from_result({"n_parameters": 1, "history": {}})
    result = Run(1, {}, None, None, {"train": [{"epoch": 0, "entropy": 1.0}]}).to_result()
    result["records"]["train"]["entropy"] = np.array([1.0, 2.0])
    with pytest.raises(ValueError, match="records of probe 'train' differ in length"):
        Run.from_result(result)
