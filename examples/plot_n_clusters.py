"""
====================================================
Choosing the number of clusters from the merge tree
====================================================

With ``n_clusters="auto"``, :class:`~sklearn_iic.IICClustering` trains its
network once, on 50 micro-clusters, merges them two at a time into a tree,
and cuts the tree where the next merge would join groups that the pairs
connect far less than the merges before it. The tree is fitted state
(``children_`` and ``distances_``, as
:class:`~sklearn.cluster.AgglomerativeClustering` exposes them), so labels
at any other number of clusters come from the same fit with
:meth:`~sklearn_iic.IICClustering.predict_at`, without retraining.

The data: five Gaussian blobs of very unequal sizes (1,000 down to 40
points) in 8 dimensions, whose number is not given to the estimator.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from scipy.cluster.hierarchy import dendrogram
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from sklearn_iic import IICClustering

X, y = make_blobs([1000, 400, 200, 100, 40], n_features=8, random_state=3)
iic = IICClustering(n_clusters="auto", random_state=0).fit(X)
print(f"clusters chosen: {iic.n_clusters_} (true: 5)")
print(f"sizes: {np.bincount(iic.labels_)}")
print(f"ARI: {adjusted_rand_score(y, iic.labels_):.3f}")

# %%
# The merge tree
# --------------
# ``children_`` and ``distances_`` form a SciPy linkage matrix once the
# number of micro-clusters below each node is added. The distance of a merge
# is minus the logarithm of the lift of the two groups: how much more (below
# zero) or less (above zero) often pairs join them than chance would, kept
# non-decreasing up the tree. The last merges join groups that pairs never
# join; their distance is capped at ``-log(eps)``, about 36. SciPy draws
# only non-negative heights, so the tree is drawn from its lowest merge up.
n_leaves = iic.n_microclusters_
counts = np.ones(2 * n_leaves - 1)
for step, (a, b) in enumerate(iic.children_):
    counts[n_leaves + step] = counts[a] + counts[b]
heights = iic.distances_ - iic.distances_.min()
linkage = np.column_stack([iic.children_, heights, counts[n_leaves:]])

fig, ax = plt.subplots(figsize=(6, 4))
dendrogram(linkage, ax=ax, no_labels=True, color_threshold=heights[-iic.n_clusters_])
ax.set_title("Merge tree of the 50 micro-clusters")
ax.set_ylabel("-log(lift) of the merge, from the lowest")

# %%
# The criterion against the number of clusters
# --------------------------------------------
# Cutting into ``k`` groups leaves the merge that would make ``k - 1`` as the
# next one; the rule looks at how far its distance rises above the merge
# before it, among merges of groups paired less often than chance, and keeps
# the most groups whose rise is at least half the largest.
ks = np.arange(2, 11)
rise = iic.distances_[n_leaves - ks] - iic.distances_[n_leaves - ks - 1]
fig, ax = plt.subplots(figsize=(6, 4))
ax.bar(ks, rise, color=["C3" if k == iic.n_clusters_ else "C0" for k in ks])
ax.set_xlabel("number of clusters k")
ax.set_ylabel("rise of -log(lift) at the next merge")
ax.set_title(f"k = {iic.n_clusters_} chosen")

# %%
# Labels at other numbers of clusters, from the same fit
# ------------------------------------------------------
for k in (2, 3, 4, 5, 6):
    labels = iic.predict_at(X, k)
    sizes = np.bincount(labels, minlength=k)
    print(f"k={k}: sizes {sizes}, ARI {adjusted_rand_score(y, labels):.3f}")

plt.show()
