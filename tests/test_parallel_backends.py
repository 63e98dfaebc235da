"""IICClustering under joblib's parallel backends: dask.distributed and loky.

Fits in worker processes must give the same results as sequential fits (every
fit is seeded and uses one torch thread on these tiny problems), and workers
must not oversubscribe the CPU with torch threads.
"""

import numpy as np
import pytest
from joblib import Parallel, cpu_count, delayed, parallel_backend
from sklearn.datasets import make_blobs
from sklearn.model_selection import GridSearchCV

from sklearn_iic import IICClustering

PARAMS = dict(n_clusters=3, n_epochs=5, random_state=0)
GRID = {"lamb": [1.0, 1.5]}


@pytest.fixture(scope="module")
def X():
    X, _ = make_blobs(n_samples=60, n_features=4, centers=3, random_state=0)
    return X


def _torch_threads():
    import torch

    return torch.get_num_threads()


def _fit_labels(X, seed):
    return IICClustering(n_clusters=3, n_epochs=5, random_state=seed).fit(X).labels_


def test_grid_search_on_dask_cluster(X):
    distributed = pytest.importorskip("dask.distributed")
    sequential = GridSearchCV(IICClustering(**PARAMS), GRID, cv=2).fit(X)

    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster, distributed.Client(cluster) as client:
        # The nanny starts workers with OMP_NUM_THREADS=1, so torch uses one
        # intra-op thread per worker process: no oversubscription.
        threads = client.run(_torch_threads)
        assert len(threads) == 2
        assert set(threads.values()) == {1}
        with parallel_backend("dask"):
            search = GridSearchCV(IICClustering(**PARAMS), GRID, cv=2, n_jobs=-1).fit(X)

    np.testing.assert_array_equal(
        search.cv_results_["mean_test_score"], sequential.cv_results_["mean_test_score"]
    )
    assert search.best_params_ == sequential.best_params_
    np.testing.assert_array_equal(search.best_estimator_.labels_,
                                  sequential.best_estimator_.labels_)


def test_repeated_fits_with_loky_match_sequential(X):
    sequential = [_fit_labels(X, seed) for seed in range(2)]
    parallel = Parallel(n_jobs=2, backend="loky")(
        delayed(_fit_labels)(X, seed) for seed in range(2)
    )
    for expected, labels in zip(sequential, parallel):
        np.testing.assert_array_equal(labels, expected)
    # loky caps the threads of each worker at cpu_count() // n_jobs.
    threads = Parallel(n_jobs=2, backend="loky")(delayed(_torch_threads)() for _ in range(2))
    assert all(1 <= t <= max(cpu_count() // 2, 1) for t in threads)
