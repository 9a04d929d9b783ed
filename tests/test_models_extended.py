"""Transformer, auto-encoder and GCN: what they compute, and their eNTK against brute force.

The reference kernel differentiates the whole batch at once with ``jax.jacrev`` and contracts
the flattened Jacobian with ``einsum``; it shares no code with the eNTK engine.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkbook.data import load_karate_club
from ntkbook.models import GCN, AutoEncoder, Transformer, node_function
from ntkbook.ntk import ntk_fn

F64 = jnp.float64
METHODS = ("structured", "jacobian", "vjp")  # "auto" resolves to "structured" for all three
RTOL = 1e-10


@pytest.fixture(autouse=True, scope="module")
def _float64():
    with jax.enable_x64(True):
        yield


def reference_ntk(batch_fn, params) -> np.ndarray:
    """Traced ``Θ_ij = Σ_a Σ_p ∂f_a(i)/∂θ_p ∂f_a(j)/∂θ_p`` of ``batch_fn(params) -> (N, O)``."""
    leaves = jax.tree_util.tree_leaves(jax.jacrev(batch_fn)(params))
    n, o = leaves[0].shape[:2]
    jac = np.concatenate([np.asarray(leaf).reshape(n, o, -1) for leaf in leaves], axis=2)
    return np.einsum("iap,jap->ij", jac, jac)


def relative_error(result, reference) -> float:
    result, reference = np.asarray(result), np.asarray(reference)
    assert result.shape == reference.shape
    return float(np.max(np.abs(result - reference)) / np.max(np.abs(reference)))


# ------------------------------------------------------------------------------------------
# transformer
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def transformer():
    model = Transformer(
        vocab_size=5, n_outputs=3, max_length=6, d_model=8, n_heads=2, depth=1, param_dtype=F64
    )
    tokens = jax.random.randint(jax.random.PRNGKey(0), (5, 6), 0, 5)
    return model, model.init(jax.random.PRNGKey(1), tokens), tokens


def test_transformer_ntk_matches_brute_force(transformer):
    model, params, tokens = transformer
    reference = reference_ntk(lambda p: model.apply(p, tokens), params)
    for method in METHODS:
        kernel = ntk_fn(model.apply, method=method)(params, tokens)
        assert relative_error(kernel, reference) < RTOL, method
    assert ntk_fn(model.apply).method_for(params, tokens) == "structured"


def test_transformer_is_permutation_invariant_and_position_aware(transformer):
    """Attention with mean pooling and NO position embedding is invariant under permuting the
    sequence; the learned position embedding must break that invariance."""
    model, params, tokens = transformer
    permuted = tokens[:, ::-1]
    zeroed = jax.tree_util.tree_map(lambda a: a, params)
    zeroed["params"]["position_embedding"] = jnp.zeros_like(params["params"]["position_embedding"])
    np.testing.assert_allclose(
        model.apply(zeroed, tokens), model.apply(zeroed, permuted), rtol=1e-10, atol=1e-12
    )
    shifted = jax.tree_util.tree_map(lambda a: a, params)
    shifted["params"]["position_embedding"] = jax.random.normal(
        jax.random.PRNGKey(5), params["params"]["position_embedding"].shape, F64
    )
    difference = model.apply(shifted, tokens) - model.apply(shifted, permuted)
    assert float(jnp.max(jnp.abs(difference))) > 1e-3


def test_transformer_rejects_bad_input(transformer):
    model, params, tokens = transformer
    with pytest.raises(ValueError, match="expects integer tokens"):
        model.apply(params, tokens.astype(F64))
    with pytest.raises(ValueError, match="sequence length 7 exceeds max_length=6"):
        model.apply(params, jnp.zeros((2, 7), jnp.int32))
    with pytest.raises(ValueError, match="d_model=8 is not divisible by n_heads=3"):
        Transformer(vocab_size=5, n_outputs=3, d_model=8, n_heads=3).init(
            jax.random.PRNGKey(0), tokens
        )


# ------------------------------------------------------------------------------------------
# auto-encoder
# ------------------------------------------------------------------------------------------


def test_autoencoder_computes_what_it_says():
    model = AutoEncoder(hidden=(6,), latent=3, activation="tanh", param_dtype=F64)
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 2, 5), F64)
    params = model.init(jax.random.PRNGKey(1), x)
    p = params["params"]
    h = jnp.tanh(x.reshape(4, 10) @ p["encoder_0"]["kernel"] + p["encoder_0"]["bias"])
    z = h @ p["latent"]["kernel"] + p["latent"]["bias"]
    h = jnp.tanh(z @ p["decoder_0"]["kernel"] + p["decoder_0"]["bias"])
    expected = h @ p["reconstruction"]["kernel"] + p["reconstruction"]["bias"]
    np.testing.assert_allclose(model.apply(params, x), expected, rtol=1e-12)
    assert p["latent"]["kernel"].shape == (6, 3) and p["reconstruction"]["kernel"].shape == (6, 10)


def test_autoencoder_ntk_matches_brute_force():
    model = AutoEncoder(hidden=(6,), latent=3, param_dtype=F64)
    x = jax.random.normal(jax.random.PRNGKey(0), (5, 12), F64)
    params = model.init(jax.random.PRNGKey(1), x)
    reference = reference_ntk(lambda p: model.apply(p, x), params)
    for method in METHODS:
        kernel = ntk_fn(model.apply, method=method)(params, x)
        assert relative_error(kernel, reference) < RTOL, method


# ------------------------------------------------------------------------------------------
# graph convolutional network
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def karate_gcn():
    graph = load_karate_club(key=jax.random.PRNGKey(0))
    features = jnp.asarray(graph.features, F64)
    adjacency = jnp.asarray(graph.adjacency, F64)
    model = GCN(hidden=(4, 3), n_outputs=2, activation="tanh", param_dtype=F64)
    params = model.init(jax.random.PRNGKey(1), features, adjacency)
    return model, params, features, adjacency


def test_gcn_computes_what_it_says(karate_gcn):
    model, params, features, adjacency = karate_gcn
    p = params["params"]
    h = features
    for name in ("Dense_0", "Dense_1"):
        h = jnp.tanh(adjacency @ (h @ p[name]["kernel"] + p[name]["bias"]))
    expected = adjacency @ (h @ p["Dense_2"]["kernel"] + p["Dense_2"]["bias"])
    np.testing.assert_allclose(model.apply(params, features, adjacency), expected, rtol=1e-12)


def test_gcn_node_kernel_matches_brute_force_on_the_full_graph(karate_gcn):
    """The per-node eNTK of the full-graph forward pass, from node indices, for every method."""
    model, params, features, adjacency = karate_gcn
    reference = reference_ntk(lambda p: model.apply(p, features, adjacency), params)
    apply_nodes = node_function(model, features, adjacency)
    nodes = jnp.arange(features.shape[0])
    some = jnp.array([3, 0, 33, 17])
    for method in METHODS:
        kernel_fn = ntk_fn(apply_nodes, method=method)
        assert relative_error(kernel_fn(params, nodes), reference) < RTOL, method
        # A subset of nodes gives the principal submatrix: node kernels are pairwise.
        np.testing.assert_allclose(
            kernel_fn(params, some),
            reference[np.ix_(np.asarray(some), np.asarray(some))],
            rtol=1e-10,
        )


def test_gcn_on_node_features_as_samples_is_not_the_graph_kernel(karate_gcn):
    """Why the kernel is built from node indices: treating each node's feature row as an
    independent sample (the engine's per-sample contract) drops the neighbourhood and gives a
    different kernel from the full-graph one."""
    model, params, features, adjacency = karate_gcn
    reference = reference_ntk(lambda p: model.apply(p, features, adjacency), params)

    def per_row(p, x):  # each row treated as a one-node graph
        return model.apply(p, x, jnp.eye(x.shape[0], dtype=x.dtype))

    wrong = ntk_fn(per_row, method="jacobian")(params, features)
    assert relative_error(wrong, reference) > 0.1


def test_node_function_rejects_bad_indices(karate_gcn):
    model, params, features, adjacency = karate_gcn
    apply_nodes = node_function(model, features, adjacency)
    with pytest.raises(ValueError, match=r"node indices \[34\] are outside \[0, 34\)"):
        apply_nodes(params, jnp.array([0, 34]))
    with pytest.raises(ValueError, match="1-D integer array of node indices"):
        apply_nodes(params, jnp.array([0.0, 1.0]))
    traced = jax.jit(apply_nodes)(params, jnp.array([40]))
    assert bool(jnp.all(jnp.isnan(traced)))  # out of range under jit: NaN, never a clipped row
    with pytest.raises(ValueError, match="GCN expects features"):
        model.apply(params, features, adjacency[:3])
