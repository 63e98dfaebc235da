"""Speed and memory of IICClustering: throughput, KMeans comparison, overhead, time to ACC 0.90.

Usage:
    python benchmarks/bench_speed.py [--sizes 1000 10000 100000 1000000]
        [--image-sizes 1000 10000 60000] [--epochs 3] [--timeout 1200]
        [--compile-size 100000] [--parts throughput overhead compile accuracy]
        [--quick] [--out PATH]

Prints Markdown tables and writes them to docs/benchmarks/speed.md. Four
measurements:

* throughput: ``IICClustering(n_clusters=10, n_epochs=E)`` with
  ``pairs="perturbation"`` and with the default pairs, and KMeans and
  MiniBatchKMeans, on n rows of 50 float32 features (make_blobs, 10 centers)
  and on n random 28x28 images. Fit throughput is pairs per second
  (``n * E / fit seconds``, setup and the neighbour search included), predict
  throughput is rows per second. Each measurement runs in a fresh process
  (spawned), so its peak memory is its own: a background thread samples the
  process RSS every 2 ms with psutil and the table reports the peak growth over
  the RSS just before ``fit`` (or ``predict``), the data already in memory and a
  warm-up fit on 16 rows done (torch's one-off initialisation is neither timed
  nor counted). Without
  psutil it falls back to the growth of ``resource.getrusage().ru_maxrss``,
  which misses any peak lower than the one reached while making the data. On
  CUDA the peak GPU memory (``torch.cuda.max_memory_allocated``) is added.
  A measurement running past ``--timeout`` seconds is killed and shown as such.
  The IIC fits are also timed by phase (neighbour search, training steps,
  head selection, merging, labelling): where fit time goes.
* overhead: one training step of the estimator (the difference between fits of
  k1 and k2 epochs on exactly one batch per epoch, divided by k2 - k1, so
  setup is excluded) against a bare torch step (forward, ``iic_loss`` on the five
  sub-heads, backward, Adam) of the same MLP on the same 2 x 256 pair batch,
  with as many torch threads as the estimator uses.
* compile: fit time per epoch and setup of ``compile=False`` and ``True``, and
  the torch operators that take the most CPU time in a default fit.
* accuracy: the first ``n_epochs`` of a ladder at which IICClustering(10,
  random_state=0) reaches ACC >= 0.90 on digits given as 8x8 images, and its
  fit time.
"""

import argparse
import multiprocessing
import pathlib
import threading
import time

import numpy as np
import torch
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.datasets import load_digits, make_blobs

from _common import device_description, markdown_table
from sklearn_iic import MLP, IICClustering, iic_loss
from sklearn_iic.metrics import clustering_accuracy

OUT = pathlib.Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "speed.md"
N_CLUSTERS = 10
N_FEATURES = 50
IMAGE_SIDE = 28
BATCH_SIZE = 256  # IICClustering's default
N_SUBHEADS = 5  # IICClustering's default
N_MICRO = 50  # IICClustering's n_microclusters="auto" for 10 clusters
METHODS = ("IIC pairs=perturbation", "IIC default pairs", "KMeans", "MiniBatchKMeans")


# -- data and models -----------------------------------------------------------

def make_data(kind, n):
    """n rows of 50 float32 blob features, or n random 28x28 float32 images."""
    if kind == "tabular":
        X, _ = make_blobs(n_samples=n, n_features=N_FEATURES, centers=N_CLUSTERS, random_state=0)
        return X.astype(np.float32)
    rng = np.random.default_rng(0)
    return rng.random((n, IMAGE_SIDE, IMAGE_SIDE), dtype=np.float32)


def make_model(method, epochs):
    if method == "KMeans":
        return KMeans(N_CLUSTERS, random_state=0)
    if method == "MiniBatchKMeans":
        return MiniBatchKMeans(N_CLUSTERS, random_state=0)
    if method == "IIC pairs=perturbation":
        return IICClustering(N_CLUSTERS, n_epochs=epochs, pairs="perturbation", random_state=0)
    if method == "IIC default pairs":
        return IICClustering(N_CLUSTERS, n_epochs=epochs, random_state=0)
    raise ValueError(f"unknown method {method!r}")


# -- peak memory -----------------------------------------------------------------

class PeakMemory:
    """Peak growth of this process's RSS (and of CUDA memory) inside a ``with`` block."""

    def __init__(self, interval=0.002):
        self.interval = interval

    def __enter__(self):
        try:
            import psutil
        except ImportError:
            import resource

            self._rss = None
            self._maxrss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            self.baseline = self._maxrss()
        else:
            self._rss = psutil.Process().memory_info
            self.baseline = self.peak = self._rss().rss
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
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


