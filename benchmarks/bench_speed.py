"""Speed and memory of IICClustering: throughput, KMeans comparison, overhead, time to ACC 0.90.

Usage:
    python benchmarks/bench_speed.py [--sizes 1000 10000 100000 1000000]
        [--image-sizes 1000 10000 60000] [--epochs 3] [--timeout 1200]
        [--compile-size 100000] [--features-epochs 20 40 70 auto] [--features-seeds 10]
        [--parts throughput overhead compile accuracy features]
        [--quick] [--out PATH]

Prints Markdown tables and writes them to docs/benchmarks/speed.md (or --out),
using the public API of sklearn_iic (and, to time training steps, a callback
of its training loop, through its documented override point). Five measurements:

* throughput: ``IICClustering(n_clusters=10, n_epochs=E)`` with
  ``pairs="perturbation"`` and with the default pairs, KMeans and
  MiniBatchKMeans, on n rows of 50 float32 features (make_blobs, 10 centers)
  and on n random 28x28 images: fit pairs per second (``m * E / fit s``,
  ``m = max_samples_`` the rows trained on, setup included), predict rows
  per second, and the peak growth of the RSS (CUDA memory too) in fit and
  predict, each measurement in a fresh process after a warm-up fit on 16
  rows (``_measure.PeakMemory``), killed after ``--timeout`` s. Each IIC
  fit then runs again under torch.profiler, timed by the regions the
  estimator labels (``sklearn_iic.fit.*``): where fit time goes.
* overhead: one training step of the estimator (a fit of k2 epochs of one
  batch each, timed by a callback of its training loop: the mean epoch after
  the first k1) against a bare torch step of a
  copy of its fitted network, on the torch threads it trained with.
* compile: fit time per epoch and setup with ``compile=False`` and ``True``,
  and the torch operators that take the most CPU time in a default fit.
* accuracy: the first ``n_epochs`` of a ladder at which IICClustering(10,
  random_state=0) reaches ACC >= 0.90 on digits as 8x8 images, and its fit time.
* features: digits as 64 features, for each ``n_epochs`` of a ladder and
  with and without whitening, the median (min-max) ARI over seeds and the
  median fit time: what a shorter fit costs in quality.
"""

import argparse
import pathlib
import time

import numpy as np
import torch
from _common import device_description, evaluate, fmt, markdown_table, summarise, write_report
from _measure import (
    OPERATOR_COLUMNS,
    PHASE_COLUMNS,
    TimedIICClustering,
    bare_step_seconds,
    failure,
    has_psutil,
    phase_cells,
    profile_regions,
    region_notes,
    run_spawned,
    si,
    step_seconds,
    timed,
    top_operators,
)
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.datasets import load_digits, make_blobs

from sklearn_iic import MLP, IICClustering
from sklearn_iic.metrics import clustering_accuracy

OUT = pathlib.Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "speed.md"
DEFAULTS = IICClustering().get_params()
N_CLUSTERS = 10
N_FEATURES = 50
IMAGE_SIDE = 28
METHODS = ("IIC pairs=perturbation", "IIC default pairs", "KMeans", "MiniBatchKMeans")


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
    pairs = {"IIC pairs=perturbation": "perturbation", "IIC default pairs": DEFAULTS["pairs"]}
    return IICClustering(N_CLUSTERS, n_epochs=epochs, pairs=pairs[method], random_state=0)


# -- measurement 1: throughput, peak memory and phases -------------------------------

def _throughput(kind, n, method, epochs):
    """Yield fit and predict times and peak memory; then, for IIC, the profiled phases."""
    X = make_data(kind, n)
    if not method.startswith("IIC"):
        X = X.reshape(n, -1)
    # Warm-up on 16 rows: torch's and the thread pools' one-off initialisation
    # is then neither timed nor counted as memory of the measured fit.
    make_model(method, 1).fit(X[:16])
    model = make_model(method, epochs)
    fit_s, fit_memory = timed(lambda: model.fit(X))
    predict_s, predict_memory = timed(lambda: model.predict(X))
    yield {"fit_s": fit_s, "predict_s": predict_s, "fit_mb": fit_memory.mb,
           "fit_memory": str(fit_memory), "predict_memory": str(predict_memory),
           "trained_rows": getattr(model, "max_samples_", n)}
    if method.startswith("IIC"):
        # Profiled apart: the profiler slows the fit and holds its events in memory.
        model = make_model(method, epochs)
        profiled_fit_s, regions = profile_regions(lambda: model.fit(X))
        profiled_predict_s, predict_regions = profile_regions(lambda: model.predict(X))
        yield {"profiled_fit_s": profiled_fit_s, "profiled_predict_s": profiled_predict_s,
               "regions": {**regions, **predict_regions}}


