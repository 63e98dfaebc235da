"""The cluster heads' start from k-means partitions of their hidden features."""

import copy

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from sklearn_iic import IICClustering
from sklearn_iic._kmeans_start import (
    _LOGIT_GAP,
    kmeans,
    kmeans_plusplus,
    lloyd,
    start_cluster_heads,
)
from sklearn_iic._networks import MLP


def _blobs(n_per, k, d, seed=0):
    X, y = make_blobs(n_per * k, n_features=d, centers=k, cluster_std=0.5, random_state=seed)
    return torch.as_tensor(X, dtype=torch.float32), y


def test_kmeans_finds_separated_blobs_and_is_reproducible():
    h, y = _blobs(40, 8, 5)
    centers = kmeans(h, 8, torch.Generator().manual_seed(0))
    labels = torch.cdist(h, centers).argmin(dim=1).numpy()
    assert adjusted_rand_score(y, labels) == 1.0
    again = kmeans(h, 8, torch.Generator().manual_seed(0))
    torch.testing.assert_close(again, centers, rtol=0, atol=0)


def test_kmeans_plusplus_seeds_distinct_rows_and_lloyd_lowers_inertia():
    h, _ = _blobs(30, 6, 3, seed=1)
    seeds = kmeans_plusplus(h, 6, torch.Generator().manual_seed(3))
    # Every centroid is a row of h, and no row is drawn twice (separated blobs).
    rows = torch.cdist(seeds, h).argmin(dim=1)
    assert torch.equal(h[rows], seeds) and len(set(rows.tolist())) == 6
    before = torch.cdist(h, seeds).square().min(dim=1).values.sum()
    centers, inertia = lloyd(h, seeds)
    assert inertia <= before
    # At convergence each centroid is the mean of its rows.
    labels = torch.cdist(h, centers).argmin(dim=1)
    for c in range(6):
        torch.testing.assert_close(centers[c], h[labels == c].mean(dim=0))


def test_lloyd_keeps_a_centroid_without_rows_where_it_was():
    h = torch.tensor([[0.0], [0.1], [10.0]])
    centers, _ = lloyd(h, torch.tensor([[0.0], [10.0], [100.0]]), n_iterations=3)
    assert centers[2, 0] == 100.0
    assert centers[0, 0] == pytest.approx(0.05)


def test_hidden_features_normalise_by_the_batch_and_leave_running_statistics():
    torch.manual_seed(0)
    mlp = MLP(4, 6, hidden_layer_sizes=(16, 8))
    x = torch.randn(50, 4) * 3 + 1
    state = copy.deepcopy(mlp.state_dict())
    with torch.no_grad():
        hidden = mlp.hidden_features(x)
        expected = torch.nn.Sequential(*copy.deepcopy(list(mlp)[:-1])).train()(x)
    torch.testing.assert_close(hidden, expected)
    for name, value in mlp.state_dict().items():
        torch.testing.assert_close(value, state[name], rtol=0, atol=0)


def test_started_heads_label_by_the_nearest_centroid_with_the_chosen_logit_gap():
    torch.manual_seed(0)
    X, _ = _blobs(30, 4, 6)
    mlp = MLP(6, 3 * 4, hidden_layer_sizes=(32,))
    start_cluster_heads(mlp, X, 3, 4, torch.Generator().manual_seed(0))
    with torch.no_grad():
        h = mlp.hidden_features(X)
        logits = torch.nn.functional.linear(h, mlp[-1].weight, mlp[-1].bias)
    for head in range(3):
        weights = mlp[-1].weight[4 * head : 4 * head + 4]
        bias = mlp[-1].bias[4 * head : 4 * head + 4]
        # weights = scale c and bias = -scale |c|^2 / 2, one scale per head
        scale = weights.norm(dim=1).square() / (-2 * bias)
        torch.testing.assert_close(scale, scale[:1].expand(4))
        centers = weights / scale[:, None]
        squared = torch.cdist(h, centers).square()
        head_logits = logits[:, 4 * head : 4 * head + 4]
        assert torch.equal(head_logits.argmax(dim=1), squared.argmin(dim=1))
        # Logits are -scale |h - c|^2 / 2 up to a constant per row ...
        torch.testing.assert_close(head_logits - head_logits[:, :1],
                                   -scale[0] * (squared - squared[:, :1]) / 2,
                                   rtol=1e-4, atol=1e-3)
        # ... and the median gap between a row's two largest is the chosen one.
        top = head_logits.topk(2, dim=1).values
        assert float((top[:, 0] - top[:, 1]).median()) == pytest.approx(_LOGIT_GAP, rel=1e-3)


def test_one_cluster_leaves_the_weights_alone():
    mlp = MLP(3, 2, hidden_layer_sizes=(8,))
    before = copy.deepcopy(mlp.state_dict())
    start_cluster_heads(mlp, torch.randn(10, 3), 2, 1, torch.Generator().manual_seed(0))
    for name, value in mlp.state_dict().items():
        torch.testing.assert_close(value, before[name], rtol=0, atol=0)


def test_fewer_rows_than_clusters_start_without_error():
    mlp = MLP(3, 5, hidden_layer_sizes=(8,))
    start_cluster_heads(mlp, torch.randn(3, 3), 1, 5, torch.Generator().manual_seed(0))
    assert torch.isfinite(mlp[-1].weight).all() and torch.isfinite(mlp[-1].bias).all()


def test_twenty_separated_blobs_are_found_whole():
    # 20 blobs of 30 points in 50-D (a cell of the blob grid): started from
    # random weights every cluster sub-head joined two blobs and split a
    # third (ARI 0.898, 0.935, 0.918 on seeds 0-2); started from k-means the
    # labels are the blobs (ARI 1.000 on seeds 0-2).
    X, y = make_blobs(600, n_features=50, centers=20, cluster_std=3.0, random_state=0)
    model = IICClustering(20, random_state=0).fit(X)
    assert model.cluster_head_ is not None
    assert adjusted_rand_score(y, model.labels_) == 1.0
    assert len(np.unique(model.labels_)) == 20