# Functions the estimator's fit calls, by phase (private names: a phase whose
# function moved shows as n/a).
PHASES = {
    "whitening": "local_whitening",
    "neighbour search": "nearest_neighbors",
    "training steps": "train",
    "pair joints (head selection)": "pair_joints",
    "merging micro-clusters": "merge_clusters",
    "labelling the training data": "predict_proba",
}


def _time_phases(log):
    """Record in ``log[phase]`` the seconds spent in each phase of IICClustering.fit.

    Wraps the functions that ``sklearn_iic._iic`` calls, in that module.
    """
    import sklearn_iic._iic as iic_module

    def timed(phase, function):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                log[phase] = log.get(phase, 0.0) + time.perf_counter() - start
        return wrapper

    for phase, name in PHASES.items():
        function = getattr(iic_module, name, None)
        if function is not None:
            setattr(iic_module, name, timed(phase, function))


def _fit_predict_child(kind, n, method, epochs, conn):
    try:
        X = make_data(kind, n)
        if not method.startswith("IIC"):
            X = X.reshape(n, -1)
        # Warm-up on 16 rows: torch's and the thread pools' one-off initialisation
        # is then neither timed nor counted as memory of the measured fit.
        make_model(method, 1).fit(X[:16])
        phases = {}
        _time_phases(phases)
        model = make_model(method, epochs)
        with PeakMemory() as fit_memory:
            start = time.perf_counter()
            model.fit(X)
            fit_s = time.perf_counter() - start
        knn_s = phases.get("neighbour search")
        phases = dict(phases)  # labelling below is prediction, not fit
        with PeakMemory() as predict_memory:
            start = time.perf_counter()
            model.predict(X)
            predict_s = time.perf_counter() - start
        conn.send({
            "fit_s": fit_s, "predict_s": predict_s,
            "knn_s": knn_s, "phases": phases,
            "fit_mb": fit_memory.mb, "predict_mb": predict_memory.mb,
            "fit_gpu_mb": fit_memory.gpu_mb, "predict_gpu_mb": predict_memory.gpu_mb,
        })
    except Exception as exc:  # reported in the table rather than aborting the run
        conn.send({"error": f"{type(exc).__name__}: {exc}"})


