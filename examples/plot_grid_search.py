"""
=============================================
Tuning in a pipeline, with and without labels
=============================================

:class:`~sklearn_iic.IICClustering` is an ordinary scikit-learn estimator, so
it fits in a :class:`~sklearn.pipeline.Pipeline` after a
:class:`~sklearn.preprocessing.StandardScaler` and its parameters can be
tuned with :class:`~sklearn.model_selection.GridSearchCV`.

Without labels, ``GridSearchCV(...).fit(X)`` ranks the candidates by the
estimator's :meth:`~sklearn_iic.IICClustering.score`, the share
``I(z; z') / H(z)`` of the clustering's information that survives the
pairing, measured on the held-out fold. With labels,
``scoring="adjusted_rand_score"`` compares the clusters of the held-out fold
with the true classes instead.

The data are the 178 wines of :func:`~sklearn.datasets.load_wine`: 13
chemical measurements on very different scales, three cultivars.
"""

# %%
import os

import matplotlib.pyplot as plt
from sklearn.datasets import load_wine
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_iic import IICClustering

FAST = os.environ.get("SKLEARN_IIC_EXAMPLES_FAST") == "1"
n_epochs = 30 if FAST else 100

X, y = load_wine(return_X_y=True)
pipe = make_pipeline(
    StandardScaler(), IICClustering(n_clusters=3, n_epochs=n_epochs, random_state=0)
)
# The wines are sorted by class: shuffle before splitting into folds.
cv = KFold(n_splits=3, shuffle=True, random_state=0)

# %%
# Label-free search at a fixed number of clusters
# -----------------------------------------------
# The score is most trustworthy when comparing settings that keep both the
# number of clusters and the way pairs are made fixed: fewer clusters, or
# pairs that are easier to agree on (closer neighbours, weaker perturbations),
# raise it without making the clustering better. Here we keep three clusters
# and the default pairs, and tune the optimisation: the learning rate and the
# weight ``lamb`` of the balancing term of the loss.
grid = {
    "iicclustering__learning_rate": [1e-4, 1e-3, 1e-2],
    "iicclustering__lamb": [1.0, 1.5],
}
search = GridSearchCV(pipe, grid, cv=cv).fit(X)  # no y: uses IICClustering.score
print("best parameters without labels:", search.best_params_)
for params, mean, std in zip(
    search.cv_results_["params"],
    search.cv_results_["mean_test_score"],
    search.cv_results_["std_test_score"],
):
    print(
        f"learning_rate={params['iicclustering__learning_rate']:<7g} "
        f"lamb={params['iicclustering__lamb']:<4g} score {mean:.3f} +/- {std:.3f}"
    )

# %%
# Choosing the number of clusters, with and without labels
# --------------------------------------------------------
# We now vary ``n_clusters`` and score each value twice: label-free with
# ``score``, and against the cultivars with the adjusted Rand index.
k_grid = {"iicclustering__n_clusters": [2, 3, 4, 5, 6]}
unsupervised = GridSearchCV(pipe, k_grid, cv=cv).fit(X)
supervised = GridSearchCV(pipe, k_grid, cv=cv, scoring="adjusted_rand_score").fit(X, y)
print("n_clusters chosen by score:", unsupervised.best_params_)
print("n_clusters chosen by ARI:  ", supervised.best_params_)

ks = k_grid["iicclustering__n_clusters"]
fig, ax = plt.subplots(figsize=(7, 4))
for search_, label in [(unsupervised, "score: I(z; z') / H(z), no labels"),
                       (supervised, "adjusted Rand index, with labels")]:
    res = search_.cv_results_
    ax.errorbar(ks, res["mean_test_score"], yerr=res["std_test_score"],
                marker="o", capsize=3, label=label)
ax.axvline(3, color="grey", ls=":", label="number of cultivars")
ax.set_xticks(ks)
ax.set_xlabel("n_clusters")
ax.set_ylabel("mean held-out score (3 folds)")
ax.legend()
fig.tight_layout()
plt.show()

# %%
# Reading the curves
# ------------------
# The label-free score tends to favour fewer clusters: agreeing on a coarse
# partition is easier than on a fine one, so its maximum is not a reliable
# estimate of the number of classes. A sharp drop when one more cluster is
# added is a better hint. Where a few labelled samples exist, a labelled
# scorer such as the adjusted Rand index is the more dependable guide; where
# none exist, fix ``n_clusters`` from what you know about the data and use the
# score to tune the other parameters.
