"""Large tables: a default fit trained on a subset (``max_samples="auto"``) against all rows.

Usage:
    python benchmarks/bench_large.py [--sizes 200000 1000000] [--all-rows-up-to 200000]
        [--seeds 1] [--output FILE]

Tables (float32, ``random_state=0``; ``_common.large_table``):

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

import numpy as np
from _common import (
    device_description,
    evaluate,
    large_table,
    markdown_table,
    summarise,
    write_report,
)
from sklearn.cluster import KMeans

from sklearn_iic import IICClustering

OUT = pathlib.Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "large.md"
N_CLUSTERS = 10


METHODS = {
    "IICClustering (default: max_samples='auto')": lambda seed: IICClustering(
        N_CLUSTERS, random_state=seed
    ),
    "IICClustering, max_samples=None (all rows)": lambda seed: IICClustering(
        N_CLUSTERS, max_samples=None, random_state=seed
    ),
    "KMeans": lambda seed: KMeans(N_CLUSTERS, random_state=seed),
}


def describe(model, labels):
    """Clusters used; for IICClustering, the epochs run and whether the fit converged."""
    if not isinstance(model, IICClustering):
        return {"clusters": len(np.unique(labels)), "epochs": None, "converged": None}
    return {"clusters": len(np.unique(labels)), "epochs": model.n_iter_,
            "converged": model.converged_}


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
            X, y = large_table(name, n)
            for method, make_model in METHODS.items():
                # Up to 50,000 rows the defaults train on every row already.
                if "all rows" in method and not 50_000 < n <= args.all_rows_up_to:
                    continue
                runs = evaluate(make_model, X, y, range(args.seeds), describe)
                first, stats = runs[0], summarise(runs)
                row = [name, f"{n:,}", method, f"{stats['fit_s'][0]:.1f}",
                       f"{stats['ARI'][0]:.3f}", f"{stats['NMI'][0]:.3f}",
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
