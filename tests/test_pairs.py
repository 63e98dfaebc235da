import numpy as np
import torch
from sklearn.datasets import make_blobs
from sklearn.neighbors import NearestNeighbors

import sklearn_iic._pairs as pairs
from sklearn_iic._pairs import PairSampler, nearest_neighbors


def test_neighbors_exclude_self_and_match_sklearn():
    X, _ = make_blobs(300, n_features=5, random_state=0)
    expected = np.sort(NearestNeighbors(n_neighbors=7).fit(X).kneighbors(return_distance=False), 1)
    found = nearest_neighbors(torch.tensor(X, dtype=torch.float32), 7)
    np.testing.assert_array_equal(found.numpy(), expected)
    assert not (found == torch.arange(300)[:, None]).any()
    # n_neighbors is capped at n_samples - 1.
    assert nearest_neighbors(torch.tensor(X[:4], dtype=torch.float32), 10).shape == (4, 3)


def test_blocked_search_used_on_gpus_matches(monkeypatch):
    X = torch.tensor(make_blobs(500, n_features=6, random_state=1)[0], dtype=torch.float32)
    monkeypatch.setattr(pairs, "_DISTANCE_BLOCK", 500 * 37)  # several blocks of 37 rows
    blocked = pairs._blocked_neighbors(X, 5)
    np.testing.assert_array_equal(blocked.numpy(), nearest_neighbors(X, 5).numpy())


def test_pair_sampler_draws_neighbours_and_repeats():
    X = torch.arange(10.0)[:, None]
    neighbors = torch.tensor([[(i + 1) % 10, (i + 2) % 10] for i in range(10)])
    sampler = PairSampler(X, perturbation=None, neighbors=neighbors, n_repeats=3,
                          generator=torch.Generator().manual_seed(0))
    x, partner = sampler(torch.tensor([0, 5]))
    assert x.squeeze(1).tolist() == [0, 5, 0, 5, 0, 5]
    offsets = ((partner - x) % 10).squeeze(1)
    assert set(offsets.tolist()) <= {1.0, 2.0}
