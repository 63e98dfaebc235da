"""
==================
Training curves
==================

After fitting, ``loss_curve_`` holds the mean IIC loss of the main sub-heads
in each epoch. With ``lamb=1`` the loss is minus the mutual information
between the clusters of the two members of a pair, so it lies between
:math:`-\\ln k` (balanced clusters on which every pair agrees) and 0 (no shared
information). Plotting it is the quickest way to see whether training has
converged and whether a setting learns at all.

We fit the digits (flattened, ``X / 16``) with a few settings: three
learning rates, and the three ways of making pairs.
"""

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits

from sklearn_iic import IICClustering
from sklearn_iic.metrics import clustering_accuracy

FAST = os.environ.get("SKLEARN_IIC_EXAMPLES_FAST") == "1"
n_epochs = 15 if FAST else 100

X, y = load_digits(return_X_y=True)
X = X / 16
k = 10


def fit(**params):
    """Fit with lamb=1, so that the loss is -I(z; z') and comparable."""
    model = IICClustering(
        n_clusters=k, lamb=1.0, n_epochs=n_epochs, random_state=0, **params
    ).fit(X)
    print(f"{params}: ACC {clustering_accuracy(y, model.labels_):.3f}, "
          f"final loss {model.loss_curve_[-1]:.3f}")
    return model


settings = {
    "learning rate": {f"learning_rate={lr:g}": dict(learning_rate=lr)
                      for lr in (1e-4, 1e-3, 1e-2)},
    "pairs": {f'pairs="{pairs}"': dict(pairs=pairs)
              for pairs in ("perturbation", "neighbors", "both")},
}
models = {
    panel: {label: fit(**params) for label, params in runs.items()}
    for panel, runs in settings.items()
}

# %%
# The curves
# ----------
# The dotted line is the lowest possible loss, :math:`-\ln 10`.
fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
for ax, (panel, runs) in zip(axes, models.items()):
    for label, model in runs.items():
        acc = clustering_accuracy(y, model.labels_)
        ax.plot(np.arange(1, model.n_iter_ + 1), model.loss_curve_,
                label=f"{label} (ACC {acc:.2f})")
    ax.axhline(-np.log(k), color="black", ls=":")
    ax.set_title(f"varying the {panel}")
    ax.set_xlabel("epoch")
    ax.legend(fontsize=8)
axes[0].set_ylabel("IIC loss (lamb=1)")
fig.tight_layout()
plt.show()

# %%
# Reading the curves
# ------------------
# * A curve that is still falling steeply at the last epoch asks for more
#   ``n_epochs`` (or a larger ``learning_rate``); one that has been flat for
#   many epochs has converged.
# * Losses are strictly comparable only between fits that make pairs the
#   same way: how low a curve can go depends on how hard its pairs are to
#   agree on (a lightly perturbed copy is easier than a distinct neighbour),
#   not only on the quality of the clusters. The accuracy in the legend, which
#   uses the labels, tells the two apart; without labels, see the user guide
#   on choosing settings.
# * With ``lamb`` above 1 the loss includes extra entropy terms and can go
#   below :math:`-\ln k`; compare such curves only with each other.
