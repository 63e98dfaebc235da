"""Cost of the whitening fitted before training on feature vectors.

Usage:
    python benchmarks/bench_whitening.py

Times ``local_whitening`` (a private function of the estimator) on blobs of 50
features from 10,000 to a million rows, and the neighbour search with and
without the whitening applied, on 2 torch threads. Prints one line per size.
"""

import time

import torch
from sklearn.datasets import make_blobs

from sklearn_iic._metric import local_whitening
from sklearn_iic._pairs import nearest_neighbors


def seconds(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


def main():
    torch.set_num_threads(2)
    for n in [10_000, 100_000, 1_000_000]:
        X = make_blobs(n, n_features=50, centers=10, random_state=0)[0]
        X = torch.as_tensor(X, dtype=torch.float32)
        generator = torch.Generator().manual_seed(0)
        elapsed, whitening = seconds(local_whitening, X, generator)
        line = f"n={n}: local_whitening {elapsed:.2f} s"
        if n <= 10_000:
            plain, _ = seconds(nearest_neighbors, X, 10, generator)
            whitened, _ = seconds(nearest_neighbors, X, 10, generator, whitening)
            line += f"; neighbour search {plain:.2f} s plain, {whitened:.2f} s whitened"
        print(line, flush=True)


if __name__ == "__main__":
    main()
