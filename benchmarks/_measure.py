"""Measuring fits from outside: labelled phases, timed steps, operators, peak memory, bare steps.

The phases of ``fit`` and ``predict`` are read from the regions it labels
with :func:`torch.profiler.record_function`, whatever module runs them (under
torch.profiler, or watched by a :class:`RegionClock`, which barely slows the
fit), and training epochs and steps are timed by a callback of the training
loop, added through its documented override point
(``IICClustering._training_loop``); nothing of the library is rewritten.
"""

import copy
import math
import multiprocessing
import sys
import threading
import time

import torch

from sklearn_iic import IICClustering, iic_loss
from sklearn_iic._training import Callback

# The regions IICClustering labels, in the order fit runs them (the library's
# stable names). A region listed but never seen shows as absent; a region seen
# but not listed is reported, so neither goes unnoticed.
FIT_REGIONS = (
    "sklearn_iic.fit.validate",
    "sklearn_iic.fit.plan",
    "sklearn_iic.fit.network",
    "sklearn_iic.fit.whitening",
    "sklearn_iic.fit.neighbors",
    "sklearn_iic.fit.kmeans",
    "sklearn_iic.fit.train",
    "sklearn_iic.fit.joints",
    "sklearn_iic.fit.merge",
    "sklearn_iic.fit.partition",
    "sklearn_iic.fit.label",
)
PREDICT_REGION = "sklearn_iic.predict"


def profile_regions(function):
    """Run ``function()`` under torch.profiler.

    Returns
    -------
    seconds : float
        Wall time of the call, profiler overhead included.
    regions : dict
        Wall seconds spent in each region labelled ``sklearn_iic.*``, summed
        over its occurrences. They are the CPU's: on CUDA, work still queued
        when a region ends counts in the region that waits for it.
    """
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        start = time.perf_counter()
        function()
        seconds = time.perf_counter() - start
    regions = {}
    # The raw Kineto events (the durations key_averages() reports for the
    # regions) rather than profiler.key_averages(), which first turns every
    # operator event into a Python object: 15 s against 0.3 s after a 3 s fit
    # of 10,000 rows, and it grows with every training step.
    for event in profiler.profiler.kineto_results.events():
        name = event.name()
        if name.startswith("sklearn_iic."):
            regions[name] = regions.get(name, 0.0) + event.duration_ns() / 1e9
    return seconds, regions


class RegionClock:
    """Wall seconds of the regions labelled ``sklearn_iic.*``, read without torch.profiler.

    Inside a ``with`` block, :func:`sys.setprofile` watches this thread's
    calls for those of :class:`torch.profiler.record_function`'s ``__enter__``
    and ``__exit__`` (the estimator labels its phases with it) and times the
    regions named ``sklearn_iic.*``: ``seconds`` sums each name's wall time
    over its occurrences. Unlike torch.profiler it records no operator, so it
    barely slows the fit: one cheap Python call per Python or C function
    called in this thread, none in torch's own threads. The thread's previous
    profile function is restored on exit.
    """

    _ENTER = torch.profiler.record_function.__enter__.__code__
    _EXIT = torch.profiler.record_function.__exit__.__code__

    def __enter__(self):
        self.seconds, self._open = {}, {}
        self._previous = sys.getprofile()
        sys.setprofile(self._watch)
        return self

    def __exit__(self, *exc):
        sys.setprofile(self._previous)

    def _watch(self, frame, event, arg):
        code = frame.f_code
        if event != "call" or (code is not self._ENTER and code is not self._EXIT):
            return
        region = frame.f_locals.get("self")
        name = getattr(region, "name", "")
        if not name.startswith("sklearn_iic."):
            return
        now = time.perf_counter()
        if code is self._ENTER:
            self._open[id(region)] = now
        elif id(region) in self._open:
            self.seconds[name] = self.seconds.get(name, 0.0) + now - self._open.pop(id(region))


def clock_regions(function):
    """As :func:`profile_regions`, timed by a :class:`RegionClock` instead of torch.profiler."""
    with RegionClock() as clock:
        start = time.perf_counter()
        function()
        seconds = time.perf_counter() - start
    return seconds, clock.seconds