def measure_fit_predict(kind, n, method, epochs, timeout):
    """Fit and predict times and peak memory of one method, in a fresh process."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_fit_predict_child, args=(kind, n, method, epochs, sender))
    process.start()
    sender.close()  # the child holds the only writer: its death ends the wait
    try:
        result = receiver.recv() if receiver.poll(timeout) else {"timeout": timeout}
    except EOFError:  # died without reporting, e.g. killed for memory
        result = None
    if process.is_alive():
        process.terminate()
    process.join()
    return result or {"error": f"process died (exit code {process.exitcode})"}


def _si(value):
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"


def _memory(mb, gpu_mb):
    text = f"{mb:.0f}"
    return text if gpu_mb is None else f"{text} (GPU {gpu_mb:.0f})"


def throughput_rows(kind, n, epochs, timeout):
    """Throughput table rows for every method on n rows of ``kind`` data, and
    the phase profile rows of the IIC fits."""
    results = {}
    for method in METHODS:
        result = measure_fit_predict(kind, n, method, epochs, timeout)
        results[method] = result
        print(f"  {kind} n={n} {method}: {result}", flush=True)
    input_mb = n * (N_FEATURES if kind == "tabular" else IMAGE_SIDE**2) * 4 / 2**20
    kmeans = results["KMeans"]
    kmeans_s = kmeans["fit_s"] + kmeans["predict_s"] if "fit_s" in kmeans else None
    rows, profile = [], []
    for method, r in results.items():
        if method.startswith("IIC") and "phases" in r:
            phases = [r["phases"].get(phase) for phase in PHASES]
            other = r["fit_s"] - sum(t for t in phases if t is not None)
            profile.append([kind, _si(n), method, f"{r['fit_s']:.2f}"]
                           + ["n/a" if t is None else f"{t:.2f}" for t in phases]
                           + [f"{other:.2f}"])
        if "fit_s" not in r:
            failure = f"> {r['timeout']:.0f} s (killed)" if "timeout" in r else r["error"]
            rows.append([kind, _si(n), method, failure] + [""] * 8)
            continue
        iic = method.startswith("IIC")
        total = r["fit_s"] + r["predict_s"]
        rows.append([
            kind, _si(n), method,
            f"{r['fit_s']:.2f}",
            _si(n * epochs / r["fit_s"]) if iic else "",
            f"{r['knn_s']:.2f}" if iic and r["knn_s"] is not None else "",
            _memory(r["fit_mb"], r["fit_gpu_mb"]) + f" ({r['fit_mb'] / input_mb:.2f}x)",
            f"{r['predict_s']:.3f}",
            _si(n / r["predict_s"]),
            _memory(r["predict_mb"], r["predict_gpu_mb"]),
            f"{total:.2f}",
            f"{total / kmeans_s:.1f}" if kmeans_s else "",
        ])
    return rows, profile


THROUGHPUT_HEADER = [
    "data", "n", "method", "fit s", "fit pairs/s", "of which kNN s", "fit peak MB",
    "predict s", "predict rows/s", "predict peak MB", "fit+predict s", "x KMeans",
]
PROFILE_HEADER = ["data", "n", "method", "fit s", *(f"{phase} s" for phase in PHASES), "other s"]


# -- measurement 2: framework overhead per training step -----------------------------

def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def estimator_step_time(k1, k2, repeats):
    """Seconds per training step of IICClustering, setup excluded.

    One batch per epoch (n_samples = batch_size), so an epoch is one step;
    (fit time at k2 epochs - fit time at k1 epochs) / (k2 - k1), best of
    ``repeats``. Returns it with the torch threads the estimator trained with.
    """
    X, _ = make_blobs(n_samples=BATCH_SIZE, n_features=N_FEATURES, centers=N_CLUSTERS,
                      random_state=0)
    X = X.astype(np.float32)
    threads = []

    def network(n_features, n_outputs):  # the default MLP; records the threads in use
        threads.append(torch.get_num_threads())
        return MLP(n_features, n_outputs)

    def fit_seconds(epochs):
        model = IICClustering(N_CLUSTERS, network=network, pairs="perturbation",
                              n_epochs=epochs, random_state=0)
        start = time.perf_counter()
        model.fit(X)
        return time.perf_counter() - start

    fit_seconds(k1)  # warm-up
    step = min((fit_seconds(k2) - fit_seconds(k1)) / (k2 - k1) for _ in range(repeats))
    return step, threads[-1]


def bare_step_time(n_steps, repeats, n_threads):
    """Seconds per bare torch step: the same MLP, loss and Adam on a fixed pair batch."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    previous = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        generator = torch.Generator().manual_seed(0)
        n_outputs = N_MICRO * N_SUBHEADS
        network = MLP(N_FEATURES, n_outputs).to(device).train()
        optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
        x = torch.randn(BATCH_SIZE, N_FEATURES, generator=generator).to(device)
        partner = x + 0.1 * torch.randn(x.shape, generator=generator).to(device)
        batch = torch.cat([x, partner])  # 2 x 256 rows

        def step():
            logits, partner_logits = network(batch).chunk(2)
            losses = [
                iic_loss(p.softmax(dim=1), q.softmax(dim=1), 1.5)
                for p, q in zip(logits.split(N_MICRO, dim=1),
                                partner_logits.split(N_MICRO, dim=1))
            ]
            loss = torch.stack(losses).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
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
        return min(times)
    finally:
        torch.set_num_threads(previous)


def overhead_rows(k1, k2, bare_steps, repeats):
    estimator_s, threads = estimator_step_time(k1, k2, repeats)
    bare_s = bare_step_time(bare_steps, repeats, threads)
    return [[
        f"MLP({N_FEATURES}, {N_MICRO * N_SUBHEADS}), 2 x {BATCH_SIZE} rows",
        str(threads),
        f"{estimator_s * 1e3:.2f}",
        f"{bare_s * 1e3:.2f}",
        f"{(estimator_s - bare_s) * 1e3:+.2f}",
        f"{estimator_s / bare_s:.2f}",
    ]]


OVERHEAD_HEADER = ["network and batch", "torch threads", "estimator ms/step",
                   "bare torch ms/step", "overhead ms/step", "ratio"]


# -- measurement 3: torch.compile, and the operators of a training step ------------

