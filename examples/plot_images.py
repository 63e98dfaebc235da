"""
==================================
Clustering digits given as images
==================================

The digits of :func:`~sklearn.datasets.load_digits` are 8x8 grey-level images.
Passed as an array of shape ``(n_samples, 8, 8)``,
:class:`~sklearn_iic.IICClustering` treats them as images: it trains the
default convolutional network (:class:`~sklearn_iic.ConvNet`) and pairs every
image with a randomly perturbed copy of itself: random geometric changes,
intensity changes and noise (the exact recipe is printed below).

This example shows what such perturbed pairs look like, then shows the
clusters found by looking at a few members of each.
"""

# %%
# Data
# ----
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import load_digits

from sklearn_iic import IICClustering
from sklearn_iic.metrics import clustering_accuracy
from sklearn_iic.perturbations import default_perturbation

X, y = load_digits(return_X_y=True)
images = X.reshape(-1, 8, 8) / 16  # (n_samples, height, width), values in [0, 1]
print(images.shape)

# %%
# Perturbed pairs
# ---------------
# With ``perturbation="auto"`` and image input the estimator pairs each image
# ``x`` with ``g(x)``, where ``g`` is the perturbation below. It is an ordinary
# callable ``g(x, generator)`` on a batch of shape ``(n, channels, height,
# width)``; all its randomness comes from the :class:`torch.Generator`, so the
# same seed gives the same perturbed images. Each call draws new parameters
# for every image.
g = default_perturbation(kind="image")
print(g)

generator = torch.Generator().manual_seed(0)
batch = torch.tensor(images[:6], dtype=torch.float32).unsqueeze(1)  # add a channel axis
n_draws = 5
draws = [g(batch, generator) for _ in range(n_draws)]

fig, axes = plt.subplots(len(batch), n_draws + 1, figsize=(7, 7.5))
for i in range(len(batch)):
    axes[i, 0].imshow(batch[i, 0], cmap="gray_r", vmin=0, vmax=1)
    for j, draw in enumerate(draws, start=1):
        axes[i, j].imshow(draw[i, 0], cmap="gray_r", vmin=0, vmax=1)
for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
axes[0, 0].set_title("x")
for j in range(1, n_draws + 1):
    axes[0, j].set_title(f"g(x), draw {j}", fontsize=9)
fig.suptitle("Each digit and independent draws of its perturbed pair")
fig.tight_layout()

# %%
# What survives these perturbations is the shape of the stroke, so the
# network is pushed towards clusters that depend on the shape and not on the
# exact position, size or darkness of the digit.
#
# Clustering
# ----------
# A default fit, in every build of this page (55 epochs here, seconds on a
# CPU): the clusters shown are those the estimator gives.
iic = IICClustering(n_clusters=10, random_state=0)
labels = iic.fit_predict(images)
print(f"input shape seen by the network: {iic.input_shape_}")
print(f"ACC against the true digits: {clustering_accuracy(y, labels):.3f}")

# %%
# Members of each cluster
# -----------------------
# Each row shows randomly chosen members of one cluster, with the cluster's
# size and its most common true digit. Clusters are numbered by decreasing
# size.
rng = np.random.default_rng(0)
n_show = 12
fig, axes = plt.subplots(iic.n_clusters, n_show, figsize=(8, 7.5))
for cluster in range(iic.n_clusters):
    members = np.flatnonzero(labels == cluster)
    chosen = rng.choice(members, size=min(n_show, len(members)), replace=False)
    for j in range(n_show):
        ax = axes[cluster, j]
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_frame_on(False)
        if j < len(chosen):
            ax.imshow(images[chosen[j]], cmap="gray_r", vmin=0, vmax=1)
    if len(members):
        majority = np.bincount(y[members]).argmax()
        share = np.mean(y[members] == majority)
        axes[cluster, 0].set_ylabel(
            f"{cluster}: n={len(members)}\n{share:.0%} are {majority}",
            rotation=0, ha="right", va="center", fontsize=8,
        )
fig.suptitle("Random members of each IIC cluster")
fig.tight_layout()
plt.show()
