import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits, make_blobs


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    # Test problems are tiny: one thread is as fast, and far faster when other
    # processes share the cores. Tests of the thread policy set their own.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16, y


@pytest.fixture
def blobs():
    X, y = make_blobs(n_samples=120, centers=3, n_features=4, random_state=0)
    return X.astype(np.float64), y
