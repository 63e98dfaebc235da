import numpy as np
import pytest
import torch
from sklearn.covariance import ledoit_wolf
from sklearn.datasets import make_blobs

import sklearn_iic._whitening as module
from sklearn_iic._pairs import nearest_neighbors
from sklearn_iic._whitening import Whitening, local_whitening


def gen():
    return torch.Generator().manual_seed(0)


def neighbour_differences(X, k):
    neighbors = nearest_neighbors(X, k, gen()).long()
    return (X[:, None, :] - X[neighbors]).reshape(-1, X.shape[1]).double().numpy()


def test_whitening_is_the_affine_map():
    whitening = Whitening(torch.tensor([1.0, 2.0]), torch.tensor([[2.0, 0.0], [1.0, 3.0]]))
    x = torch.tensor([[1.0, 2.0], [2.0, 4.0]])
    expected = torch.tensor([[0.0, 0.0], [1 * 2 + 2 * 1, 2 * 3.0]])
    torch.testing.assert_close(whitening(x), expected)
    assert not list(whitening.parameters())  # fixed: nothing to train


def test_neighbour_differences_get_identity_covariance():
    # Correlated, differently scaled features.
    X, _ = make_blobs(400, n_features=3, random_state=0)
    X = torch.tensor(X @ np.array([[3.0, 0.5, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.2]]),
                     dtype=torch.float32)
    whitening = local_whitening(X, gen(), 7)
    # In standardised coordinates, the covariance estimated independently
    # (scikit-learn's Ledoit-Wolf on the same differences) becomes the
    # identity under the map.
    scale = X.double().std(dim=0, unbiased=False)
    standard = ((X.double() - X.double().mean(dim=0)) / scale).float()
    covariance, _ = ledoit_wolf(neighbour_differences(standard, 7), assume_centered=True)
    matrix = scale.numpy()[:, None] * whitening.matrix.numpy()
    np.testing.assert_allclose(matrix.T @ covariance @ matrix, np.eye(3), atol=1e-4)
    torch.testing.assert_close(whitening.mean, X.double().mean(dim=0))
    assert whitening.matrix.dtype == whitening.mean.dtype == torch.float64


def test_the_map_does_not_depend_on_the_units_of_the_features():
    X, _ = make_blobs(300, n_features=4, random_state=0)
    scale, offset = np.array([1e-3, 1.0, 1e4, 250.0]), np.array([5.0, -3.0, 1e5, 0.0])
    a = torch.tensor(X, dtype=torch.float32)
    b = torch.tensor(X * scale + offset, dtype=torch.float32)
    whitened_a = local_whitening(a, gen(), 10)(a)
    whitened_b = local_whitening(b, gen(), 10)(b)
    torch.testing.assert_close(whitened_a, whitened_b, atol=2e-3, rtol=1e-3)


def test_stretched_clusters_become_separable_by_neighbours():
    # Two clusters elongated along x, side by side along y: most neighbours of
    # a sample differ along x, so whitening shrinks x. The nearest neighbour
    # then lies in the sample's own cluster far more often.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 2)) * [20.0, 0.5]
    X[300:, 1] += 2.0
    X = torch.tensor(X, dtype=torch.float32)
    y = np.repeat([0, 1], 300)

    def purity(found):
        return (y[found.numpy()] == y[:, None]).mean()

    raw = purity(nearest_neighbors(X, 10, gen()))
    whitened = purity(nearest_neighbors(X, 10, gen(), local_whitening(X, gen(), 10)))
    assert raw < 0.87 and whitened > 0.92  # measured: 0.864 and 0.921


def test_constant_features_and_identical_rows_stay_finite():
    X = torch.tensor(make_blobs(200, n_features=3, random_state=1)[0], dtype=torch.float32)
    X[:, 1] = 5.0
    whitening = local_whitening(X, gen(), 5)
    out = whitening(torch.cat([X, X[:3] + 1]))
    assert torch.isfinite(out).all()
    assert torch.allclose(out[:200, :], whitening(X))
    same = local_whitening(torch.ones(20, 4), gen(), 5)
    torch.testing.assert_close(same.matrix, torch.eye(4, dtype=torch.float64))


def test_large_or_wide_data_use_a_seeded_subset(monkeypatch):
    monkeypatch.setattr(module, "_MAX_ROWS", 100)
    X = torch.tensor(make_blobs(1000, n_features=4, random_state=2)[0], dtype=torch.float32)
    calls = []
    original = module.nearest_neighbors
    monkeypatch.setattr(
        module, "nearest_neighbors", lambda S, k, g: calls.append(S.shape) or original(S, k, g)
    )
    first = local_whitening(X, gen(), 5)
    assert calls == [(100, 4)]
    torch.testing.assert_close(first.matrix, local_whitening(X, gen(), 5).matrix)
    # Wide data: at most _MAX_DIFFERENCE_VALUES differences are held.
    monkeypatch.setattr(module, "_MAX_DIFFERENCE_VALUES", 5 * 4 * 30)
    local_whitening(X, gen(), 5)
    assert calls[-1] == (30, 4)


