"""Large tables: a default fit trained on a subset (``max_samples="auto"``) against all rows.

Usage:
    python benchmarks/bench_large.py [--sizes 200000 1000000] [--all-rows-up-to 200000]
        [--seeds 1] [--output FILE]

Tables (float32, ``random_state=0``):

* ``blobs``: ``make_blobs`` with 50 features and 10 centres, the data of the
  speed benchmark;
* ``classification``: ``make_classification`` with 20 features (10
  informative, no redundant ones), 10 classes of one cluster each,
  ``class_sep=2``, a table where KMeans is far from the classes.

Methods: IICClustering with its defaults (trained on at most 50,000 rows,
every row labelled), IICClustering with ``max_samples=None`` (trained on
every row: the defaults before ``max_samples`` existed), only up to
``--all-rows-up-to`` rows, since at a million rows it costs about ten times
the default fit; and KMeans (``n_init="auto"``). Fit seconds are wall times
of ``fit_predict`` with the default thread policy; ARI and NMI are against
the generating classes. Prints a Markdown table and writes it to
docs/benchmarks/large.md (or --output).
"""

import argparse
import pathlib
import time
import warnings

import numpy as np
from _common import device_description, markdown_table, write_report
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs, make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from sklearn_iic import IICClustering

OUT = pathlib.Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "large.md"
N_CLUSTERS = 10


def make_data(name, n):
    if name == "blobs":
        X, y = make_blobs(n_samples=n, n_features=50, centers=N_CLUSTERS, random_state=0)
    else:
        X, y = make_classification(
            n, 20, n_informative=10, n_redundant=0, n_classes=N_CLUSTERS,
            n_clusters_per_class=1, class_sep=2.0, random_state=0,
        )
    return X.astype(np.float32), y


METHODS = {
    "IICClustering (default: max_samples='auto')": lambda seed: IICClustering(
        N_CLUSTERS, random_state=seed
    ),
    "IICClustering, max_samples=None (all rows)": lambda seed: IICClustering(
        N_CLUSTERS, max_samples=None, random_state=seed
    ),
    "KMeans": lambda seed: KMeans(N_CLUSTERS, random_state=seed),
}


def measure(model, X, y):
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        labels = model.fit_predict(X)
    seconds = time.perf_counter() - start
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    iic = isinstance(model, IICClustering)
    return {
        "fit_s": seconds,
        "ARI": adjusted_rand_score(y, labels),
        "NMI": normalized_mutual_info_score(y, labels),
        "epochs": model.n_iter_ if iic else None,
        "converged": converged if iic else None,
        "clusters": len(np.unique(labels)),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--datasets", nargs="+", default=["blobs", "classification"],
                        choices=["blobs", "classification"])
    parser.add_argument("--all-rows-up-to", type=int, default=200_000,
                        help="largest n fitted with max_samples=None as well")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--output", type=pathlib.Path, default=OUT)
    args = parser.parse_args()

    rows = []
    for name in args.datasets:
        for n in args.sizes:
            X, y = make_data(name, n)
            for method, make_model in METHODS.items():
                # Up to 50,000 rows the defaults train on every row already.
                if "all rows" in method and not 50_000 < n <= args.all_rows_up_to:
                    continue
                runs = [measure(make_model(seed), X, y) for seed in range(args.seeds)]
                first = runs[0]
                row = [name, f"{n:,}", method,
                       f"{np.median([r['fit_s'] for r in runs]):.1f}",
                       f"{np.median([r['ARI'] for r in runs]):.3f}",
                       f"{np.median([r['NMI'] for r in runs]):.3f}",
                       first["clusters"],
                       "" if first["epochs"] is None else first["epochs"],
                       "" if first["converged"] is None else "yes" if first["converged"] else "no"]
                rows.append(row)
                print(" | ".join(str(cell) for cell in row), flush=True)
    title = (f"Large tables, median of {args.seeds} seed(s); device: {device_description()}.")
    body = markdown_table(
        ["data", "n", "method", "fit s", "ARI", "NMI", "clusters used",
         "epochs (seed 0)", "converged (seed 0)"],
        rows,
    )
    print(write_report(args.output, title, body))


if __name__ == "__main__":
    main()
