"""Merging micro-clusters into clusters, choosing the sub-head, and numbering the clusters.

Everything between the trained network's pair joints and the labels: the
merge tree and its cuts, the number of clusters read from the tree, the
one-hot merge matrix and the merged joint, the label-free choice of the
sub-head and of the partition, and renumbering clusters by size.
"""

import numpy as np
import torch

from ._loss import _EPS, loss_from_joint, normalized_mutual_information

# n_clusters="auto" keeps the most groups whose next merge costs at least this
# share of the largest rise in -log(lift) between consecutive merges (see
# n_clusters_from_tree).
_GAP_SHARE = 0.5

# Rows of the (k, k, k) tensor of the information merge built at once: bounds
# its memory at about 64 MiB of float64 for any number of micro-clusters.
_CHUNK_VALUES = 2**23

# The cluster heads label only when their normalised cut is below this share
# of the merged micro-clusters' (see cluster_head_labels): on the tuning
# sets, separated blobs gave the heads a share below a third, long-tailed
# iris about a half with the heads' labels far worse, and the real tables
# mostly near 1 (docs/benchmarks.rst, "Cluster heads: design and cost";
# the "cut ratio" columns of docs/benchmarks/blob_grid.md, real_tables.md).
_HEAD_CUT_SHARE = 0.4

# A prior head labels when the share of its clusters' entropy that pairs
# explain beats the equal-size heads' by more than this: on balanced digits
# and MNIST the prior heads' lead stayed below it, on long-tailed ones it
# mostly passed it (docs/benchmarks.rst, "Cluster sizes on images").
_PRIOR_MARGIN = 0.01

# Below this, a product of marginals or a group's pairs within itself count
# as zero; the lift of groups never paired is clipped at the loss's machine
# epsilon, _EPS.
_TINY = np.finfo(np.float64).tiny


def merge_tree(joint, linkage="cosine"):
    """Agglomerate the clusters of a symmetric pair joint into one, two at a time.

    With ``linkage="cosine"``, at each step the two groups that pair with
    each other most often relative to how often each pairs within itself are
    merged: those of the largest cosine ``P(G, H) / sqrt(P(G, G) P(H, H))``
    of the pair joint summed over their micro-clusters. The cosine does not
    grow with the balance of the groups, as the mutual information of the
    partition does, nor with how small they are, as the lift
    ``P(G, H) / (P(G) P(H))`` does (a few pairs from a small group into a
    large one are many relative to chance): a group that pairs mostly within
    itself stays apart, whatever its size.

    With ``linkage="information"``, the two groups whose union loses the
    least mutual information ``I(z; z')`` of the joint are merged (the
    agglomerative information bottleneck). The mutual information contains
    the entropy of the cluster sizes, so this merge prefers groups of equal
    size: it suits clusters known to be about equally large.

    Ties go to the lowest indices, so the tree is deterministic. Each merge's
    height is how rarely the two groups pair relative to chance,
    ``-log(lift)`` (minus their pointwise mutual information), kept
    non-decreasing up the tree: a node is at least as high as the merges
    below it, as a dendrogram draws it.

    Parameters
    ----------
    joint : array-like of shape (k, k)
        Symmetric joint distribution of the micro-clusters of paired samples,
        summing to one (as made by ``normalize_joint``).
    linkage : {"cosine", "information"}, default="cosine"
        Which two groups each step merges.

    Returns
    -------
    children : ndarray of shape (k - 1, 2)
        The two nodes merged at each step, numbered as in
        :class:`~sklearn.cluster.AgglomerativeClustering`: ``i < k`` is
        micro-cluster ``i``, ``k + j`` the group made at step ``j``.
    distances : ndarray of shape (k - 1,)
        Height of each merge, ``-log(lift)`` (non-decreasing); groups never
        paired get ``-log(eps)`` (about 36) rather than infinity.
    """
    P = np.array(joint, dtype=np.float64)
    k = P.shape[0]
    mass = P.sum(axis=1)
    node = np.arange(k)
    children = np.empty((k - 1, 2), dtype=np.intp)
    lifts = np.empty(k - 1)
    for step, (a, b) in enumerate(_LINKAGES[linkage](P.copy())):
        children[step] = node[a], node[b]
        lifts[step] = P[a, b] / max(mass[a] * mass[b], _TINY)
        P[a] += P[b]
        P[:, a] += P[:, b]
        mass[a] += mass[b]
        node[a] = k + step
    return children, np.maximum.accumulate(-np.log(np.maximum(lifts, _EPS)))


