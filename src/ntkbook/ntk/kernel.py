"""Exact empirical neural tangent kernels.

For a network ``f(θ, x) ∈ R^O`` the empirical NTK between samples ``x_i`` and ``x_j`` is

    Θ[(i, a), (j, b)] = Σ_p ∂f_a(x_i)/∂θ_p · ∂f_b(x_j)/∂θ_p .

With ``trace_outputs=True`` the output axis is SUMMED, ``Θ_ij = Σ_a Θ[(i, a), (j, a)]``
(neural-tangents averages instead, so its traced kernel is ours divided by ``O``). The full
kernel has shape ``(N1·O, N2·O)`` with row index ``i·O + a``.

Three exact methods compute the same matrix with different costs:

``"structured"``
    Per layer, the Jacobian of a dense map ``y = h W`` factorises, ``∂f_a/∂W = Σ_t h_t ⊗ g_{a,t}``
    with ``g = ∂f/∂y``, so its contribution to Θ is a product of Gram matrices,
    ``Σ_{s,t} (h_{i,s}·h_{j,t}) (g_{ia,s}·g_{jb,t})`` (the structured-derivatives idea of
    Novak et al. 2022, "Fast Finite Width Neural Tangent Kernel"). Dense layers use the Gram
    form; a bias added to a dense layer's output is a weight on the constant input 1 and joins
    that layer's Gram product as ``h_{i,s}·h_{j,t} + 1``; convolution kernels get their weight
    Jacobian from one transposed convolution per output; every other parameter (convolution
    biases, norms, embeddings, anything unrecognised) falls back to its per-sample Jacobian.
    Layers are found in the jaxpr of ``apply_fn``, so any JAX model (Flax, Equinox, plain
    functions) works; a parameter used more than once (weight tying) falls back as well.
``"jacobian"``
    Blocked Jacobian contraction: each block's per-sample Jacobian is computed once and kept
    while the cache fits in memory; with ``x2`` omitted only the upper triangle of blocks is
    contracted.
``"vjp"``
    NTK-vector products: each column of Θ is ``J₁ (J₂ᵀ e)``, a VJP followed by a JVP; nothing of
    size ``P × N`` is ever held.

``"auto"`` uses ``"structured"`` when the model has layers it recognises and ``"jacobian"``
otherwise. All methods treat ``apply_fn`` per sample: ``apply_fn(params, x)[i]`` must depend on
``x[i]`` only (no batch statistics), which is what makes Θ a kernel between samples. A model that
mixes samples (BatchNorm with batch statistics, ``out - out.mean(0)``) would silently give a wrong
kernel (for the latter, all zeros), so every entry point checks it first
(:func:`verify_per_sample`: two extra forward passes on two samples) and raises ``ValueError``;
``check_per_sample=False`` turns the check off for a model known to be per-sample.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import threading
import types
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore

__all__ = [
    "empirical_ntk",
    "ntk_fn",
    "ntk_diagonal",
    "layer_summary",
    "NTKFunction",
    "METHODS",
    "check_inputs",
    "verify_per_sample",
]

Method = Literal["auto", "structured", "jacobian", "vjp"]
METHODS: tuple[str, ...] = ("auto", "structured", "jacobian", "vjp")

# Bytes of per-sample features processed in one block when ``block_size`` is not given.
_BLOCK_BUDGET_BYTES = 256 * 2**20
# The kernel of x1 with itself is symmetric: with blocks of at most this many samples only the
# k(k+1)/2 blocks of the upper triangle are contracted instead of k² (5/8 of the work at
# N = 2,048), while the blocks stay large enough for efficient matrix products.
_SYMMETRIC_BLOCK = 512
# Jacobian blocks are cached (each computed once) while their total stays below this.
_JACOBIAN_CACHE_BYTES = 2 * 2**30
_HIGHEST = jax.lax.Precision.HIGHEST
# Compiled plans kept per NTKFunction (one per parameter structure and input shape), and
# NTKFunctions kept for one-shot empirical_ntk calls; least recently used dropped first.
_PLANS_PER_FUNCTION = 8
_ONE_SHOT_FUNCTIONS = 16

_CALL_PRIMITIVES = frozenset({"jit", "pjit", "closed_call", "core_call"})
_TRANSPARENT_PRIMITIVES = frozenset({"convert_element_type", "copy", "copy_p"})
# Operations that only move, repeat or retype elements: a bias reaching a dense layer's output
# through a chain of these is recognised as that layer's bias.
_STRUCTURAL_PRIMITIVES = _TRANSPARENT_PRIMITIVES | {
    "reshape",
    "broadcast_in_dim",
    "transpose",
    "squeeze",
    "expand_dims",
}


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------


def _leaf_names(params) -> list[str]:
    paths, _ = jax.tree_util.tree_flatten_with_path(params)
    return [jax.tree_util.keystr(path) or "<root>" for path, _ in paths]


def _traced(*trees) -> bool:
    """Whether any leaf of ``trees`` is a tracer (inside ``jit``, ``vmap``, ``grad``...), where
    its values are unknown: value checks then wait for the next call with concrete arrays."""
    return any(
        isinstance(leaf, jax.core.Tracer)
        for tree in trees
        for leaf in jax.tree_util.tree_leaves(tree)
    )


def _check_finite_params(params) -> None:
    leaves = jax.tree_util.tree_leaves(params)
    if not leaves:
        raise ValueError("params is empty: the network has no parameters to differentiate")
    # Concrete values are checked eagerly even while a caller's jit traces (closure constants).
    with jax.ensure_compile_time_eval():
        bad = [not _traced(leaf) and bool(jnp.any(~jnp.isfinite(leaf))) for leaf in leaves]
    if any(bad):
        names = [name for name, b in zip(_leaf_names(params), bad, strict=True) if b]
        raise ValueError(f"params contain NaN or inf in {', '.join(names)}")


def _check_array(x, name: str) -> jax.Array:
    array = jnp.asarray(x)
    if array.ndim < 1 or array.shape[0] == 0:
        raise ValueError(
            f"{name} needs a leading sample axis with at least one sample, got shape {array.shape}"
        )
    if jnp.issubdtype(array.dtype, jnp.inexact) and not _traced(array):
        with jax.ensure_compile_time_eval():
            finite = bool(jnp.all(jnp.isfinite(array)))
    else:
        finite = True
    if not finite:
        first = np.argwhere(~np.isfinite(np.asarray(array)))[0]
        raise ValueError(
            f"{name} contains NaN or inf (first at index {tuple(int(i) for i in first)})"
        )
    return array


def check_inputs(
    apply_fn: Callable, params, x1, x2=None, *, check_per_sample: bool = True
) -> tuple[jax.Array, jax.Array | None, int]:
    """Validate ``params``, ``x1``, ``x2`` and the output of ``apply_fn``; return ``O``.

    Raises ``ValueError`` naming the problem: NaN or inf in a parameter leaf or an input, empty
    inputs, a feature-shape mismatch between ``x1`` and ``x2``, an ``apply_fn`` that does not
    return a 2-D ``(N, O)`` array, or (unless ``check_per_sample=False``) one whose output for a
    sample depends on the other samples of the batch (see :func:`verify_per_sample`).
    """
    _check_finite_params(params)
    x1 = _check_array(x1, "x1")
    if x2 is not None:
        x2 = _check_array(x2, "x2")
        if x1.shape[1:] != x2.shape[1:]:
            raise ValueError(
                f"x1 and x2 have different feature shapes: {x1.shape[1:]} vs {x2.shape[1:]}"
            )
    out = jax.eval_shape(apply_fn, params, x1[:1])
    if not hasattr(out, "shape") or len(out.shape) != 2:
        shape = getattr(out, "shape", type(out).__name__)
        raise ValueError(
            f"apply_fn must return a 2-D array of shape (N, O); for one sample it returned {shape}"
        )
    if out.shape[0] != 1:
        raise ValueError(
            f"apply_fn must return one row per sample; for one sample it returned shape {out.shape}"
        )
    if check_per_sample:
        verify_per_sample(apply_fn, params, x1, x2)
    return x1, x2, int(out.shape[1])


def _two_samples(x1: jax.Array, x2: jax.Array | None) -> jax.Array | None:
    """Two different samples of the inputs (made up from one if needed), or None if impossible."""
    first = x1[0]
    candidates = [x1[-1]] + ([] if x2 is None else [x2[0], x2[-1]])
    for other in candidates:
        if not bool(jnp.array_equal(first, other)):
            return jnp.stack([first, other])
    if jnp.issubdtype(x1.dtype, jnp.inexact):
        return jnp.stack([first, first + 1])
    return None  # a single integer sample (token ids): no second sample to compare with


def verify_per_sample(apply_fn: Callable, params, x1, x2=None) -> None:
    """Raise ``ValueError`` unless ``apply_fn`` treats the samples of a batch independently.

    Two samples ``a``, ``b`` go through ``apply_fn`` jointly, ``f([a, b])``, and separately,
    ``[f([a]), f([b])]`` (one vmapped call): two forward passes on two samples. They must agree to
    ``max|Δ| ≤ √ε · max|f|`` (ε of the output dtype: about 3e-4 relative in float32, under the
    highest matmul precision so that TF32 does not count as a difference). A batch-statistics
    layer or a model that mixes samples fails; the eNTK of such a model is not a kernel between
    samples (for ``f - f.mean(0)`` every method returns zeros).

    Under a JAX transformation (``params`` or the inputs are tracers) the values are unknown and
    nothing is checked; the check runs at the next call with concrete arrays.
    """
    if _traced(params, x1, x2):
        return
    with jax.ensure_compile_time_eval():
        _verify_per_sample(apply_fn, params, jnp.asarray(x1), x2)


def _verify_per_sample(apply_fn: Callable, params, x1: jax.Array, x2) -> None:
    pair = _two_samples(x1, None if x2 is None else jnp.asarray(x2))
    if pair is None:
        return
    with jax.default_matmul_precision("highest"):
        joint = np.asarray(apply_fn(params, pair))
        separate = np.asarray(jax.vmap(lambda s: apply_fn(params, s[None])[0])(pair))
    if joint.shape != separate.shape:
        raise ValueError(
            f"apply_fn is not per sample: two samples give shape {joint.shape} jointly but "
            f"{separate.shape} one at a time"
        )
    tolerance = 0.0
    if jnp.issubdtype(joint.dtype, jnp.inexact):
        tolerance = math.sqrt(float(jnp.finfo(joint.dtype).eps))
    joint, separate = joint.astype(np.float64), separate.astype(np.float64)
    finite = np.isfinite(joint)
    if not np.array_equal(finite, np.isfinite(separate)):
        found = "NaN or inf in one of them only"
    else:
        difference = float(np.max(np.abs(joint - separate), where=finite, initial=0.0))
        scale = float(
            np.max(
                np.abs(np.concatenate([joint, separate])),
                where=np.tile(finite, (2, 1)),
                initial=0.0,
            )
        )
        if difference <= tolerance * scale:
            return
        found = f"max difference {difference:.3g}, output scale {scale:.3g}"
    raise ValueError(
        "apply_fn is not per sample: the output for one sample changes when another sample is in "
        f"the same batch ({found}). A layer that uses batch statistics (BatchNorm in training "
        "mode: use use_running_average=True) or a model that mixes samples (e.g. subtracting the "
        "batch mean) makes the eNTK wrong, often all zeros. Pass check_per_sample=False only "
        "for a model known to be per sample."
    )


# --------------------------------------------------------------------------------------------
# structure of the network, read from its jaxpr
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Target:
    """A parameter leaf used once, as an operand of a dense or convolution primitive."""

    path: tuple[int, ...]
    leaf: int
    kind: Literal["gram", "explicit"]
    param_position: int
    primitive: Any
    params: dict
    out_shape: tuple[int, ...]
    out_dtype: Any
    # Gram layout: activation dims (free, contracting) and the output dims' split.
    act_free: tuple[int, ...] = ()
    act_contract: tuple[int, ...] = ()
    positions: int = 1
    width_in: int = 1
    width_out: int = 1
    # A bias leaf added to this (Gram) layer's output, folded into its Gram product.
    bias_leaf: int | None = None


@dataclasses.dataclass(frozen=True)
class _Structure:
    closed_jaxpr: Any
    targets: dict[tuple[int, ...], _Target]
    fallback_leaves: tuple[int, ...]
    n_outputs: int

    @property
    def gram_biases(self) -> tuple[bool, ...]:
        """For each Gram feature pair, in order, whether its layer's bias is folded in."""
        return tuple(
            self.targets[p].bias_leaf is not None
            for p in sorted(self.targets)
            if self.targets[p].kind == "gram"
        )


