"""The spectral_reach sweep: its points, their keys, tiny runs against the direct path."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ntkbook import ntk, sweep
from ntkbook.data import load_dataset
from ntkbook.data.next_pixel import fresh_pixel_stream, next_pixel_examples
from ntkbook.grids import spectral_reach
from ntkbook.models import MLP
from ntkbook.models.next_pixel import freeze_layers, readout_width
from ntkbook.train import cross_entropy_loss, train_on_stream

TINY = {
    "dataset": "digits",
    "n_train_images": 6,
    "n_probe_images": 4,
    "pool": 1,
    "context": 4,
    "levels": 4,
    "widths": [4, 8],
    "depth": 2,
    "activation": "tanh",
    "batch_size": 32,
    "learning_rate": 0.01,
    "schedule": "cosine",
    "n_probe": 12,
    "n_records": 4,
    "floor_draws": 2,
    "n_seeds": 2,
    "frozen_width": 8,
    "validation_width": 4,
    "seed": 3,
}


def direct_run(label, width, s, keep_snapshots):
    """One run as the chapter computed it before the sweep: the notebook's own steps."""
    p = TINY
    data_key, probe_key, init_key, stream_key, floor_key, _ = jax.random.split(
        jax.random.key(p["seed"]), 6
    )
    data = load_dataset(
        p["dataset"], n_train=p["n_train_images"], n_test=p["n_probe_images"], key=data_key
    )
    train = next_pixel_examples(data.x_train, context=p["context"], levels=p["levels"])
    probe = next_pixel_examples(data.x_test, context=p["context"], levels=p["levels"])
    index = jax.random.choice(probe_key, probe.n_tokens, (p["n_probe"],), replace=False)
    probe_x, probe_y = jnp.asarray(probe.x)[index], jnp.asarray(probe.y)[index]
    stream = fresh_pixel_stream(
        train, batch_size=p["batch_size"], key=jax.random.fold_in(stream_key, s)
    )
    record_steps = ntk.log_spaced_epochs(stream.n_steps, p["n_records"])
    optimizer = optax.adam(optax.cosine_decay_schedule(p["learning_rate"], stream.n_steps))
    model = MLP(hidden=(width,) * p["depth"], n_outputs=p["levels"], activation=p["activation"])
    params = model.init(jax.random.fold_in(init_key, s), probe_x[:1])
    apply_fn = jax.jit(model.apply)
    if label == "frozen":
        part = freeze_layers(model.apply, params, ["Dense_0", "Dense_1"])
        apply_fn, params = jax.jit(part.apply_fn), part.trainable
    snapshots = {} if keep_snapshots else None
    recorder = ntk.spectral_recorder(
        apply_fn,
        probe_x,
        probe_y,
        cross_entropy_loss,
        every=record_steps,
        floor_key=jax.random.fold_in(floor_key, s),
        floor_draws=p["floor_draws"],
        cross=True,
        snapshots=snapshots,
    )
    result = train_on_stream(
        apply_fn,
        params,
        optimizer,
        cross_entropy_loss,
        stream,
        record_steps=record_steps,
        recorders=[recorder],
        key=jax.random.fold_in(stream_key, s),
    )
    return recorder.records, result, snapshots


def assert_trees_equal(a, b):
    leaves_a, tree_a = jax.tree_util.tree_flatten(a)
    leaves_b, tree_b = jax.tree_util.tree_flatten(b)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def point(label, width, seed_index):
    (runs,) = spectral_reach.grid(TINY)
    found = [
        p
        for p in runs.points
        if (p["label"], p["width"], p["seed_index"]) == (label, width, seed_index)
    ]
    assert len(found) == 1
    return found[0]


def test_grid_has_every_model_and_seed_in_order_and_one_validation_run():
    (runs,) = spectral_reach.grid(TINY)
    control = spectral_reach.control_width(TINY)
    models = [("trainable", 4), ("trainable", 8), ("frozen", control)]
    assert spectral_reach.configurations(TINY) == models
    assert [(p["label"], p["width"], p["seed_index"]) for p in runs.points] == [
        (label, width, s) for label, width in models for s in range(TINY["n_seeds"])
    ]
    assert [p["snapshots"] for p in runs.points] == [True] + [False] * 5
    for p in runs.points:
        assert {name: p[name] for name in spectral_reach.RUN_PARAMETERS} == {
            name: TINY[name] for name in spectral_reach.RUN_PARAMETERS
        }
    assert runs.experiment is spectral_reach.run
    assert set(spectral_reach.PARAMETERS) <= set(TINY)


