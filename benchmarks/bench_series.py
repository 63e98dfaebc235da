"""Time-series clustering: IICClustering with ConvNet1d against classic clusterers.

Usage:
    python benchmarks/bench_series.py [--datasets mnist1d GunPoint ...] [--seeds 3]
        [--methods IICClustering KMeans ...] [--inputs raw znorm] [--params JSON]
        [--output FILE]

Data, all offline: mnist1d (``make_dataset(get_dataset_args())``: the 4000 train
and 1000 test series of length 40, 10 classes) and the UCR sets GunPoint,
ArrowHead, ItalyPowerDemand and BasicMotions read from the files inside the
aeon wheel (TRAIN and TEST concatenated); OSULeaf, JapaneseVowels, ACSF1 and
PickupGestureWiimoteZ, also there, only when ``--datasets`` names them.
Every series is z-normalised per channel (``--inputs znorm``, the default),
or fed as generated or read from the files (``--inputs raw``: mnist1d's
series then vary in offset and scale;
the UCR files of GunPoint, ArrowHead and ItalyPowerDemand hold z-normalised
series already, BasicMotions' raw sensor values); the "inputs" column says
which. IICClustering runs with its defaults on the (n, channels, length)
arrays (``input_kind="series"``), or with ``--params``. Baselines: KMeans on
the flattened series, aeon's KShape, and aeon's TimeSeriesKMeans with DTW.
"IICClustering, flat rows" is the same estimator given flat rows (the
defaults of tables). Prints a Markdown table (median and minimum over seeds
of ARI, NMI and ACC, median fit time) and writes it to
docs/benchmarks/series.md (or --output). The baselines are slow on the 5000
series of mnist1d (about 20 minutes per KShape fit on two cores): ``--cache
FILE`` keeps per-seed results, so a later run (for instance after changing
the estimator: delete its entries) only fits what is missing.

Needs the ``benchmarks`` extra (aeon, mnist1d).
"""

import argparse
import json
import pathlib
import sys

import numpy as np
import torch
from _common import device_description, evaluate, markdown_table, summarise
from sklearn.cluster import KMeans

from sklearn_iic import IICClustering

OUT = pathlib.Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "series.md"
UCR = ("GunPoint", "ArrowHead", "ItalyPowerDemand", "BasicMotions")
# Also in the aeon wheel, first run after every default was chosen (held out;
# not in the default run, whose table predates them). Files of equal-length
# series where aeon ships both.
MORE_UCR = ("OSULeaf", "JapaneseVowels", "ACSF1", "PickupGestureWiimoteZ")
_FILE_STEMS = {"JapaneseVowels": "JapaneseVowels_eq",
               "PickupGestureWiimoteZ": "PickupGestureWiimoteZ_eq"}
DATASETS = ("mnist1d", *UCR)


def znormalise(X):
    """Each channel of each series to mean 0 and standard deviation 1."""
    mean = X.mean(axis=2, keepdims=True)
    std = X.std(axis=2, keepdims=True)
    return (X - mean) / np.where(std > 0, std, 1)


def load(name, inputs="znorm"):
    """Series of shape (n, channels, length) as float32, and integer labels.

    ``inputs="raw"`` leaves the series as generated or stored.
    """
    if name == "mnist1d":
        from mnist1d.data import get_dataset_args, make_dataset

        data = make_dataset(get_dataset_args())  # generated here; get_dataset downloads
        X = np.concatenate([data["x"], data["x_test"]])[:, None, :]
        y = np.concatenate([data["y"], data["y_test"]])
    else:
        import aeon
        from aeon.datasets import load_from_ts_file

        folder = pathlib.Path(aeon.__file__).parent / "datasets" / "data" / name
        stem = _FILE_STEMS.get(name, name)
        parts = [load_from_ts_file(str(folder / f"{stem}_{split}.ts"))
                 for split in ("TRAIN", "TEST")]
        X = np.concatenate([p[0] for p in parts])
        y = np.unique(np.concatenate([p[1] for p in parts]), return_inverse=True)[1]
    X = np.asarray(X, dtype=np.float64)
    return (znormalise(X) if inputs == "znorm" else X).astype(np.float32), y


class Flat:
    """Give a clusterer that takes feature vectors the flattened series."""

    def __init__(self, model):
        self.model = model

    def fit_predict(self, X):
        return self.model.fit_predict(X.reshape(len(X), -1))


class Series:
    """Give aeon's clusterers float64 series of shape (n, channels, length)."""

    def __init__(self, model):
        self.model = model

    def fit_predict(self, X):
        return self.model.fit_predict(np.asarray(X, dtype=np.float64))


