"""Fits running side by side in threads of one process, as dask's threaded scheduler,
joblib's threading backend and a web service run them.

A fit's result depends only on its data, parameters and ``random_state``: the
same in a thread beside others as alone. No process-wide torch setting that
another thread can see changes during a fit, and none is left changed.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from joblib import parallel_backend
from sklearn.datasets import make_blobs
from sklearn.model_selection import GridSearchCV
from torch import nn

from sklearn_iic import MLP, IICClustering
from sklearn_iic._runtime import torch_threads
from sklearn_iic.perturbations import Transform

TRIALS = 3


@pytest.fixture(scope="module")
def tables(digits):
    X, _ = digits
    blobs, _ = make_blobs(200, n_features=5, centers=4, random_state=1)
    return {"digits": X[:400], "blobs": blobs, "images": X[:400].reshape(-1, 8, 8)}


def _fit(X, seed, **params):
    model = IICClustering(4, n_epochs=4, tol=None, random_state=seed, **params).fit(X)
    return model.labels_, model.loss_curve_


def _assert_same(result, expected):
    np.testing.assert_array_equal(result[0], expected[0])
    assert result[1] == expected[1]  # the losses, to the last bit


def _in_threads(jobs, n_threads):
    with ThreadPoolExecutor(n_threads) as pool:
        return list(pool.map(lambda job: job(), jobs))


def test_identical_fits_side_by_side_equal_the_fit_alone(tables):
    for name in ("digits", "images"):
        alone = _fit(tables[name], 0)
        for _ in range(TRIALS):
            for result in _in_threads([lambda n=name: _fit(tables[n], 0)] * 2, 2):
                _assert_same(result, alone)


def test_different_fits_side_by_side_equal_each_fit_alone(tables):
    jobs = [
        lambda seed=seed, name=name: _fit(tables[name], seed)
        for name in ("digits", "blobs") for seed in (0, 1)
    ]
    alone = [job() for job in jobs]
    for _ in range(TRIALS):
        for result, expected in zip(_in_threads(jobs, 4), alone):
            _assert_same(result, expected)


class DropoutMLP(nn.Sequential):
    """An MLP whose dropout draws from torch's global generator while it trains."""

    def __init__(self, n_features, n_outputs):
        super().__init__(nn.Dropout(0.2), MLP(n_features, n_outputs, hidden_layer_sizes=(32,)))


def _noise(x):
    return x + 0.05 * torch.randn_like(x)  # torch's global generator


@pytest.mark.parametrize("params", [
    dict(network=DropoutMLP),
    dict(perturbation=Transform(_noise), pairs="perturbation"),
], ids=["dropout", "global-perturbation"])
def test_fits_that_draw_from_the_global_generator_side_by_side_equal_alone(tables, params):
    X = tables["blobs"]
    alone = [_fit(X, seed, **params) for seed in (0, 1)]
    for _ in range(TRIALS):
        jobs = [lambda seed=seed: _fit(X, seed, **params) for seed in (0, 1)] + [
            lambda: _fit(tables["digits"], 0)  # a default fit beside them
        ]
        for result, expected in zip(_in_threads(jobs, 3), alone):
            _assert_same(result, expected)


def test_grid_search_on_the_threading_backend_equals_sequential(tables):
    X = tables["blobs"]
    estimator = IICClustering(4, n_epochs=4, random_state=0)
    sequential = GridSearchCV(estimator, {"lamb": [1.0, 1.5]}, cv=2).fit(X)
    for _ in range(TRIALS):
        with parallel_backend("threading"):
            search = GridSearchCV(estimator, {"lamb": [1.0, 1.5]}, cv=2, n_jobs=2).fit(X)
        np.testing.assert_array_equal(search.cv_results_["mean_test_score"],
                                      sequential.cv_results_["mean_test_score"])
        np.testing.assert_array_equal(search.best_estimator_.labels_,
                                      sequential.best_estimator_.labels_)


@pytest.fixture
def user_sets_two_threads():
    """The caller's torch.set_num_threads(2): its own number and the process's."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def _threads_of_a_new_thread():
    seen = []
    thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    return seen[0]


def test_concurrent_fits_leave_the_global_state_as_it_was(tables, user_sets_two_threads):
    np.random.seed(7)
    torch.manual_seed(7)
    numpy_state, torch_state = np.random.get_state()[1].copy(), torch.get_rng_state()
    _in_threads([lambda: _fit(tables["digits"], 0), lambda: _fit(tables["images"], 1),
                 lambda: _fit(tables["blobs"], 2, network=DropoutMLP)], 3)
    assert torch.get_num_threads() == 2
    assert _threads_of_a_new_thread() == 2  # the process-wide number
    np.testing.assert_array_equal(np.random.get_state()[1], numpy_state)
    assert torch.equal(torch.get_rng_state(), torch_state)


def test_a_fits_thread_count_is_its_threads_own(user_sets_two_threads):
    inside, release = threading.Event(), threading.Event()

    def fit_in_progress():
        with torch_threads(1):
            assert torch.get_num_threads() == 1
            inside.set()
            release.wait(10)

    worker = threading.Thread(target=fit_in_progress)
    worker.start()
    try:
        assert inside.wait(10)
        # Threads that start using torch during another fit take the caller's number.
        assert _threads_of_a_new_thread() == 2
        assert torch.get_num_threads() == 2
    finally:
        release.set()
        worker.join()
    assert _threads_of_a_new_thread() == 2


def test_fits_under_dasks_threaded_scheduler_equal_sequential(tables):
    dask = pytest.importorskip("dask")
    jobs = [(name, seed) for name in ("digits", "blobs") for seed in (0, 1)]
    alone = [_fit(tables[name], seed) for name, seed in jobs]
    results = dask.compute(
        *[dask.delayed(_fit)(tables[name], seed) for name, seed in jobs], scheduler="threads"
    )
    for result, expected in zip(results, alone):
        _assert_same(result, expected)
