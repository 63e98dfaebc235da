import numpy as np
import pytest
import torch

from sklearn_iic._runtime import (
    available_or_cpu,
    local_torch_rng,
    resolve_device,
    seed_from,
    torch_threads,
)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(ValueError, match="not a valid torch device"):
        resolve_device("gpu")


def test_available_or_cpu():
    assert available_or_cpu(torch.device("cpu")) == torch.device("cpu")
    if not torch.cuda.is_available():
        assert available_or_cpu(torch.device("cuda")) == torch.device("cpu")


def test_seed_from_leaves_the_global_numpy_state():
    np.random.seed(0)
    state = np.random.get_state()[1].copy()
    assert seed_from(3) == seed_from(3)
    assert seed_from(np.random.RandomState(3)) == seed_from(3)
    seed_from(None)
    np.testing.assert_array_equal(state, np.random.get_state()[1])


def test_torch_threads_restores_the_callers_setting():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_local_torch_rng_is_seeded_and_restores_the_global_state():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    with local_torch_rng(5, torch.device("cpu")):
        a = torch.rand(3)
    with local_torch_rng(5, torch.device("cpu")):
        b = torch.rand(3)
    assert torch.equal(a, b)
    assert torch.equal(state, torch.get_rng_state())