def _scan_uses(jaxpr, alias: dict, path: tuple[int, ...], uses: dict[int, list]) -> None:
    """Record every use of every parameter leaf, following transparent ops and calls."""
    for k, eqn in enumerate(jaxpr.eqns):
        here = path + (k,)
        leaves_in = [alias.get(v) if isinstance(v, jcore.Var) else None for v in eqn.invars]
        name = eqn.primitive.name
        if name in _TRANSPARENT_PRIMITIVES and leaves_in and leaves_in[0] is not None:
            alias[eqn.outvars[0]] = leaves_in[0]
            continue
        if name in _CALL_PRIMITIVES and "jaxpr" in eqn.params:
            inner = eqn.params["jaxpr"].jaxpr
            inner_alias = {
                v: leaf for v, leaf in zip(inner.invars, leaves_in, strict=True) if leaf is not None
            }
            _scan_uses(inner, inner_alias, here, uses)
            for inner_out, outer_out in zip(inner.outvars, eqn.outvars, strict=True):
                if isinstance(inner_out, jcore.Var) and inner_out in inner_alias:
                    alias[outer_out] = inner_alias[inner_out]
            continue
        for position, leaf in enumerate(leaves_in):
            if leaf is not None:
                uses[leaf].append((here, eqn, position))
    for v in jaxpr.outvars:
        if isinstance(v, jcore.Var) and v in alias:
            uses[alias[v]].append((None, None, None))


