"""The spectral_reach sweep: one point per training run, a (model, width, seed index) triple.

A point (:func:`run`) trains one MLP on a stream of fresh next-pixel examples with Adam
(:func:`ntkbook.train.train_on_stream`) and records the spectral position, its label-noise floor
and its cross-sample part on a held-out probe (:func:`ntkbook.ntk.spectral_recorder`). The model
is ``"trainable"`` (every layer learns) or ``"frozen"`` (the hidden layers stay at their initial
values; :func:`ntkbook.models.next_pixel.freeze_layers`).

The random keys of a run follow from the chapter's ``seed`` and the run's ``seed_index`` only:
``seed``'s key is split into :data:`KEY_NAMES`; the digits, the probe pixels and the checks of the
chapter use one key each, and seed index ``s`` folds ``s`` into the initialisation, stream and
floor keys. Every width therefore sees the same stream, the same probe and the same floor draws at
seed index ``s`` (the claims compare widths seed by seed), and adding a width or a seed leaves
every other point's key, hence its stored result, unchanged.

Each run is its own point rather than a model with all its seeds: a run is a Python loop of
jitted stream segments with recorder calls between them, which does not ``vmap``, and the widest
model carries most of the work (in the book preset, width 256 is about 60% of it), so one point
per model would leave it to one worker while the other idles. The price is that both workers
compile each width once, which matters only at the smallest sizes.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ntkbook import ntk
from ntkbook.data import Dataset, load_dataset
from ntkbook.data.next_pixel import (
    NextPixelData,
    PixelStream,
    fresh_pixel_stream,
    next_pixel_examples,
    pool_images,
)
from ntkbook.models import MLP
from ntkbook.models.next_pixel import freeze_layers, readout_width
from ntkbook.store import experiment
from ntkbook.sweep import Grid
from ntkbook.train import cross_entropy_loss, train_on_stream

__all__ = [
    "KEY_NAMES",
    "LABELS",
    "PARAMETERS",
    "RUN_PARAMETERS",
    "ChapterData",
    "chapter_data",
    "chapter_keys",
    "configurations",
    "control_width",
    "grid",
    "optimizer",
    "pixel_stream",
    "run",
    "run_model",
]

#: The two kinds of model: every layer learns, or only the readout (hidden layers frozen).
LABELS = ("trainable", "frozen")
#: The keys split from the chapter's ``seed``, in this order.
KEY_NAMES = ("data", "probe", "init", "stream", "floor", "check")
#: Chapter parameters that fix the digits, the probe pixels and the streams.
DATA_PARAMETERS = (
    "dataset",
    "n_train_images",
    "n_probe_images",
    "pool",
    "context",
    "levels",
    "batch_size",
    "n_probe",
    "seed",
)
#: Chapter parameters that every point takes (besides ``label``, ``width``, ``seed_index`` and
#: ``snapshots``).
RUN_PARAMETERS = (
    *DATA_PARAMETERS,
    "depth",
    "activation",
    "learning_rate",
    "schedule",
    "n_records",
    "floor_draws",
)
#: Every chapter parameter that :func:`grid` reads.
PARAMETERS = tuple(
    sorted({*RUN_PARAMETERS, "widths", "n_seeds", "frozen_width", "validation_width"})
)
SCHEDULES = ("cosine", "constant")


def _require(parameters: Mapping[str, Any], names) -> None:
    missing = [name for name in names if name not in parameters]
    if missing:
        raise ValueError(f"spectral_reach parameters lack {', '.join(missing)}")


def _integer(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def chapter_keys(seed: int) -> dict[str, jax.Array]:
    """The chapter's keys: ``jax.random.key(seed)`` split into :data:`KEY_NAMES`."""
    return dict(zip(KEY_NAMES, jax.random.split(jax.random.key(seed), len(KEY_NAMES)), strict=True))


@dataclass(frozen=True)
class ChapterData:
    """The digits, their next-pixel examples and the probe that every run of a chapter shares."""

    data: Dataset
    train_pixels: NextPixelData
    probe_pixels: NextPixelData
    probe_x: jax.Array
    probe_y: jax.Array


def _examples(images: np.ndarray, pool: int, context: int, levels: int) -> NextPixelData:
    pooled = pool_images(images, pool) if pool > 1 else images
    return next_pixel_examples(pooled, context=context, levels=levels)


