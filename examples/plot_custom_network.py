"""
========================
Using your own network
========================

:class:`~sklearn_iic.IICClustering` builds its network by calling
``network(input_shape, n_outputs)``, so any :class:`torch.nn.Module` subclass
with that constructor signature can be passed as ``network=``:

* ``input_shape`` is the number of features for feature vectors, or
  ``(channels, height, width)`` for images;
* ``n_outputs`` is the number of logits the network must return per sample.
  The estimator splits them into its cluster heads: it equals the
  clusters of the main head (by default ``max(50, 5 * n_clusters)``
  micro-clusters for feature vectors and ``n_clusters`` for images) times
  ``n_subheads`` (twice that on images, whose prior heads follow the
  main heads), plus the overclustering heads if any (on images, one head of
  ``max(50, 5 * n_clusters)`` micro-clusters to read the size prior from).

The network must return raw logits (the softmax belongs to the estimator).
Here we write a small convolutional network for the 8x8 digits and compare
it with the default :class:`~sklearn_iic.ConvNet` and with a narrower
:class:`~sklearn_iic.MLP`, passed as a factory.
"""

# %%
import functools
import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from torch import nn

from sklearn_iic import MLP, IICClustering
from sklearn_iic.metrics import clustering_accuracy

FAST = os.environ.get("SKLEARN_IIC_EXAMPLES_FAST") == "1"
n_epochs = 15 if FAST else 100

X, y = load_digits(return_X_y=True)
images = X.reshape(-1, 8, 8) / 16


# %%
# The network
# -----------
# Two convolutional blocks, the second after a 2x2 max-pooling, then a hidden
# linear layer and the output layer of heads. Define such classes at module
# level, so that fitted estimators can be pickled.
class SmallCNN(nn.Module):
    """conv, pool, conv, a hidden linear layer, and a linear layer of heads."""

    def __init__(self, input_shape, n_outputs, width=16, hidden=128):
        super().__init__()
        channels, height, width_px = input_shape
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(2 * width * (height // 2) * (width_px // 2), hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
        )
        self.heads = nn.Linear(hidden, n_outputs)

    def forward(self, x):
        return self.heads(self.features(x))


# %%
# Fitting
# -------
# A class is passed as is; constructor arguments other than the two above can
# be bound with :func:`functools.partial`, as done here for a narrower
# :class:`~sklearn_iic.MLP`. An MLP expects flat feature vectors, so it is
# given the flat rows ``X / 16``, while the convolutional networks get the
# ``(n, 8, 8)`` images. Three sub-heads are trained for each model; the one
# with the lowest loss on the training pairs gives the labels (on images, as
# many prior heads compete too: the user guide's "Cluster sizes"). On feature
# vectors the class is called twice: once for the heads of micro-clusters,
# once for the heads of ``n_clusters`` trained beside them (the user guide's
# "Cluster heads beside the micro-clusters"), so the MLP's parameter count
# covers both networks.
models = {
    "SmallCNN (images)": (
        IICClustering(
            n_clusters=10, network=SmallCNN, n_subheads=3,
            n_epochs=n_epochs, random_state=0,
        ),
        images,
    ),
    "default ConvNet (images)": (
        IICClustering(n_clusters=10, n_subheads=3, n_epochs=n_epochs, random_state=0),
        images,
    ),
    "MLP(hidden=(64,)) (flat)": (
        IICClustering(
            n_clusters=10, network=functools.partial(MLP, hidden_layer_sizes=(64,)),
            n_subheads=3, n_epochs=n_epochs, random_state=0,
        ),
        X / 16,
    ),
}
for name, (model, data) in models.items():
    model.fit(data)
    print(
        f"{name:26s} ACC {clustering_accuracy(y, model.labels_):.3f}  "
        f"best sub-head {model.best_head_}  "
        f"parameters {sum(p.numel() for p in model.network_.parameters())}"
    )

custom = models["SmallCNN (images)"][0]
print(custom.network_.heads)  # 10 clusters x 3 sub-heads = 30 logits

# %%
# Feature vectors are whitened by default (``whiten="auto"``, see the user
# guide): the MLP's ``network_`` is the fixed whitening map followed by the
# trained MLP, so it still takes the rows as given.
print(models["MLP(hidden=(64,)) (flat)"][0].network_.whitening)

# %%
# Training curves
# ---------------
# ``loss_curve_`` holds the mean loss of the main sub-heads in each epoch.
fig, ax = plt.subplots(figsize=(7, 4))
for name, (model, _) in models.items():
    ax.plot(np.arange(1, model.n_iter_ + 1), model.loss_curve_, label=name)
ax.set_xlabel("epoch")
ax.set_ylabel("IIC loss")
ax.legend()
fig.tight_layout()

# %%
# Mean image of each cluster
# --------------------------
# The average of the images in each cluster found with ``SmallCNN``, with the
# cluster size.
fig, axes = plt.subplots(1, 10, figsize=(10, 1.8))
for cluster, ax in enumerate(axes):
    members = custom.labels_ == cluster
    if members.any():
        ax.imshow(images[members].mean(axis=0), cmap="gray_r")
    ax.set_title(f"n={members.sum()}", fontsize=8)
    ax.set_axis_off()
fig.tight_layout()
plt.show()

# %%
# Passing an instance
# -------------------
# A :class:`torch.nn.Module` *instance* works too. It is deep-copied before
# training, so the instance you pass stays untouched, and it must already
# return ``n_outputs`` logits: here 10 clusters trained directly (no
# micro-clusters to merge) times 1 sub-head, without overclustering.
instance = SmallCNN((1, 8, 8), 10)
iic = IICClustering(
    n_clusters=10, network=instance, n_microclusters=None, n_subheads=1,
    overclustering=0, n_epochs=2, random_state=0,
)
iic.fit(images)
print(iic.network_ is instance)
