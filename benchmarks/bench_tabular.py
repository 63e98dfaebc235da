"""Tabular clustering: IICClustering with defaults against classic clusterers.

Usage:
    python benchmarks/bench_tabular.py [--seeds 3] [--datasets moons circles ...] [--output FILE]

Seven data sets, each standardised except digits (X / 16). Prints a Markdown
table (median and minimum ARI over seeds, median NMI/ACC, fit time) and writes
it to docs/benchmarks/tabular.md (or --output).
"""

import argparse
import pathlib

import numpy as np
from _common import (
    device_description,
    evaluate,
    head_count,
    markdown_table,
    summarise,
    write_report,
)
from sklearn.cluster import AgglomerativeClustering, KMeans, SpectralClustering
from sklearn.datasets import (
    load_breast_cancer,
    load_digits,
    load_iris,
    load_wine,
    make_blobs,
    make_circles,
    make_moons,
)
from sklearn.mixture import GaussianMixture
from sklearn.preprocessing import StandardScaler

from sklearn_iic import IICClustering

OUT = pathlib.Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "tabular.md"


def aniso_blobs():
    X, y = make_blobs(n_samples=1000, centers=3, random_state=170)
    return X @ np.array([[0.6, -0.6], [-0.4, 0.8]]), y


DATASETS = {
    "moons": lambda: make_moons(1000, noise=0.06, random_state=0),
    "circles": lambda: make_circles(1000, noise=0.05, factor=0.5, random_state=0),
    "aniso blobs": aniso_blobs,
    "wine": lambda: load_wine(return_X_y=True),
    "iris": lambda: load_iris(return_X_y=True),
    "breast cancer": lambda: load_breast_cancer(return_X_y=True),
    "digits": lambda: load_digits(return_X_y=True),
}


def load(name):
    X, y = DATASETS[name]()
    X = X / 16 if name == "digits" else StandardScaler().fit_transform(X)
    return X, y


def methods(k):
    return {
        "IICClustering": lambda s: IICClustering(k, random_state=s),
        # The head trained on n_clusters directly, as in the IIC paper: what
        # merging micro-clusters adds.
        "IIC n_microclusters=None": lambda s: IICClustering(
            k, n_microclusters=None, random_state=s
        ),
        # The merge that favours equal sizes: what the cosine costs, or
        # gains, on these sets of near-equal classes.
        "IIC linkage='information'": lambda s: IICClustering(
            k, linkage="information", random_state=s
        ),
        # Neighbours and network in the coordinates as given: what the
        # metric of neighbour differences adds.
        "IIC whiten=False": lambda s: IICClustering(k, whiten=False, random_state=s),
        "KMeans": lambda s: KMeans(k, n_init=10, random_state=s),
        "GaussianMixture": lambda s: GaussianMixture(k, n_init=3, random_state=s),
        "Ward": lambda s: AgglomerativeClustering(k),
        "Spectral (kNN)": lambda s: SpectralClustering(
            k, affinity="nearest_neighbors", n_neighbors=10, random_state=s
        ),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--output", type=pathlib.Path, default=OUT,
                        help="Markdown file the table is written to")
    args = parser.parse_args()
    print(f"device: {device_description()}")
    # "head": seeds on which IIC's cluster heads labelled (the user guide's
    # "Cluster heads beside the micro-clusters").
    header = ["data set", "method", "ARI median", "ARI min", "NMI", "ACC", "fit s",
              "IIC - best classic", "head"]
    rows = []
    for name in args.datasets:
        X, y = load(name)
        results, heads = {}, {}
        for m, make in methods(len(np.unique(y))).items():
            runs = evaluate(make, X, y, range(args.seeds))
            results[m] = summarise(runs)
            heads[m] = head_count([run["head"] for run in runs])
        best = max(r["ARI"][0] for m, r in results.items() if not m.startswith("IIC"))
        for method, r in results.items():
            gap = f"{r['ARI'][0] - best:+.3f}" if method.startswith("IIC") else ""
            row = [name, method, f"{r['ARI'][0]:.3f}", f"{r['ARI'][1]:.3f}", f"{r['NMI'][0]:.3f}",
                   f"{r['ACC'][0]:.3f}", f"{r['fit_s'][0]:.2f}", gap,
                   heads[method] if method.startswith("IIC") else ""]
            print(" | ".join(row), flush=True)
            rows.append(row)
    table = markdown_table(header, rows)
    write_report(args.output,
                 f"Median (and minimum) over {args.seeds} seeds; device: {device_description()}.",
                 table)
    print("\n" + table)


if __name__ == "__main__":
    main()