def _cosine_merges(P):
    """Rows ``(a, b)``, ``a < b``, merged at each step by the cosine (b joins a). Changes ``P``."""
    k = P.shape[0]
    active = np.ones(k, dtype=bool)
    scale = np.sqrt(np.maximum(np.diag(P), _TINY))
    cosine = P / np.outer(scale, scale)
    # Each unordered pair once, in the upper triangle.
    cosine[np.tril_indices(k)] = -np.inf
    for _ in range(k - 1):
        a, b = np.unravel_index(np.argmax(cosine), cosine.shape)
        yield a, b
        P[a] += P[b]
        P[:, a] += P[:, b]
        active[b] = False
        scale[a] = np.sqrt(max(P[a, a], _TINY))
        row = np.where(active, P[a] / (scale[a] * scale), -np.inf)
        row[a] = -np.inf
        cosine[a, a + 1 :] = row[a + 1 :]
        cosine[:a, a] = row[:a]
        cosine[b, :] = cosine[:, b] = -np.inf


def _xlogx(x):
    return x * np.log(np.where(x > 0, x, 1.0))


def _pairwise_xlogx_sums(P, rows):
    """``S[a, b] = sum_j xlogx(P[a, j] + P[b, j])`` for ``a`` in ``rows``."""
    return _xlogx(P[rows, None, :] + P[None, :, :]).sum(axis=2)


def _information_merges(P):
    """Rows ``(a, b)``, ``a < b``, merged at each step by the least loss of ``I(z; z')``.

    Changes ``P``. The mutual information changes only through the merged
    rows and columns, so the loss of every candidate merge is kept up to date
    in ``O(k^2)`` per step, ``O(k^3)`` in all.
    """
    k = P.shape[0]
    # I(z; z') = sum xlogx(P) - 2 sum xlogx(marginal) for a symmetric joint;
    # the loss of merging a and b follows from the row sums of xlogx of
    # "a's and b's rows added", kept in S (built in chunks of bounded memory).
    rows = max(1, _CHUNK_VALUES // (k * k))
    S = np.concatenate([_pairwise_xlogx_sums(P, np.arange(i, min(i + rows, k)))
                        for i in range(0, k, rows)])
    F = _xlogx(P).sum(axis=1)
    active = np.ones(k, dtype=bool)
    upper = np.triu(np.ones((k, k), dtype=bool), 1)  # each unordered pair once
    for _ in range(k - 1):
        marginal = P.sum(axis=1)
        diag = np.diag(P)
        # The other columns j of the merged row, twice (row and column), then
        # the new diagonal entry and the new marginal.
        off = (S - F[:, None] - F[None, :]
               - (_xlogx(diag[:, None] + P) - _xlogx(diag)[:, None] - _xlogx(P))
               - (_xlogx(P + diag[None, :]) - _xlogx(P) - _xlogx(diag)[None, :]))
        gain = (2 * off
                + _xlogx(diag[:, None] + diag[None, :] + 2 * P)
                - _xlogx(diag)[:, None] - _xlogx(diag)[None, :] - 2 * _xlogx(P)
                - 2 * (_xlogx(marginal[:, None] + marginal[None, :])
                       - _xlogx(marginal)[:, None] - _xlogx(marginal)[None, :]))
        gain = np.where(active[:, None] & active[None, :] & upper, gain, -np.inf)
        a, b = np.unravel_index(np.argmax(gain), gain.shape)
        yield a, b
        # Columns a and b become their sum in S: remove their terms, add the merged one.
        old_a, old_b = P[:, a].copy(), P[:, b].copy()
        merged_column = old_a + old_b
        S += (_xlogx(merged_column[:, None] + merged_column[None, :])
              - _xlogx(old_a[:, None] + old_a[None, :])
              - _xlogx(old_b[:, None] + old_b[None, :]))
        P[:, a] = merged_column
        P[:, b] = 0.0
        P[a, :] += P[b, :]
        P[b, :] = 0.0
        F = _xlogx(P).sum(axis=1)
        S[a, :] = S[:, a] = _pairwise_xlogx_sums(P, np.array([a]))[0]
        S[b, :] = S[:, b] = 0.0
        active[b] = False


_LINKAGES = {"cosine": _cosine_merges, "information": _information_merges}


def cut_tree(children, n_clusters):
    """Group of each micro-cluster when a merge tree is cut into ``n_clusters`` groups.

    Applies the first ``k - n_clusters`` merges of ``children`` (as made by
    :func:`merge_tree`, ``k - 1`` rows for ``k`` micro-clusters); groups are
    numbered ``0 .. n_clusters - 1`` in order of their lowest micro-cluster.
    """
    k = len(children) + 1
    parent = np.arange(2 * k - 1)
    for step, (a, b) in enumerate(children[: k - n_clusters]):
        parent[a] = parent[b] = k + step
    groups = np.arange(k)
    for _ in range(k):  # follow each micro-cluster to the root of its group
        following = parent[groups]
        if np.array_equal(following, groups):
            break
        groups = following
    _, first, roots = np.unique(groups, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first))[roots]


