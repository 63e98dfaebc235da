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

Fits may run side by side in threads of one process. What torch keeps per
process (its global generators, its process-wide thread number, cuDNN's
flags) a fit either leaves alone or holds in a way the others agree on:
:class:`GlobalStream`, :func:`torch_threads` and :class:`_SharedSetting`.
"""

import contextlib
import os
import threading
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
    return _available(_parse_device(device))


def inference_device(device):
    """The ``device`` parameter for inference: as for training, else the CPU without a GPU.

    ``device`` is a resource setting, read at each call: a model fitted on a
    GPU predicts where the current parameter says, and on the CPU of a
    machine that has no GPU.
    """
    device = _parse_device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        return torch.device("cpu")
    return _available(device)


def _available(device):
    """``device``, checked to be on this machine."""
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={str(device)!r} was requested but CUDA is not available; "
                "use device='auto' or 'cpu'."
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(
                f"device={str(device)!r} names GPU {device.index}, but this machine has "
                f"{count} GPU{'s' if count > 1 else ''} (cuda:0 to cuda:{count - 1})."
            )
    return device


def _parse_device(device):
    """``device`` as a :class:`torch.device` of a supported type ("auto" resolved)."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a valid torch device: {exc}") from None
    # Not MPS: the whitening computes in float64, which MPS lacks.
    if device.type not in ("cpu", "cuda"):
        raise ValueError(
            f"device={str(device)!r} is not supported; IICClustering trains on 'cpu' "
            "or 'cuda' devices."
        )
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
    return max(1, min(_own_threads(), joblib.cpu_count()))


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
def runtime(n_threads, device=None):
    """Run this thread's torch work on ``n_threads`` threads, denormals flushed, then restore.

    Denormals (floats below 1.2e-38, which tiny probabilities and their
    gradients reach) are far slower on some x86 CPUs: on one machine they
    slowed a fit with an overclustering head several times
    (docs/scaling.rst, "Denormals"; docs/benchmarks/threads.md). The mode is
    set for the calling thread, where single-threaded work runs; torch's
    worker threads keep their own. On a GPU, cuDNN is held to deterministic
    algorithms (:data:`_DETERMINISTIC_CUDNN`). Nothing another thread can
    observe changes (:func:`torch_threads`), and the caller's settings are
    restored afterwards.
    """
    flushing = _flushing_denormals()
    torch.set_flush_denormal(True)
    try:
        with torch_threads(n_threads), _deterministic(device):
            yield
    finally:
        torch.set_flush_denormal(flushing)


# torch's thread count is two settings: each thread's own (OpenMP's, which its
# operations use) and a process-wide one, which a thread takes as its own the
# first time it runs torch. torch.set_num_threads sets both.
_THREADS_LOCK = threading.Lock()


@contextlib.contextmanager
def torch_threads(n_threads):
    """Run this thread's torch operations on ``n_threads`` threads, then restore its number.

    Only the calling thread's number changes: the process-wide number, which
    threads that start to use torch take (such as a concurrent fit's), stays
    what the caller set, so fits running side by side in threads neither
    see nor leave each other's settings.
    """
    previous = _own_threads()
    if n_threads == previous:
        yield
        return
    process = _set_own_threads(n_threads)
    try:
        yield
    finally:
        _set_own_threads(previous, process)


def _own_threads():
    """This thread's number of torch threads.

    Read under the lock: a thread new to torch takes the process-wide number
    here, which is the caller's only outside the lock's sections.
    """
    with _THREADS_LOCK:
        return torch.get_num_threads()


def _set_own_threads(n_threads, process=None):
    """Set this thread's number, keep the process-wide one (read if not given); return it."""
    with _THREADS_LOCK:
        # A new thread reads the process-wide number, another writes it back,
        # leaving this thread's own (two thread starts: a few milliseconds on
        # a busy machine). Threads that first use torch inside this section
        # may still take n_threads.
        if process is None:
            process = _in_new_thread(torch.get_num_threads)
        torch.set_num_threads(n_threads)
        if process != n_threads:
            _in_new_thread(torch.set_num_threads, process)
    return process


def _in_new_thread(function, *args):
    result = []
    thread = threading.Thread(target=lambda: result.append(function(*args)))
    thread.start()
    thread.join()
    return result[0]


class _SharedSetting:
    """A process-wide setting held at one value while any fit needs it.

    The first fit to enter saves the caller's value and sets the fit's; the
    last to leave restores the caller's. Every fit holds the same value, so
    fits running side by side in threads agree on it.
    """

    def __init__(self, get, set_):
        self._get, self._set = get, set_
        self._lock = threading.Lock()
        self._holders = 0
        self._saved = None

    @contextlib.contextmanager
    def held(self, value):
        with self._lock:
            if self._holders == 0:
                self._saved = self._get()
                self._set(value)
            self._holders += 1
        try:
            yield
        finally:
            with self._lock:
                self._holders -= 1
                if self._holders == 0:
                    self._set(self._saved)


def _cudnn_flags():
    return torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark


def _set_cudnn_flags(flags):
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = flags


# cuDNN's fastest convolution algorithms (benchmarked per shape, or
# accumulating with atomics) may differ from run to run; its deterministic
# ones give the same floats, so the same labels, for the same random_state.
# (deterministic, benchmark) while any fit runs on a GPU.
_DETERMINISTIC_CUDNN = _SharedSetting(_cudnn_flags, _set_cudnn_flags)


def _deterministic(device):
    if device is None or device.type != "cuda":
        return contextlib.nullcontext()
    return _DETERMINISTIC_CUDNN.held((True, False))


# Serialises the sections that use torch's global generators, which every
# thread of the process shares (a fit's weight initialisation, and whatever
# draws from them in a user's network or perturbation).
_GLOBAL_RNG_LOCK = threading.RLock()


class GlobalStream:
    """torch's global generators as a stream of one fit's own, seeded from ``seed``.

    Inside :meth:`section`, torch's global generators (of the CPU and of
    ``device``) continue this stream; afterwards they are as the caller left
    them, and another section resumes the stream where the last one ended.
    Sections of every stream of the process are serialised by one lock:
    other threads' fits neither read nor move this stream.
    """

    def __init__(self, seed, device):
        self.seed = seed
        self.devices = [device.index or 0] if device.type == "cuda" else []
        self.states = None

    @contextlib.contextmanager
    def section(self):
        with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=self.devices):
            if self.states is None:
                # Only the generators that fork_rng restores: torch.manual_seed
                # would also reseed every other GPU's generator, and leave it so.
                torch.default_generator.manual_seed(self.seed)
                for index in self.devices:
                    torch.cuda.default_generators[index].manual_seed(self.seed)
            else:
                self._set_states(self.states)
            try:
                yield
            finally:
                self.states = self._get_states()

    def _get_states(self):
        return [torch.get_rng_state()] + [torch.cuda.get_rng_state(i) for i in self.devices]

    def _set_states(self, states):
        torch.set_rng_state(states[0])
        for index, state in zip(self.devices, states[1:]):
            torch.cuda.set_rng_state(state, index)

    def draws(self, function):
        """Call ``function`` in a section; whether it drew from the global generators.

        The call's draws are not kept: the stream is where it was before.
        """
        with self.section():
            before = self._get_states()
            try:
                function()
                return any(not torch.equal(a, b) for a, b in zip(before, self._get_states()))
            finally:
                self._set_states(before)


def local_torch_rng(seed, device):
    """A section of a new :class:`GlobalStream`: torch's global generators seeded for the block."""
    return GlobalStream(seed, device).section()