def test_neighbours_in_the_transformed_metric():
    X = torch.tensor(make_blobs(300, n_features=4, random_state=3)[0], dtype=torch.float32)
    whitening = local_whitening(X, gen(), 6)
    expected = nearest_neighbors(whitening(X), 6, gen())
    assert torch.equal(nearest_neighbors(X, 6, gen(), whitening), expected)


@pytest.mark.parametrize("n_neighbors", [1, 3])
def test_tiny_data(n_neighbors):
    X = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert torch.isfinite(local_whitening(X, gen(), n_neighbors)(X)).all()


def standardised(X):
    X = X.double()
    return (X - X.mean(dim=0)) / X.std(dim=0, unbiased=False)


def low_rank(n, d, rank, seed=0):
    """Rows near a ``rank``-dimensional subspace: few effective dimensions."""
    g = torch.Generator().manual_seed(seed)
    signal = torch.randn(n, rank, generator=g) @ torch.randn(rank, d, generator=g)
    return signal + 0.01 * torch.randn(n, d, generator=g)


def test_effective_dimension():
    g = torch.Generator().manual_seed(0)
    line = torch.randn(50, 1, generator=g) * torch.tensor([[1.0, 2.0, -3.0]])
    assert module.effective_dimension(standardised(line)) == pytest.approx(1.0)
    assert module.effective_dimension(torch.zeros(10, 3, dtype=torch.float64)) == 0.0
    for n, d in [(1000, 100), (100, 400)]:
        noise = standardised(torch.randn(n, d, generator=g))
        # Independent features: about d / (1 + d / n) (the spread of sample variances).
        assert module.effective_dimension(noise) == pytest.approx(d / (1 + d / n), rel=0.1)
        variances = torch.linalg.svdvals(noise) ** 2
        expected = float(variances.sum() ** 2 / (variances**2).sum())
        assert module.effective_dimension(noise) == pytest.approx(expected)


def test_the_rows_that_whiten_every_direction():
    # At least 5 rows per feature...
    assert module._too_wide(standardised(low_rank(99, 20, 2)))
    assert not module._too_wide(standardised(low_rank(100, 20, 2)))
    # ... and 20 per effective dimension: 1000 rows of 100 independent noise
    # features are too few (about 91 effective dimensions), of rank 3 not.
    g = torch.Generator().manual_seed(0)
    assert module._too_wide(standardised(torch.randn(1000, 100, generator=g)))
    assert not module._too_wide(standardised(low_rank(1000, 100, 3)))
    # Five features or fewer are always whitened whole.
    assert not module._too_wide(standardised(torch.randn(3, 5, generator=g)))


def test_wide_data_are_whitened_in_their_leading_principal_components():
    X, _ = make_blobs(120, n_features=300, centers=3, random_state=0)
    X = torch.tensor(X, dtype=torch.float32)
    whitening = local_whitening(X, gen(), 30)
    # max(5, 120 // 40) = 5 directions kept, in the first columns.
    kept = (whitening.matrix != 0).any(dim=0)
    assert kept.tolist() == [True] * 5 + [False] * 295
    # In standardised coordinates the kept columns lie in the span of the 5
    # leading principal directions, and under them the neighbour differences
    # of those components get identity covariance.
    standard = standardised(X)
    basis = torch.linalg.svd(standard, full_matrices=False).Vh[:5].T
    matrix = X.double().std(dim=0, unbiased=False)[:, None] * whitening.matrix[:, :5]
    torch.testing.assert_close(basis @ (basis.T @ matrix), matrix)
    components = (standard @ basis).float()
    covariance, _ = ledoit_wolf(neighbour_differences(components, 30), assume_centered=True)
    inner = (basis.T @ matrix).numpy()
    np.testing.assert_allclose(inner.T @ covariance @ inner, np.eye(5), atol=1e-4)


def test_wide_data_use_more_rows_once_projected(monkeypatch):
    X = torch.randn(200, 50, generator=gen())
    # A budget of 40 rows of 50 features' differences: 200 rows of 5
    # components fit it.
    monkeypatch.setattr(module, "_MAX_DIFFERENCE_VALUES", 30 * 50 * 40)
    calls = []
    original = module.nearest_neighbors
    monkeypatch.setattr(
        module, "nearest_neighbors", lambda S, k, g: calls.append(S.shape) or original(S, k, g)
    )
    local_whitening(X, gen(), 30)
    assert calls == [(200, 5)]
    # With the default budget: 699 rows of 200 noise features are too few;
    # 2,364 rows of 59 components fit (2,364 * 30 * 59 <= 2**22).
    monkeypatch.undo()
    monkeypatch.setattr(
        module, "nearest_neighbors", lambda S, k, g: calls.append(S.shape) or original(S, k, g)
    )
    local_whitening(torch.randn(3000, 200, generator=gen()), gen(), 30)
    assert calls[-1] == (2364, 59)


def test_identical_wide_rows_stay_finite():
    X = torch.ones(10, 40)
    whitening = local_whitening(X, gen(), 5)
    out = whitening(torch.cat([X, X[:2] + 1]))
    assert torch.isfinite(out).all()
    assert (out[:10] == 0).all()
