"""Wide tables: IICClustering's defaults where features approach or outnumber samples.

Usage:
    python benchmarks/bench_wide.py [--seeds 3] [--datasets ...] [--before-path DIR]
        [--threads 1] [--output FILE]

Tables, all standardised (StandardScaler) and given as they are to every
method:

* ``make_classification`` with many features, ``n_redundant=0``, one cluster
  per class (``random_state=0``): 200 x 400 (4 classes, 10 informative,
  ``class_sep=4``), 300 x 1000 (5 classes, 30 informative, ``class_sep=6``),
  300 x 300 (4 classes, 10 informative, ``class_sep=3``), and 1000 x 100
  (as the last: 90 noise features, ten rows per feature);
* digits (``load_digits().data / 16``), a random subset of rows, with added
  Gaussian noise features of the pixels' overall standard deviation: 300 rows
  with 300 noise features (300 x 364), 300 with 236 (300 x 300), 1000 with
  1000 (1000 x 1064);
* UCR series, flattened (TRAIN and TEST concatenated, each channel of each
  series z-normalised, read from the files inside the aeon wheel):
  BasicMotions (80 x 600, 6 channels of 100), ArrowHead (211 x 251),
  ArrowHead with every third time point (211 x 84), GunPoint (200 x 150).

Methods: IICClustering with its defaults, IICClustering with
``whiten=False``, KMeans(n_init=10). With ``--before-path DIR``, also
IICClustering's defaults from the sklearn_iic package in DIR (a checkout from
before the wide-data guard), fitted in a subprocess with DIR first on
PYTHONPATH. Prints a Markdown table (median and minimum ARI over seeds, the
clusters the labels use, whitened dimensions: the non-zero columns of
``network_.whitening.matrix``, median fit time) and writes it to
docs/benchmarks/wide.md (or --output).

Needs the ``benchmarks`` extra (aeon) for the UCR sets.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import torch
from _common import device_description, evaluate, markdown_table, summarise, write_report
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits, make_classification
from sklearn.preprocessing import StandardScaler

OUT = pathlib.Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "wide.md"


def classification(n, d, k, informative, sep):
    return make_classification(
        n, d, n_informative=informative, n_redundant=0, n_repeated=0, n_classes=k,
        n_clusters_per_class=1, class_sep=sep, random_state=0,
    )


def noisy_digits(n, noise):
    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    rows = rng.choice(len(X), n, replace=False)
    X = X[rows] / 16
    return np.hstack([X, rng.normal(scale=X.std(), size=(n, noise))]), y[rows]


def ucr(name, step=1):
    """Flattened series: each channel z-normalised, every ``step``-th time point."""
    import aeon
    from aeon.datasets import load_from_ts_file

    folder = pathlib.Path(aeon.__file__).parent / "datasets" / "data" / name
    parts = [load_from_ts_file(str(folder / f"{name}_{split}.ts")) for split in ("TRAIN", "TEST")]
    X = np.concatenate([p[0] for p in parts]).astype(np.float64)[:, :, ::step]
    y = np.unique(np.concatenate([p[1] for p in parts]), return_inverse=True)[1]
    std = X.std(axis=2, keepdims=True)
    X = (X - X.mean(axis=2, keepdims=True)) / np.where(std > 0, std, 1)
    return X.reshape(len(X), -1), y


DATASETS = {
    "classification 200x400": lambda: classification(200, 400, 4, 10, 4.0),
    "classification 300x1000": lambda: classification(300, 1000, 5, 30, 6.0),
    "classification 300x300": lambda: classification(300, 300, 4, 10, 3.0),
    "classification 1000x100": lambda: classification(1000, 100, 4, 10, 3.0),
    "digits 300 + 300 noise": lambda: noisy_digits(300, 300),
    "digits 300 + 236 noise": lambda: noisy_digits(300, 236),
    "digits 1000 + 1000 noise": lambda: noisy_digits(1000, 1000),
    "BasicMotions": lambda: ucr("BasicMotions"),
    "ArrowHead": lambda: ucr("ArrowHead"),
    "ArrowHead, every 3rd point": lambda: ucr("ArrowHead", 3),
    "GunPoint": lambda: ucr("GunPoint"),
}


def load(name):
    X, y = DATASETS[name]()
    return StandardScaler().fit_transform(X).astype(np.float32), y


def describe(model, labels):
    """The clusters the labels use, and the whitened dimensions (non-zero map columns)."""
    whitening = getattr(getattr(model, "network_", None), "whitening", None)
    dims = None
    if whitening is not None:
        dims = int((whitening.matrix != 0).any(dim=0).sum())
    return {"clusters": len(np.unique(labels)), "dims": dims}


def methods(k):
    from sklearn_iic import IICClustering

    return {
        "IICClustering": lambda s: IICClustering(k, random_state=s),
        "IIC whiten=False": lambda s: IICClustering(k, whiten=False, random_state=s),
        "KMeans": lambda s: KMeans(k, n_init=10, random_state=s),
    }


def run(name, method, seeds):
    """Per-seed results (ARI, NMI, ACC, fit_s, clusters, dims) of one method on one data set."""
    X, y = load(name)
    return evaluate(methods(len(np.unique(y)))[method], X, y, seeds, describe)


def run_before(path, name, seeds, threads):
    """IICClustering's defaults from the package in ``path``, in a subprocess."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(path), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    )
    command = [sys.executable, __file__, "--json", "--datasets", name,
               "--seeds", str(len(seeds)), "--threads", str(threads)]
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    if not pathlib.Path(result["package"]).resolve().is_relative_to(pathlib.Path(path).resolve()):
        raise RuntimeError(f"the subprocess imported {result['package']}, not from {path}")
    return result["runs"]