def _dense_target(path, leaf, eqn, position, n_outputs) -> _Target:
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = eqn.params["dimension_numbers"]
    act = eqn.invars[1 - position].aval
    weight = eqn.invars[position].aval
    act_contract = tuple(lhs_contract if position == 1 else rhs_contract)
    weight_contract = tuple(rhs_contract if position == 1 else lhs_contract)
    act_free = tuple(d for d in range(len(act.shape)) if d not in act_contract)
    positions = math.prod(act.shape[d] for d in act_free)
    width_in = math.prod(act.shape[d] for d in act_contract)
    width_out = math.prod(
        weight.shape[d] for d in range(len(weight.shape)) if d not in weight_contract
    )
    # Gram form costs T²(d_in + O d_out) per sample pair, the explicit weight Jacobian
    # O d_in d_out: take whichever is cheaper (always Gram for a plain dense layer, T = 1).
    gram_cost = positions**2 * (width_in + n_outputs * width_out)
    explicit_cost = n_outputs * width_in * width_out
    kind = "gram" if positions == 1 or gram_cost <= explicit_cost else "explicit"
    out = eqn.outvars[0].aval
    return _Target(
        path=path,
        leaf=leaf,
        kind=kind,
        param_position=position,
        primitive=eqn.primitive,
        params=dict(eqn.params),
        out_shape=tuple(out.shape),
        out_dtype=out.dtype,
        act_free=act_free,
        act_contract=act_contract,
        positions=positions,
        width_in=width_in,
        width_out=width_out,
    )


def _scope_of(jaxpr, path: tuple[int, ...]):
    """The (possibly nested) jaxpr that holds the equation at ``path``."""
    for k in path[:-1]:
        jaxpr = jaxpr.eqns[k].params["jaxpr"].jaxpr
    return jaxpr


def _consumers(jaxpr) -> dict:
    """Every variable of ``jaxpr`` → the indices of the equations reading it (-1: an output)."""
    readers: dict = {}
    for k, eqn in enumerate(jaxpr.eqns):
        for v in eqn.invars:
            if isinstance(v, jcore.Var):
                readers.setdefault(v, []).append(k)
    for v in jaxpr.outvars:
        if isinstance(v, jcore.Var):
            readers.setdefault(v, []).append(-1)
    return readers


def _bias_target(jaxpr, path, eqn, position, targets: dict) -> tuple[int, ...] | None:
    """:func:`_find_bias_target`, with its index arithmetic evaluated eagerly even while a
    caller's ``jit`` traces the kernel."""
    with jax.ensure_compile_time_eval():
        return _find_bias_target(jaxpr, path, eqn, position, targets)


