"""Exact eNTK methods against a brute-force Jacobian reference, in float64.

The reference differentiates the whole batch at once with ``jax.jacrev``, flattens every
parameter leaf to ``(N, O, P_leaf)`` and contracts with ``einsum``: it shares no code with the
engine (no jaxpr analysis, no blocking, no per-sample vmap).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkbook.models import CNN, MLP, ResidualMLP
from ntkbook.ntk import empirical_ntk, layer_summary, ntk_diagonal, ntk_fn

F64 = jnp.float64
EXACT_METHODS = ("structured", "jacobian", "vjp", "auto")
RTOL = 1e-5  # max abs error / max abs of the reference


@pytest.fixture(autouse=True, scope="module")
def _float64():
    with jax.enable_x64(True):
        yield


# ------------------------------------------------------------------------------------------
# the independent reference
# ------------------------------------------------------------------------------------------


def reference_jacobian(apply_fn, params, x) -> np.ndarray:
    """``J[i, a, p] = ∂f_a(x_i)/∂θ_p`` from one ``jacrev`` over the whole batch."""
    leaves = jax.tree_util.tree_leaves(jax.jit(jax.jacrev(apply_fn))(params, x))
    n, o = leaves[0].shape[:2]
    return np.concatenate([np.asarray(leaf).reshape(n, o, -1) for leaf in leaves], axis=2)


def reference_ntk(apply_fn, params, x1, x2=None) -> np.ndarray:
    """``Θ[i, a, j, b] = Σ_p J1[i, a, p] J2[j, b, p]`` (4-D)."""
    j1 = reference_jacobian(apply_fn, params, x1)
    j2 = j1 if x2 is None else reference_jacobian(apply_fn, params, x2)
    return np.einsum("iap,jbp->iajb", j1, j2)


def as_full(theta4: np.ndarray) -> np.ndarray:
    n1, o, n2, _ = theta4.shape
    return theta4.reshape(n1 * o, n2 * o)


def as_traced(theta4: np.ndarray) -> np.ndarray:
    return np.einsum("iaja->ij", theta4)


def relative_error(result, reference) -> float:
    result, reference = np.asarray(result), np.asarray(reference)
    assert result.shape == reference.shape
    return float(np.max(np.abs(result - reference)) / np.max(np.abs(reference)))


# ------------------------------------------------------------------------------------------
# networks
# ------------------------------------------------------------------------------------------


class TokenModel(nn.Module):
    """Dense layers acting on ``(N, T, d)`` tokens, a mean over ``T``, then a Dense head.

    With ``T = 3``, ``d = 16`` and ``O = 2`` the wide token layer is cheaper in Gram form
    (``T²(d_in + O d_out) = 432 ≤ O d_in d_out = 512``), the narrow one in explicit form
    (``180 > 64``).
    """

    @nn.compact
    def __call__(self, x):
        h = jnp.tanh(nn.Dense(16, param_dtype=F64, name="token_wide")(x))
        h = jnp.tanh(nn.Dense(2, param_dtype=F64, name="token_narrow")(h))
        return nn.Dense(2, param_dtype=F64, name="head")(h.mean(axis=1))


class TiedModel(nn.Module):
    """The same kernel ``shared`` used in two matmuls (weight tying)."""

    @nn.compact
    def __call__(self, x):
        w = self.param("shared", nn.initializers.lecun_normal(), (5, 5), F64)
        h = jnp.tanh(x @ w)
        h = jnp.tanh(h @ w)
        return nn.Dense(3, param_dtype=F64)(h)


def plain_apply(params, x):
    """A plain-JAX network with a dict of parameters (the second matmul goes through a jit)."""
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    return jnp.einsum("nh,ho->no", h, params["w2"])


def plain_params(key):
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "w1": jax.random.normal(k1, (5, 6), F64) / np.sqrt(5),
        "b1": 0.1 * jax.random.normal(k2, (6,), F64),
        "w2": jax.random.normal(k3, (6, 3), F64) / np.sqrt(6),
    }


def _build(name: str):
    """``(apply_fn, params, x1 with N1 = 7, x2 with N2 = 4)`` for the named network."""
    key, kx1, kx2 = jax.random.split(jax.random.PRNGKey(42), 3)
    if name == "mlp":
        model = MLP(hidden=(16, 8), n_outputs=3, activation="relu", param_dtype=F64)
        shape = (5,)
    elif name == "cnn":
        model = CNN(conv_features=(3, 4), dense_features=(6,), n_outputs=3, param_dtype=F64)
        shape = (8, 8)
    elif name == "residual":
        model = ResidualMLP(width=8, depth=2, n_outputs=3, param_dtype=F64)
        shape = (5,)
    elif name == "tokens":
        model = TokenModel()
        shape = (3, 16)
    elif name == "tied":
        model = TiedModel()
        shape = (5,)
    elif name == "plain":
        x1 = jax.random.normal(kx1, (7, 5), F64)
        x2 = jax.random.normal(kx2, (4, 5), F64)
        return plain_apply, plain_params(key), x1, x2
    else:
        raise KeyError(name)
    x1 = jax.random.normal(kx1, (7, *shape), F64)
    x2 = jax.random.normal(kx2, (4, *shape), F64)
    return model.apply, model.init(key, x1), x1, x2


@pytest.fixture(scope="module")
def networks(_float64):
    cache: dict = {}

    def get(name):
        if name not in cache:
            cache[name] = _build(name)
        return cache[name]

    return get


@pytest.fixture(scope="module")
def references(networks):
    """``(Θ(x1, x1), Θ(x1, x2))`` of the reference, 4-D, computed once per network."""
    cache: dict = {}

    def get(name):
        if name not in cache:
            apply_fn, params, x1, x2 = networks(name)
            cache[name] = (
                reference_ntk(apply_fn, params, x1),
                reference_ntk(apply_fn, params, x1, x2),
            )
        return cache[name]

    return get


# ------------------------------------------------------------------------------------------
# criterion 1: every exact method equals the reference
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", EXACT_METHODS)
@pytest.mark.parametrize("name", ["mlp", "cnn", "residual"])
def test_exact_methods_match_reference(networks, references, name, method):
    apply_fn, params, x1, x2 = networks(name)
    self_ref, cross_ref = references(name)
    # block_size 3 divides neither N1 = 7 nor N2 = 4: padding, blocks and mirroring of the
    # upper triangle; the traced kernel takes the default block size (one block of 7, x2 padded).
    full_fn = ntk_fn(apply_fn, trace_outputs=False, method=method, block_size=3)
    traced_fn = ntk_fn(apply_fn, trace_outputs=True, method=method)

    full_self = full_fn(params, x1)
    full_cross = full_fn(params, x1, x2)
    traced_self = traced_fn(params, x1)
    traced_cross = traced_fn(params, x1, x2)

    assert full_self.dtype == jnp.float64
    assert full_self.shape == (21, 21) and full_cross.shape == (21, 12)
    assert traced_self.shape == (7, 7) and traced_cross.shape == (7, 4)
    assert relative_error(full_self, as_full(self_ref)) < RTOL
    assert relative_error(full_cross, as_full(cross_ref)) < RTOL
    assert relative_error(traced_self, as_traced(self_ref)) < RTOL
    assert relative_error(traced_cross, as_traced(cross_ref)) < RTOL


@pytest.mark.parametrize("method", ["structured", "vjp"])
def test_full_kernel_layout_is_sample_major(networks, method):
    """Row ``i·O + a`` of the full kernel is output ``a`` of sample ``i``: one entry by hand."""
    apply_fn, params, x1, x2 = networks("mlp")
    n_out = 3
    i, a, j, b = 5, 1, 2, 2

    def grad_of(x, sample, output):
        return jax.grad(lambda p: apply_fn(p, x)[sample, output])(params)

    gi, gj = grad_of(x1, i, a), grad_of(x2, j, b)
    entry = sum(
        float(jnp.vdot(u, v))
        for u, v in zip(jax.tree_util.tree_leaves(gi), jax.tree_util.tree_leaves(gj), strict=True)
    )
    kernel = np.asarray(
        empirical_ntk(apply_fn, params, x1, x2, trace_outputs=False, method=method, block_size=3)
    )
    assert kernel[i * n_out + a, j * n_out + b] == pytest.approx(entry, rel=1e-10)
    # ... and the transposed layout (output-major) is something else.
    assert abs(kernel[a * 7 + i, b * 4 + j] - entry) > 1e-6 * abs(entry)


@pytest.mark.parametrize("method", ["structured", "jacobian"])
def test_default_blocks_of_a_self_kernel_cover_the_upper_triangle(
    networks, references, monkeypatch, method
):
    """Above ``_SYMMETRIC_BLOCK`` samples a self-kernel is split into blocks (7 samples, at most
    3 a block: 3 + 3 + 1 and two padded samples) whose upper triangle is contracted and
    mirrored."""
    from ntkbook.ntk import kernel as kernel_module

    monkeypatch.setattr(kernel_module, "_SYMMETRIC_BLOCK", 3)
    apply_fn, params, x1, x2 = networks("mlp")
    self_ref, cross_ref = references("mlp")
    for trace_outputs, as_layout in ((True, as_traced), (False, as_full)):
        fn = ntk_fn(apply_fn, trace_outputs=trace_outputs, method=method)
        plan = fn._plan(params, x1, 3)
        assert fn._block_size(plan, 7, symmetric=True) == 3
        assert fn._block_size(plan, 7) == 7  # a cross kernel has no symmetry to use
        assert relative_error(fn(params, x1), as_layout(self_ref)) < RTOL
        assert relative_error(fn(params, x1, x2), as_layout(cross_ref)) < RTOL


def assert_exact_for_all_methods(apply_fn, params, x1, x2, self_ref, cross_ref, blocks):
    """Full self-kernel and traced cross-kernel of every exact method match the references."""
    full_block, traced_block = blocks
    for method in EXACT_METHODS:
        full = empirical_ntk(
            apply_fn, params, x1, trace_outputs=False, method=method, block_size=full_block
        )
        traced = empirical_ntk(apply_fn, params, x1, x2, method=method, block_size=traced_block)
        assert relative_error(full, as_full(self_ref)) < RTOL, method
        assert relative_error(traced, as_traced(cross_ref)) < RTOL, method


def test_token_model_uses_gram_and_explicit_paths(networks, references):
    apply_fn, params, x1, x2 = networks("tokens")
    handled = {row["parameter"]: row["handled_as"] for row in layer_summary(apply_fn, params, x1)}
    assert handled["['params']['token_wide']['kernel']"] == "Gram product (dot_general, T=3)"
    assert handled["['params']['token_narrow']['kernel']"] == (
        "weight Jacobian by transposition (dot_general)"
    )
    assert handled["['params']['head']['kernel']"] == "Gram product (dot_general, T=1)"
    assert handled["['params']['token_wide']['bias']"] == "Gram product (bias of dot_general, T=3)"
    assert handled["['params']['head']['bias']"] == "Gram product (bias of dot_general, T=1)"
    # The narrow layer's weight Jacobian is explicit, so its bias stays a per-sample Jacobian.
    assert handled["['params']['token_narrow']['bias']"] == "per-sample Jacobian (fallback)"

    self_ref, cross_ref = references("tokens")
    assert_exact_for_all_methods(apply_fn, params, x1, x2, self_ref, cross_ref, (3, 3))


def test_weight_tied_kernel_falls_back_and_stays_exact(networks, references):
    apply_fn, params, x1, x2 = networks("tied")
    handled = {row["parameter"]: row["handled_as"] for row in layer_summary(apply_fn, params, x1)}
    assert handled["['params']['shared']"] == "per-sample Jacobian (fallback)"
    assert handled["['params']['Dense_0']['kernel']"].startswith("Gram product")
    assert handled["['params']['Dense_0']['bias']"] == "Gram product (bias of dot_general, T=1)"

    _, cross_ref = references("tied")
    for method in EXACT_METHODS:
        full = empirical_ntk(apply_fn, params, x1, x2, trace_outputs=False, method=method)
        assert relative_error(full, as_full(cross_ref)) < RTOL, method


def test_plain_jax_function_with_dict_params(networks, references):
    apply_fn, params, x1, x2 = networks("plain")
    handled = {row["parameter"]: row["handled_as"] for row in layer_summary(apply_fn, params, x1)}
    assert handled == {
        "['b1']": "Gram product (bias of dot_general, T=1)",
        "['w1']": "Gram product (dot_general, T=1)",
        "['w2']": "Gram product (dot_general, T=1)",
    }
    assert ntk_fn(apply_fn).method_for(params, x1) == "structured"

    self_ref, cross_ref = references("plain")
    assert_exact_for_all_methods(apply_fn, params, x1, x2, self_ref, cross_ref, (3, 2))


def test_batched_weight_falls_back_and_stays_exact():
    """Per-head weights: a dot_general with a batch axis on the weight is not a dense layer."""

    def heads_apply(params, x):
        h = jnp.tanh(jnp.einsum("nhd,hde->nhe", x, params["heads"]))
        return h.reshape(h.shape[0], -1) @ params["out"]

    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(5), 3)
    params = {
        "heads": jax.random.normal(k1, (2, 3, 4), F64),
        "out": jax.random.normal(k2, (8, 3), F64) / np.sqrt(8),
    }
    x = jax.random.normal(k3, (6, 2, 3), F64)
    handled = {row["parameter"]: row["handled_as"] for row in layer_summary(heads_apply, params, x)}
    assert handled == {
        "['heads']": "per-sample Jacobian (fallback)",
        "['out']": "Gram product (dot_general, T=1)",
    }
    reference = as_full(reference_ntk(heads_apply, params, x))
    for method in ("structured", "auto"):
        kernel = empirical_ntk(heads_apply, params, x, trace_outputs=False, method=method)
        assert relative_error(kernel, reference) < RTOL, method


# Biases: folded into the Gram product of the layer they are added to only when the fold is
# exact; every other pattern keeps its per-sample Jacobian. Each network: dense layer ``w``
# (8 → 8, on 2 tokens for the token patterns) with bias ``b``, tanh, then a dense head ``v``.
FOLDED = "Gram product (bias of dot_general, T=1)"
FALLBACK = "per-sample Jacobian (fallback)"


def _bias_network(pattern: str):
    def apply_fn(params, x):
        w, b, v = params["w"], params["b"], params["v"]
        if pattern == "permuted":  # b's elements reach the outputs in another order: exact fold
            h = x @ w + b.reshape(2, 4).T.reshape(8)
        elif pattern == "weight_on_the_left":  # y = W·xᵀ, the layer's output is (d_out, N)
            y = jax.lax.dot_general(w, x, (((0,), (1,)), ((), ())))
            h = (y + b[:, None]).T
        elif pattern == "output_read_twice":  # ∂f/∂y ≠ ∂f/∂(y + b)
            y = x @ w
            h = y + b + 0.5 * jnp.tanh(y)
        elif pattern == "bias_used_twice":
            h = x @ w + b + jnp.sin(b)
        elif pattern == "scaled":
            h = x @ w + 2.0 * b
        elif pattern == "differs_between_tokens":  # T = 2 tokens; token t gets half t of b twice
            h = x @ w + jnp.broadcast_to(b.reshape(2, 1, 4), (2, 2, 4)).reshape(2, 8)
        else:
            raise KeyError(pattern)
        h = jnp.tanh(h)
        if h.ndim == 3:
            h = h.mean(axis=1)
        return h @ v

    k1, k2, k3, k4, k5 = jax.random.split(jax.random.PRNGKey(11), 5)
    params = {
        "w": jax.random.normal(k1, (8, 8), F64) / np.sqrt(8),
        "b": 0.3 * jax.random.normal(k2, (8,), F64),
        "v": jax.random.normal(k3, (8, 4), F64) / np.sqrt(8),
    }
    shape = (2, 8) if pattern == "differs_between_tokens" else (8,)
    x1 = jax.random.normal(k4, (5, *shape), F64)
    x2 = jax.random.normal(k5, (3, *shape), F64)
    return apply_fn, params, x1, x2


@pytest.mark.parametrize(
    ("pattern", "handled_as"),
    [
        ("permuted", FOLDED),
        ("weight_on_the_left", FOLDED),
        ("output_read_twice", FALLBACK),
        ("bias_used_twice", FALLBACK),
        ("scaled", FALLBACK),
        ("differs_between_tokens", FALLBACK),
    ],
)
def test_bias_is_folded_only_where_exact(pattern, handled_as):
    apply_fn, params, x1, x2 = _bias_network(pattern)
    handled = {row["parameter"]: row["handled_as"] for row in layer_summary(apply_fn, params, x1)}
    assert handled["['b']"] == handled_as
    assert handled["['w']"].startswith("Gram product (dot_general")
    full_self = ntk_fn(apply_fn, trace_outputs=False, method="structured", block_size=2)
    traced = ntk_fn(apply_fn, method="structured")
    assert (
        relative_error(full_self(params, x1), as_full(reference_ntk(apply_fn, params, x1))) < RTOL
    )
    assert (
        relative_error(traced(params, x1, x2), as_traced(reference_ntk(apply_fn, params, x1, x2)))
        < RTOL
    )


def test_auto_without_recognised_layers_uses_jacobian():
    def elementwise(params, x):
        return jnp.sin(x * params["scale"] + params["shift"])

    params = {"scale": jnp.linspace(0.5, 1.5, 4, dtype=F64), "shift": jnp.ones(4, F64)}
    x = jax.random.normal(jax.random.PRNGKey(3), (5, 4), F64)
    assert ntk_fn(elementwise).method_for(params, x) == "jacobian"
    kernel = empirical_ntk(elementwise, params, x, trace_outputs=False)
    assert relative_error(kernel, as_full(reference_ntk(elementwise, params, x))) < RTOL


def test_layer_summary_of_cnn(networks):
    apply_fn, params, x1, _ = networks("cnn")
    rows = layer_summary(apply_fn, params, x1)
    leaves = jax.tree_util.tree_leaves(params)
    assert [row["size"] for row in rows] == [leaf.size for leaf in leaves]
    for row in rows:
        name, how = row["parameter"], row["handled_as"]
        if "Conv_" in name and name.endswith("['bias']"):
            assert how == "per-sample Jacobian (fallback)", name
        elif name.endswith("['bias']"):
            assert "Dense_" in name and how == "Gram product (bias of dot_general, T=1)", name
        elif "Conv_" in name:
            assert how == "weight Jacobian by transposition (conv_general_dilated)", name
        else:
            assert "Dense_" in name and how == "Gram product (dot_general, T=1)", name
    assert sum("Conv_" in row["parameter"] for row in rows) == 4


# ------------------------------------------------------------------------------------------
# criteria 2 and 3: traced = summed full kernel, symmetric, PSD; the diagonal
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mlp", "residual"])
def test_traced_is_sum_of_output_blocks_symmetric_psd(networks, name):
    apply_fn, params, x1, _ = networks(name)
    n, n_out = x1.shape[0], 3
    full = np.asarray(empirical_ntk(apply_fn, params, x1, trace_outputs=False, block_size=3))
    traced = np.asarray(empirical_ntk(apply_fn, params, x1, block_size=3))
    summed = full.reshape(n, n_out, n, n_out).trace(axis1=1, axis2=3)
    assert relative_error(traced, summed) < 1e-12
    for kernel in (full, traced):
        scale = np.max(np.abs(kernel))
        assert np.max(np.abs(kernel - kernel.T)) <= 1e-12 * scale
        eigenvalues = np.linalg.eigvalsh(kernel)
        assert eigenvalues.min() >= -1e-10 * eigenvalues.max()
    # The full kernel of 7 samples and 3 outputs has rank at most 21 but the traced one is
    # not a diagonal block: check the off-diagonal coupling is really there.
    assert np.max(np.abs(traced - np.diag(np.diag(traced)))) > 1e-3 * np.max(traced)


@pytest.mark.parametrize("name", ["mlp", "cnn", "residual"])
def test_ntk_diagonal_matches_exact_kernel(networks, references, name):
    apply_fn, params, x1, _ = networks(name)
    ref, _ = references(name)
    traced_diag = np.einsum("iaia->i", ref)
    full_diag = np.diag(as_full(ref))
    for block_size in (None, 3):
        traced = ntk_diagonal(apply_fn, params, x1, block_size=block_size)
        full = ntk_diagonal(apply_fn, params, x1, trace_outputs=False, block_size=block_size)
        assert traced.shape == (7,) and full.shape == (21,)
        assert relative_error(traced, traced_diag) < 1e-10
        assert relative_error(full, full_diag) < 1e-10


# ------------------------------------------------------------------------------------------
# criterion 4: bad input gives a clear ValueError
# ------------------------------------------------------------------------------------------


def _with_nan(params, module: str):
    def poison(path, leaf):
        if jax.tree_util.keystr(path) == f"['params']['{module}']['kernel']":
            return leaf.at[(0,) * leaf.ndim].set(jnp.nan)
        return leaf

    return jax.tree_util.tree_map_with_path(poison, params)


def test_apply_fn_output_must_be_two_dimensional(networks):
    apply_fn, params, x1, _ = networks("mlp")
    with pytest.raises(ValueError, match=r"2-D array of shape \(N, O\).*\(1,\)"):
        empirical_ntk(lambda p, x: apply_fn(p, x)[:, 0], params, x1)
    with pytest.raises(ValueError, match=r"2-D array of shape \(N, O\).*\(1, 3, 1\)"):
        empirical_ntk(lambda p, x: apply_fn(p, x)[..., None], params, x1)
    with pytest.raises(ValueError, match="one row per sample"):
        empirical_ntk(lambda p, x: jnp.concatenate([apply_fn(p, x)] * 2), params, x1)


def test_feature_mismatch_between_x1_and_x2(networks):
    apply_fn, params, x1, _ = networks("mlp")
    with pytest.raises(ValueError, match=r"different feature shapes: \(5,\) vs \(4,\)"):
        empirical_ntk(apply_fn, params, x1, x1[:, :4])


def test_non_finite_params_name_the_leaf(networks):
    apply_fn, params, x1, _ = networks("mlp")
    bad = _with_nan(params, "Dense_0")
    with pytest.raises(ValueError, match=r"NaN or inf in \['params'\]\['Dense_0'\]\['kernel'\]"):
        empirical_ntk(apply_fn, bad, x1)
    with pytest.raises(ValueError, match="Dense_0"):
        ntk_diagonal(apply_fn, bad, x1)
    with pytest.raises(ValueError, match="params is empty"):
        empirical_ntk(lambda p, x: x, {}, x1)


def test_non_finite_inputs(networks):
    apply_fn, params, x1, x2 = networks("mlp")
    with pytest.raises(ValueError, match=r"x1 contains NaN or inf \(first at index \(2, 3\)\)"):
        empirical_ntk(apply_fn, params, x1.at[2, 3].set(jnp.nan))
    with pytest.raises(ValueError, match="x2 contains NaN or inf"):
        empirical_ntk(apply_fn, params, x1, x2.at[0, 0].set(jnp.inf))


def test_empty_input(networks):
    apply_fn, params, x1, _ = networks("mlp")
    with pytest.raises(ValueError, match="x1 needs a leading sample axis with at least one"):
        empirical_ntk(apply_fn, params, x1[:0])
    with pytest.raises(ValueError, match="x2 needs a leading sample axis"):
        empirical_ntk(apply_fn, params, x1, x1[:0])


def test_unknown_method_and_bad_block_size(networks):
    apply_fn, params, x1, _ = networks("mlp")
    with pytest.raises(ValueError, match="unknown eNTK method 'magic'; choose one of auto"):
        empirical_ntk(apply_fn, params, x1, method="magic")
    for block_size in (0, -3, 2.5):
        with pytest.raises(ValueError, match="block_size must be a positive integer"):
            empirical_ntk(apply_fn, params, x1, block_size=block_size)
        with pytest.raises(ValueError, match="block_size must be a positive integer"):
            ntk_diagonal(apply_fn, params, x1, block_size=block_size)


# ------------------------------------------------------------------------------------------
# the per-sample guard: a model that mixes samples is refused, not given a silent zero kernel
# ------------------------------------------------------------------------------------------


def _mixing(apply_fn):
    def centred(params, x):
        out = apply_fn(params, x)
        return out - out.mean(0)

    return centred


@pytest.mark.parametrize("method", EXACT_METHODS)
def test_batch_mixing_model_is_refused_by_every_method(networks, method):
    apply_fn, params, x1, x2 = networks("mlp")
    centred = _mixing(apply_fn)
    with pytest.raises(ValueError, match="apply_fn is not per sample.*subtracting the batch mean"):
        empirical_ntk(centred, params, x1, method=method)
    with pytest.raises(ValueError, match="not per sample"):
        empirical_ntk(centred, params, x1, x2, method=method)
    # What the guard protects against: with it switched off the kernel is silently all zero.
    unchecked = empirical_ntk(centred, params, x1, method=method, check_per_sample=False)
    assert np.max(np.abs(np.asarray(unchecked))) < 1e-12
    assert np.max(np.abs(as_traced(reference_ntk(apply_fn, params, x1)))) > 1.0


def test_batch_mixing_model_is_refused_by_diagonal_and_layer_summary(networks):
    apply_fn, params, x1, _ = networks("mlp")
    centred = _mixing(apply_fn)
    with pytest.raises(ValueError, match="not per sample"):
        ntk_diagonal(centred, params, x1)
    with pytest.raises(ValueError, match="not per sample"):
        layer_summary(centred, params, x1)
    assert ntk_diagonal(centred, params, x1, check_per_sample=False).shape == (7,)


def test_single_sample_is_checked_against_a_made_up_second_one(networks):
    apply_fn, params, x1, _ = networks("mlp")
    with pytest.raises(ValueError, match="not per sample"):
        empirical_ntk(_mixing(apply_fn), params, x1[:1])


class _Normed(nn.Module):
    running: bool

    @nn.compact
    def __call__(self, x):
        h = nn.Dense(4, param_dtype=F64)(x)
        h = nn.BatchNorm(use_running_average=self.running, param_dtype=F64)(h)
        return nn.Dense(2, param_dtype=F64)(jnp.tanh(h))


def test_batch_statistics_are_refused_and_running_averages_pass(networks):
    _, _, x1, _ = networks("mlp")
    variables = _Normed(running=False).init(jax.random.PRNGKey(0), x1)
    training = _Normed(running=False)

    def apply_training(params, x):
        return training.apply(params, x, mutable=["batch_stats"])[0]

    with pytest.raises(ValueError, match="BatchNorm in training mode: use use_running_average"):
        empirical_ntk(apply_training, variables, x1)
    kernel = empirical_ntk(_Normed(running=True).apply, variables, x1)
    assert kernel.shape == (7, 7)


def test_per_sample_check_is_two_forward_passes_once_per_structure(networks, monkeypatch):
    from ntkbook.ntk import kernel as kernel_module

    apply_fn, params, x1, _ = networks("mlp")
    batches: list[tuple[int, ...]] = []

    def counted(p, x):
        batches.append(tuple(x.shape))
        return apply_fn(p, x)

    kernel_module.verify_per_sample(counted, params, x1)
    # jointly (2 samples) and separately (one vmapped call over 2 samples of batch 1)
    assert batches == [(2, 5), (1, 5)]

    checks: list[int] = []
    real = kernel_module.verify_per_sample
    monkeypatch.setattr(kernel_module, "verify_per_sample", lambda *a: checks.append(1) or real(*a))
    fn = ntk_fn(apply_fn)
    fn(params, x1)
    fn(params, x1[:3])
    assert len(checks) == 1
    ntk_fn(apply_fn, check_per_sample=False)(params, x1)
    assert len(checks) == 1
