"""The size prior of the prior heads: cluster sizes read from the merged overclustering heads.

IIC's objective pulls a head of ``n_clusters`` towards clusters of equal
size: on long-tailed data it splits a large class and joins small ones.
The prior heads are pulled towards a size prior instead (``prior`` of
:func:`~sklearn_iic._loss.loss_from_joint`), and the prior comes from
outside the head, where the balance does no harm: an overclustering head of
many micro-clusters of about equal mass tiles the data, a large class with
many of them, a small class with few, and merging them by the cosine of
their pairs (:func:`~sklearn_iic._merge.merge_tree`, which favours neither
equal nor small groups) gives ``n_clusters`` groups whose masses are the
prior. A prior read from the head's own sizes would not do: every size is
then a fixed point, and clusters drift.

Which group's mass is which cluster's prior is decided by the samples they
share: the groups are matched to the head's clusters by the probability
mass that a cluster and a group give the same samples (the Hungarian
algorithm), so that a cluster holding a large class is pulled towards that
class's size, whatever the cluster's index.
"""

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from ._loss import normalize_joint
from ._merge import cut_tree, merge_tree
from ._training import Callback, kind_joints

# The prior is first read after this share of the epochs, once the
# micro-clusters have found structure (the heads train towards equal sizes
# until then), and then every epoch, moving this share of the way towards
# the sizes read (docs/benchmarks.rst, "Cluster sizes on images").
_PRIOR_START = 0.3
_PRIOR_STEP = 0.5


def merged_groups(joint, n_clusters, min_share):
    """The micro-clusters of an overclustering head merged into ``n_clusters`` groups.

    Parameters
    ----------
    joint : ndarray of shape (n_micro, n_micro)
        Normalised pair joint of the overclustering head.
    n_clusters : int
    min_share : float
        Micro-clusters holding less are left out, so that no group, and no
        prior share, is smaller: a group of empty micro-clusters must not
        empty a cluster.

    Returns
    -------
    groups : ndarray of shape (n_micro,) or None
        Group of each micro-cluster, -1 for those left out; None when fewer
        than ``n_clusters`` micro-clusters hold ``min_share`` (no prior to read).
    mass : ndarray of shape (n_micro,)
        Share of the pairs of each micro-cluster.
    """
    mass = joint.sum(axis=1)
    live = np.flatnonzero(mass >= min_share)
    if len(live) < n_clusters:
        return None, mass
    groups = np.full(len(mass), -1)
    groups[live] = cut_tree(merge_tree(joint[np.ix_(live, live)])[0], n_clusters)
    return groups, mass


def matched_group_sizes(merged, cross, n_clusters):
    """Prior share of each cluster of a head: the mass of the merged group it shares most with.

    Parameters
    ----------
    merged : tuple
        ``(groups, mass)`` as :func:`merged_groups` returns them.
    cross : ndarray of shape (n_clusters, n_micro)
        Probability mass that each cluster of the head and each
        micro-cluster give the same samples.
    n_clusters : int

    Returns
    -------
    prior : ndarray of shape (n_clusters,)
        Sums to one; uniform when there are no groups.
    """
    groups, mass = merged
    if groups is None:
        return np.full(n_clusters, 1.0 / n_clusters)
    live = groups >= 0
    one_hot = np.eye(n_clusters)[groups[live]]
    sizes = mass[live] @ one_hot
    clusters, matched = linear_sum_assignment(cross[:, live] @ one_hot, maximize=True)
    prior = np.empty(n_clusters)
    prior[clusters] = sizes[matched]
    return prior / prior.sum()


class SizePrior(Callback):
    """Train the prior heads towards the sizes of the first overclustering head, merged.

    Over each epoch the callback sums the pair joint of the first
    overclustering head (the step's own, ``Step.joints``) and the mass its
    micro-clusters share with each prior head's clusters; after the first
    ``_PRIOR_START`` share of the
    epochs, it merges the micro-clusters once and sets ``loop.size_prior``: a
    ``(n_main, n_clusters)`` tensor, uniform for the heads pulled towards
    equal sizes, and for each prior head moved ``_PRIOR_STEP`` of the way
    from its previous prior (uniform at first) towards
    :func:`matched_group_sizes`. Trained data-parallel, the sums are over
    every rank's pairs.

    Parameters
    ----------
    min_share : float
        Micro-clusters holding less are left out (see :func:`matched_group_sizes`).
    """

    def __init__(self, min_share):
        self.min_share = min_share

    def on_train_begin(self, loop):
        n_main, n_clusters = loop.heads.kinds[0]
        self.prior = np.full((n_main, n_clusters), 1.0 / n_clusters)
        self.first = int(np.ceil(_PRIOR_START * loop.n_epochs))

    def on_epoch_begin(self, loop, epoch):
        self.joint = self.shared = 0.0

    def on_batch_end(self, loop, step):
        if loop.epoch + 1 < self.first:
            return
        p = step.probs[0][:, loop.heads.prior_heads.start :].detach()
        micro = step.probs[1][:, :1].detach()
        # The step's joints are summed over ranks already; the shared mass is not.
        self.joint = self.joint + step.joints[1][0].detach()
        self.shared = self.shared + kind_joints(p, micro.expand(-1, p.shape[1], -1))

    def on_epoch_end(self, loop, epoch, loss):
        if epoch + 1 < self.first:
            return
        joint, (shared,) = self.joint, loop.group.sum([self.shared])
        # One read from the device for both.
        values = np.array(torch.cat([normalize_joint(joint).flatten(), shared.flatten()])
                          .double().tolist())
        joint = values[: joint.numel()].reshape(joint.shape)
        shared = values[joint.size :].reshape(shared.shape)
        n_clusters = self.prior.shape[1]
        groups = merged_groups(joint, n_clusters, self.min_share)
        for cross, head in zip(shared, loop.heads.prior_heads):
            read = matched_group_sizes(groups, cross, n_clusters)
            self.prior[head] += _PRIOR_STEP * (read - self.prior[head])
        loop.size_prior = torch.as_tensor(self.prior, dtype=torch.float32,
                                          device=loop.generator.device)