def row(name, shape, method, runs):
    r = summarise(runs)
    used = [run["clusters"] for run in runs]
    dims = sorted({run["dims"] for run in runs if run["dims"] is not None})
    return [name, f"{shape[0]} x {shape[1]}", method, f"{r['ARI'][0]:.3f}", f"{r['ARI'][1]:.3f}",
            str(min(used)) if min(used) == max(used) else f"{min(used)}-{max(used)}",
            "-".join(map(str, dims)) if dims else "", f"{r['fit_s'][0]:.1f}"]


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--before-path", type=pathlib.Path, default=None,
                        help="folder holding an older sklearn_iic package to compare with")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--output", type=pathlib.Path, default=OUT,
                        help="Markdown file the table is written to")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds = range(args.seeds)
    if args.json:  # the subprocess of --before-path: IIC defaults only
        import sklearn_iic

        runs = run(args.datasets[0], "IICClustering", seeds)
        print(json.dumps({"package": str(pathlib.Path(sklearn_iic.__file__).parent),
                          "runs": runs}))
        return
    print(f"device: {device_description()}")
    header = ["data set", "shape", "method", "ARI median", "ARI min", "clusters used",
              "whitened dims", "fit s"]
    rows = []
    for name in args.datasets:
        X, y = load(name)
        results = {}
        for method in methods(len(np.unique(y))):
            results[method] = run(name, method, seeds)
            if method == "IICClustering" and args.before_path is not None:
                results["IICClustering, before"] = run_before(
                    args.before_path, name, seeds, args.threads
                )
        for method, runs in results.items():
            rows.append(row(name, X.shape, method, runs))
            print(" | ".join(rows[-1]), flush=True)
    table = markdown_table(header, rows)
    caption = (
        f"Median and minimum ARI over seeds 0 to {args.seeds - 1}; clusters used: by the "
        f"labels, of n_clusters (the number of classes), over the seeds; whitened dims: "
        f"non-zero columns of the fitted whitening; fit s: median seconds; device: "
        f"{device_description()}."
    )
    if args.before_path is not None:
        caption += (f" \"IICClustering, before\": the defaults of the package in "
                    f"`{args.before_path}`, before the wide-data guard.")
    write_report(args.output, caption, table)
    print("\n" + table)


if __name__ == "__main__":
    main()
