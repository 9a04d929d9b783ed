"""Networks with frozen layers: random-feature versions of a model at equal size.

Freezing the hidden layers of a network at their random initial values and training only the
readout gives a **random-features** model: ``f(x) = W φ(x) + b`` with a fixed feature map ``φ``.
Its eNTK involves only the trainable parameters,

    Θ_ij = Σ_a ∂f_a(x_i)/∂θ · ∂f_a(x_j)/∂θ = O · (φ(x_i)·φ(x_j) + 1)   (θ = W, b),

and so it does not change during training: the representation cannot grow the gradient
magnitude ``χ_net = Tr Θ``. :func:`freeze_layers` returns the model as a function of its
trainable parameters alone, so that every eNTK measure of ``ntkbook.ntk`` and the training loop
``ntkbook.train.train`` see exactly the parameters that learn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from flax import traverse_util

__all__ = ["PartlyFrozen", "freeze_layers", "layer_names", "readout_width"]


def layer_names(params) -> list[str]:
    """Names of the layers of a Flax parameter tree (``params["params"]`` keys), in order."""
    tree = params.get("params", params) if isinstance(params, dict) else None
    if not isinstance(tree, dict) or not tree:
        raise ValueError("params must be a Flax parameter dict with named layers")
    return list(tree)


@dataclass(frozen=True)
class PartlyFrozen:
    """A model split into trainable and frozen parameters.

    ``apply_fn(trainable, x)`` evaluates the original model with the frozen parameters held
    fixed; ``trainable`` is the initial trainable tree; ``merge(trainable)`` rebuilds the full
    parameter tree of the original model.
    """

    apply_fn: Callable
    trainable: dict
    frozen: dict
    frozen_layers: tuple[str, ...]

    def merge(self, trainable) -> dict:
        """The full parameter tree: ``trainable`` together with the frozen parameters."""
        flat = {
            **traverse_util.flatten_dict(self.frozen),
            **traverse_util.flatten_dict(trainable),
        }
        return traverse_util.unflatten_dict(flat)


def freeze_layers(apply_fn: Callable, params, frozen: Sequence[str]) -> PartlyFrozen:
    """Hold the layers named in ``frozen`` fixed at their values in ``params``.

    ``apply_fn(params, x)`` is the model (e.g. ``MLP(...).apply``); layer names are those of
    :func:`layer_names` (``"Dense_0"``, ``"Dense_1"``, …). Freezing every hidden layer of an MLP
    gives its random-features version. Unknown names, freezing nothing, or freezing everything
    is an error.
    """
    names = layer_names(params)
    frozen = tuple(frozen)
    unknown = [name for name in frozen if name not in names]
    if unknown:
        raise ValueError(f"unknown layers {unknown}; the model's layers are {names}")
    if not frozen:
        raise ValueError("frozen is empty: nothing to freeze")
    if set(frozen) == set(names):
        raise ValueError(f"freezing every layer {names} leaves nothing to train")
    flat = traverse_util.flatten_dict(params)
    prefix = ("params",) if "params" in params else ()
    depth = len(prefix)

    def is_frozen(path: tuple) -> bool:
        return path[depth] in frozen

    frozen_tree = traverse_util.unflatten_dict({p: v for p, v in flat.items() if is_frozen(p)})
    trainable_tree = traverse_util.unflatten_dict(
        {p: v for p, v in flat.items() if not is_frozen(p)}
    )
    frozen_flat = traverse_util.flatten_dict(frozen_tree)

    # The frozen leaves are constants of this closure, so they get no gradient, no eNTK term
    # and no update.
    def frozen_apply(trainable, x):
        merged = traverse_util.unflatten_dict(
            {
                **frozen_flat,
                **traverse_util.flatten_dict(trainable),
            }
        )
        return apply_fn(merged, x)

    return PartlyFrozen(
        apply_fn=frozen_apply, trainable=trainable_tree, frozen=frozen_tree, frozen_layers=frozen
    )


def readout_width(n_trainable: int, n_outputs: int) -> int:
    """The width ``w`` whose dense readout ``(w + 1)·O`` parameters (weights and biases) comes
    closest to ``n_trainable``: the width of a frozen-hidden-layer model with as many
    trainable parameters as a fully trainable one (ties go to the smaller width).

    Raises:
        ValueError: a non-positive count, or ``n_trainable < 2·O`` (no width of at least 1).
    """
    for name, value in (("n_trainable", n_trainable), ("n_outputs", n_outputs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if n_trainable < 2 * n_outputs:
        raise ValueError(
            f"n_trainable={n_trainable} is below the {2 * n_outputs} parameters of a readout "
            f"of width 1 with {n_outputs} outputs"
        )
    low = n_trainable // n_outputs - 1
    candidates = [w for w in (low, low + 1) if w >= 1]
    return min(candidates, key=lambda w: (abs((w + 1) * n_outputs - n_trainable), w))