def _find_bias_target(jaxpr, path, eqn, position, targets: dict) -> tuple[int, ...] | None:
    """The Gram target whose output this leaf is added to as a bias, or None.

    A bias ``b`` qualifies when it reaches ``y + φ(b)`` through structural operations only
    (``φ`` moves and repeats elements), ``y`` is the output of a Gram dense layer read by this
    addition alone, and ``φ(b)`` gives every output position the same copy of ``b``. Then
    ``∂f/∂b = Σ_t g_t`` with ``g = ∂f/∂y``: the bias is a weight on a constant input 1, and its
    NTK contribution is the layer's Gram product with ``h_s·h_t`` replaced by 1. The copy
    pattern is checked by pushing the element indices of ``b`` through ``φ``.
    """
    scope = _scope_of(jaxpr, path)
    readers = _consumers(scope)
    prefix = path[:-1]
    var = eqn.invars[position]
    shape = tuple(var.aval.shape)
    bias_size = math.prod(shape)
    index = jnp.arange(bias_size, dtype=jnp.int32).reshape(shape)
    k = path[-1]
    while True:
        current = scope.eqns[k]
        name = current.primitive.name
        if name in _STRUCTURAL_PRIMITIVES:
            if position != 0 or len(current.invars) != 1:
                return None
            if name not in _TRANSPARENT_PRIMITIVES:
                bound = current.primitive.get_bind_params(current.params)
                subfuns, bind_params = bound if isinstance(bound, tuple) else ((), bound)
                index = current.primitive.bind(*subfuns, index, **bind_params)
            out = current.outvars[0]
            following = readers.get(out, [])
            if len(following) != 1 or following[0] < 0:
                return None
            k = following[0]
            position = scope.eqns[k].invars.index(out)
            continue
        if name != "add" or len(current.invars) != 2:
            return None
        layer_out = current.invars[1 - position]
        if not isinstance(layer_out, jcore.Var) or readers.get(layer_out) != [k]:
            return None
        for target_path, target in targets.items():
            if target_path[:-1] != prefix or target.kind != "gram":
                continue
            if scope.eqns[target_path[-1]].outvars[0] is not layer_out:
                continue
            # ``add`` may broadcast size-1 axes of either operand; the layer's output must
            # not be broadcast (its cotangent would then be a sum of the addition's).
            if tuple(current.outvars[0].aval.shape) != target.out_shape:
                return None
            if len(index.shape) != len(target.out_shape) or any(
                a not in (1, b) for a, b in zip(index.shape, target.out_shape, strict=True)
            ):
                return None
            index = np.broadcast_to(np.asarray(index), target.out_shape)
            if bias_size != target.width_out:
                return None
            if target.param_position == 1:
                layout = index.reshape(target.positions, target.width_out)
            else:
                layout = index.reshape(target.width_out, target.positions).T
            same_everywhere = bool(np.all(layout == layout[:1]))
            each_once = np.array_equal(np.sort(layout[0]), np.arange(bias_size))
            return target_path if same_everywhere and each_once else None
        return None


def _analyse(apply_fn: Callable, params, x_one: jax.Array, n_outputs: int) -> _Structure:
    leaves, treedef = jax.tree_util.tree_flatten(params)

    def flat_apply(flat_leaves, x):
        return apply_fn(jax.tree_util.tree_unflatten(treedef, flat_leaves), x)

    closed = jax.make_jaxpr(flat_apply)(leaves, x_one)
    jaxpr = closed.jaxpr
    alias = {v: k for k, v in enumerate(jaxpr.invars[: len(leaves)])}
    uses: dict[int, list] = {k: [] for k in range(len(leaves))}
    _scan_uses(jaxpr, alias, (), uses)

    targets: dict[tuple[int, ...], _Target] = {}
    for leaf, leaf_uses in uses.items():
        if len(leaf_uses) != 1 or leaf_uses[0][0] is None:
            continue
        path, eqn, position = leaf_uses[0]
        name = eqn.primitive.name
        if name == "dot_general":
            (_, _), (lhs_batch, rhs_batch) = eqn.params["dimension_numbers"]
            if lhs_batch or rhs_batch:
                continue
            targets[path] = _dense_target(path, leaf, eqn, position, n_outputs)
        elif name == "conv_general_dilated":
            out = eqn.outvars[0].aval
            targets[path] = _Target(
                path=path,
                leaf=leaf,
                kind="explicit",
                param_position=position,
                primitive=eqn.primitive,
                params=dict(eqn.params),
                out_shape=tuple(out.shape),
                out_dtype=out.dtype,
            )
    for leaf, leaf_uses in uses.items():
        if len(leaf_uses) != 1 or leaf_uses[0][0] is None:
            continue
        path, eqn, position = leaf_uses[0]
        if path in targets:
            continue
        layer = _bias_target(jaxpr, path, eqn, position, targets)
        if layer is not None and targets[layer].bias_leaf is None:
            targets[layer] = dataclasses.replace(targets[layer], bias_leaf=leaf)
    structured = {t.leaf for t in targets.values()}
    structured |= {t.bias_leaf for t in targets.values() if t.bias_leaf is not None}
    fallback = tuple(k for k in range(len(leaves)) if k not in structured)
    return _Structure(closed, targets, fallback, n_outputs)


def _read(env: dict, v):
    return v.val if isinstance(v, jcore.Literal) else env[v]


def _interpret(jaxpr, consts, args, targets, probes, captured, path=()) -> list:
    """Evaluate a jaxpr, adding ``probes[path]`` to each target's output and capturing inputs."""
    env: dict = {}
    for v, value in zip(jaxpr.constvars, consts, strict=True):
        env[v] = value
    for v, value in zip(jaxpr.invars, args, strict=True):
        env[v] = value
    for k, eqn in enumerate(jaxpr.eqns):
        here = path + (k,)
        invals = [_read(env, v) for v in eqn.invars]
        if eqn.primitive.name in _CALL_PRIMITIVES and "jaxpr" in eqn.params:
            inner = eqn.params["jaxpr"]
            outs = _interpret(inner.jaxpr, inner.consts, invals, targets, probes, captured, here)
        else:
            bound = eqn.primitive.get_bind_params(eqn.params)
            # Older JAX returns (subfuns, params), newer JAX only the params.
            subfuns, bind_params = bound if isinstance(bound, tuple) else ((), bound)
            outs = eqn.primitive.bind(*subfuns, *invals, **bind_params)
            if not eqn.primitive.multiple_results:
                outs = [outs]
            if here in targets:
                captured[here] = invals
                outs = [outs[0] + probes[here]]
        for v, value in zip(eqn.outvars, outs, strict=True):
            if not isinstance(v, jcore.DropVar):
                env[v] = value
    return [_read(env, v) for v in jaxpr.outvars]