def phase_cells(result):
    """Phase table cells (`PHASE_COLUMNS`) of a measurement with ``regions``.

    ``result`` holds the plain and profiled seconds of the same fit
    (``fit_s``, ``profiled_fit_s``), of the profiled predict
    (``profiled_predict_s``) and the ``regions`` of both.
    """
    regions, profiled_s = result["regions"], result["profiled_fit_s"]
    other = profiled_s - sum(regions.get(name, 0.0) for name in FIT_REGIONS)
    return [f"{result['fit_s']:.2f}", f"{profiled_s:.2f}",
            f"{profiled_s / result['fit_s'] - 1:+.0%}",
            *(_seconds(regions, name) for name in FIT_REGIONS), f"{other:.2f}",
            f"{result['profiled_predict_s']:.2f}", _seconds(regions, PREDICT_REGION)]


def _seconds(regions, name):
    return f"{regions[name]:.2f}" if name in regions else "absent"


PHASE_COLUMNS = ["fit s", "profiled fit s", "profiler overhead",
                 *(f"{name.removeprefix('sklearn_iic.fit.')} s" for name in FIT_REGIONS),
                 "other s", "profiled predict s", "predict region s"]


def region_notes(seen):
    """Warnings about regions expected but never seen, or seen but not listed."""
    expected = (*FIT_REGIONS, PREDICT_REGION)
    notes = [f"region `{name}` never seen: this sklearn_iic does not label it"
             for name in expected if name not in seen]
    notes += [f"region `{name}` seen but not in FIT_REGIONS: left out of the table"
              for name in sorted(set(seen) - set(expected))]
    return notes


