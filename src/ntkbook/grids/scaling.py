"""The scaling sweeps: one point per training run (arm, training-set size, width, seed index).

The chapter trains an MLP under two learning-rate rules, the arms (:data:`ARMS`), along two
axes: the training-set size ``n`` over ``data_sizes`` at width ``data_width``, and the width
over ``widths`` at ``n_train`` samples (with the network's linearised twin). A point
(:func:`run`) is one :func:`ntkbook.experiments.dense_run`; its result is the run's
:func:`~ntkbook.experiments.run_measures` on the probe set, the numbers the chapter draws and
tests.

Random keys: the run of seed index ``s`` trains from ``point_key(seed, seed_index=s)``
(:func:`run_key`), whatever its arm, size and width. The chapter compares runs of one seed
index across arms, sizes and widths, so they share their initialisation (at each width) and the
key of their data order; the key depends on the seed index, not on the run's place in the grid,
so adding a size, a width or a seed leaves every other point's key and stored result unchanged.

The fixed arm's rate, ``fixed_eta · N_probe / λ_max(Θ₀)`` of the widest network of seed
index 0 (:func:`fixed_learning_rate`), is computed inside each fixed-arm point from the
parameters it depends on (``eta`` and ``rate_width``; computed once per process): a point's key
changes when its rate does, and holds no float that another machine would round differently.

:func:`grid` gives the points in the order arm, axis, value, seed index; :func:`measures` groups
their results back as ``{(arm, axis): {value: [measures of each seed]}}``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ntkbook.data import load_dataset
from ntkbook.data.datasets import stratified_split
from ntkbook.data.download import load_cifar10, load_mnist
from ntkbook.experiments import dense_run, initial_mlp, kernel_learning_rate, run_measures
from ntkbook.grids import point_key
from ntkbook.store import experiment
from ntkbook.sweep import Grid
from ntkbook.train import mse_loss

__all__ = [
    "ARMS",
    "AXES",
    "PARAMETERS",
    "ChapterData",
    "chapter_data",
    "fixed_learning_rate",
    "grid",
    "measures",
    "run",
    "run_key",
]

#: The learning-rate rules: one rate for every network, or each network's own kernel rate.
ARMS = ("fixed", "kernel")
#: The swept axes: the training-set size (at ``data_width``) and the width (at ``n_train``).
AXES = ("n", "width")
#: Datasets that ship with the package's dependencies, and those read from a download cache.
LOCAL_DATASETS = ("digits", "mnist")
DOWNLOAD_DATASETS = ("mnist_full", "cifar10")

#: Chapter parameters that every point takes as they are.
COMMON_PARAMETERS = (
    "dataset",
    "data_dir",
    "n_test",
    "n_probe",
    "depth",
    "activation",
    "steps",
    "batch_size",
    "seed",
)
#: Every chapter parameter that :func:`grid` reads.
PARAMETERS = tuple(
    sorted(
        {
            *COMMON_PARAMETERS,
            "data_sizes",
            "data_width",
            "widths",
            "n_train",
            "fixed_eta",
            "eta",
            "n_seeds",
        }
    )
)


@dataclass(frozen=True)
class ChapterData:
    """The chapter's data: a pool of training samples whose prefixes are the training sets,
    and the held-out test set; inputs flattened (``float32``), targets one-hot."""

    x_pool: np.ndarray
    targets_pool: np.ndarray
    x_test: np.ndarray
    targets_test: np.ndarray
    description: str

    @property
    def n_classes(self) -> int:
        return self.targets_pool.shape[1]


def _read_only(array: Any, dtype=np.float32) -> np.ndarray:
    out = np.array(array, dtype=dtype)
    out.flags.writeable = False
    return out


@functools.cache
def chapter_data(dataset: str, data_dir: str, pool_size: int, n_test: int, seed: int):
    """The :class:`ChapterData` of one stratified draw of ``pool_size`` training and ``n_test``
    test samples of ``dataset``, drawn by the first of three keys split from ``seed`` (loaded
    once per process).

    Raises:
        ValueError: an unknown dataset, or more samples than it holds.
    """
    data_key = jax.random.split(jax.random.key(seed), 3)[0]
    if dataset in LOCAL_DATASETS:
        data = load_dataset(dataset, n_train=pool_size, n_test=n_test, key=data_key)
        x_pool, x_test = data.flat()
        y_pool, y_test, description = data.y_train, data.y_test, data.description
    elif dataset in DOWNLOAD_DATASETS:
        loader = {"mnist_full": load_mnist, "cifar10": load_cifar10}[dataset]
        full = loader(data_dir or None)
        train_idx, _ = stratified_split(data_key, full.y_train, pool_size, 0)
        test_idx, _ = stratified_split(jax.random.fold_in(data_key, 1), full.y_test, n_test, 0)
        x_pool = full.x_train[train_idx].reshape(pool_size, -1)
        y_pool = full.y_train[train_idx]
        x_test = full.x_test[test_idx].reshape(n_test, -1)
        y_test = full.y_test[test_idx]
        description = full.description
    else:
        known = ", ".join((*LOCAL_DATASETS, *DOWNLOAD_DATASETS))
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {known}")
    n_classes = int(np.max(y_pool)) + 1
    one_hot = np.eye(n_classes, dtype=np.float32)
    return ChapterData(
        _read_only(x_pool),
        _read_only(one_hot[np.asarray(y_pool)]),
        _read_only(x_test),
        _read_only(one_hot[np.asarray(y_test)]),
        description,
    )


def _data(p: Mapping[str, Any]) -> ChapterData:
    return chapter_data(p["dataset"], p["data_dir"], p["pool_size"], p["n_test"], p["seed"])


def run_key(seed: int, seed_index: int) -> jax.Array:
    """The key of every run of seed index ``seed_index`` (``dense_run`` splits it into the
    initialisation and the data order)."""
    return point_key(seed, seed_index=seed_index)


@functools.cache
def _fixed_rate(
    dataset, data_dir, pool_size, n_test, seed, n_probe, depth, activation, width, eta
) -> float:
    data = chapter_data(dataset, data_dir, pool_size, n_test, seed)
    init_key = jax.random.split(run_key(seed, 0))[0]
    apply_fn, params = initial_mlp(
        (width,) * depth, data.n_classes, activation, init_key, data.x_pool
    )
    return kernel_learning_rate(apply_fn, params, jnp.asarray(data.x_pool[:n_probe]), eta)


def fixed_learning_rate(p: Mapping[str, Any]) -> float:
    """The fixed arm's rate ``η · N_probe / λ_max(Θ₀)``, ``η = p["eta"]``, of the network of
    width ``p["rate_width"]`` that seed index 0 trains (same initialisation as
    :func:`dense_run`), on the probe set (computed once per process)."""
    return _fixed_rate(
        *(p[name] for name in ("dataset", "data_dir", "pool_size", "n_test", "seed")),
        *(p[name] for name in ("n_probe", "depth", "activation", "rate_width", "eta")),
    )


@experiment("scaling.run")
def run(p: dict[str, Any]) -> dict[str, float]:
    """One training run of the chapter: :func:`~ntkbook.experiments.dense_run` of an MLP of
    ``depth`` hidden layers of ``width`` on the first ``n`` samples of the pool, for
    ``ceil(steps · min(batch_size, n) / n)`` epochs of SGD on the squared error, the kernel
    recorded on the probe set before and after; its twin linearised when ``linearised``.

    The rate is :func:`fixed_learning_rate` (``arm="fixed"``) or the network's own kernel rate
    with ``kernel_eta = eta`` (``arm="kernel"``). Returns
    :func:`~ntkbook.experiments.run_measures` with the probe set's inputs and one-hot targets.

    Raises:
        ValueError: an unknown arm, or a fixed-arm point without ``rate_width``.
    """
    if p["arm"] == "fixed":
        if "rate_width" not in p:
            raise ValueError("a fixed-arm point needs rate_width (the widest swept width)")
        rule = {"learning_rate": fixed_learning_rate(p)}
    elif p["arm"] == "kernel":
        rule = {"kernel_eta": p["eta"]}
    else:
        raise ValueError(f"arm must be one of {', '.join(ARMS)}, got {p['arm']!r}")
    data = _data(p)
    n, width, n_probe = p["n"], p["width"], p["n_probe"]
    epochs = math.ceil(p["steps"] * min(p["batch_size"], n) / n)
    result = dense_run(
        (jnp.asarray(data.x_pool[:n]), jnp.asarray(data.targets_pool[:n])),
        (jnp.asarray(data.x_test), jnp.asarray(data.targets_test)),
        hidden=(width,) * p["depth"],
        n_outputs=data.n_classes,
        activation=p["activation"],
        key=run_key(p["seed"], p["seed_index"]),
        epochs=epochs,
        batch_size=p["batch_size"],
        loss_fn=mse_loss,
        every=epochs,
        n_probe=n_probe,
        probes=("train",),
        classification=True,
        linearised=p["linearised"],
        **rule,
    )
    return run_measures(result, jnp.asarray(data.x_pool[:n_probe]), data.targets_pool[:n_probe])


# --------------------------------------------------------------------------- the grid


def _positive_int(name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _positive_number(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


def _check(parameters: Mapping[str, Any]) -> None:
    missing = [name for name in PARAMETERS if name not in parameters]
    if missing:
        raise KeyError(f"the scaling grid needs the parameters {', '.join(missing)}")
    p = parameters
    known = (*LOCAL_DATASETS, *DOWNLOAD_DATASETS)
    if p["dataset"] not in known:
        raise ValueError(f"dataset must be one of {', '.join(known)}, got {p['dataset']!r}")
    if not isinstance(p["data_dir"], str):
        raise ValueError(
            f"data_dir must be a string (empty for the default), got {p['data_dir']!r}"
        )
    for name in ("n_test", "depth", "data_width", "n_train", "steps", "batch_size"):
        _positive_int(name, p[name])
    _positive_int("n_probe", p["n_probe"], minimum=2)
    _positive_int("n_seeds", p["n_seeds"], minimum=2)
    _positive_int("seed", p["seed"], minimum=0)
    for name in ("fixed_eta", "eta"):
        _positive_number(name, p[name])
    for name in ("data_sizes", "widths"):
        values = p[name]
        if not isinstance(values, list | tuple) or not values:
            raise ValueError(f"{name} must be a non-empty list of integers, got {values!r}")
        for value in values:
            _positive_int(f"every value of {name}", value)
        if len(set(values)) != len(values):
            raise ValueError(f"{name} must not repeat a value, got {list(values)}")
    widths = list(p["widths"])
    if widths != sorted(widths) or len(widths) < 3:
        raise ValueError(f"widths must be at least 3 strictly increasing values, got {widths}")
    outside = [n for n in [*p["data_sizes"], p["n_train"]] if n < p["n_probe"]]
    if outside:
        raise ValueError(
            f"the probe set (the first n_probe={p['n_probe']} training samples) must lie inside "
            f"every training set, but the training-set sizes {outside} are smaller"
        )


def _runs(parameters: Mapping[str, Any]) -> Iterator[tuple[str, str, int, int, int, int]]:
    """(arm, axis, value, n, width, seed index) of every run, in grid order."""
    p = parameters
    for arm in ARMS:
        for axis, values in (("n", p["data_sizes"]), ("width", p["widths"])):
            for value in values:
                n, width = (value, p["data_width"]) if axis == "n" else (p["n_train"], value)
                for s in range(p["n_seeds"]):
                    yield arm, axis, value, n, width, s


def grid(parameters: Mapping[str, Any]) -> list[Grid]:
    """The chapter's one sweep: a :func:`run` per arm, axis, swept value and seed index, in
    that order (the data sweep without, the width sweep with the linearised twin).

    Raises:
        KeyError: a parameter of :data:`PARAMETERS` is missing (named).
        ValueError: a bad parameter value (named).
    """
    _check(parameters)
    p = parameters
    common = {name: p[name] for name in COMMON_PARAMETERS}
    common["pool_size"] = max(max(p["data_sizes"]), p["n_train"])
    rules = {
        "fixed": {"eta": p["fixed_eta"], "rate_width": max(p["widths"])},
        "kernel": {"eta": p["eta"]},
    }
    points = [
        {
            **common,
            **rules[arm],
            "arm": arm,
            "n": n,
            "width": width,
            "seed_index": s,
            "linearised": axis == "width",
        }
        for arm, axis, _, n, width, s in _runs(p)
    ]
    return [Grid(run, points)]


def measures(
    parameters: Mapping[str, Any], results: Sequence[Mapping[str, float]]
) -> dict[tuple[str, str], dict[int, list[Mapping[str, float]]]]:
    """The results of :func:`grid`'s points (in its order) as ``{(arm, axis): {value: [the
    run_measures of each seed index]}}``.

    Raises:
        ValueError: ``results`` does not hold one result per point.
    """
    runs = list(_runs(parameters))
    if len(results) != len(runs):
        raise ValueError(f"expected {len(runs)} results (one per point), got {len(results)}")
    table: dict[tuple[str, str], dict[int, list[Mapping[str, float]]]] = {}
    for (arm, axis, value, *_), result in zip(runs, results, strict=True):
        table.setdefault((arm, axis), {}).setdefault(value, []).append(result)
    return table