def _structured_sample_features(structure: _Structure, leaves: list, x: jax.Array) -> dict:
    """Per-sample features whose pairwise contractions give Θ (see :func:`_contract`)."""
    closed = structure.closed_jaxpr
    targets = structure.targets
    n_outputs = structure.n_outputs
    fallback = structure.fallback_leaves

    def forward(fallback_leaves, probes):
        args = list(leaves)
        for k, value in zip(fallback, fallback_leaves, strict=True):
            args[k] = value
        captured: dict = {}
        (out,) = _interpret(
            closed.jaxpr, closed.consts, [*args, x[None]], targets, probes, captured
        )
        return out[0], captured

    probes = {p: jnp.zeros(t.out_shape, t.out_dtype) for p, t in targets.items()}
    out, vjp_fn, captured = jax.vjp(forward, [leaves[k] for k in fallback], probes, has_aux=True)
    cotangents = jnp.eye(n_outputs, dtype=out.dtype)
    fallback_jac, probe_cot = jax.vmap(vjp_fn)(cotangents)

    explicit = [j.reshape(n_outputs, -1) for j in fallback_jac]
    grams = []
    for p in sorted(targets):
        t = targets[p]
        operands = captured[p]
        g = probe_cot[p]  # (O, *out_shape)
        if t.kind == "explicit":
            weight = operands[t.param_position]

            def bound(w, operands=operands, t=t):
                args = list(operands)
                args[t.param_position] = w
                return t.primitive.bind(*args, **t.params)

            _, weight_vjp = jax.vjp(bound, weight)
            jac = jax.vmap(lambda c, weight_vjp=weight_vjp: weight_vjp(c)[0])(g)
            explicit.append(jac.reshape(n_outputs, -1))
        else:
            act = operands[1 - t.param_position]
            h = jnp.transpose(act, t.act_free + t.act_contract).reshape(t.positions, t.width_in)
            if t.param_position == 1:
                g = g.reshape(n_outputs, t.positions, t.width_out)
            else:
                g = g.reshape(n_outputs, t.width_out, t.positions).transpose(0, 2, 1)
            grams.append((h, g))
    dtype = out.dtype
    if explicit:
        explicit_matrix = jnp.concatenate([e.astype(dtype) for e in explicit], axis=1)
    else:
        explicit_matrix = jnp.zeros((n_outputs, 0), dtype)
    return {"explicit": explicit_matrix, "gram": grams}


def _jacobian_sample_features(apply_fn: Callable, treedef, leaves: list, x: jax.Array) -> dict:
    def single(flat_leaves):
        return apply_fn(jax.tree_util.tree_unflatten(treedef, flat_leaves), x[None])[0]

    jac = jax.jacrev(single)(leaves)
    n_outputs = jac[0].shape[0]
    dtype = jnp.result_type(*[j.dtype for j in jac])
    matrix = jnp.concatenate([j.reshape(n_outputs, -1).astype(dtype) for j in jac], axis=1)
    return {"explicit": matrix, "gram": []}


def _contract(
    fa: dict, fb: dict, trace_outputs: bool, gram_biases: tuple[bool, ...] = ()
) -> jax.Array:
    """Kernel block between two blocks of per-sample features.

    ``explicit`` features are Jacobian rows (B, O, P): ``Θ = J_a J_bᵀ``. ``gram`` features are
    pairs ``h (B, T, d_in)``, ``g (B, O, T, d_out)`` of a dense layer, contributing
    ``Σ_{s,t} (h_{is}·h_{jt} + β) (g_{ias}·g_{jbt})`` with ``β = 1`` where the layer's bias is
    folded in (``gram_biases``, one flag per pair; a bias is a weight on the constant input 1)
    and ``β = 0`` otherwise.
    """
    ea, eb = fa["explicit"], fb["explicit"]
    na, n_out, n_explicit = ea.shape
    nb = eb.shape[0]
    shape = (na, nb) if trace_outputs else (na, n_out, nb, n_out)
    if n_explicit == 0:
        kernel = jnp.zeros(shape, ea.dtype)
    elif trace_outputs:
        kernel = jnp.matmul(ea.reshape(na, -1), eb.reshape(nb, -1).T, precision=_HIGHEST)
    else:
        kernel = jnp.matmul(
            ea.reshape(na * n_out, -1), eb.reshape(nb * n_out, -1).T, precision=_HIGHEST
        ).reshape(shape)
    biases = gram_biases or (False,) * len(fa["gram"])
    for (ha, ga), (hb, gb), bias in zip(fa["gram"], fb["gram"], biases, strict=True):
        positions = ha.shape[1]
        if positions == 1:
            h_gram = jnp.matmul(ha[:, 0], hb[:, 0].T, precision=_HIGHEST)
            if bias:
                h_gram = h_gram + 1
            if trace_outputs:
                g_gram = jnp.matmul(ga.reshape(na, -1), gb.reshape(nb, -1).T, precision=_HIGHEST)
                kernel = kernel + h_gram * g_gram
            else:
                g_gram = jnp.matmul(
                    ga.reshape(na * n_out, -1), gb.reshape(nb * n_out, -1).T, precision=_HIGHEST
                ).reshape(na, n_out, nb, n_out)
                kernel = kernel + h_gram[:, None, :, None] * g_gram
        else:
            h_gram = jnp.einsum("isd,jtd->isjt", ha, hb, precision=_HIGHEST)
            if bias:
                h_gram = h_gram + 1
            if trace_outputs:
                g_gram = jnp.einsum("iasd,jatd->isjt", ga, gb, precision=_HIGHEST)
                kernel = kernel + jnp.sum(h_gram * g_gram, axis=(1, 3))
            else:
                kernel = kernel + jnp.einsum(
                    "isjt,iase,jbte->iajb", h_gram, ga, gb, precision=_HIGHEST, optimize=True
                )
    if not trace_outputs:
        kernel = kernel.reshape(na * n_out, nb * n_out)
    return kernel


