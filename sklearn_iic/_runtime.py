"""Where and how torch runs in a fit or a prediction: device, threads, floats, randomness.

The thread policy. Training uses one torch thread per ``WORK_PER_THREAD``
multiply-adds of a step, at most the caller's limit, and never depends on
what else the machine runs: the float results of a training step depend on
the number of threads, and the same ``random_state`` must give the same
labels on a quiet and on a busy machine. Steps below ``WORK_PER_THREAD``
(every table and the digits images of the benchmarks) train on one thread,
whatever the caller allows, so their labels do not depend on it either.
Inference (a forward pass in eval mode) gives the same floats on any number
of threads, so prediction also counts the cores that other processes leave
idle, and takes no more: oversubscribed, torch's threads wait on each other
and a fit or a prediction runs many times slower than on one thread.
"""

import contextlib
import os
import time

import joblib
import numpy as np
import torch
from sklearn.utils import check_random_state

# Multiply-adds of a training step that pay for one more thread. A default
# fit of digits as 64 features (about 2e7 by the estimate of
# _plan.step_work) gains little from a second thread on a quiet 2-core
# machine, and a second thread was many times slower when other processes
# shared the cores (docs/benchmarks/threads.md, and docs/benchmarks.rst,
# "Threads, layout and the neighbour search").
WORK_PER_THREAD = 2.5e7
# Multiply-adds of a prediction batch that pay for one more thread.
_PREDICT_WORK_PER_THREAD = 1e8
# How long /proc/stat is watched to count the cores that others keep busy.
_LOAD_INTERVAL = 0.05


def resolve_device(device):
    """Turn the ``device`` parameter into an available :class:`torch.device`."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a valid torch device: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={str(device)!r} was requested but CUDA is not available; "
            "use device='auto' or 'cpu'."
        )
    # Not MPS: the whitening computes in float64, which MPS lacks.
    if device.type not in ("cpu", "cuda"):
        raise ValueError(
            f"device={str(device)!r} is not supported; IICClustering trains on 'cpu' "
            "or 'cuda' devices."
        )
    return device


def available_or_cpu(device):
    """``device`` if this machine has it, else the CPU: a model fitted on a GPU runs anywhere."""
    if device.type == "cuda" and not torch.cuda.is_available():
        return torch.device("cpu")
    return device


def seed_from(random_state):
    """One int seed for every generator of a fit, drawn from ``random_state``.

    ``None`` takes fresh entropy from the operating system, so that the global
    numpy random state is neither read nor changed.
    """
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1)[0] >> 1)
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def thread_limit():
    """The most threads the caller allows.

    torch's own setting, which follows ``OMP_NUM_THREADS`` (set by joblib's
    and dask's workers), threadpoolctl's limits and ``torch.set_num_threads``,
    and the cores this process may use (affinity and container quotas).
    """
    return max(1, min(torch.get_num_threads(), joblib.cpu_count()))


def training_threads(work):
    """Threads for training steps of ``work`` multiply-adds: set by the caller's limit alone."""
    return int(np.clip(work // WORK_PER_THREAD, 1, thread_limit()))


def inference_threads(work):
    """Threads for inference of ``work`` multiply-adds in all: as many as pay, and are idle."""
    wanted = min(int(work // _PREDICT_WORK_PER_THREAD), thread_limit())
    if wanted <= 1:
        return 1
    return max(1, min(wanted, idle_cores()))


def idle_cores():
    """Cores that other processes leave idle, counted over 50 ms (Linux), else all cores."""
    try:
        before = _cpu_times()
        own, start = time.process_time(), time.perf_counter()
        time.sleep(_LOAD_INTERVAL)
        after = _cpu_times()
        own, elapsed = time.process_time() - own, time.perf_counter() - start
    except OSError:
        return joblib.cpu_count()
    busy, total = after[0] - before[0], after[1] - before[1]
    n_cpus = os.cpu_count() or 1
    if total <= 0:
        return joblib.cpu_count()
    # Busy cores of others: all busy time but this process's, in cores (over
    # the time actually slept, which a busy machine stretches).
    others = max(0.0, busy / total * n_cpus - own / elapsed)
    return max(1, min(joblib.cpu_count(), round(n_cpus - others)))


def _cpu_times():
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user time
    return total - idle, total


def _flushing_denormals():
    return (torch.tensor([1e-39]) * 1.0).item() == 0.0


@contextlib.contextmanager
def runtime(n_threads, seed=None, device=None):
    """Run torch with ``n_threads`` threads and denormal floats flushed to zero, then restore.

    Denormals (floats below 1.2e-38, which tiny probabilities and their
    gradients reach) are far slower on some x86 CPUs: on one machine they
    slowed a fit with an overclustering head several times
    (docs/scaling.rst, "Denormals"; docs/benchmarks/threads.md). The mode is
    set for the calling thread, where single-threaded work runs; torch's
    worker threads keep their own. With ``seed``, torch's global generator
    is also seeded for the block (see :func:`local_torch_rng`). The
    caller's thread count, denormal mode and random state are restored
    afterwards.
    """
    flushing = _flushing_denormals()
    torch.set_flush_denormal(True)
    try:
        with torch_threads(n_threads):
            if seed is None:
                yield
            else:
                with local_torch_rng(seed, device):
                    yield
    finally:
        torch.set_flush_denormal(flushing)


@contextlib.contextmanager
def torch_threads(n_threads):
    """Run with ``n_threads`` intra-op threads, restoring the previous number."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def local_torch_rng(seed, device):
    """Seed torch for the block and restore the global RNG state afterwards.

    Modules built and trained inside (weight initialisation, dropout) are then
    reproducible, and the caller's global torch RNG is neither read nor changed.
    """
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        # Only the generators that fork_rng restores: torch.manual_seed would
        # also reseed every other GPU's generator, and leave it reseeded.
        torch.default_generator.manual_seed(seed)
        for index in devices:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield
