"""Merging micro-clusters: greedy agglomeration that keeps the most mutual information."""

import numpy as np

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
        Symmetric joint distribution of the micro-clusters of paired samples.
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
    P = (P + P.T) / 2
    P /= P.sum()
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