def merge_matrix(groups, n_clusters, device=None):
    """One-hot ``(n_microclusters, n_clusters)`` matrix that sums micro-clusters into clusters."""
    groups = torch.as_tensor(groups, device=device)
    return torch.nn.functional.one_hot(groups, n_clusters).float()


def merged_joint(joint, groups, n_clusters):
    """Joint distribution of the clusters made of a joint of micro-clusters."""
    merge = merge_matrix(groups, n_clusters, joint.device).to(joint.dtype)
    return merge.T @ joint @ merge


def n_clusters_from_tree(distances, max_clusters):
    """Number of groups, from 2 to ``max_clusters``, at which a merge tree is best cut.

    A cut into ``k`` groups is good when the merge that would leave ``k - 1``
    joins groups paired less often than chance (lift below 1) and far less
    than the merge before it: its distance (``-log(lift)``) rises much above
    the one before. The largest such rise marks the strongest structure, but
    a hierarchy of clusters rises more near its top (digits: the largest
    rise joins two halves of the ten digits). So the cut keeps the most
    groups whose rise is at least half the largest one.

    Parameters
    ----------
    distances : ndarray of shape (k - 1,)
        Distances of the merges of ``k`` micro-clusters (:func:`merge_tree`).
    max_clusters : int
        Most groups considered; at most ``k - 1``, the most that a rise can
        be measured for.

    Returns
    -------
    n_clusters : int
    """
    k = len(distances) + 1
    candidates = np.arange(2, min(max_clusters, k - 1) + 1)
    if candidates.size == 0:
        return min(k, 2)
    # The merge that leaves k' - 1 groups is step k - k'; its rise over the step before.
    following = distances[k - candidates]
    rise = following - distances[k - candidates - 1]
    # Only where that merge joins groups paired less often than chance (lift
    # below 1): within a cluster, small clusters' micro-clusters pair more
    # often relative to their mass than large ones', which rises too.
    below_chance = following > 0
    if below_chance.any():
        candidates, rise = candidates[below_chance], rise[below_chance]
    return int(candidates[rise >= _GAP_SHARE * rise.max()].max())