@functools.cache
def _chapter_data(
    dataset: str,
    n_train_images: int,
    n_probe_images: int,
    pool: int,
    context: int,
    levels: int,
    n_probe: int,
    seed: int,
) -> ChapterData:
    keys = chapter_keys(seed)
    data = load_dataset(dataset, n_train=n_train_images, n_test=n_probe_images, key=keys["data"])
    train_pixels = _examples(data.x_train, pool, context, levels)
    probe_pixels = _examples(data.x_test, pool, context, levels)
    if not 2 <= n_probe <= probe_pixels.n_tokens:
        raise ValueError(f"n_probe={n_probe} must lie in [2, {probe_pixels.n_tokens}] probe pixels")
    index = jax.random.choice(keys["probe"], probe_pixels.n_tokens, (n_probe,), replace=False)
    return ChapterData(
        data=data,
        train_pixels=train_pixels,
        probe_pixels=probe_pixels,
        probe_x=jnp.asarray(probe_pixels.x)[index],
        probe_y=jnp.asarray(probe_pixels.y)[index],
    )


def chapter_data(parameters: Mapping[str, Any]) -> ChapterData:
    """The digits (``n_train_images`` for the stream, ``n_probe_images`` held out), their
    next-pixel examples and the ``n_probe`` probe pixels; loaded once per process.

    Raises:
        ValueError: a missing parameter, or ``n_probe`` outside ``[2, probe pixels]``.
    """
    _require(parameters, DATA_PARAMETERS)
    names = (
        "dataset",
        "n_train_images",
        "n_probe_images",
        "pool",
        "context",
        "levels",
        "n_probe",
        "seed",
    )
    return _chapter_data(*(parameters[name] for name in names))


def pixel_stream(parameters: Mapping[str, Any], seed_index: int) -> PixelStream:
    """The training stream of seed index ``seed_index``: every training pixel once, in the order
    of the chapter's stream key folded with ``seed_index``."""
    _require(parameters, DATA_PARAMETERS)
    key = jax.random.fold_in(chapter_keys(parameters["seed"])["stream"], seed_index)
    train_pixels = chapter_data(parameters).train_pixels
    return fresh_pixel_stream(train_pixels, batch_size=parameters["batch_size"], key=key)