def _vjp_columns(apply_fn, treedef, leaves, x1, x2_block, n_outputs, trace_outputs):
    """Columns of Θ for the samples of ``x2_block`` as JVPs of VJP tangents."""
    params = jax.tree_util.tree_unflatten(treedef, leaves)

    def tangent(x, b):
        def single(p):
            return apply_fn(p, x[None])[0]

        _, vjp_fn = jax.vjp(single, params)
        return vjp_fn(jax.nn.one_hot(b, n_outputs, dtype=_output_dtype(leaves)))[0]

    outputs = jnp.arange(n_outputs)
    tangents = jax.vmap(jax.vmap(tangent, (None, 0)), (0, None))(x2_block, outputs)

    def push(t):
        return jax.jvp(lambda p: apply_fn(p, x1), (params,), (t,))[1]

    columns = jax.vmap(jax.vmap(push))(tangents)  # (B2, O_b, N1, O_a)
    if trace_outputs:
        return jnp.einsum("jbib->ij", columns)
    n1, b2 = x1.shape[0], x2_block.shape[0]
    return columns.transpose(2, 3, 0, 1).reshape(n1 * n_outputs, b2 * n_outputs)


def _output_dtype(leaves) -> Any:
    return jnp.result_type(*[leaf.dtype for leaf in leaves])


# --------------------------------------------------------------------------------------------
# the kernel function
# --------------------------------------------------------------------------------------------


def _blocks(n: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def _pad_to(x: jax.Array, size: int) -> jax.Array:
    missing = size - x.shape[0]
    if missing == 0:
        return x
    return jnp.concatenate([x, jnp.repeat(x[:1], missing, axis=0)], axis=0)


def _check_options(method, block_size) -> None:
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"unknown eNTK method {method!r}; choose one of {', '.join(METHODS)}")
    if block_size is not None and (
        isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1
    ):
        raise ValueError(f"block_size must be a positive integer or None, got {block_size!r}")


