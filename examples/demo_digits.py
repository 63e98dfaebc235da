"""Cluster scikit-learn's digits with IIC and with KMeans, and print both side by side.

IIC runs on the 64 pixels as a feature vector (neighbour pairs with noise;
50 micro-clusters merged into 10), by default and with the merge that
favours clusters of equal size (``linkage="information"``: digits' ten
classes are equally large), and on the same data given as 8x8 images, where
its default image perturbations (small rotations, shifts, intensity
changes) teach it what a digit is invariant to.

Run: python examples/demo_digits.py
(CI runs it with SKLEARN_IIC_EXAMPLES_FAST=1: a few epochs, to check that it runs.)
"""

import os
import time

from sklearn.cluster import KMeans
from sklearn.datasets import load_digits
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from sklearn_iic import IICClustering
from sklearn_iic.metrics import clustering_accuracy

X, y = load_digits(return_X_y=True)
X = X / 16  # pixel intensities in [0, 1]

n_epochs = 3 if os.environ.get("SKLEARN_IIC_EXAMPLES_FAST") == "1" else "auto"
runs = {
    "KMeans(n_init=10)": (KMeans(n_clusters=10, n_init=10, random_state=0), X),
    "IIC, 64 features": (IICClustering(n_clusters=10, n_epochs=n_epochs, random_state=0), X),
    "  equal sizes": (
        IICClustering(n_clusters=10, linkage="information", n_epochs=n_epochs, random_state=0),
        X,
    ),
    "IIC, 8x8 images": (
        IICClustering(n_clusters=10, n_epochs=n_epochs, random_state=0),
        X.reshape(-1, 8, 8),
    ),
}
print(f"digits: {X.shape[0]} samples x {X.shape[1]} features, 10 classes\n")
print(f"{'method':<20} {'ACC':>6} {'NMI':>6} {'ARI':>6} {'fit (s)':>8}")
for name, (model, data) in runs.items():
    start = time.perf_counter()
    labels = model.fit_predict(data)
    seconds = time.perf_counter() - start
    print(
        f"{name:<20} {clustering_accuracy(y, labels):6.3f} "
        f"{normalized_mutual_info_score(y, labels):6.3f} "
        f"{adjusted_rand_score(y, labels):6.3f} {seconds:8.1f}"
    )
