"""Cluster scikit-learn's digits with IIC and with KMeans, and print both side by side.

Run: python examples/demo_digits.py
"""

import time

from sklearn.cluster import KMeans
from sklearn.datasets import load_digits
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from sklearn_iic import IICClustering
from sklearn_iic.metrics import clustering_accuracy

X, y = load_digits(return_X_y=True)
X = X / 16  # pixel intensities in [0, 1]

models = {
    "KMeans(n_init=10)": KMeans(n_clusters=10, n_init=10, random_state=0),
    "IICClustering": IICClustering(n_clusters=10, random_state=0),
}
print(f"digits: {X.shape[0]} samples x {X.shape[1]} features, 10 classes\n")
print(f"{'method':<20} {'ACC':>6} {'NMI':>6} {'ARI':>6} {'fit (s)':>8}")
for name, model in models.items():
    start = time.perf_counter()
    labels = model.fit_predict(X)
    seconds = time.perf_counter() - start
    print(
        f"{name:<20} {clustering_accuracy(y, labels):6.3f} "
        f"{normalized_mutual_info_score(y, labels):6.3f} "
        f"{adjusted_rand_score(y, labels):6.3f} {seconds:8.1f}"
    )
