"""Starting the cluster heads from k-means partitions of their hidden features.

Trained from random weights, a head of ``n_clusters`` outputs on many
separated blobs settles in a partition that joins two blobs and splits a
third, and IIC's loss does not leave it: moving a blob across passes through
worse partitions. Started from k-means in its own hidden space, with its
last layer set so that each output's logit is minus the squared distance to
a centroid, the head keeps a partition that k-means finds where k-means is
right, and training then moves it by the pairs (docs/benchmarks.rst,
"Cluster heads started from k-means").
"""

import math

import torch

# k-means runs per sub-head, the one of least inertia kept: one run joined
# two of 20 blobs on some sub-heads, five did not (docs/benchmarks.rst,
# "Cluster heads started from k-means").
_N_INIT = 5
# Lloyd iterations of each run.
_ITERATIONS = 20
# Rows k-means runs on, drawn at random: its cost stays bounded on large
# data, and the centroids of a few thousand rows place the heads' start.
_MAX_ROWS = 2048
# Logits per unit of the median gap between a row's nearest and second
# nearest centroid: softmax probabilities neither flat (the start lost) nor
# saturated (no gradient).
_LOGIT_GAP = 2.0


def kmeans_plusplus(h, n_clusters, generator):
    """Greedy k-means++ seeding of ``n_clusters`` centroids among the rows of ``h``.

    Each new centroid is the best of ``2 + ln(n_clusters)`` rows drawn with
    probability proportional to their squared distance to the nearest
    centroid so far, as scikit-learn's :func:`~sklearn.cluster.kmeans_plusplus`.
    """
    n_rows = h.shape[0]
    first = torch.randint(n_rows, (1,), generator=generator, device=h.device)
    centers = [h[first[0]]]
    nearest = (h - centers[0]).square().sum(dim=1)
    n_candidates = 2 + int(math.log(n_clusters))
    norms = squared_norms(h)
    for _ in range(1, n_clusters):
        weights = nearest if nearest.sum() > 0 else torch.ones_like(nearest)
        candidates = torch.multinomial(weights, n_candidates, replacement=True,
                                       generator=generator)
        distances = torch.minimum(
            nearest, squared_distances(h[candidates], h, norms[candidates], norms)
        )
        best = int(distances.sum(dim=1).argmin())
        centers.append(h[candidates[best]])
        nearest = distances[best]
    return torch.stack(centers)


def lloyd(h, centers, n_iterations=_ITERATIONS):
    """Centroids after at most ``n_iterations`` of Lloyd's algorithm, and their inertia.

    Stops early when no row changes centroid; a centroid left without rows
    stays where it was.
    """
    norms, labels = squared_norms(h), None
    for _ in range(n_iterations):
        previous, labels = labels, squared_distances(h, centers, norms).argmin(dim=1)
        if previous is not None and torch.equal(previous, labels):
            break
        sums = torch.zeros_like(centers).index_add_(0, labels, h)
        counts = torch.bincount(labels, minlength=centers.shape[0])
        centers = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centers)
    inertia = squared_distances(h, centers, norms).min(dim=1).values.sum()
    return centers, inertia


def squared_norms(x):
    """The squared Euclidean norm of each row of ``x``."""
    return x.square().sum(dim=1)


def squared_distances(a, b, norms_a=None, norms_b=None):
    """Squared Euclidean distances between the rows of ``a`` and ``b``, by one matrix product.

    ``norms_a`` and ``norms_b``: the rows' squared norms, when known.
    """
    norms_a = squared_norms(a) if norms_a is None else norms_a
    norms_b = squared_norms(b) if norms_b is None else norms_b
    return torch.addmm(norms_b[None, :], a, b.T, alpha=-2).add_(norms_a[:, None]).clamp_(min=0)


def kmeans(h, n_clusters, generator, n_init=_N_INIT):
    """Centroids of the least inertia over ``n_init`` runs of k-means++ and Lloyd's algorithm."""
    runs = [lloyd(h, kmeans_plusplus(h, n_clusters, generator)) for _ in range(n_init)]
    return min(runs, key=lambda run: float(run[1]))[0]


@torch.no_grad()
def start_cluster_heads(mlp, X, n_heads, n_clusters, generator, transform=None):
    """Set ``mlp``'s last layer so that each of its ``n_heads`` heads starts as a k-means partition.

    ``mlp`` (a :class:`~sklearn_iic._networks.MLP`) outputs the ``n_heads``
    heads of ``n_clusters`` logits side by side, and sees the rows of ``X``
    mapped by ``transform`` (such as a :class:`~sklearn_iic.Whitening`;
    applied to the rows drawn only). Each head gets its own k-means of the
    hidden features of at most ``_MAX_ROWS`` rows drawn at random, and
    logits ``-|h - c|^2 / (2 t)`` up to a
    constant per row, so that its argmax is the nearest centroid ``c``; ``t``
    sets the median gap between a row's two largest logits to ``_LOGIT_GAP``
    (over rows where they differ; a head whose centroids all coincide keeps
    its random start).
    """
    if n_clusters < 2:
        return  # one output: its softmax is 1 whatever the weights
    if X.shape[0] > _MAX_ROWS:
        X = X[torch.randperm(X.shape[0], generator=generator, device=X.device)[:_MAX_ROWS]]
    h = mlp.hidden_features(X if transform is None else transform(X))
    last = mlp[-1]
    for head in range(n_heads):
        centers = kmeans(h, n_clusters, generator)
        two = squared_distances(h, centers).topk(2, dim=1, largest=False).values
        gaps = two[:, 1] - two[:, 0]
        if not (gaps > 0).any():
            continue  # centroids all alike (fewer distinct rows than clusters): no start
        scale = 2 * _LOGIT_GAP / gaps[gaps > 0].median()
        rows = slice(head * n_clusters, (head + 1) * n_clusters)
        last.weight[rows] = centers * scale
        last.bias[rows] = -0.5 * scale * centers.square().sum(dim=1)
