"""Merging micro-clusters into clusters, choosing the sub-head, and numbering the clusters.

Everything between the trained network's pair joints and the labels: the
greedy merge, the one-hot merge matrix and the merged joint, the label-free
choice of the sub-head, and renumbering clusters by size.
"""

import numpy as np
import torch

from ._loss import loss_from_joint

# Rows of the initial (k, k, k) tensor built at once: bounds its memory at
# about 64 MiB of float64 for any number of micro-clusters.
_CHUNK_VALUES = 2**23


def _xlogx(x):
    return x * np.log(np.where(x > 0, x, 1.0))


def _pairwise_xlogx_sums(joint, rows):
    """``S[a, b] = sum_j xlogx(joint[a, j] + joint[b, j])`` for ``a`` in ``rows``."""
    return _xlogx(joint[rows, None, :] + joint[None, :, :]).sum(axis=2)


def merge_clusters(joint, n_clusters):
    """Merge the clusters of a symmetric pair joint down to ``n_clusters`` groups.

    Agglomerates greedily: at each step the two groups whose union loses the
    least mutual information ``I(z; z')`` of the joint are merged, the joint
    being summed over the merged rows and columns. Groups that share many pairs
    lose little when merged, groups that share none lose the most, so
    micro-clusters connected by pairs (along a manifold, within a class) end up
    together whatever the shape of their union. Ties go to the lowest indices,
    so the result is deterministic.

    The mutual information changes only through the merged rows and columns, so
    the loss of every candidate merge is kept up to date in ``O(k^2)`` per
    step, ``O(k^3)`` in all for ``k`` micro-clusters.

    Parameters
    ----------
    joint : array-like of shape (k, k)
        Symmetric joint distribution of the micro-clusters of paired samples,
        summing to one (as made by ``normalize_joint``).
    n_clusters : int
        Number of groups to keep, at most ``k``.

    Returns
    -------
    groups : ndarray of shape (k,)
        Group of each micro-cluster, numbered ``0 .. n_clusters - 1`` in order
        of their lowest micro-cluster.
    """
    P = np.array(joint, dtype=np.float64)
    k = P.shape[0]
    # I(z; z') = sum xlogx(P) - 2 sum xlogx(marginal) for a symmetric joint;
    # the loss of merging a and b follows from row sums of xlogx over
    # "a and b's rows added", kept in S.
    rows = max(1, _CHUNK_VALUES // (k * k))
    S = np.concatenate([_pairwise_xlogx_sums(P, np.arange(i, min(i + rows, k)))
                        for i in range(0, k, rows)])
    F = _xlogx(P).sum(axis=1)
    groups = np.arange(k)
    active = np.ones(k, dtype=bool)
    upper = np.triu(np.ones((k, k), dtype=bool), 1)  # each unordered pair once
    for _ in range(k - n_clusters):
        marginal = P.sum(axis=1)
        diag = np.diag(P)
        # Sum over the other columns j of the merged row, twice (row and column),
        # then the new diagonal entry and the new marginal.
        off = (S - F[:, None] - F[None, :]
               - (_xlogx(diag[:, None] + P) - _xlogx(diag)[:, None] - _xlogx(P))
               - (_xlogx(P + diag[None, :]) - _xlogx(P) - _xlogx(diag)[None, :]))
        gain = (2 * off
                + _xlogx(diag[:, None] + diag[None, :] + 2 * P)
                - _xlogx(diag)[:, None] - _xlogx(diag)[None, :] - 2 * _xlogx(P)
                - 2 * (_xlogx(marginal[:, None] + marginal[None, :])
                       - _xlogx(marginal)[:, None] - _xlogx(marginal)[None, :]))
        allowed = active[:, None] & active[None, :] & upper
        gain = np.where(allowed, gain, -np.inf)
        a, b = np.unravel_index(np.argmax(gain), gain.shape)
        # Replace columns a and b by their sum in S: remove their terms, add the merged one.
        old_a, old_b = P[:, a].copy(), P[:, b].copy()
        merged_col = old_a + old_b
        S += (_xlogx(merged_col[:, None] + merged_col[None, :])
              - _xlogx(old_a[:, None] + old_a[None, :])
              - _xlogx(old_b[:, None] + old_b[None, :]))
        P[:, a] = merged_col
        P[:, b] = 0.0
        P[a, :] = P[a, :] + P[b, :]
        P[b, :] = 0.0
        F = _xlogx(P).sum(axis=1)
        S[a, :] = S[:, a] = _pairwise_xlogx_sums(P, np.array([a]))[0]
        S[b, :] = S[:, b] = 0.0
        active[b] = False
        groups[groups == b] = a
    return np.unique(groups, return_inverse=True)[1]


def merge_groups(joint, n_clusters):
    """Cluster of each micro-cluster of a sub-head (itself when there are none to merge)."""
    if joint.shape[0] == n_clusters:
        return np.arange(n_clusters)
    return merge_clusters(joint.cpu().numpy(), n_clusters)


def merge_matrix(groups, n_clusters, device=None):
    """One-hot ``(n_microclusters, n_clusters)`` matrix that sums micro-clusters into clusters."""
    groups = torch.as_tensor(groups, device=device)
    return torch.nn.functional.one_hot(groups, n_clusters).float()


def merged_joint(joint, groups, n_clusters):
    """Joint distribution of the clusters made of a joint of micro-clusters."""
    merge = merge_matrix(groups, n_clusters, joint.device).to(joint.dtype)
    return merge.T @ joint @ merge


def choose_head(joints, n_clusters):
    """Merge every main sub-head and keep the one whose clusters lose the least.

    The choice needs no labels: each sub-head's micro-clusters are merged into
    ``n_clusters``, and the sub-head whose merged clusters have the lowest IIC
    loss (``lamb=1``: the most mutual information between paired samples) wins.

    Parameters
    ----------
    joints : list of torch.Tensor of shape (n_microclusters, n_microclusters)
        Normalised pair joint of each main sub-head.
    n_clusters : int

    Returns
    -------
    groups : ndarray of shape (n_microclusters,)
        Cluster of each micro-cluster of the chosen sub-head.
    losses : ndarray of shape (n_subheads,)
        Loss of each sub-head's merged clusters.
    best : int
        Index of the chosen sub-head.
    """
    all_groups = [merge_groups(joint, n_clusters) for joint in joints]
    losses = np.array([
        float(loss_from_joint(merged_joint(joint, groups, n_clusters)))
        for joint, groups in zip(joints, all_groups)
    ])
    best = int(np.argmin(losses))
    return all_groups[best], losses, best


def rank_by_size(labels, n_clusters):
    """New number of each cluster so that clusters are numbered by decreasing size.

    Ties keep their order; used clusters then come first, numbered ``0, 1, ...``.
    """
    order = np.argsort(-np.bincount(labels, minlength=n_clusters), kind="stable")
    return np.argsort(order)
