import numpy as np
import torch
from sklearn.datasets import make_blobs
from sklearn.neighbors import NearestNeighbors

import sklearn_iic._pairs as pairs
from sklearn_iic._pairs import PairSampler, nearest_neighbors


def gen():
    return torch.Generator().manual_seed(0)


def test_neighbors_exclude_self_and_match_sklearn():
    X, _ = make_blobs(300, n_features=5, random_state=0)
    expected = np.sort(NearestNeighbors(n_neighbors=7).fit(X).kneighbors(return_distance=False), 1)
    found = nearest_neighbors(torch.tensor(X, dtype=torch.float32), 7, gen())
    np.testing.assert_array_equal(found.numpy(), expected)
    assert not (found == torch.arange(300)[:, None]).any()
    # n_neighbors is capped at n_samples - 1.
    assert nearest_neighbors(torch.tensor(X[:4], dtype=torch.float32), 10, gen()).shape == (4, 3)


def test_duplicates_are_neighbours_but_never_the_sample_itself():
    X = torch.tensor([[0.0], [0.0], [0.0], [5.0], [5.1]])
    found = nearest_neighbors(X, 2, gen())
    assert found[:3].tolist() == [[1, 2], [0, 2], [0, 1]]
    assert 4 in found[3].tolist() and 3 in found[4].tolist()


def test_large_data_searches_a_subset_of_candidates(monkeypatch):
    monkeypatch.setattr(pairs, "_MAX_REFERENCE", 100)
    X = torch.tensor(make_blobs(400, n_features=3, random_state=2)[0], dtype=torch.float32)
    found = nearest_neighbors(X, 5, gen())
    assert found.shape == (400, 5)
    assert len(torch.unique(found)) <= 100  # every neighbour is one of the candidates
    assert not (found == torch.arange(400)[:, None]).any()
    assert torch.equal(found, nearest_neighbors(X, 5, gen()))  # seeded
    # Neighbours among the candidates are still close: within the 5% nearest.
    distance = torch.cdist(X, X)
    rank = distance.argsort(dim=1).argsort(dim=1)
    assert rank.gather(1, found).float().median() < 0.05 * 400


def test_matrix_product_search_used_on_gpus_matches():
    X = torch.tensor(make_blobs(500, n_features=6, random_state=1)[0], dtype=torch.float32)
    found = pairs._torch_neighbors(X[:37], X, (X * X).sum(dim=1), 6).sort(dim=1).values
    search = NearestNeighbors(n_neighbors=6).fit(X.numpy())
    expected = search.kneighbors(X[:37].numpy(), return_distance=False)
    np.testing.assert_array_equal(found.numpy(), np.sort(expected, 1))


def test_queries_in_blocks_give_the_same_neighbours(monkeypatch):
    X = torch.tensor(make_blobs(500, n_features=6, random_state=1)[0], dtype=torch.float32)
    whole = nearest_neighbors(X, 6, gen())
    monkeypatch.setattr(pairs, "_DISTANCE_BLOCK", 500 * 37)  # blocks of 37 rows
    blocked = nearest_neighbors(X, 6, gen())
    assert blocked.dtype == torch.int32
    assert torch.equal(blocked, whole)


def test_pair_sampler_draws_neighbours_and_repeats():
    X = torch.arange(10.0)[:, None]
    neighbors = torch.tensor([[(i + 1) % 10, (i + 2) % 10] for i in range(10)])
    sampler = PairSampler(X, perturbation=None, neighbors=neighbors, n_repeats=3,
                          generator=torch.Generator().manual_seed(0))
    x, partner = sampler(torch.tensor([0, 5]))
    assert x.squeeze(1).tolist() == [0, 5, 0, 5, 0, 5]
    offsets = ((partner - x) % 10).squeeze(1)
    assert set(offsets.tolist()) <= {1.0, 2.0}


def test_perturb_x_perturbs_both_sides_with_independent_draws():
    def shift(x, generator):
        return x + torch.rand(len(x), 1, generator=generator, device=x.device) + 1

    X = torch.zeros(4, 1)
    one_side = PairSampler(X, perturbation=shift, neighbors=None, n_repeats=1, generator=gen())
    x, partner = one_side(torch.arange(4))
    assert (x == 0).all() and (partner >= 1).all()
    both = PairSampler(X, perturbation=shift, neighbors=None, n_repeats=1, generator=gen(),
                       perturb_x=True)
    x, partner = both(torch.arange(4))
    assert (x >= 1).all() and (partner >= 1).all() and not torch.equal(x, partner)
