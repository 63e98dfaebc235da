import numpy as np
import pytest
import torch

from sklearn_iic._runtime import (
    inference_device,
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


def test_inference_device_falls_back_to_the_cpu_without_a_gpu():
    assert inference_device("cpu") == torch.device("cpu")
    assert inference_device("auto") == resolve_device("auto")
    if not torch.cuda.is_available():
        assert inference_device("cuda") == torch.device("cpu")
        assert inference_device(torch.device("cuda", 3)) == torch.device("cpu")
    with pytest.raises(ValueError, match="not a valid torch device"):
        inference_device("gpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_gpu_beyond_those_present_is_refused_with_their_number():
    count = torch.cuda.device_count()
    with pytest.raises(ValueError, match=f"names GPU {count}, but this machine has {count} GPU"):
        resolve_device(f"cuda:{count}")
    assert inference_device(f"cuda:{count - 1}") == torch.device("cuda", count - 1)


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


def test_training_threads_follow_the_work_and_the_callers_limit():
    from threadpoolctl import threadpool_limits

    from sklearn_iic._runtime import WORK_PER_THREAD, training_threads

    with torch_threads(4):
        assert training_threads(WORK_PER_THREAD / 2) == 1
        assert training_threads(10 * WORK_PER_THREAD) == min(4, joblib_cpus())
        with threadpool_limits(1):
            assert training_threads(10 * WORK_PER_THREAD) == 1


def joblib_cpus():
    import joblib

    return joblib.cpu_count()


def test_inference_threads_never_exceed_the_idle_cores(monkeypatch):
    import sklearn_iic._runtime as runtime_module

    with torch_threads(4):
        assert runtime_module.inference_threads(1e3) == 1
        monkeypatch.setattr(runtime_module, "idle_cores", lambda: 1)
        assert runtime_module.inference_threads(1e12) == 1
        monkeypatch.setattr(runtime_module, "idle_cores", lambda: 8)
        assert runtime_module.inference_threads(1e12) == min(4, joblib_cpus())


def test_idle_cores_counts_between_one_and_the_cores():
    import joblib

    from sklearn_iic._runtime import idle_cores

    assert 1 <= idle_cores() <= joblib.cpu_count()


def test_runtime_flushes_denormals_and_restores_the_callers_mode():
    from sklearn_iic._runtime import runtime

    def denormal_survives():
        return (torch.tensor([1e-39]) * 1.0).item() != 0.0

    assert denormal_survives()
    with runtime(1):
        assert not denormal_survives()
        assert torch.get_num_threads() == 1
    assert denormal_survives()
    torch.set_flush_denormal(True)
    try:
        with runtime(1):
            pass
        assert not denormal_survives()
    finally:
        torch.set_flush_denormal(False)


@pytest.mark.parametrize("device", ["xla", "meta", "vulkan"])
def test_unsupported_devices_are_refused(device):
    with pytest.raises(ValueError, match="not supported|not available|not a valid"):
        resolve_device(device)


def test_a_shared_setting_is_restored_when_the_last_holder_leaves():
    from sklearn_iic._runtime import _SharedSetting

    value = ["callers"]
    setting = _SharedSetting(lambda: value[0], lambda v: value.__setitem__(0, v))
    first, second = setting.held("fits"), setting.held("fits")
    first.__enter__()
    second.__enter__()
    assert value[0] == "fits"
    first.__exit__(None, None, None)
    assert value[0] == "fits"  # the second fit still runs
    second.__exit__(None, None, None)
    assert value[0] == "callers"


def test_cuda_fits_hold_deterministic_cudnn_and_restore_the_callers_flags():
    from sklearn_iic._runtime import runtime

    flags = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    with runtime(1, torch.device("cuda")):
        assert (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark) == (
            True, False)
    with runtime(1, torch.device("cpu")):
        assert (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark) == flags
    assert (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark) == flags


def test_global_stream_resumes_where_its_last_section_ended():
    from sklearn_iic._runtime import GlobalStream

    state = torch.get_rng_state()
    stream = GlobalStream(5, torch.device("cpu"))
    with stream.section():
        first = torch.rand(2)
    assert torch.equal(torch.get_rng_state(), state)
    # Whether a call draws is found without moving the stream.
    assert stream.draws(lambda: torch.rand(1)) and not stream.draws(lambda: torch.zeros(1))
    with stream.section():
        second = torch.rand(2)
    with local_torch_rng(5, torch.device("cpu")):
        assert torch.equal(torch.cat([first, second]), torch.rand(4))
    assert torch.equal(torch.get_rng_state(), state)