def top_operators(function, top=10):
    """Table rows of the operators taking the most CPU (self) time in ``function()``."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        function()
    # The estimator's labelled regions are phases, not operators: their self
    # time is the work done outside torch.
    events = sorted((e for e in profiler.key_averages() if not e.key.startswith("sklearn_iic.")),
                    key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [[e.key, str(e.count), f"{e.self_cpu_time_total / 1e6:.2f}",
             f"{100 * e.self_cpu_time_total / total:.0f}%"] for e in events[:top]]


OPERATOR_COLUMNS = ["operator", "calls", "self CPU s", "share"]


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


class StepTimer(Callback):
    """Wall seconds of every training epoch and step, read through the training loop's hooks.

    ``epochs``: from ``on_epoch_begin`` to ``on_epoch_end`` (the epoch's
    order, pair draws and steps); ``steps``: from ``on_batch_begin`` to
    ``on_batch_end`` (a step, with the draw of the next batch's pairs). On
    CUDA the device is synchronised at every mark, so that queued work counts
    in the epoch or step that queued it. ``phase`` says where the fit is:
    ``"step"`` inside a step (from this callback's ``on_batch_begin`` to its
    ``on_batch_end``, which follows those of the loop's other callbacks),
    ``"epoch"`` elsewhere in training, None outside training.
    """

    phase = None

    def on_train_begin(self, loop):
        self.device = loop.generator.device
        self.epochs, self.steps = [], []
        self.phase = "epoch"

    def _now(self):
        _sync(self.device)
        return time.perf_counter()

    def on_epoch_begin(self, loop, epoch):
        self._epoch_start = self._now()

    def on_batch_begin(self, loop):
        self._step_start = self._now()
        self.phase = "step"

    def on_batch_end(self, loop, step):
        self.steps.append(self._now() - self._step_start)
        self.phase = "epoch"

    def on_epoch_end(self, loop, epoch, loss):
        self.epochs.append(self._now() - self._epoch_start)

    def on_train_end(self, loop):
        self.phase = None

    def on_exception(self, loop, exception):
        self.phase = None


class TimedIICClustering(IICClustering):
    """IICClustering whose fits time their training epochs and steps: ``step_timer_``."""

    def _training_loop(self, *args, **kwargs):
        loop = super()._training_loop(*args, **kwargs)
        self.step_timer_ = StepTimer()
        loop.callbacks.append(self.step_timer_)
        return loop


def step_seconds(make_model, X, k1, k2, repeats):
    """Seconds per training step of ``make_model(k2)``, a `TimedIICClustering`, on one batch ``X``.

    An epoch is then one step, with its pair draw: the mean time of the
    epochs after the first ``k1`` (a warm-up), as the training loop's hooks
    time them; best of ``repeats`` fits. Returns it with the last model.
    """
    best = math.inf
    for _ in range(repeats):
        model = make_model(k2).fit(X)
        epochs = model.step_timer_.epochs[k1:]
        best = min(best, sum(epochs) / len(epochs))
    return best, model


def bare_step_seconds(model, X, n_steps, repeats, autocast=None):
    """Seconds per bare torch training step of a copy of a fitted IICClustering's network.

    Forward of a fixed pair batch (``X`` and a noisy copy), ``iic_loss`` of
    each main sub-head with the estimator's ``lamb``, backward and Adam with
    its ``learning_rate``; best of ``repeats`` runs of ``n_steps``. With
    ``autocast`` (a dtype), the forward pass and the losses run under
    :class:`torch.autocast` in it. Returns it with the network's output width.
    """
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    params = model.get_params()
    with torch.no_grad():
        n_outputs = model.network_(torch.as_tensor(X[:2])).shape[1]
    width = model.n_microclusters_  # columns of each main sub-head
    if n_outputs != width * params["n_subheads"]:
        raise ValueError(f"{n_outputs} outputs are not {params['n_subheads']} heads of {width}")
    network = copy.deepcopy(model.network_).to(device).train()
    optimizer = torch.optim.Adam(network.parameters(), lr=params["learning_rate"])
    # Any partner will do: a step's time does not depend on the values.
    x = torch.as_tensor(X, device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    batch = torch.cat([x, x + 0.1 * torch.randn(x.shape, generator=generator, device=device)])

    def step():
        with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
            logits, partner_logits = network(batch).chunk(2)
            losses = [iic_loss(p.softmax(dim=1), q.softmax(dim=1), params["lamb"])
                      for p, q in zip(logits.split(width, dim=1),
                                      partner_logits.split(width, dim=1))]
        optimizer.zero_grad(set_to_none=True)
        torch.stack(losses).mean().backward()
        optimizer.step()

    for _ in range(max(n_steps // 10, 3)):  # warm-up
        step()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        for _ in range(n_steps):
            step()
        _sync(device)
        times.append((time.perf_counter() - start) / n_steps)
    return min(times), n_outputs


def has_psutil():
    try:
        import psutil  # noqa: F401
    except ImportError:
        return False
    return True


class PeakMemory:
    """Peak growth of this process's RSS (and of CUDA memory) inside a ``with`` block.

    A background thread samples the RSS every ``interval`` seconds with psutil.
    Without psutil, the growth of ``ru_maxrss``, which misses any peak lower
    than the process's earlier maximum.
    """

    def __init__(self, interval=0.002):
        self.interval = interval

    def __enter__(self):
        if has_psutil():
            import psutil

            self._rss = psutil.Process().memory_info
            self.baseline = self.peak = self._rss().rss
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        else:
            import resource

            self._rss = None
            self._maxrss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            self.baseline = self._maxrss()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss().rss)
            self._stop.wait(self.interval)

    def __exit__(self, *exc):
        if self._rss is None:
            self.peak = self._maxrss()
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self._rss().rss)
        self.mb = (self.peak - self.baseline) / 2**20
        self.gpu_mb = (torch.cuda.max_memory_allocated() / 2**20
                       if torch.cuda.is_available() else None)

    def __str__(self):
        """The growth in MB, and the peak GPU memory when there is one."""
        return f"{self.mb:.0f}" + ("" if self.gpu_mb is None else f" (GPU {self.gpu_mb:.0f})")


def timed(function):
    """Wall seconds of ``function()`` and its `PeakMemory`."""
    with PeakMemory() as memory:
        start = time.perf_counter()
        function()
        seconds = time.perf_counter() - start
    return seconds, memory


def _child(target, args, conn):
    try:
        for message in target(*args):
            conn.send(message)
    except Exception as exc:  # noqa: BLE001 (reported in the table rather than aborting the run)
        conn.send({"error": f"{type(exc).__name__}: {exc}"})


def run_spawned(target, args, timeout):
    """Run the generator function ``target(*args)`` in a fresh (spawned) process.

    The dicts it yields are merged as they arrive, so what was measured before
    a timeout or a crash is kept. The process is killed after ``timeout``
    seconds, adding ``"timeout"``; an exception adds ``"error"``, as does a
    death without one (e.g. killed for memory).
    """
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(target, args, sender))
    process.start()
    sender.close()  # the child holds the only writer: its end ends the wait
    result, deadline = {}, time.monotonic() + timeout
    try:
        while receiver.poll(max(deadline - time.monotonic(), 0)):
            result.update(receiver.recv())
    except EOFError:  # the child has closed the pipe: it is exiting, or died
        pass
    process.join(max(deadline - time.monotonic(), 0))
    if process.is_alive():
        result["timeout"] = timeout
        process.terminate()
        process.join()
    elif process.exitcode:
        result.setdefault("error", f"process died (exit code {process.exitcode})")
    return result


def failure(result):
    """Table text of a measurement that ended without its figures."""
    return f"> {result['timeout']:.0f} s (killed)" if "timeout" in result else result["error"]


def si(value):
    """``value`` with 3 significant digits and a k, M or G suffix."""
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"