def compile_rows(n, epochs):
    """Fit time per epoch and compilation cost with and without ``compile=True``.

    Three fits per setting on n rows of the tabular data with
    pairs='perturbation': a first fit of ``epochs`` (with compile=True it
    compiles), then fits of ``epochs`` and ``2 * epochs``, which reuse torch's
    in-process compilation caches. Per epoch = their difference / epochs; the
    compilation cost = first fit - second fit.
    """
    X = make_data("tabular", n)
    rows = []
    for compile in (False, True):
        seconds = []
        for n_epochs in (epochs, epochs, 2 * epochs):
            model = IICClustering(N_CLUSTERS, n_epochs=n_epochs, pairs="perturbation",
                                  compile=compile, random_state=0)
            start = time.perf_counter()
            model.fit(X)
            seconds.append(time.perf_counter() - start)
        per_epoch = (seconds[2] - seconds[1]) / epochs
        rows.append([str(compile), _si(n)] + [f"{t:.1f}" for t in seconds]
                    + [f"{per_epoch:.2f}", f"{seconds[0] - seconds[1]:.1f}"])
        print(f"  compile={compile}: {rows[-1]}", flush=True)
    return rows


COMPILE_HEADER = ["compile", "n", "first fit s (E epochs)", "second fit s (E)", "fit s (2E)",
                  "s per epoch", "first-fit extra s"]


def operator_rows(n, epochs, top=10):
    """The operators that take the most CPU time in a fit (torch.profiler)."""
    X = make_data("tabular", n)
    model = IICClustering(N_CLUSTERS, n_epochs=epochs, random_state=0)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        model.fit(X)
    events = sorted(profiler.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [[e.key, str(e.count), f"{e.self_cpu_time_total / 1e6:.2f}",
             f"{100 * e.self_cpu_time_total / total:.0f}%"] for e in events[:top]]


OPERATOR_HEADER = ["operator", "calls", "self CPU s", "share"]


# -- measurement 4: time to ACC 0.90 on digits ---------------------------------------

def epochs_to_accuracy(ladder, target=0.90, seed=0):
    """Fit with increasing n_epochs until ACC >= target; one row per fit."""
    X, y = load_digits(return_X_y=True)
    X = X.reshape(-1, 8, 8) / 16
    rows = []
    for epochs in ladder:
        start = time.perf_counter()
        labels = IICClustering(N_CLUSTERS, n_epochs=epochs, random_state=seed).fit(X).labels_
        seconds = time.perf_counter() - start
        accuracy = clustering_accuracy(y, labels)
        reached = accuracy >= target
        rows.append([str(epochs), f"{seconds:.1f}", f"{accuracy:.3f}", "yes" if reached else "no"])
        print(f"  digits n_epochs={epochs}: {seconds:.1f} s, ACC {accuracy:.3f}", flush=True)
        if reached:
            break
    return rows


ACCURACY_HEADER = ["n_epochs", "fit s", "ACC", ">= 0.90"]


# -- assembly -----------------------------------------------------------------------

def parse_args():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=int, default=[1000, 10000, 100000, 1000000],
                        help="rows of tabular data")
    parser.add_argument("--image-sizes", nargs="+", type=int, default=[1000, 10000, 60000],
                        help="number of 28x28 images")
    parser.add_argument("--epochs", type=int, default=3, help="n_epochs of the throughput fits")
    parser.add_argument("--timeout", type=float, default=1200,
                        help="seconds after which a throughput measurement is killed")
    parser.add_argument("--overhead-epochs", nargs=2, type=int, default=[20, 220],
                        metavar=("K1", "K2"), help="n_epochs of the two overhead fits")
    parser.add_argument("--accuracy-epochs", nargs="+", type=int, default=[10, 20, 40, 70, 100],
                        help="n_epochs ladder for the time to ACC 0.90")
    parser.add_argument("--compile-size", type=int, default=100000,
                        help="rows of the compile and operator measurements")
    parser.add_argument("--parts", nargs="+",
                        default=["throughput", "overhead", "compile", "accuracy"],
                        choices=["throughput", "overhead", "compile", "accuracy"])
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and epochs, to check that the script runs")
    parser.add_argument("--out", type=pathlib.Path, default=OUT)
    parser.set_defaults(repeats=3, bare_steps=200)
    if parser.parse_known_args()[0].quick:  # tiny defaults; options given explicitly win
        parser.set_defaults(sizes=[1000, 3000], image_sizes=[300], epochs=1, compile_size=2000,
                            overhead_epochs=[2, 12], accuracy_epochs=[2, 4],
                            repeats=2, bare_steps=20)
    return parser.parse_args()