def throughput_rows(measured, epochs):
    kmeans_s = {(kind, n): r["fit_s"] + r["predict_s"]
                for kind, n, method, r in measured if method == "KMeans" and "fit_s" in r}
    rows = []
    for kind, n, method, r in measured:
        if "fit_s" not in r:
            rows.append([kind, si(n), method, failure(r)] + [""] * 7)
            continue
        input_mb = n * (N_FEATURES if kind == "tabular" else IMAGE_SIDE**2) * 4 / 2**20
        total = r["fit_s"] + r["predict_s"]
        rows.append([
            kind, si(n), method, f"{r['fit_s']:.2f}",
            si(r["trained_rows"] * epochs / r["fit_s"]) if method.startswith("IIC") else "",
            f"{r['fit_memory']} ({r['fit_mb'] / input_mb:.2f}x)",
            f"{r['predict_s']:.3f}", si(n / r["predict_s"]), r["predict_memory"], f"{total:.2f}",
            f"{total / kmeans_s[kind, n]:.1f}" if (kind, n) in kmeans_s else "",
        ])
    return rows


THROUGHPUT_HEADER = ["data", "n", "method", "fit s", "fit pairs/s", "fit peak MB", "predict s",
                     "predict rows/s", "predict peak MB", "fit+predict s", "x KMeans"]


def phase_rows(measured):
    return [[kind, si(n), method, *(phase_cells(r) if "regions" in r else
                                     [failure(r)] + [""] * (len(PHASE_COLUMNS) - 1))]
            for kind, n, method, r in measured if method.startswith("IIC")]


# -- measurement 2: framework overhead per training step -----------------------------

def _overhead(k1, k2, bare_steps, repeats):
    """Yield seconds per training step of the estimator and of the bare torch loop."""
    X = make_data("tabular", DEFAULTS["batch_size"])  # one batch
    threads = []

    def network(n_features, n_outputs):  # the default MLP
        # Called inside fit (its network region), under the threads it chose.
        threads.append(torch.get_num_threads())
        return MLP(n_features, n_outputs)

    estimator_s, model = step_seconds(
        lambda epochs: TimedIICClustering(N_CLUSTERS, network=network, pairs="perturbation",
                                          n_epochs=epochs, random_state=0),
        X, k1, k2, repeats)
    # The process ends with the measurement: the setting need not be restored.
    torch.set_num_threads(threads[-1])
    bare_s, n_outputs = bare_step_seconds(model, X, bare_steps, repeats)
    yield {"network": f"MLP({N_FEATURES}, {n_outputs}), 2 x {len(X)} rows",
           "threads": threads[-1], "estimator_s": estimator_s, "bare_s": bare_s}


def overhead_rows(k1, k2, bare_steps, repeats, timeout):
    r = run_spawned(_overhead, (k1, k2, bare_steps, repeats), timeout)
    if "bare_s" not in r:
        return [[failure(r)] + [""] * 5]
    estimator_s, bare_s = r["estimator_s"], r["bare_s"]
    return [[r["network"], str(r["threads"]), f"{estimator_s * 1e3:.2f}", f"{bare_s * 1e3:.2f}",
             f"{(estimator_s - bare_s) * 1e3:+.2f}", f"{estimator_s / bare_s:.2f}"]]


OVERHEAD_HEADER = ["network and batch", "torch threads", "estimator ms/step",
                   "bare torch ms/step", "overhead ms/step", "ratio"]


# -- measurement 3: torch.compile, and the operators of a training step ------------

