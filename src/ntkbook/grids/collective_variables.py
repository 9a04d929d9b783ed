"""The collective-variables sweeps: dense networks trained with their kernel recorded, one
configuration and its seeds per point.

One experiment, ``collective_variables.dense``, serves the chapter's three figures of dense
networks: Figure 1's comparisons (activation, width, depth; train and test probes), Figure 2's
phase diagram over width and depth (train probe) and Figure 3's Auto-MPG regression. A point is
one configuration (data set, hidden widths, activation, training and recording settings)
trained with ``n_seeds`` seeds one after the other (:func:`ntkbook.experiments.dense_run`); it
returns each seed's :meth:`ntkbook.experiments.Run.to_result`, which :func:`runs` turns back
into runs. The seeds of a configuration share one point because compiling a new network shape
costs a single-threaded worker several seconds, more than training it at the smaller presets:
this way each shape is compiled once, on one worker.

Random keys come from the chapter's ``seed`` and each run's own values (:func:`run_key`: data
set, hidden widths, activation, seed index), never from its place in the grid, so adding a
width or a depth leaves every other point's key, hence its stored result, unchanged, and seed
``s`` of a configuration is the same run whatever the number of seeds (which is part of the
point, so more seeds make new points). The data sets (:func:`load`) are drawn from ``seed`` and
the data set's name alone.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import optax

from ntkbook.data import load_auto_mpg, load_dataset
from ntkbook.experiments import Run, dense_run
from ntkbook.grids import point_key
from ntkbook.ntk import log_spaced_epochs
from ntkbook.store import experiment
from ntkbook.sweep import Grid
from ntkbook.train import cross_entropy_loss, mse_loss

__all__ = [
    "CLASSIFICATION",
    "REGRESSION",
    "PARAMETERS",
    "comparisons",
    "load",
    "run_key",
    "adam",
    "dense",
    "grid",
    "runs",
]

#: Data sets of the classification runs (``ntkbook.data.load_dataset``; cross-entropy).
CLASSIFICATION = ("mnist", "digits")
#: The regression data set (``ntkbook.data.load_auto_mpg``, standardised target; squared error).
REGRESSION = "auto_mpg"

#: Every parameter of a point; classification points add ``n_train`` and ``n_test``.
POINT_PARAMETERS = (
    "data",
    "hidden",
    "activation",
    "seed",
    "n_seeds",
    "epochs",
    "batch_size",
    "learning_rate",
    "n_records",
    "n_probe",
    "probes",
)
SPLIT_PARAMETERS = ("n_train", "n_test")

#: Every chapter parameter that :func:`grid` reads.
PARAMETERS = (
    "dataset",
    "n_train",
    "n_test",
    "n_probe",
    "epochs",
    "batch_size",
    "learning_rate",
    "n_records",
    "seeds",
    "activation_width",
    "activation_depth",
    "narrow_wide",
    "narrow_wide_depth",
    "shallow_deep",
    "shallow_deep_width",
    "phase_widths",
    "phase_depths",
    "phase_seeds",
    "fuel_widths",
    "fuel_depths",
    "fuel_epochs",
    "fuel_batch_size",
    "seed",
)


@functools.cache
def load(name: str, seed: int, n_train: int | None = None, n_test: int | None = None):
    """The data set ``name`` of the chapter with ``seed`` (cached per process).

    ``"mnist"`` or ``"digits"``: :func:`ntkbook.data.load_dataset` with ``n_train`` and
    ``n_test`` samples; ``"auto_mpg"``: :func:`ntkbook.data.load_auto_mpg` with a standardised
    target (no sizes). The split is drawn from ``point_key(seed, data=name)``.

    Raises:
        ValueError: an unknown ``name``, or sizes missing for a classification set or given
            for Auto-MPG.
    """
    key = point_key(seed, data=name)
    if name in CLASSIFICATION:
        if n_train is None or n_test is None:
            raise ValueError(f"data set {name!r} needs n_train and n_test")
        return load_dataset(name, n_train=n_train, n_test=n_test, key=key)
    if name == REGRESSION:
        if n_train is not None or n_test is not None:
            raise ValueError(f"data set {name!r} has a fixed split; do not give n_train, n_test")
        return load_auto_mpg(key=key, standardise_target=True)
    known = ", ".join((*CLASSIFICATION, REGRESSION))
    raise ValueError(f"unknown data set {name!r}; known: {known}")


def run_key(seed: int, data: str, hidden: Sequence[int], activation: str, seed_index: int):
    """The key of one run: ``seed`` folded with the run's data set, hidden widths, activation
    and seed index (:func:`ntkbook.grids.point_key`)."""
    return point_key(
        seed,
        data=data,
        hidden=[int(w) for w in hidden],
        activation=activation,
        seed_index=int(seed_index),
    )


@functools.cache
def adam(learning_rate: float) -> optax.GradientTransformation:
    """``optax.adam(learning_rate)``, one object per rate in a process, so that the runs of
    a worker share compiled programs."""
    return optax.adam(learning_rate)


def _check_point(p: Mapping[str, Any]) -> None:
    expected = set(POINT_PARAMETERS)
    if p.get("data") in CLASSIFICATION:
        expected |= set(SPLIT_PARAMETERS)
    missing = sorted(expected - set(p))
    unknown = sorted(set(p) - expected)
    if missing or unknown:
        raise ValueError(
            f"a collective_variables.dense point for data {p.get('data')!r} misses {missing} "
            f"and has unknown {unknown}"
        )
    n_seeds = p["n_seeds"]
    if isinstance(n_seeds, bool) or not isinstance(n_seeds, int) or n_seeds < 1:
        raise ValueError(f"n_seeds must be a positive integer, got {n_seeds!r}")
    hidden = p["hidden"]
    if not isinstance(hidden, list | tuple) or not all(
        isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in hidden
    ):
        raise ValueError(f"hidden must be a list of positive integers, got {hidden!r}")


@experiment("collective_variables.dense")
def dense(p: dict[str, Any]) -> dict[str, Any]:
    """Train one dense configuration of the chapter with ``n_seeds`` seeds and record its
    kernel: ``{"runs": [Run.to_result() per seed]}``, seed ``s`` keyed by :func:`run_key`.

    ``p``: ``data`` (``"mnist"``, ``"digits"`` with ``n_train`` and ``n_test``, or
    ``"auto_mpg"``), ``hidden``, ``activation``, ``seed`` (the chapter's) and ``n_seeds``;
    ``epochs``, ``batch_size`` and the Adam ``learning_rate``; ``n_records`` log-spaced record
    epochs (:func:`ntkbook.ntk.log_spaced_epochs`) on the first ``n_probe`` samples of each of
    ``probes`` (``"train"``, ``"test"``). Classification trains on the softmax cross-entropy,
    Auto-MPG on the squared error of the standardised target.

    Raises:
        ValueError: a missing or unknown parameter, or a bad value (named).
    """
    _check_point(p)
    sizes = [p[name] for name in SPLIT_PARAMETERS] if p["data"] in CLASSIFICATION else []
    data = load(p["data"], p["seed"], *sizes)
    if p["data"] == REGRESSION:
        x_train, x_test = data.x_train, data.x_test
        n_outputs, loss_fn = 1, mse_loss
    else:
        x_train, x_test = data.flat()
        n_outputs, loss_fn = data.n_classes, cross_entropy_loss
    train_data = (jnp.asarray(x_train), jnp.asarray(data.y_train))
    test_data = (jnp.asarray(x_test), jnp.asarray(data.y_test))
    runs = [
        dense_run(
            train_data,
            test_data,
            hidden=list(p["hidden"]),
            n_outputs=n_outputs,
            activation=p["activation"],
            key=run_key(p["seed"], p["data"], p["hidden"], p["activation"], s),
            epochs=p["epochs"],
            batch_size=p["batch_size"],
            loss_fn=loss_fn,
            optimizer=adam(p["learning_rate"]),
            every=log_spaced_epochs(p["epochs"], p["n_records"]),
            n_probe=p["n_probe"],
            probes=tuple(p["probes"]),
        )
        for s in range(p["n_seeds"])
    ]
    return {"runs": [run.to_result() for run in runs]}


def comparisons(parameters: Mapping[str, Any]) -> dict[str, list[tuple[str, list[int], str]]]:
    """Figure 1's three comparisons: row name -> ``(label, hidden widths, activation)`` of
    its two networks (ReLU against tanh, narrow against wide, shallow against deep)."""
    width, depth = parameters["activation_width"], parameters["activation_depth"]
    wide_depth, deep_width = parameters["narrow_wide_depth"], parameters["shallow_deep_width"]
    return {
        "activation": [
            (f"ReLU, width {width}", [width] * depth, "relu"),
            (f"tanh, width {width}", [width] * depth, "tanh"),
        ],
        "width": [
            (f"width {w}, depth {wide_depth}", [w] * wide_depth, "relu")
            for w in parameters["narrow_wide"]
        ],
        "depth": [
            (f"depth {d}, width {deep_width}", [deep_width] * d, "relu")
            for d in parameters["shallow_deep"]
        ],
    }


def grid(parameters: Mapping[str, Any]) -> list[Grid]:
    """The chapter's three sweeps of :func:`dense`, one point per configuration:

    1. Figure 1: every distinct configuration of :func:`comparisons` (first appearance
       order; a configuration in two comparisons is trained once) with ``seeds`` seeds, on
       ``dataset`` with train and test probes;
    2. Figure 2: ReLU networks of every (depth, width) of ``phase_depths`` × ``phase_widths``
       (depth-major) with ``phase_seeds`` seeds, train probe only;
    3. Figure 3: ReLU networks of every (depth, width) of ``fuel_depths`` × ``fuel_widths``
       with ``seeds`` seeds on Auto-MPG, ``fuel_epochs`` epochs in batches of
       ``fuel_batch_size``.
    """
    p = {name: parameters[name] for name in PARAMETERS}
    recording = {
        "seed": p["seed"],
        "learning_rate": p["learning_rate"],
        "n_records": p["n_records"],
        "n_probe": p["n_probe"],
    }
    mnist = {
        **recording,
        "data": p["dataset"],
        "n_train": p["n_train"],
        "n_test": p["n_test"],
        "epochs": p["epochs"],
        "batch_size": p["batch_size"],
    }
    distinct: dict[str, tuple[list[int], str]] = {}
    for members in comparisons(p).values():
        for label, hidden, activation in members:
            distinct.setdefault(label, (hidden, activation))
    figure1 = [
        {
            **mnist,
            "hidden": hidden,
            "activation": activation,
            "probes": ["train", "test"],
            "n_seeds": p["seeds"],
        }
        for hidden, activation in distinct.values()
    ]
    phase = [
        {
            **mnist,
            "hidden": [width] * depth,
            "activation": "relu",
            "probes": ["train"],
            "n_seeds": p["phase_seeds"],
        }
        for depth in p["phase_depths"]
        for width in p["phase_widths"]
    ]
    fuel_common = {
        **recording,
        "data": REGRESSION,
        "epochs": p["fuel_epochs"],
        "batch_size": p["fuel_batch_size"],
        "activation": "relu",
        "probes": ["train", "test"],
        "n_seeds": p["seeds"],
    }
    fuel = [
        {**fuel_common, "hidden": [width] * depth}
        for depth in p["fuel_depths"]
        for width in p["fuel_widths"]
    ]
    return [Grid(dense, figure1), Grid(dense, phase), Grid(dense, fuel)]


def runs(results: Sequence[dict[str, Any]]) -> list[list[Run]]:
    """The results of one of :func:`grid`'s sweeps as runs: per configuration (point), in the
    grid's order, the list of its seeds' :class:`~ntkbook.experiments.Run`."""
    return [[Run.from_result(run) for run in result["runs"]] for result in results]
