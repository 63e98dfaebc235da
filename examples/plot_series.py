"""
==========================
Clustering time series
==========================

Series whose classes differ in *shape*, wherever that shape occurs in time,
defeat clusterers that compare series point by point: two bumps shifted by a
quarter of their length are far apart in Euclidean distance. Given series,
:class:`~sklearn_iic.IICClustering` trains a 1-D convolutional network
(:class:`~sklearn_iic.ConvNet1d`, pooled over time) on pairs of randomly
shifted, warped, rescaled and noised copies of each series, so the clusters
it learns ignore exactly those changes.

Series are given in the ``(n_cases, n_channels, n_timepoints)`` layout of
aeon, sktime and tslearn, with ``input_kind="series"``. The estimator first
checks that shifts are an invariance of the data (shifted series lie as near
other series as neighbours do, as here); series aligned in time would be
compared time point by time point instead.
"""

# %%
# Data
# ----
# :func:`~sklearn_iic.datasets.make_shifted_waveforms` draws three waveforms
# (a bump, a pulse and a ramp), each rolled by a random shift and scaled.
import os

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from sklearn_iic import IICClustering
from sklearn_iic.datasets import make_shifted_waveforms
from sklearn_iic.perturbations import default_perturbation

FAST = os.environ.get("SKLEARN_IIC_EXAMPLES_FAST") == "1"
n_epochs = 40 if FAST else "auto"

X, y = make_shifted_waveforms(n_samples=300, random_state=0)
print(X.shape)  # (n_cases, n_channels, n_timepoints)

# %%
# Perturbed pairs
# ---------------
# The default perturbation for series, a callable ``g(x, generator)`` on a
# batch of shape ``(n, channels, length)``. On series both members of a
# training pair are perturbed, with independent draws.
g = default_perturbation(kind="series")
print(g)

batch = torch.tensor(X[:1], dtype=torch.float32).repeat(4, 1, 1)
draws = g(batch, torch.Generator().manual_seed(0))
fig, ax = plt.subplots(figsize=(7, 2.5))
ax.plot(X[0, 0], color="black", linewidth=2, label="x")
for draw in draws:
    ax.plot(draw[0], linewidth=0.8, alpha=0.8)
ax.set_title("A series (black) and four draws of g(x)")
ax.legend(loc="upper right")
fig.tight_layout()

# %%
# Clustering
# ----------
iic = IICClustering(n_clusters=3, input_kind="series", n_epochs=n_epochs, random_state=0)
labels = iic.fit_predict(X)
kmeans = KMeans(n_clusters=3, n_init=10, random_state=0).fit_predict(X[:, 0])
print(f"network: {type(iic.network_).__name__}, input shape {iic.input_shape_}")
print(f"ARI, IICClustering: {adjusted_rand_score(y, labels):.3f}")
print(f"ARI, KMeans on the raw series: {adjusted_rand_score(y, kmeans):.3f}")

# %%
# Series coloured by cluster, and prototypes
# ------------------------------------------
# Each panel holds the series of one cluster; the thick line is the cluster's
# prototype, the member the network assigns to it most confidently. KMeans's
# clusters, below, mix the three waveforms: its centroids average series
# shifted every which way.
confidence = iic.predict_proba(X).max(axis=1)
colors = plt.cm.tab10.colors
fig, axes = plt.subplots(2, 3, figsize=(9, 5), sharex=True, sharey=True)
for row, (name, found) in enumerate([("IICClustering", labels), ("KMeans", kmeans)]):
    for cluster in range(3):
        ax = axes[row, cluster]
        members = np.flatnonzero(found == cluster)
        for i in members[:40]:
            ax.plot(X[i, 0], color=colors[y[i]], linewidth=0.5, alpha=0.5)
        if name == "IICClustering" and len(members):
            prototype = members[np.argmax(confidence[members])]
            ax.plot(X[prototype, 0], color="black", linewidth=2)
        ax.set_title(f"{name}, cluster {cluster} ({len(members)})", fontsize=9)
fig.suptitle("Members of each cluster, coloured by their true waveform")
fig.tight_layout()
plt.show()