def methods(k, params):
    from aeon.clustering import KShape, TimeSeriesKMeans

    iic = "IICClustering" + (f" {json.dumps(params)}" if params else "")
    return {
        iic: lambda s: IICClustering(k, input_kind="series", random_state=s, **params),
        # The same estimator given flat rows: the defaults of tables (MLP,
        # neighbour pairs), for series whose timing, not shape, tells classes apart.
        "IICClustering, flat rows": lambda s: Flat(IICClustering(k, random_state=s)),
        "KMeans": lambda s: Flat(KMeans(k, n_init=10, random_state=s)),
        "KShape": lambda s: Series(KShape(n_clusters=k, random_state=s)),
        # DBA k-means in a Sakoe-Chiba band of 10% of the length; one
        # initialisation and at most 10 iterations of k-means and of each
        # barycentre, or it takes minutes per fit (see the module docstring).
        "TimeSeriesKMeans (DTW)": lambda s: Series(TimeSeriesKMeans(
            n_clusters=k, distance="dtw", averaging_method="ba",
            distance_params={"window": 0.1}, average_params={"window": 0.1, "max_iters": 10},
            n_init=1, max_iter=10, random_state=s,
        )),
    }


def clusters_used(model, labels):
    return {"clusters": len(np.unique(labels))}


def collapsed(run):
    """Whether a run put every sample in one cluster.

    Results cached before ``clusters`` was recorded are judged by their
    scores: a single cluster gives exactly zero ARI and NMI.
    """
    if "clusters" in run:
        return run["clusters"] == 1
    return run["ARI"] == 0 and run["NMI"] == 0


def cached_evaluate(cache, key, make, X, y, seeds, cached_only=False):
    """evaluate(), reusing per-seed results stored in the JSON file ``cache`` (if given)."""
    stored = json.loads(cache.read_text()) if cache is not None and cache.exists() else {}
    runs = []
    for seed in seeds:
        name = f"{key}|{seed}"
        if name not in stored and cached_only:
            continue
        if name not in stored:
            stored[name] = evaluate(make, X, y, [seed], clusters_used)[0]
            if cache is not None:
                cache.write_text(json.dumps(stored, indent=1))
        runs.append(stored[name])
    return runs


def dataset_rows(name, inputs, args):
    """Fit the chosen methods on one data set, as ``inputs`` says; print and return the rows."""
    X, y = load(name, inputs)
    print(f"{name} ({inputs}): {X.shape[0]} series, {X.shape[1]} channel(s) of length "
          f"{X.shape[2]}, {len(np.unique(y))} classes", flush=True)
    chosen = methods(len(np.unique(y)), args.params)
    if args.methods:
        chosen = {m: f for m, f in chosen.items() if m.split(" {")[0] in args.methods}
    # z-normalised runs keep the cache keys they had before --inputs existed.
    key = name if inputs == "znorm" else f"{name} {inputs}"
    runs = {
        m: cached_evaluate(args.cache, f"{key}|{m}", make, X, y, range(args.seeds),
                           args.cached_only)
        for m, make in chosen.items()
    }
    results = {m: summarise(r) for m, r in runs.items() if r}
    classic = [r["ARI"][0] for m, r in results.items() if not m.startswith("IIC")]
    best = max(classic) if classic else None
    rows = []
    for method, r in results.items():
        gap = ""
        if method.startswith("IIC") and best is not None:
            gap = f"{r['ARI'][0] - best:+.3f}"
        row = [name, inputs, method, len(runs[method]), sum(map(collapsed, runs[method])),
               f"{r['ARI'][0]:.3f}", f"{r['ARI'][1]:.3f}",
               f"{r['NMI'][0]:.3f}", f"{r['NMI'][1]:.3f}",
               f"{r['ACC'][0]:.3f}", f"{r['ACC'][1]:.3f}",
               f"{r['fit_s'][0]:.1f}", gap]
        print(" | ".join(map(str, row)), flush=True)
        rows.append(row)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS),
                        choices=DATASETS + MORE_UCR)
    parser.add_argument("--methods", nargs="+", default=None,
                        help="subset of the methods (default: all)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--inputs", nargs="+", default=["znorm"], choices=["znorm", "raw"],
                        help="series z-normalised one by one, as stored or generated, or both")
    parser.add_argument("--params", type=json.loads, default={},
                        help="IICClustering parameters as JSON, e.g. '{\"pairs\": \"both\"}' "
                             "(default: its defaults)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--output", type=pathlib.Path, default=OUT,
                        help="Markdown file the table is written to")
    parser.add_argument("--cache", type=pathlib.Path, default=None,
                        help="JSON file of per-seed results to reuse and extend (delete the "
                             "entries of a method after changing it)")
    parser.add_argument("--cached-only", action="store_true",
                        help="fit nothing: tabulate the seeds found in --cache")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"device: {device_description()}")
    header = ["data set", "inputs", "method", "seeds", "collapsed", "ARI median", "ARI min",
              "NMI median", "NMI min", "ACC median", "ACC min", "fit s", "IIC - best classic ARI"]
    rows = []
    for name in args.datasets:
        for inputs in args.inputs:
            rows += dataset_rows(name, inputs, args)
    table = markdown_table(header, rows)
    command = " ".join(["python benchmarks/bench_series.py", *sys.argv[1:]])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        f"Median and minimum over seeds 0 to {args.seeds - 1} (seeds: how many ran; "
        f"collapsed: how many put every series in one cluster); fit s: median seconds; "
        f"device: {device_description()}.\n"
        f"Command: `{command}`\n\n{table}\n"
    )
    print("\n" + table)


if __name__ == "__main__":
    main()