def choose_head(joints, n_clusters, choose_n_clusters=False, linkage="cosine",
                prior_heads=range(0), min_share=0.0):
    """Build every main sub-head's merge tree and keep the sub-head whose clusters lose the least.

    The choice needs no labels: each sub-head's tree is cut into
    ``n_clusters`` groups, and the sub-head whose groups have the lowest IIC
    loss (``lamb=1``: the most mutual information between paired samples)
    wins among the sub-heads pulled towards equal sizes. The mutual
    information grows with the entropy of the sizes, so it cannot judge the
    ``prior_heads``, pulled towards a size prior: the best of them by the
    share of their clusters' entropy that their pairs explain, ``I(z; z') /
    H(z)``, among those whose every cluster holds at least ``min_share``,
    wins instead when that share is larger than the equal-size winner's by
    more than ``_PRIOR_MARGIN``. With ``choose_n_clusters``, ``n_clusters`` is the most groups
    considered: each sub-head's tree proposes a number of groups
    (:func:`n_clusters_from_tree`), and the median of the proposals (the
    lower one for an even number of sub-heads) is the number cut.

    Parameters
    ----------
    joints : list of torch.Tensor of shape (n_microclusters, n_microclusters)
        Normalised pair joint of each main sub-head.
    n_clusters : int
    choose_n_clusters : bool, default=False
    linkage : {"cosine", "information"}, default="cosine"
        The merge of :func:`merge_tree`.
    prior_heads : range, default=range(0)
        Indices of the prior heads among ``joints``: the last ones.
    min_share : float, default=0.0
        A prior head with a cluster holding less than this share of the
        pairs is left out while another one has none.

    Returns
    -------
    tree : tuple of ndarray
        ``(children, distances)`` of the chosen sub-head (see :func:`merge_tree`).
    losses : ndarray of shape (n_subheads,)
        Loss of each sub-head's groups.
    best : int
        Index of the chosen sub-head.
    n_clusters : int
        Groups cut from the tree.
    """
    trees = [merge_tree(joint.cpu().numpy(), linkage) for joint in joints]
    if choose_n_clusters:
        proposals = sorted(n_clusters_from_tree(d, n_clusters) for _, d in trees)
        n_clusters = proposals[(len(proposals) - 1) // 2]
    merged = [merged_joint(joint, cut_tree(children, n_clusters), n_clusters)
              for joint, (children, _) in zip(joints, trees)]
    losses = np.array([float(loss_from_joint(joint)) for joint in merged])
    best = int(np.argmin(losses[: len(losses) - len(prior_heads)]))
    if prior_heads:
        shares = np.array([normalized_mutual_information(joint) for joint in merged])
        full = [h for h in prior_heads if merged[h].sum(dim=1).min() >= min_share]
        prior_best = max(full or prior_heads, key=lambda h: shares[h])
        if shares[prior_best] > shares[best] + _PRIOR_MARGIN:
            best = prior_best
    return trees[best], losses, best, n_clusters


def choose_cluster_head(joints):
    """Index of the cluster sub-head whose clusters lose the least (as :func:`choose_head`)."""
    return int(np.argmin([float(loss_from_joint(joint)) for joint in joints]))


def normalized_cut(counts):
    """Normalised cut of a partition: the share of each cluster's pairs that leave it, summed.

    ``counts[a, b]``: pairs whose sample is in cluster ``a`` and partner in
    ``b`` (:func:`~sklearn_iic._inference.pair_label_counts`). A cluster's
    share is its pairs to other clusters over all its pairs (both sides of
    each pair count); an empty cluster counts 1, as if it had no pair
    inside. From 0 (no pair crosses clusters) to the number of clusters.
    Two partitions into as many clusters compare by it whatever their sizes:
    a cluster split in two adds the pairs across the split to both halves,
    and a small fringe cut off a large cluster, whose pairs mostly reach
    into it, adds nearly 1.
    """
    counts = np.asarray(counts, dtype=np.float64)
    pairs = counts + counts.T
    volume = pairs.sum(axis=1)
    leaving = volume - np.diag(pairs)
    return float(np.where(volume > 0, leaving / np.maximum(volume, _TINY), 1.0).sum())


def cluster_head_labels(cuts):
    """Whether the cluster head labels, from the normalised cuts of ``(merged, head)``.

    The head must cut clearly fewer pairs (a share ``_HEAD_CUT_SHARE`` of
    the merged micro-clusters' cut): the cut is estimated from pairs drawn
    at random, and the merge, which does not ask for clusters of equal size,
    keeps the labels when the two are close.
    """
    merged, head = cuts
    return head < _HEAD_CUT_SHARE * merged


def rank_by_size(labels, n_clusters):
    """New number of each cluster so that clusters are numbered by decreasing size.

    Clusters of equal size are numbered in the order of their first sample,
    so that the numbering depends on the partition alone, not on which of
    two heads that give the same partition labels (on a CPU whose sums
    round otherwise, two such cluster sub-heads swapped places by a last
    bit of their losses). Used clusters come first, numbered ``0, 1, ...``.
    """
    labels = np.asarray(labels)
    first = np.full(n_clusters, labels.size)
    np.minimum.at(first, labels, np.arange(labels.size))
    order = np.lexsort((first, -np.bincount(labels, minlength=n_clusters)))
    return np.argsort(order)