@functools.cache
def optimizer(learning_rate: float, schedule: str, n_steps: int) -> optax.GradientTransformation:
    """Adam at peak rate ``learning_rate``, cosine-decayed to zero over ``n_steps`` or constant.

    One object per setting in a process, so that runs of one width share their compiled update.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    rates = (
        optax.cosine_decay_schedule(learning_rate, n_steps)
        if schedule == "cosine"
        else (learning_rate)
    )
    return optax.adam(rates)


@functools.cache
def _jitted_apply(model: MLP):
    return jax.jit(model.apply)


def _model(parameters: Mapping[str, Any], width: int) -> MLP:
    return MLP(
        hidden=(width,) * parameters["depth"],
        n_outputs=parameters["levels"],
        activation=parameters["activation"],
    )


def run_model(
    parameters: Mapping[str, Any], label: str, width: int, seed_index: int
) -> tuple[Any, Any]:
    """``(apply_fn, initial trainable params)`` of one run.

    ``"trainable"``: the jitted ``MLP.apply`` and all parameters, initialised from the chapter's
    init key folded with ``seed_index``. ``"frozen"``: the same initialisation with every hidden
    layer frozen; ``apply_fn`` takes the readout's parameters only.
    """
    if label not in LABELS:
        raise ValueError(f"label must be one of {LABELS}, got {label!r}")
    model = _model(parameters, width)
    key = jax.random.fold_in(chapter_keys(parameters["seed"])["init"], seed_index)
    params = model.init(key, chapter_data(parameters).probe_x[:1])
    if label == "trainable":
        return _jitted_apply(model), params
    hidden_layers = [f"Dense_{i}" for i in range(parameters["depth"])]
    part = freeze_layers(model.apply, params, hidden_layers)
    return jax.jit(part.apply_fn), part.trainable


def _n_features(context: int) -> int:
    # The feature count of next_pixel_examples at this context, from one image of one pixel.
    return next_pixel_examples(np.zeros((1, 1, 1), np.float32), context=context).n_features


def control_width(parameters: Mapping[str, Any]) -> int:
    """Width of the frozen-hidden-layer model whose readout has as many trainable parameters
    as the whole trainable model of width ``frozen_width``."""
    _require(parameters, ("frozen_width", "depth", "levels", "activation", "context"))
    model = _model(parameters, parameters["frozen_width"])
    shapes = jax.eval_shape(
        model.init, jax.random.key(0), jnp.zeros((1, _n_features(parameters["context"])))
    )
    n_trainable = sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(shapes))
    return readout_width(n_trainable, parameters["levels"])


def configurations(parameters: Mapping[str, Any]) -> list[tuple[str, int]]:
    """The models of the chapter, in grid order: ``("trainable", w)`` for each of ``widths``,
    then ``("frozen", control_width)``.

    Raises:
        ValueError: a missing parameter; ``widths`` empty, not positive integers or repeated;
            ``frozen_width`` or ``validation_width`` not one of ``widths``.
    """
    _require(parameters, PARAMETERS)
    widths = parameters["widths"]
    if not isinstance(widths, list | tuple) or not widths:
        raise ValueError(f"widths must be a non-empty list of widths, got {widths!r}")
    for width in widths:
        _integer("every width", width)
    if len(widths) != len(set(widths)):
        raise ValueError(f"widths={list(widths)} repeats a width")
    for name in ("frozen_width", "validation_width"):
        if parameters[name] not in widths:
            raise ValueError(f"{name}={parameters[name]} must be one of widths={list(widths)}")
    return [*(("trainable", int(w)) for w in widths), ("frozen", control_width(parameters))]


def grid(parameters: Mapping[str, Any]) -> list[Grid]:
    """The chapter's one sweep: :func:`run` for every model of :func:`configurations` and every
    seed index below ``n_seeds`` (models outer, seeds inner). The run (trainable,
    ``validation_width``, seed index 0) also keeps its parameters at every record."""
    models = configurations(parameters)
    n_seeds = _integer("n_seeds", parameters["n_seeds"])
    common = {name: parameters[name] for name in RUN_PARAMETERS}
    validation = ("trainable", parameters["validation_width"], 0)
    points = [
        {
            **common,
            "label": label,
            "width": width,
            "seed_index": s,
            "snapshots": (label, width, s) == validation,
        }
        for label, width in models
        for s in range(n_seeds)
    ]
    return [Grid(run, points)]


def _numpy(tree: Any) -> Any:
    return jax.tree_util.tree_map(np.asarray, tree)


def _check_point(p: Mapping[str, Any]) -> None:
    _require(p, (*RUN_PARAMETERS, "label", "width", "seed_index", "snapshots"))
    if p["label"] not in LABELS:
        raise ValueError(f"label must be one of {LABELS}, got {p['label']!r}")
    _integer("width", p["width"])
    _integer("seed_index", p["seed_index"], minimum=0)
    _integer("n_records", p["n_records"], minimum=2)
    _integer("floor_draws", p["floor_draws"], minimum=2)
    if not isinstance(p["snapshots"], bool):
        raise ValueError(f"snapshots must be true or false, got {p['snapshots']!r}")


@experiment("spectral_reach.run")
def run(p: dict[str, Any]) -> dict[str, Any]:
    """Train one model on its stream and record its spectral position on the probe.

    Returns ``records`` (one dict per record step: ``epoch`` and the measures of
    :func:`ntkbook.ntk.spectral_recorder` with its floor and cross-sample part), ``batch_loss``
    (the held-out loss of every batch before its update), the final trainable ``params``,
    ``n_trainable`` (their count) and, when ``snapshots`` is true, ``snapshots``: the trainable
    parameters at every record step, keyed by the step as a string.
    """
    _check_point(p)
    s = p["seed_index"]
    keys = chapter_keys(p["seed"])
    probe = chapter_data(p)
    stream = pixel_stream(p, s)
    record_steps = ntk.log_spaced_epochs(stream.n_steps, p["n_records"])
    apply_fn, params = run_model(p, p["label"], p["width"], s)
    snapshots: dict[int, Any] | None = {} if p["snapshots"] else None
    recorder = ntk.spectral_recorder(
        apply_fn,
        probe.probe_x,
        probe.probe_y,
        cross_entropy_loss,
        every=record_steps,
        floor_key=jax.random.fold_in(keys["floor"], s),
        floor_draws=p["floor_draws"],
        cross=True,
        snapshots=snapshots,
    )
    result = train_on_stream(
        apply_fn,
        params,
        optimizer(p["learning_rate"], p["schedule"], stream.n_steps),
        cross_entropy_loss,
        stream,
        record_steps=record_steps,
        recorders=[recorder],
        key=jax.random.fold_in(keys["stream"], s),
    )
    out = {
        "records": recorder.records,
        "batch_loss": np.asarray(result.batch_loss),
        "params": _numpy(result.params),
        "n_trainable": int(sum(leaf.size for leaf in jax.tree_util.tree_leaves(params))),
    }
    if snapshots is not None:
        out["snapshots"] = {str(step): _numpy(state) for step, state in snapshots.items()}
    return out