def compile_rows(n, epochs):
    """Fit time per epoch and compilation cost with and without ``compile=True``.

    Fits of ``epochs`` (the first compiles), ``epochs`` and ``2 * epochs`` (reusing
    torch's in-process caches) on n rows; per epoch from the last two.
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
        rows.append([str(compile), si(n)] + [f"{t:.1f}" for t in seconds]
                    + [f"{per_epoch:.2f}", f"{seconds[0] - seconds[1]:.1f}"])
        print(f"  compile={compile}: {rows[-1]}", flush=True)
    return rows


COMPILE_HEADER = ["compile", "n", "first fit s (E epochs)", "second fit s (E)", "fit s (2E)",
                  "s per epoch", "first-fit extra s"]


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


# -- measurement 5: digits as feature vectors, fit time against ARI -----------------

def _features_model(n_epochs, whiten):
    return lambda seed: IICClustering(N_CLUSTERS, n_epochs=n_epochs, whiten=whiten,
                                      random_state=seed)


def features_ladder(ladder, seeds):
    """Digits as 64 features (X / 16): ARI and fit time per n_epochs, whitened and not."""
    X, y = load_digits(return_X_y=True)
    X = X / 16
    rows = []
    for whiten in ("auto", False):
        for epochs in ladder:
            runs = evaluate(_features_model(epochs, whiten), X, y, seeds,
                            describe=lambda model, labels: {"epochs": model.n_iter_})
            stats = summarise(runs)
            epochs_run = int(np.median([run["epochs"] for run in runs]))
            rows.append([repr(whiten), str(epochs), str(epochs_run), fmt(stats["ARI"]),
                         f"{stats['fit_s'][0]:.2f}"])
            print(f"  digits features whiten={whiten!r} n_epochs={epochs}: "
                  f"ARI {fmt(stats['ARI'])}, {stats['fit_s'][0]:.2f} s", flush=True)
    return rows


FEATURES_HEADER = ["whiten", "n_epochs", "epochs run (median)", "ARI median (min-max)",
                   "fit s (median)"]


# -- assembly -----------------------------------------------------------------------

def _epochs(value):
    return value if value == "auto" else int(value)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=int, default=[1000, 10000, 100000, 1000000],
                        help="rows of tabular data")
    parser.add_argument("--image-sizes", nargs="+", type=int, default=[1000, 10000, 60000],
                        help="number of 28x28 images")
    parser.add_argument("--epochs", type=int, default=3, help="n_epochs of the throughput fits")
    parser.add_argument("--timeout", type=float, default=1200,
                        help="seconds after which a measurement in its own process "
                        "(throughput, overhead) is killed")
    parser.add_argument("--overhead-epochs", nargs=2, type=int, default=[20, 220],
                        metavar=("K1", "K2"), help="n_epochs of the two overhead fits")
    parser.add_argument("--accuracy-epochs", nargs="+", type=int, default=[10, 20, 40, 70, 100],
                        help="n_epochs ladder for the time to ACC 0.90")
    parser.add_argument("--features-epochs", nargs="+", type=_epochs,
                        default=[20, 40, 70, "auto"],
                        help="n_epochs ladder of digits as features ('auto' allowed)")
    parser.add_argument("--features-seeds", type=int, default=10,
                        help="seeds per rung of the digits-as-features ladder")
    parser.add_argument("--compile-size", type=int, default=100000,
                        help="rows of the compile and operator measurements")
    parser.add_argument("--parts", nargs="+",
                        default=["throughput", "overhead", "compile", "accuracy", "features"],
                        choices=["throughput", "overhead", "compile", "accuracy", "features"])
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and epochs, to check that the script runs")
    parser.add_argument("--out", type=pathlib.Path, default=OUT)
    parser.set_defaults(repeats=3, bare_steps=200)
    if parser.parse_known_args()[0].quick:  # tiny defaults; options given explicitly win
        parser.set_defaults(sizes=[1000, 3000], image_sizes=[300], epochs=1, compile_size=2000,
                            overhead_epochs=[2, 12], accuracy_epochs=[2, 4],
                            features_epochs=[2], features_seeds=2,
                            repeats=2, bare_steps=20)
    return parser.parse_args()


def throughput_sections(args):
    measured = []  # (kind, n, method, result)
    for kind, n in [("tabular", n) for n in args.sizes] + [("images", n) for n in args.image_sizes]:
        for method in METHODS:
            result = run_spawned(_throughput, (kind, n, method, args.epochs), args.timeout)
            print(f"  {kind} n={n} {method}: {result}", flush=True)
            measured.append((kind, n, method, result))
    memory = "psutil RSS sampling" if has_psutil() else "ru_maxrss"
    slowdowns = [r["profiled_fit_s"] / r["fit_s"] - 1 for *_, r in measured if "regions" in r]
    seen = set().union(*(r["regions"] for *_, r in measured if "regions" in r))
    notes = region_notes(seen) if slowdowns else []
    for note in notes:
        print(f"note: {note}")
    profiler = (f"Profiling slowed these fits by {min(slowdowns):+.0%} to {max(slowdowns):+.0%} "
                "(profiler overhead: profiled fit s / fit s - 1). " if slowdowns else "")
    return [
        f"**Throughput and peak memory.** {args.epochs} epoch(s) per IIC fit "
        f"(the default is n_epochs={DEFAULTS['n_epochs']!r}; the training part of the fit time "
        f"scales with the epochs). Tabular: make_blobs, {N_FEATURES} float32 features, "
        f"10 centers; images: random {IMAGE_SIDE}x{IMAGE_SIDE}. Pairs/s = m x epochs / fit s, "
        "m = max_samples_: the rows trained on (at most 50,000 by default; every row is "
        "labelled). "
        f"Peak MB: growth of the process RSS during fit or predict ({memory}), one fresh "
        f"process per measurement, after a warm-up fit on 16 rows; in brackets, over "
        f"the size of the float32 input. x KMeans: "
        f"fit+predict time over KMeans' (n_init='auto', i.e. one k-means++ run).\n\n"
        + markdown_table(THROUGHPUT_HEADER, throughput_rows(measured, args.epochs)),
        "**Where fit time goes.** Each IIC fit above, run again under torch.profiler in the "
        "same process, timed by the regions the estimator labels "
        "(`sklearn_iic.fit.<phase>`, and `sklearn_iic.predict` in predict): validate = input "
        "checks, network = building it, whitening = fitting the whitening, neighbors = the "
        "pair sampler and its neighbour search, train = training steps, joints = pair joints "
        "for merging and head selection, merge = merging micro-clusters, label = labelling the "
        "training data; absent = not labelled by this version; other = profiled fit s minus "
        f"the regions. {profiler}"
        + "".join(f"Note: {note}. " for note in notes) + "\n\n"
        + markdown_table(["data", "n", "method", *PHASE_COLUMNS], phase_rows(measured)),
    ]


def main():
    args = parse_args()
    device = device_description()
    print(f"device: {device}")
    sections = []
    if "throughput" in args.parts:
        sections += throughput_sections(args)
    if "overhead" in args.parts:
        k1, k2 = args.overhead_epochs
        rows = overhead_rows(k1, k2, args.bare_steps, args.repeats, args.timeout)
        sections.append(
            f"**Framework overhead per training step.** Estimator: the mean epoch of a fit "
            f"of {k2} epochs after the first {k1}, timed by a callback of its training loop, "
            f"on {DEFAULTS['batch_size']} rows (one batch per epoch, so one step with its pair "
            f"draw, pairs='perturbation'); bare torch: forward, iic_loss on each of the "
            f"{DEFAULTS['n_subheads']} sub-heads, backward and Adam on a fixed pair batch, with "
            "a copy of the fitted network (whitening included). Both on the torch threads the "
            "estimator trained with (read by its network factory, which fit calls). "
            f"Best of {args.repeats}.\n\n" + markdown_table(OVERHEAD_HEADER, rows)
        )
    if "compile" in args.parts:
        n, epochs = args.compile_size, args.epochs
        sections.append(
            f"**torch.compile** (IICClustering(10, pairs='perturbation', compile=...) on "
            f"{si(n)} rows of the tabular data; E = {epochs}).\n\n"
            + markdown_table(COMPILE_HEADER, compile_rows(n, epochs))
        )
        X = make_data("tabular", n)
        model = IICClustering(N_CLUSTERS, n_epochs=epochs, random_state=0)
        sections.append(
            f"**Operators by CPU time** in a default fit on {si(n)} rows, {epochs} "
            "epoch(s) (torch.profiler, self time; the neighbour search runs in "
            "scikit-learn and is not listed).\n\n"
            + markdown_table(OPERATOR_COLUMNS, top_operators(lambda: model.fit(X)))
        )
    if "accuracy" in args.parts:
        rows = epochs_to_accuracy(args.accuracy_epochs)
        reached = [row for row in rows if row[-1] == "yes"]
        summary = (f"ACC >= 0.90 first reached at n_epochs={reached[0][0]} after "
                   f"{reached[0][1]} s of fitting." if reached else
                   f"ACC 0.90 not reached within n_epochs={args.accuracy_epochs[-1]}.")
        sections.append(
            "**Time to ACC 0.90 on digits** (1797 8x8 images, X / 16, "
            f"IICClustering(10, random_state=0), default settings). {summary}\n\n"
            + markdown_table(ACCURACY_HEADER, rows)
        )
    if "features" in args.parts:
        seeds = range(args.features_seeds)
        sections.append(
            "**Digits as 64 features: fit time against ARI** (1797 rows, X / 16, "
            f"IICClustering(10, n_epochs=E, whiten=W, random_state=s), s = 0..{seeds[-1]}, "
            "other settings default; 'auto' is the default n_epochs, and the convergence test "
            "may stop a fit before its budget). The speed target for the default fit: at most "
            "2 s at a median ARI of at least 0.87.\n\n"
            + markdown_table(FEATURES_HEADER, features_ladder(args.features_epochs, seeds))
        )
    title = f"Device: {device}." + (" Tiny sizes (--quick): checks that the script runs, "
                                    "not representative." if args.quick else "")
    print("\n" + write_report(args.out, title, "\n\n".join(sections)))


if __name__ == "__main__":
    main()
