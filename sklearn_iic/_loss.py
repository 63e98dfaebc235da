"""The IIC objective: mutual information between paired soft cluster assignments."""

import sys

# Reference value (xu-ji/IIC): clamp probabilities at machine epsilon before log.
_EPS = sys.float_info.epsilon


def joint_distribution(p, p_prime):
    """Symmetric joint distribution of paired cluster assignments.

    Parameters
    ----------
    p, p_prime : torch.Tensor of shape (n_pairs, n_clusters)
        Soft assignments (rows on the simplex) of the samples and of their pairs.

    Returns
    -------
    joint : torch.Tensor of shape (n_clusters, n_clusters)
        ``P = sym(sum_i p_i p'_i^T)`` normalised to sum to one.
    """
    if p.ndim != 2 or p.shape != p_prime.shape:
        raise ValueError(
            "p and p_prime must be 2-D tensors of the same shape (n_pairs, "
            f"n_clusters); got {tuple(p.shape)} and {tuple(p_prime.shape)}."
        )
    return normalize_joint(p.T @ p_prime)


def normalize_joint(total):
    """Symmetrise and normalise an accumulated ``sum_i p_i p'_i^T``.

    ``total`` may be a stack of them (the last two dimensions), each normalised alone.
    """
    total = (total + total.transpose(-2, -1)) / 2
    return total / total.sum(dim=(-2, -1), keepdim=True)


def loss_from_joint(joint, lamb=1.0, prior=None):
    r"""IIC loss of a joint distribution, or of each of a stack of them; see :func:`iic_loss`.

    With a size ``prior`` :math:`\pi` (cluster shares, one row per joint of
    the stack), the ``lamb - 1`` weight of the marginal entropies pulls the
    marginals towards :math:`\pi` instead of towards equal sizes: each
    :math:`H(z)` weighed by ``lamb - 1`` becomes
    :math:`\ln k - \mathrm{KL}(P_z \,\|\, \pi)`, which is :math:`H(z)`
    itself when :math:`\pi` is uniform. The loss is then

    .. math::

        L = -I(z; z') + (\lambda - 1)\left(\mathrm{KL}(P_z \,\|\, \pi)
            + \mathrm{KL}(P_{z'} \,\|\, \pi)\right) - 2 (\lambda - 1) \ln k,

    the loss without a prior when :math:`\pi` is uniform. The mutual
    information keeps its own pull towards equal sizes, which keeps every
    cluster in use.
    """
    # Out-of-place clamp: keeps autograd valid and gradients finite for empty clusters.
    joint = joint.clamp_min(_EPS)
    p_i = joint.sum(dim=-1, keepdim=True)
    p_j = joint.sum(dim=-2, keepdim=True)
    loss = -(joint * (joint.log() - lamb * p_i.log() - lamb * p_j.log())).sum(dim=(-2, -1))
    if prior is None:
        return loss
    # H(z) + sum_c P(c) log(k pi_c) is ln k - KL(P || pi).
    log_ratio = (prior * prior.shape[-1]).log()
    tilt = (p_i.squeeze(-1) + p_j.squeeze(-2)) * log_ratio
    return loss - (lamb - 1) * tilt.sum(dim=-1)


def iic_loss(p, p_prime, lamb=1.0):
    r"""Invariant Information Clustering loss of a batch of pairs.

    With soft assignments :math:`p_i` and :math:`p'_i` of the pairs
    :math:`(x_i, x'_i)`, the joint distribution of the two cluster variables
    is :math:`P = \frac{1}{n}\sum_i p_i p_i'^\top`, symmetrised and normalised.
    The loss is

    .. math::

        L = -\sum_{c, c'} P_{cc'} \left(\log P_{cc'}
            - \lambda \log P_c - \lambda \log P_{c'}\right)

    where :math:`P_c` and :math:`P_{c'}` are the marginals. With
    ``lamb=1`` it equals :math:`-I(z; z')`, so it lies in
    :math:`[-\ln k, 0]`: :math:`-\ln k` when the pairs always agree and the
    ``k`` clusters are equally used, ``0`` when the assignments carry no
    shared information (for instance all samples in one cluster). A ``lamb``
    above one adds :math:`(\lambda - 1)(H(z) + H(z'))` and pushes harder
    towards balanced clusters.

    Gradients flow through both arguments. Entries of the joint below
    machine epsilon are clamped, so empty clusters give finite gradients.

    Parameters
    ----------
    p : torch.Tensor of shape (n_pairs, n_clusters)
        Soft assignments of the samples (softmax outputs).
    p_prime : torch.Tensor of shape (n_pairs, n_clusters)
        Soft assignments of their paired samples.
    lamb : float, default=1.0
        Weight of the marginal entropy terms.

    Returns
    -------
    loss : torch.Tensor
        Scalar loss, to be minimised.

    Examples
    --------
    >>> import torch
    >>> from sklearn_iic import iic_loss
    >>> p = torch.eye(4)  # four samples, four clusters, pairs agree
    >>> round(iic_loss(p, p).item(), 4)  # -ln 4
    -1.3863
    """
    return loss_from_joint(joint_distribution(p, p_prime), lamb=lamb)


def normalized_mutual_information(joint):
    """``I(z; z') / H(z)`` of a symmetric joint distribution, in [0, 1].

    Zero when the assignments are uninformative or collapsed onto one cluster.
    """
    marginal = joint.sum(dim=1).clamp_min(_EPS)
    entropy = -(marginal * marginal.log()).sum()
    if entropy.item() <= _EPS:
        return 0.0
    mutual_information = -loss_from_joint(joint, lamb=1.0)
    return float((mutual_information / entropy).clamp(0.0, 1.0))