def test_control_width_matches_the_trainable_model_it_is_compared_with():
    features = TINY["context"] + 2  # the context window plus the row and the column
    model = MLP(hidden=(8, 8), n_outputs=4, activation="tanh")
    params = model.init(jax.random.key(0), jnp.zeros((1, features)))
    n = sum(leaf.size for leaf in jax.tree_util.tree_leaves(params))
    assert n == (features + 1) * 8 + 9 * 8 + 9 * 4
    assert spectral_reach.control_width(TINY) == readout_width(n, 4)


@pytest.fixture(scope="module")
def validation_run(tmp_path_factory):
    """The validation run through a serial sweep into a fresh store, then once more."""
    store = str(tmp_path_factory.mktemp("store"))
    points = [point("trainable", 4, 0)]
    first = sweep.map(spectral_reach.run, points, client=sweep.SERIAL, store=store, log=print)
    again = sweep.map(spectral_reach.run, points, client=sweep.SERIAL, store=store, log=print)
    return first, again


def test_the_validation_run_equals_the_notebook_path_bit_for_bit(validation_run):
    result = validation_run[0][0]  # as read back from the store
    records, direct, snapshots = direct_run("trainable", 4, 0, keep_snapshots=True)
    assert result["records"] == records
    np.testing.assert_array_equal(result["batch_loss"], direct.batch_loss)
    assert_trees_equal(result["params"], direct.params)
    assert sorted(int(step) for step in result["snapshots"]) == sorted(snapshots)
    for step, state in snapshots.items():
        assert_trees_equal(result["snapshots"][str(step)], state)
    assert result["n_trainable"] == (6 + 1) * 4 + 5 * 4 + 5 * 4


def test_a_run_is_computed_once_and_then_read_from_the_store(validation_run):
    first, again = validation_run
    assert (first.computed, first.from_store) == (1, 0)
    assert (again.computed, again.from_store) == (0, 1)
    assert again[0]["records"] == first[0]["records"]
    np.testing.assert_array_equal(again[0]["batch_loss"], first[0]["batch_loss"])
    assert_trees_equal(again[0]["params"], first[0]["params"])


def test_a_frozen_run_starts_as_the_notebook_path_with_only_the_readout_trainable():
    width = spectral_reach.control_width(TINY)
    apply_fn, initial = spectral_reach.run_model(TINY, "frozen", width, 1)
    init_key = jax.random.split(jax.random.key(TINY["seed"]), 6)[2]
    model = MLP(hidden=(width,) * 2, n_outputs=4, activation="tanh")
    probe = spectral_reach.chapter_data(TINY)
    full = model.init(jax.random.fold_in(init_key, 1), probe.probe_x[:1])
    part = freeze_layers(model.apply, full, ["Dense_0", "Dense_1"])
    assert_trees_equal(initial, part.trainable)
    assert sum(leaf.size for leaf in jax.tree_util.tree_leaves(initial)) == (width + 1) * 4
    np.testing.assert_array_equal(
        apply_fn(initial, probe.probe_x), model.apply(full, probe.probe_x)
    )
    moved = jax.tree_util.tree_map(lambda leaf: leaf + 1.0, initial)
    np.testing.assert_array_equal(
        apply_fn(moved, probe.probe_x), part.apply_fn(moved, probe.probe_x)
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"frozen_width": 16}, "frozen_width=16 must be one of widths"),
        ({"validation_width": 2}, "validation_width=2 must be one of widths"),
        ({"widths": [4, 4]}, "repeats a width"),
        ({"widths": [4, 0]}, "every width must be an integer >= 1, got 0"),
        ({"n_seeds": 0}, "n_seeds must be an integer >= 1, got 0"),
    ],
)
def test_a_bad_parameter_is_named(change, message):
    with pytest.raises(ValueError, match=message):
        spectral_reach.grid({**TINY, **change})


def test_a_missing_parameter_or_a_bad_point_is_named():
    with pytest.raises(ValueError, match="lack n_probe"):
        spectral_reach.grid({k: v for k, v in TINY.items() if k != "n_probe"})
    good = point("trainable", 4, 0)
    with pytest.raises(ValueError, match="label must be one of .* got 'frozn'"):
        spectral_reach.run({**good, "label": "frozn"})
    with pytest.raises(ValueError, match="seed_index must be an integer >= 0, got -1"):
        spectral_reach.run({**good, "seed_index": -1})
    with pytest.raises(ValueError, match="n_probe=1000 must lie in"):
        spectral_reach.run({**good, "n_probe": 1000})
