"""
==========================================
Quickstart: IIC and KMeans on the digits
==========================================

Cluster scikit-learn's 8x8 handwritten digits with
:class:`~sklearn_iic.IICClustering` and with :class:`~sklearn.cluster.KMeans`,
then look at the result two ways: a 2-D t-SNE embedding coloured by cluster,
and the confusion matrix of clusters against the true digits after matching
each cluster to one digit.

The labels are used only for evaluation, never for fitting.
"""

# %%
# Data and models
# ---------------
# Pixel intensities run from 0 to 16; dividing by 16 puts every feature on the
# same [0, 1] scale, which suits both methods. Both are fitted with their
# default parameters: a default IIC fit of the digits (100 epochs) takes
# seconds. ``SKLEARN_IIC_EXAMPLES_FAST=1`` (how the documentation is built)
# shortens only the t-SNE embedding below, never the training, so the
# clusters shown are those of a default fit.
import os

import matplotlib.pyplot as plt
import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits
from sklearn.manifold import TSNE
from sklearn.metrics import adjusted_rand_score, confusion_matrix

from sklearn_iic import IICClustering
from sklearn_iic.metrics import clustering_accuracy

FAST = os.environ.get("SKLEARN_IIC_EXAMPLES_FAST") == "1"

X, y = load_digits(return_X_y=True)
X = X / 16

iic = IICClustering(n_clusters=10, random_state=0)
kmeans = KMeans(n_clusters=10, n_init=10, random_state=0)
labels = {"IIC": iic.fit_predict(X), "KMeans": kmeans.fit_predict(X)}

for name, pred in labels.items():
    print(
        f"{name:7s} ACC {clustering_accuracy(y, pred):.3f}  "
        f"ARI {adjusted_rand_score(y, pred):.3f}"
    )
print(f"IIC label-free score I(z; z') / H(z): {iic.score(X):.3f}")

# %%
# A 2-D view of the clusters
# --------------------------
# t-SNE places similar digits close together; each point is coloured by the
# cluster a method assigned it to. Colours are arbitrary cluster ids, so they
# need not match between the two panels.
embedding = TSNE(
    n_components=2, init="pca", max_iter=250 if FAST else 1000, random_state=0
).fit_transform(X)

fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), sharex=True, sharey=True)
for ax, (name, pred) in zip(axes, labels.items()):
    ax.scatter(embedding[:, 0], embedding[:, 1], c=pred, cmap="tab10", s=6)
    ax.set_title(f"{name} clusters (ACC {clustering_accuracy(y, pred):.2f})")
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("t-SNE embedding of the digits, coloured by cluster")
fig.tight_layout()

# %%
# Confusion matrices after matching clusters to digits
# ----------------------------------------------------
# Cluster ids are arbitrary, so before comparing them with the digits we find
# the one-to-one matching of clusters to digits that agrees with the most
# samples (the Hungarian algorithm, :func:`scipy.optimize.linear_sum_assignment`).
# This is the same matching that
# :func:`~sklearn_iic.metrics.clustering_accuracy` uses; the diagonal then
# holds the correctly clustered samples.


def matched_confusion(y_true, y_pred):
    """Confusion matrix with the clusters reordered to match the classes."""
    table = confusion_matrix(y_true, y_pred)  # rows: digits, columns: clusters
    rows, cols = linear_sum_assignment(table, maximize=True)
    order = cols[np.argsort(rows)]
    return table[:, order]


fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
for ax, (name, pred) in zip(axes, labels.items()):
    table = matched_confusion(y, pred)
    ax.imshow(table, cmap="Blues")
    for i, j in np.ndindex(table.shape):
        if table[i, j]:
            colour = "white" if table[i, j] > table.max() / 2 else "black"
            ax.text(j, i, table[i, j], ha="center", va="center", fontsize=7, color=colour)
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("cluster (matched to a digit)")
    ax.set_ylabel("true digit")
    ax.set_title(f"{name}, ACC {clustering_accuracy(y, pred):.3f}")
fig.tight_layout()
plt.show()

# %%
# Where to go next
# ----------------
# The digits are also 8x8 images; :ref:`sphx_glr_auto_examples_plot_images.py`
# clusters them as images, with a convolutional network and image
# perturbations. The :ref:`user guide <user_guide>` explains the parameters.
