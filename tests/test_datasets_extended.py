"""Auto-MPG, the karate club and the synthetic sequence task: contents, splits, errors."""

from __future__ import annotations

import jax
import networkx as nx
import numpy as np
import pytest
from vega_datasets import local_data

from ntkbook.data import load_auto_mpg, load_karate_club, sequence_mode_task
from ntkbook.data.datasets import AUTO_MPG_FEATURES, normalised_adjacency


def test_auto_mpg_rows_features_and_standardisation():
    data = load_auto_mpg(key=jax.random.PRNGKey(0), test_fraction=0.2)
    assert data.n_dropped == 14  # 8 cars without Miles_per_Gallon, 6 without Horsepower
    n = data.x_train.shape[0] + data.x_test.shape[0]
    assert n == 392 and data.x_test.shape == (78, 9) and data.y_train.shape == (314, 1)
    assert data.feature_names == AUTO_MPG_FEATURES and len(AUTO_MPG_FEATURES) == 9
    # Standardised with TRAINING statistics: exactly zero mean / unit std on train only.
    np.testing.assert_allclose(data.x_train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(data.x_train.std(axis=0), 1.0, atol=1e-5)
    assert np.max(np.abs(data.x_test.mean(axis=0))) > 1e-3
    # Undo the scaling and compare with the raw table: one-hot origin and real MPG values.
    raw = data.x_train * data.x_std + data.x_mean
    np.testing.assert_allclose(raw[:, 6:].sum(axis=1), 1.0, atol=1e-5)
    assert set(np.round(raw[:, 0]).astype(int)) <= {3, 4, 5, 6, 8}
    assert 70 <= raw[:, 5].min() and raw[:, 5].max() <= 82
    table = local_data.cars().dropna()
    assert sorted(np.concatenate([data.y_train, data.y_test]).ravel()) == pytest.approx(
        sorted(table["Miles_per_Gallon"].to_numpy())
    )
    assert not data.target_standardised and data.y_mean == pytest.approx(data.y_train.mean())


def test_auto_mpg_split_determinism_and_target_standardisation():
    a = load_auto_mpg(key=jax.random.PRNGKey(1))
    b = load_auto_mpg(key=jax.random.PRNGKey(1), standardise_target=True)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_allclose(b.y_train * a.y_std + a.y_mean, a.y_train, rtol=1e-5)
    assert not np.array_equal(a.x_train, load_auto_mpg(key=jax.random.PRNGKey(2)).x_train)
    with pytest.raises(ValueError, match="test_fraction must lie in \\(0, 1\\), got 1.0"):
        load_auto_mpg(key=jax.random.PRNGKey(0), test_fraction=1.0)


def test_karate_club_graph_labels_and_split():
    data = load_karate_club(key=jax.random.PRNGKey(0), n_train_per_class=3)
    graph = nx.karate_club_graph()
    assert data.features.shape == (34, 34) and data.adjacency.shape == (34, 34)
    np.testing.assert_array_equal(data.features, np.eye(34))
    assert np.bincount(data.labels).tolist() == [17, 17]
    assert data.labels[0] == 0 and data.labels[33] == 1  # Mr. Hi and the officer
    # Â_ij = 1/√(d_i d_j) on edges and self-loops (degrees counting the loop), 0 elsewhere.
    degrees = np.array([graph.degree(v) + 1 for v in range(34)])
    assert data.adjacency[0, 1] == pytest.approx(1 / np.sqrt(degrees[0] * degrees[1]))
    assert data.adjacency[0, 0] == pytest.approx(1 / degrees[0])
    assert data.adjacency[0, 9] == 0.0 and not graph.has_edge(0, 9)
    assert np.max(np.linalg.eigvalsh(data.adjacency.astype(float))) == pytest.approx(1.0)
    assert np.bincount(data.labels[data.train_nodes]).tolist() == [3, 3]
    assert sorted([*data.train_nodes, *data.test_nodes]) == list(range(34))
    again = load_karate_club(key=jax.random.PRNGKey(0), n_train_per_class=3)
    np.testing.assert_array_equal(again.train_nodes, data.train_nodes)
    with pytest.raises(ValueError, match="n_train_per_class must lie in \\[1, 16\\], got 17"):
        load_karate_club(key=jax.random.PRNGKey(0), n_train_per_class=17)
    with pytest.raises(ValueError, match="must be symmetric"):
        normalised_adjacency(np.triu(np.ones((3, 3))))


def test_sequence_mode_task_labels_are_the_most_frequent_token():
    data = sequence_mode_task(key=jax.random.PRNGKey(0), n_train=200, n_test=50, length=9)
    assert data.x_train.shape == (200, 9) and data.x_test.shape == (50, 9)
    assert data.x_train.dtype == np.int32 and data.n_classes == 8
    for tokens, label in zip(data.x_train, data.y_train, strict=True):
        counts = np.bincount(tokens, minlength=8)
        assert counts[label] == counts.max()
        assert label == np.flatnonzero(counts == counts.max())[0]  # ties: smallest token
    again = sequence_mode_task(key=jax.random.PRNGKey(0), n_train=200, n_test=50, length=9)
    np.testing.assert_array_equal(again.x_test, data.x_test)
    assert len(np.unique(data.y_train)) == 8  # every class occurs
    with pytest.raises(ValueError, match="vocab_size >= 2"):
        sequence_mode_task(key=jax.random.PRNGKey(0), n_train=5, n_test=5, vocab_size=1)