def command_line(args):
    def values(option):
        return " ".join(map(str, option))

    return (f"python benchmarks/bench_speed.py {'--quick ' if args.quick else ''}"
            f"--sizes {values(args.sizes)} "
            f"--image-sizes {' '.join(map(str, args.image_sizes))} --epochs {args.epochs} "
            f"--overhead-epochs {' '.join(map(str, args.overhead_epochs))} "
            f"--accuracy-epochs {' '.join(map(str, args.accuracy_epochs))} "
            f"--compile-size {args.compile_size} "
            f"--parts {' '.join(args.parts)}")


def main():
    args = parse_args()
    device = device_description()
    print(f"device: {device}")
    sections = [f"Device: {device}. Command: `{command_line(args)}`"
                + (" (tiny sizes: checks that the script runs, not representative)."
                   if args.quick else ".")]
    if "throughput" in args.parts:
        rows, profile = [], []
        for kind, sizes in (("tabular", args.sizes), ("images", args.image_sizes)):
            for n in sizes:
                table_rows, profile_rows = throughput_rows(kind, n, args.epochs, args.timeout)
                rows += table_rows
                profile += profile_rows
        memory = "psutil RSS sampling" if _has_psutil() else "ru_maxrss"
        sections.append(
            f"**Throughput and peak memory.** {args.epochs} epoch(s) per IIC fit "
            f"(the default is 100; the training part of the fit time scales with it). "
            f"Tabular: make_blobs, {N_FEATURES} float32 features, 10 centers; images: "
            f"random {IMAGE_SIDE}x{IMAGE_SIDE}. Pairs/s = n x epochs / fit s; kNN s is the "
            f"exact neighbour search of the default pairs, part of the fit. Peak MB: "
            f"growth of the process RSS during fit or predict ({memory}), one fresh "
            f"process per measurement, after a warm-up fit on 16 rows; in brackets, over "
            f"the size of the float32 input. x KMeans: "
            f"fit+predict time over KMeans' (n_init='auto', i.e. one k-means++ run).\n\n"
            + markdown_table(THROUGHPUT_HEADER, rows)
        )
        sections.append(
            "**Where fit time goes** (the same IIC fits, timed by phase: the functions "
            "the estimator calls; other = validation, conversion to a tensor, building "
            "the network).\n\n" + markdown_table(PROFILE_HEADER, profile)
        )
    if "overhead" in args.parts:
        k1, k2 = args.overhead_epochs
        table = markdown_table(OVERHEAD_HEADER,
                               overhead_rows(k1, k2, args.bare_steps, args.repeats))
        sections.append(
            f"**Framework overhead per training step.** Estimator: (fit at {k2} epochs - "
            f"fit at {k1}) / {k2 - k1} on {BATCH_SIZE} rows (one batch per epoch, "
            f"pairs='perturbation'); bare torch: forward, iic_loss on {N_SUBHEADS} "
            f"sub-heads, backward and Adam on a fixed pair batch. Best of {args.repeats}.\n\n"
            + table
        )
    if "compile" in args.parts:
        n, epochs = args.compile_size, args.epochs
        sections.append(
            f"**torch.compile** (IICClustering(10, pairs='perturbation', compile=...) on "
            f"{_si(n)} rows of the tabular data; E = {epochs}).\n\n"
            + markdown_table(COMPILE_HEADER, compile_rows(n, epochs))
        )
        sections.append(
            f"**Operators by CPU time** in a default fit on {_si(n)} rows, {epochs} "
            "epoch(s) (torch.profiler, self time; the neighbour search runs in "
            "scikit-learn and is not listed).\n\n"
            + markdown_table(OPERATOR_HEADER, operator_rows(n, epochs))
        )
    if "accuracy" in args.parts:
        rows = epochs_to_accuracy(args.accuracy_epochs)
        reached = [row for row in rows if row[-1] == "yes"]
        summary = (f"ACC >= 0.90 first reached at n_epochs={reached[0][0]} "
                   f"after {reached[0][1]} s of fitting."
                   if reached else
                   f"ACC 0.90 not reached within n_epochs={args.accuracy_epochs[-1]}.")
        sections.append(
            "**Time to ACC 0.90 on digits** (1797 8x8 images, X / 16, "
            f"IICClustering(10, random_state=0), default settings). {summary}\n\n"
            + markdown_table(ACCURACY_HEADER, rows)
        )
    text = "\n\n".join(sections) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print("\n" + text)


def _has_psutil():
    try:
        import psutil  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
