"""Next-pixel examples, quantisation, pooling, the fresh-pixel stream and its training loop."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ntkbook.data.next_pixel import (
    fresh_pixel_stream,
    next_pixel_examples,
    pool_images,
    quantise,
)
from ntkbook.models import MLP
from ntkbook.ntk import FunctionRecorder
from ntkbook.train import cross_entropy_loss, train_on_stream


def _loop_examples(images, context, levels, positions):
    """Direct per-pixel reference: walk every image in raster order."""
    xs, ys = [], []
    n, height, width = images.shape
    for image in images:
        sequence = [float(image[r, c]) for r in range(height) for c in range(width)]
        for t, value in enumerate(sequence):
            window = [sequence[s] if s >= 0 else 0.0 for s in range(t - context, t)]
            if positions:
                window += [(t // width) / (height - 1), (t % width) / (width - 1)]
            xs.append(window)
            if levels is None:
                ys.append([value])
            else:
                ys.append(min(int(np.floor(value * levels)), levels - 1))
    return np.array(xs, np.float32), np.array(ys)


@pytest.fixture
def tiny_images():
    rng = np.random.default_rng(3)
    images = rng.uniform(size=(2, 3, 4)).astype(np.float32)
    images[0, 0, 0] = 1.0  # the closed top bin
    images[1, 2, 3] = 0.0
    return images


@pytest.mark.parametrize(
    ("context", "levels", "positions"),
    [(1, None, False), (3, 4, True), (5, None, True), (13, 8, False)],
)
def test_examples_match_per_pixel_loop(tiny_images, context, levels, positions):
    data = next_pixel_examples(tiny_images, context=context, levels=levels, positions=positions)
    x_ref, y_ref = _loop_examples(tiny_images, context, levels, positions)
    assert data.x.shape == (2 * 12, context + 2 * positions)
    assert data.x.dtype == np.float32
    np.testing.assert_allclose(data.x, x_ref, rtol=0, atol=1e-7)
    if levels is None:
        assert data.y.shape == (24, 1) and data.y.dtype == np.float32
        np.testing.assert_allclose(data.y, y_ref, rtol=0, atol=0)
    else:
        assert data.y.shape == (24,) and data.y.dtype == np.int32
        np.testing.assert_array_equal(data.y, y_ref)
    assert data.n_tokens == 24
    assert data.n_features == context + 2 * positions
    np.testing.assert_array_equal(data.image_index, np.repeat([0, 1], 12))
    np.testing.assert_array_equal(data.pixel_index, np.tile(np.arange(12), 2))


def test_first_pixel_sees_only_padding_and_context_crosses_rows(tiny_images):
    data = next_pixel_examples(tiny_images, context=5, positions=False)
    np.testing.assert_array_equal(data.x[0], np.zeros(5))
    # Pixel (1, 1) is raster position 5: its context is row 0 (4 values) and pixel (1, 0).
    np.testing.assert_array_equal(
        data.x[5], np.concatenate([tiny_images[0, 0], tiny_images[0, 1, :1]])
    )
    # The second image's context never reaches back into the first image.
    np.testing.assert_array_equal(data.x[12], np.zeros(5))


def test_quantise_bins():
    values = np.array([0.0, 0.124, 0.125, 0.5, 0.99, 1.0])
    np.testing.assert_array_equal(quantise(values, 8), [0, 0, 1, 4, 7, 7])
    np.testing.assert_array_equal(quantise(values, 2), [0, 0, 0, 1, 1, 1])


def test_pool_images_averages_blocks():
    images = np.arange(2 * 4 * 6, dtype=np.float32).reshape(2, 4, 6) / 47
    pooled = pool_images(images, 2)
    assert pooled.shape == (2, 2, 3)
    expected = np.array(
        [
            [
                images[n, 2 * r : 2 * r + 2, 2 * c : 2 * c + 2].mean()
                for r in range(2)
                for c in range(3)
            ]
            for n in range(2)
        ]
    ).reshape(2, 2, 3)
    np.testing.assert_allclose(pooled, expected, rtol=1e-6)


@pytest.mark.parametrize(
    ("images", "kwargs", "message"),
    [
        (np.zeros((2, 3)), {"context": 2}, "shape"),
        (np.zeros((0, 3, 3)), {"context": 2}, "empty"),
        (np.zeros((1, 3, 3), np.int64), {"context": 2}, "dtype"),
        (np.full((1, 3, 3), np.nan), {"context": 2}, "NaN"),
        (np.full((1, 3, 3), 1.5), {"context": 2}, r"\[0, 1\]"),
        (np.zeros((1, 3, 3)), {"context": 0}, "context"),
        (np.zeros((1, 3, 3)), {"context": 2.0}, "context"),
        (np.zeros((1, 3, 3)), {"context": 2, "levels": 1}, "levels"),
        (np.zeros((1, 3, 3)), {"context": 2, "positions": 1}, "positions"),
    ],
)
def test_examples_reject_bad_input(images, kwargs, message):
    with pytest.raises(ValueError, match=message):
        next_pixel_examples(images, **kwargs)


def test_quantise_and_pool_reject_bad_input():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        quantise([-0.1, 0.5], 4)
    with pytest.raises(ValueError, match="NaN"):
        quantise([np.nan], 4)
    with pytest.raises(ValueError, match="divisible"):
        pool_images(np.zeros((1, 5, 4), np.float32), 2)
    with pytest.raises(ValueError, match="factor"):
        pool_images(np.zeros((1, 4, 4), np.float32), 0)


def test_stream_reads_every_pixel_once(tiny_images):
    data = next_pixel_examples(tiny_images, context=3, levels=4)
    stream = fresh_pixel_stream(data, batch_size=5, key=jax.random.key(0))
    assert (stream.n_steps, stream.batch_size, stream.n_dropped) == (4, 5, 4)
    assert stream.n_tokens == 20
    rows = np.column_stack([np.asarray(stream.x).reshape(20, -1), np.asarray(stream.y).ravel()])
    every = np.column_stack([data.x, data.y])
    # Each streamed row is a distinct example of the data (no repeats, none invented).
    matches = [np.flatnonzero(np.all(every == row, axis=1)) for row in rows]
    assert all(m.size >= 1 for m in matches)
    assert len({tuple(row) for row in rows}) == len({tuple(every[m[0]]) for m in matches})
    assert len(np.unique(rows, axis=0)) == 20
    with pytest.raises(ValueError, match="batch_size=25 exceeds the 24 pixels of data"):
        fresh_pixel_stream(data, batch_size=25, key=jax.random.key(0))


def test_train_on_stream_is_one_update_per_batch(tiny_images):
    data = next_pixel_examples(tiny_images, context=3, levels=4)
    stream = fresh_pixel_stream(data, batch_size=4, key=jax.random.key(1))
    model = MLP(hidden=(6,), n_outputs=4, activation="tanh")
    params = model.init(jax.random.key(2), stream.x[0][:1])
    optimizer = optax.adam(optax.cosine_decay_schedule(0.05, stream.n_steps))
    seen = []

    def measure(step, p):
        seen.append(step)
        return {"kernel_sum": float(jnp.sum(p["params"]["Dense_0"]["kernel"]))}

    recorder = FunctionRecorder(measure, every=[0, 2, 5])
    result = train_on_stream(
        model.apply,
        params,
        optimizer,
        cross_entropy_loss,
        stream,
        record_steps=[0, 2, 5],
        recorders=[recorder],
        key=jax.random.key(1),
    )
    # The reference: the same updates written out one by one.
    state, reference, losses = optimizer.init(params), params, []
    for step in range(stream.n_steps):
        loss, grads = jax.value_and_grad(
            lambda p, s=step: cross_entropy_loss(model.apply(p, stream.x[s]), stream.y[s])
        )(reference)
        losses.append(float(loss))
        updates, state = optimizer.update(grads, state, reference)
        reference = optax.apply_updates(reference, updates)
    for got, want in zip(
        jax.tree_util.tree_leaves(result.params), jax.tree_util.tree_leaves(reference), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.batch_loss, losses, rtol=1e-5)
    assert seen == [0, 2, 5, stream.n_steps]
    with pytest.raises(ValueError, match="record_steps must increase strictly"):
        train_on_stream(
            model.apply,
            params,
            optimizer,
            cross_entropy_loss,
            stream,
            record_steps=[2, 2],
            key=jax.random.key(1),
        )
