"""Next-pixel prediction: images as sequences of pixels, one training example per pixel.

The vision task of the Spectral Reach paper is autoregressive next-pixel prediction. Here an
image of ``H × W`` grey values in ``[0, 1]`` is read in raster order (row by row, left to right)
as a sequence ``v_0, …, v_{T−1}`` with ``T = H·W``. Pixel ``t`` gives one example:

- **context**: the previous ``k`` pixels ``(v_{t−k}, …, v_{t−1})``, oldest first, with the
  positions before the start of the image filled with zeros (the background value of MNIST);
- **position** (optional, on by default): the pixel's row and column scaled to ``[0, 1]``,
  ``(r/(H−1), c/(W−1))``, so that a model that only sees a short window still knows where in the
  image it is;
- **target**: the pixel's own value ``v_t`` — either the grey value itself (regression, ``levels
  = None``) or its quantised class ``q_t = min(⌊levels·v_t⌋, levels − 1)`` (``levels`` equal-width
  bins of ``[0, 1]``, the last one closed), to be predicted with a softmax over ``levels`` classes
  as a language model predicts its next token.

One **token** is one predicted pixel, so an image contributes ``T`` tokens and an epoch over
``n`` images processes ``n·T`` tokens (training compute per token: :mod:`ntkbook.flops`).

The paper's models see mostly fresh data. :func:`fresh_pixel_stream` deals every pixel of a
set of images into minibatches in a random order, each pixel exactly once, and
:func:`train_on_stream` takes one optimizer update per minibatch, so that no update sees a
pixel an earlier update saw and the loss of a batch before its update is a held-out loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "NextPixelData",
    "PixelStream",
    "fresh_pixel_stream",
    "next_pixel_examples",
    "pool_images",
    "quantise",
]


@dataclass(frozen=True)
class NextPixelData:
    """Next-pixel examples of a set of images (one row per predicted pixel).

    ``x``: ``(n·T, context [+ 2])`` float32, the context window then (optionally) the scaled row
    and column. ``y``: ``(n·T,)`` int32 classes when ``levels`` is set, else ``(n·T, 1)``
    float32 grey values. ``image_index`` and ``pixel_index`` say which image and which raster
    position each row predicts.
    """

    x: np.ndarray
    y: np.ndarray
    image_index: np.ndarray
    pixel_index: np.ndarray
    context: int
    levels: int | None
    positions: bool
    image_shape: tuple[int, int]

    @property
    def n_tokens(self) -> int:
        """Number of predicted pixels (tokens), ``n·H·W``."""
        return int(self.x.shape[0])

    @property
    def n_features(self) -> int:
        """Input features per example, ``context`` plus 2 with positions."""
        return int(self.x.shape[1])


def _check_images(images) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"images must have shape (N, H, W), got {images.shape}")
    if images.shape[0] == 0 or images.shape[1] == 0 or images.shape[2] == 0:
        raise ValueError(f"images is empty: shape {images.shape}")
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"images must be floats in [0, 1], got dtype {images.dtype}")
    if not np.all(np.isfinite(images)):
        raise ValueError("images contain NaN or inf")
    low, high = float(images.min()), float(images.max())
    if low < 0 or high > 1:
        raise ValueError(f"image values must lie in [0, 1], got range [{low}, {high}]")
    return images.astype(np.float32, copy=False)


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def pool_images(images, factor: int) -> np.ndarray:
    """Average-pool ``(N, H, W)`` images over ``factor × factor`` blocks (``H``, ``W`` divisible).

    ``factor = 2`` turns 28×28 MNIST digits into 14×14, a quarter of the tokens per image.
    """
    images = _check_images(images)
    factor = _check_positive_int("factor", factor)
    n, height, width = images.shape
    if height % factor or width % factor:
        raise ValueError(f"image size {height}×{width} is not divisible by factor {factor}")
    blocks = images.reshape(n, height // factor, factor, width // factor, factor)
    return blocks.mean(axis=(2, 4))


def quantise(values, levels: int) -> np.ndarray:
    """Class of each grey value in ``[0, 1]``: ``min(⌊levels·v⌋, levels − 1)`` (int32).

    The bins are ``[k/levels, (k+1)/levels)`` with the last one closed, so ``v = 1`` is class
    ``levels − 1``. Values outside ``[0, 1]`` or NaN are an error.
    """
    levels = _check_positive_int("levels", levels)
    if levels < 2:
        raise ValueError(f"levels must be at least 2, got {levels}")
    values = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError("values contain NaN or inf")
    if values.size and (values.min() < 0 or values.max() > 1):
        raise ValueError(f"values must lie in [0, 1], got range [{values.min()}, {values.max()}]")
    return np.minimum(np.floor(values * levels), levels - 1).astype(np.int32)


def next_pixel_examples(
    images, *, context: int, levels: int | None = None, positions: bool = True
) -> NextPixelData:
    """Every pixel of every image as a (context → next pixel) example (see the module docstring).

    ``images``: ``(N, H, W)`` floats in ``[0, 1]``. ``context``: how many previous pixels in
    raster order the model sees (zero-padded before the first pixel). ``levels``: quantise the
    target into this many classes, or ``None`` for the grey value itself. Rows are ordered image
    by image, pixel by pixel.
    """
    images = _check_images(images)
    context = _check_positive_int("context", context)
    if levels is not None:
        levels = _check_positive_int("levels", levels)
    if not isinstance(positions, bool):
        raise ValueError(f"positions must be True or False, got {positions!r}")
    n, height, width = images.shape
    n_pixels = height * width
    sequences = images.reshape(n, n_pixels)
    padded = np.concatenate([np.zeros((n, context), np.float32), sequences], axis=1)
    # Window t of the padded sequence is (v_{t-k}, ..., v_{t-1}): the context of pixel t.
    windows = np.lib.stride_tricks.sliding_window_view(padded, context, axis=1)[:, :n_pixels]
    features = [windows.reshape(n * n_pixels, context)]
    pixel = np.tile(np.arange(n_pixels), n)
    if positions:
        row, column = np.divmod(pixel, width)
        features.append((row / max(height - 1, 1)).astype(np.float32)[:, None])
        features.append((column / max(width - 1, 1)).astype(np.float32)[:, None])
    targets = sequences.reshape(-1)
    y = quantise(targets, levels) if levels is not None else targets[:, None].copy()
    return NextPixelData(
        x=np.ascontiguousarray(np.concatenate(features, axis=1), dtype=np.float32),
        y=y,
        image_index=np.repeat(np.arange(n), n_pixels),
        pixel_index=pixel,
        context=context,
        levels=levels,
        positions=positions,
        image_shape=(height, width),
    )


@dataclass(frozen=True)
class PixelStream:
    """Minibatches of next-pixel examples, each pixel in exactly one batch.

    ``x``: ``(n_steps, batch_size, n_features)``, ``y``: ``(n_steps, batch_size)`` (or
    ``(n_steps, batch_size, 1)`` for grey values). ``n_dropped`` pixels (fewer than one batch)
    did not fit into whole batches and are in none.
    """

    x: jax.Array
    y: jax.Array
    n_dropped: int

    @property
    def n_steps(self) -> int:
        return int(self.x.shape[0])

    @property
    def batch_size(self) -> int:
        return int(self.x.shape[1])

    @property
    def n_tokens(self) -> int:
        """Pixels in the stream, ``n_steps · batch_size``."""
        return self.n_steps * self.batch_size


def fresh_pixel_stream(data: NextPixelData, *, batch_size: int, key: jax.Array) -> PixelStream:
    """Deal the pixels of ``data`` into ``n_tokens // batch_size`` minibatches in the random
    order of ``key``: every pixel is read once (the last ``n_tokens mod batch_size`` pixels of
    the order are left out; their number is ``n_dropped``).

    Raises:
        ValueError: ``batch_size`` not a positive integer or larger than the pixels of ``data``.
    """
    batch_size = _check_positive_int("batch_size", batch_size)
    if batch_size > data.n_tokens:
        raise ValueError(f"batch_size={batch_size} exceeds the {data.n_tokens} pixels of data")
    n_steps = data.n_tokens // batch_size
    order = np.asarray(jax.random.permutation(key, data.n_tokens))[: n_steps * batch_size]
    x = jnp.asarray(data.x[order].reshape(n_steps, batch_size, -1))
    y = jnp.asarray(data.y[order].reshape(n_steps, batch_size, *data.y.shape[1:]))
    return PixelStream(x=x, y=y, n_dropped=int(data.n_tokens - n_steps * batch_size))
