"""Cost of the whitening fitted before training on feature vectors.

Usage:
    python benchmarks/bench_whitening.py [--sizes 10000 100000 1000000]

Fits IICClustering(10) with a linear network for one epoch (what is timed
comes before training, which is made cheap) on blobs of 50 features, under
torch.profiler, and reads the regions the estimator labels:
fitting the whitening
(``sklearn_iic.fit.whitening``) and, up to 10,000 rows, the neighbour search
with the whitening and without it (``sklearn_iic.fit.neighbors`` with
``whiten=True`` and ``False``). Larger sizes use ``pairs="perturbation"``,
which skips the neighbour search. The estimator picks its torch threads.
Prints one line per size.
"""

import argparse

import numpy as np
from _measure import profile_regions
from sklearn.datasets import make_blobs
from torch import nn

from sklearn_iic import IICClustering

WHITENING = "sklearn_iic.fit.whitening"
NEIGHBORS = "sklearn_iic.fit.neighbors"


def regions(X, **params):
    """Seconds of each labelled region of a one-epoch fit on X."""
    model = IICClustering(10, network=nn.Linear, n_epochs=1, random_state=0, **params)
    return profile_regions(lambda: model.fit(X))[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000, 1_000_000])
    args = parser.parse_args()
    blobs = {"n_features": 50, "centers": 10, "random_state": 0}
    # Warm-up: torch's one-off initialisation is then not timed.
    IICClustering(10, n_epochs=1).fit(make_blobs(16, **blobs)[0])
    for n in args.sizes:
        X = make_blobs(n, **blobs)[0].astype(np.float32)
        if n <= 10_000:
            whitened, plain = regions(X), regions(X, whiten=False)
            print(f"n={n}: whitening {whitened[WHITENING]:.2f} s; neighbour search "
                  f"{plain[NEIGHBORS]:.2f} s plain, {whitened[NEIGHBORS]:.2f} s whitened",
                  flush=True)
        else:
            whitening = regions(X, pairs="perturbation")[WHITENING]
            print(f"n={n}: whitening {whitening:.2f} s", flush=True)


if __name__ == "__main__":
    main()