class NTKFunction:
    """An eNTK function bound to a network: ``NTKFunction(apply_fn)(params, x1, x2=None)``.

    Build it once with :func:`ntk_fn` and call it repeatedly (for example at every recorded
    epoch): compiled per-sample feature functions are cached per parameter structure and input
    shape. See the module docstring for the kernel convention and the methods. The per-sample
    check (:func:`verify_per_sample`) runs once per parameter structure and input shape, not at
    every call; ``check_per_sample=False`` turns it off.
    """

    def __init__(
        self,
        apply_fn: Callable,
        *,
        trace_outputs: bool = True,
        method: Method = "auto",
        block_size: int | None = None,
        check_per_sample: bool = True,
    ) -> None:
        _check_options(method, block_size)
        self.apply_fn = apply_fn
        self.trace_outputs = trace_outputs
        self.method = method
        self.block_size = block_size
        self.check_per_sample = check_per_sample
        self._cache: OrderedDict = OrderedDict()
        self._verified: set = set()

    # -- helpers ------------------------------------------------------------------------------
    def _signature(self, params, x) -> tuple:
        leaves, treedef = jax.tree_util.tree_flatten(params)
        return (
            treedef,
            tuple((leaf.shape, str(leaf.dtype)) for leaf in leaves),
            tuple(x.shape[1:]),
            str(x.dtype),
            bool(jax.config.jax_enable_x64),
        )

    def _plan(self, params, x1: jax.Array, n_outputs: int) -> dict:
        key = self._signature(params, x1)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        leaves, treedef = jax.tree_util.tree_flatten(params)
        method = self.method
        structure = None
        if method in ("auto", "structured"):
            structure = _analyse(self.apply_fn, params, x1[:1], n_outputs)
            if method == "auto":
                method = "structured" if structure.targets else "jacobian"
        if method == "structured":
            sample_fn = functools.partial(_structured_sample_features, structure)
        elif method == "jacobian":
            sample_fn = functools.partial(_jacobian_sample_features, self.apply_fn, treedef)
        else:
            sample_fn = None
        plan = {"method": method, "structure": structure, "treedef": treedef}
        if sample_fn is not None:
            batched = jax.vmap(sample_fn, in_axes=(None, 0))
            plan["features"] = jax.jit(batched)
            per_sample = jax.eval_shape(sample_fn, leaves, x1[0])
            plan["sample_bytes"] = sum(
                math.prod(a.shape) * jnp.dtype(a.dtype).itemsize
                for a in jax.tree_util.tree_leaves(per_sample)
            )
        else:
            plan["columns"] = jax.jit(
                functools.partial(_vjp_columns, self.apply_fn, treedef),
                static_argnames=("n_outputs", "trace_outputs"),
            )
            plan["sample_bytes"] = n_outputs * sum(
                leaf.size * leaf.dtype.itemsize for leaf in leaves
            )
        gram_biases = () if structure is None or method != "structured" else structure.gram_biases
        plan["contract"] = jax.jit(
            functools.partial(_contract, gram_biases=gram_biases),
            static_argnames=("trace_outputs",),
        )
        self._cache[key] = plan
        while len(self._cache) > _PLANS_PER_FUNCTION:
            self._cache.popitem(last=False)
        return plan

    def _block_size(self, plan: dict, n: int, symmetric: bool = False) -> int:
        if self.block_size is not None:
            return min(self.block_size, n)
        size = int(max(1, min(n, _BLOCK_BUDGET_BYTES // max(plan["sample_bytes"], 1))))
        if symmetric:
            size = min(size, _SYMMETRIC_BLOCK)
        # Equal blocks: the last one is padded by fewer samples than there are blocks.
        blocks = math.ceil(n / size)
        return math.ceil(n / blocks)

    def _check(self, params, x1, x2=None) -> tuple[jax.Array, jax.Array | None, int]:
        x1, x2, n_outputs = check_inputs(self.apply_fn, params, x1, x2, check_per_sample=False)
        if self.check_per_sample:
            key = self._signature(params, x1)
            if key not in self._verified and not _traced(params, x1, x2):
                verify_per_sample(self.apply_fn, params, x1, x2)
                self._verified.add(key)
        return x1, x2, n_outputs

    def method_for(self, params, x) -> str:
        """The method ``"auto"`` resolves to for these parameters and inputs."""
        x1, _, n_outputs = self._check(params, x)
        return self._plan(params, x1, n_outputs)["method"]

    # -- the kernel ---------------------------------------------------------------------------
    def __call__(self, params, x1, x2=None) -> jax.Array:
        x1, x2, n_outputs = self._check(params, x1, x2)
        plan = self._plan(params, x1, n_outputs)
        leaves = jax.tree_util.tree_leaves(params)
        if plan["method"] == "vjp":
            return self._by_columns(plan, leaves, x1, x1 if x2 is None else x2, n_outputs)
        return self._by_features(plan, leaves, x1, x2, n_outputs)

    def _features(self, plan, leaves, x, size) -> list[tuple[int, int, dict]]:
        out = []
        for start, stop in _blocks(x.shape[0], size):
            feats = plan["features"](leaves, _pad_to(x[start:stop], size))
            out.append((start, stop, feats))
        return out

    def _by_features(self, plan, leaves, x1, x2, n_outputs) -> jax.Array:
        n1 = x1.shape[0]
        n2 = n1 if x2 is None else x2.shape[0]
        size = self._block_size(plan, max(n1, n2), symmetric=x2 is None)
        scale = 1 if self.trace_outputs else n_outputs
        kernel = np.empty((n1 * scale, n2 * scale), dtype=_output_dtype(leaves))
        contract = plan["contract"]
        total_bytes = plan["sample_bytes"] * (n1 + (0 if x2 is None else n2))
        cache_all = plan["method"] == "structured" or total_bytes <= _JACOBIAN_CACHE_BYTES
        # Under jit or vmap the blocks are traced arrays: assembled by jnp.block, not in place.
        traced = _traced(leaves, x1, x2)
        rows = self._features(plan, leaves, x1, size) if cache_all else None
        row_blocks = _blocks(n1, size)
        if x2 is None:
            cols = rows
            col_blocks = row_blocks
        else:
            cols = self._features(plan, leaves, x2, size) if cache_all else None
            col_blocks = _blocks(n2, size)
        grid = [[None] * len(col_blocks) for _ in row_blocks]
        for i, (r0, r1) in enumerate(row_blocks):
            if cache_all:
                fa = rows[i][2]
            else:
                fa = plan["features"](leaves, _pad_to(x1[r0:r1], size))
            for j, (c0, c1) in enumerate(col_blocks):
                if x2 is None and j < i:
                    continue
                if cache_all:
                    fb = cols[j][2]
                elif x2 is None and j == i:
                    fb = fa
                else:
                    source = x1 if x2 is None else x2
                    fb = plan["features"](leaves, _pad_to(source[c0:c1], size))
                block = contract(fa, fb, trace_outputs=self.trace_outputs)
                block = block[: (r1 - r0) * scale, : (c1 - c0) * scale]
                if traced:
                    grid[i][j] = block
                    if x2 is None and j > i:
                        grid[j][i] = block.T
                    continue
                block = np.asarray(block)
                kernel[r0 * scale : r1 * scale, c0 * scale : c1 * scale] = block
                if x2 is None and j > i:
                    kernel[c0 * scale : c1 * scale, r0 * scale : r1 * scale] = block.T
        return jnp.block(grid) if traced else jnp.asarray(kernel)

    def _by_columns(self, plan, leaves, x1, x2, n_outputs) -> jax.Array:
        n1, n2 = x1.shape[0], x2.shape[0]
        size = self._block_size(plan, n2)
        scale = 1 if self.trace_outputs else n_outputs
        kernel = np.empty((n1 * scale, n2 * scale), dtype=_output_dtype(leaves))
        traced, columns = _traced(leaves, x1, x2), []
        for c0, c1 in _blocks(n2, size):
            block = plan["columns"](
                leaves,
                x1,
                _pad_to(x2[c0:c1], size),
                n_outputs=n_outputs,
                trace_outputs=self.trace_outputs,
            )
            if traced:
                columns.append(block[:, : (c1 - c0) * scale])
            else:
                kernel[:, c0 * scale : c1 * scale] = np.asarray(block)[:, : (c1 - c0) * scale]
        return jnp.concatenate(columns, axis=1) if traced else jnp.asarray(kernel)


def ntk_fn(
    apply_fn: Callable,
    *,
    trace_outputs: bool = True,
    method: Method = "auto",
    block_size: int | None = None,
    check_per_sample: bool = True,
) -> NTKFunction:
    """Build a reusable eNTK function ``(params, x1, x2=None) -> Θ`` for ``apply_fn``.

    ``apply_fn(params, x) -> (N, O)``. Returns ``(N1, N2)`` with outputs summed
    (``trace_outputs=True``) or the full ``(N1·O, N2·O)`` kernel, row index ``i·O + a``.
    ``block_size`` bounds the number of samples whose features are computed and contracted at
    once (default: as many as fit in 256 MiB of per-sample features, in blocks of equal size,
    and for the kernel of ``x1`` with itself at most 512, so that only the upper triangle of
    blocks is contracted). ``check_per_sample=False``
    skips :func:`verify_per_sample` (only for a model known to treat samples independently).
    """
    return NTKFunction(
        apply_fn,
        trace_outputs=trace_outputs,
        method=method,
        block_size=block_size,
        check_per_sample=check_per_sample,
    )


class CacheInfo(NamedTuple):
    """Counters of the one-shot cache behind :func:`empirical_ntk` (as ``functools``' own)."""

    hits: int
    misses: int
    maxsize: int
    currsize: int


def _identity(fn: Callable) -> tuple:
    """What makes two ``apply_fn`` the same function for the one-shot cache: the object itself,
    or for a bound method its instance and its function (``model.apply`` is a new bound-method
    object at every attribute access). Identity, never equality: two lambdas with the same code
    or two equal Flax modules are different keys."""
    if isinstance(fn, types.MethodType):
        return ("method", id(fn.__self__), id(fn.__func__))
    return ("object", id(fn))


def _same_function(a: Callable, b: Callable) -> bool:
    if isinstance(a, types.MethodType) and isinstance(b, types.MethodType):
        return a.__self__ is b.__self__ and a.__func__ is b.__func__
    return a is b


class _OneShotCache:
    """The :class:`NTKFunction` of each recent (function, options) pair, least recently used
    dropped first. An entry holds its function, so no other object can take over its ``id``
    while the entry lives."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._entries: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    def get(self, apply_fn: Callable, options: dict) -> NTKFunction:
        key = (_identity(apply_fn), tuple(sorted(options.items())))
        with self._lock:
            function = self._entries.get(key)
            if function is not None and _same_function(function.apply_fn, apply_fn):
                self._entries.move_to_end(key)
                self._hits += 1
                return function
            self._misses += 1
        function = NTKFunction(apply_fn, **options)
        with self._lock:
            self._entries[key] = function
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)
        return function

    def info(self) -> CacheInfo:
        with self._lock:
            return CacheInfo(self._hits, self._misses, self.maxsize, len(self._entries))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._hits = self._misses = 0


_one_shot = _OneShotCache(_ONE_SHOT_FUNCTIONS)


def empirical_ntk(
    apply_fn: Callable,
    params,
    x1,
    x2=None,
    *,
    trace_outputs: bool = True,
    method: Method = "auto",
    block_size: int | None = None,
    check_per_sample: bool = True,
) -> jax.Array:
    """Empirical NTK ``Θ = Σ_p ∂f(x1)/∂θ_p ∂f(x2)/∂θ_p`` of ``apply_fn`` at ``params``.

    One-shot form of :func:`ntk_fn`. With ``x2=None`` the kernel of ``x1`` with itself is
    returned (and only its upper triangle of blocks is computed).

    Repeated calls cost what a prebuilt :func:`ntk_fn` costs: the :class:`NTKFunction` (with
    its compiled programs) of the last 16 distinct ``(apply_fn, options)`` pairs is kept and
    reused. ``apply_fn`` is matched by identity (for a bound method such as ``model.apply``, by
    its instance and function), never by equality or name, so a new lambda or closure, or
    another module instance, compiles afresh. As with ``jax.jit``, a function must not change
    behaviour between calls while keeping its identity (for example through a mutated global).
    Like :func:`ntk_fn`, the per-sample check then runs once per function, parameter structure
    and input shape. ``empirical_ntk.cache_info()`` gives the hit and miss counts,
    ``empirical_ntk.cache_clear()`` empties the cache.
    """
    _check_options(method, block_size)
    options = {
        "trace_outputs": bool(trace_outputs),
        "method": method,
        "block_size": block_size,
        "check_per_sample": bool(check_per_sample),
    }
    return _one_shot.get(apply_fn, options)(params, x1, x2)


empirical_ntk.cache_info = _one_shot.info
empirical_ntk.cache_clear = _one_shot.clear


def ntk_diagonal(
    apply_fn: Callable,
    params,
    x,
    *,
    trace_outputs: bool = True,
    block_size: int | None = None,
    check_per_sample: bool = True,
) -> jax.Array:
    """Diagonal of the eNTK without forming it: ``Θ_ii = Σ_a ‖∇_θ f_a(x_i)‖²`` (traced), or
    ``Θ[(i,a),(i,a)] = ‖∇_θ f_a(x_i)‖²`` (full, length ``N·O``).

    Its sum is ``Tr Θ = ‖∇_θ f‖_F²``, the same for the traced and the full kernel.
    """
    _check_options("auto", block_size)
    x, _, n_outputs = check_inputs(apply_fn, params, x, check_per_sample=check_per_sample)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    per_sample_bytes = n_outputs * sum(leaf.size * leaf.dtype.itemsize for leaf in leaves)
    if block_size is not None:
        size = min(block_size, x.shape[0])
    else:
        size = int(max(1, min(x.shape[0], _BLOCK_BUDGET_BYTES // per_sample_bytes)))
    squared_norms = _squared_norms_fn(apply_fn, treedef)
    parts = []
    for start, stop in _blocks(x.shape[0], size):
        parts.append(squared_norms(leaves, _pad_to(x[start:stop], size))[: stop - start])
    diagonal = jnp.concatenate(parts, axis=0)  # (N, O)
    return diagonal.sum(axis=1) if trace_outputs else diagonal.reshape(-1)


@functools.lru_cache(maxsize=64)
def _squared_norms_fn(apply_fn: Callable, treedef) -> Callable:
    def sample(flat_leaves, x):
        def single(leaves_):
            return apply_fn(jax.tree_util.tree_unflatten(treedef, leaves_), x[None])[0]

        jac = jax.jacrev(single)(flat_leaves)
        return sum(jnp.sum(j.reshape(j.shape[0], -1) ** 2, axis=1) for j in jac)

    return jax.jit(jax.vmap(sample, in_axes=(None, 0)))


def layer_summary(apply_fn: Callable, params, x, *, check_per_sample: bool = True) -> list[dict]:
    """Which parameters the structured method handles, and how (for documentation/debugging)."""
    x1, _, n_outputs = check_inputs(apply_fn, params, x, check_per_sample=check_per_sample)
    structure = _analyse(apply_fn, params, x1[:1], n_outputs)
    names = _leaf_names(params)
    leaves = jax.tree_util.tree_leaves(params)
    by_leaf = {t.leaf: t for t in structure.targets.values()}
    bias_of = {t.bias_leaf: t for t in structure.targets.values() if t.bias_leaf is not None}
    rows = []
    for k, (name, leaf) in enumerate(zip(names, leaves, strict=True)):
        target = by_leaf.get(k)
        if k in bias_of:
            how = f"Gram product (bias of {bias_of[k].primitive.name}, T={bias_of[k].positions})"
        elif target is None:
            how = "per-sample Jacobian (fallback)"
        elif target.kind == "gram":
            how = f"Gram product ({target.primitive.name}, T={target.positions})"
        else:
            how = f"weight Jacobian by transposition ({target.primitive.name})"
        rows.append({"parameter": name, "size": int(leaf.size), "handled_as": how})
    return rows
