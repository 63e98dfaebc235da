"""Inference with a trained network: pair joints and merged cluster probabilities, in batches."""

import torch

from ._loss import normalize_joint
from ._training import pair_logits

# Input values per forward pass at prediction time: bounds memory for any
# n_samples (a 28x28 batch of this size keeps a convnet's activations near
# 130 MiB).
_PREDICT_VALUES = 2**20


def prediction_batch_size(n_values):
    """Rows per forward pass when predicting samples of ``n_values`` numbers each."""
    return min(8192, max(64, _PREDICT_VALUES // n_values))


@torch.no_grad()
def pair_joints(network, sampler, heads, batch_size, n_passes=1, indices=None):
    """Joint distribution of heads' clusters over ``n_passes`` passes of pairs of all samples.

    The network is evaluated in eval mode; the joints are summed over batches
    before normalisation, so they describe the whole data set. ``indices``
    (of heads, as :class:`~sklearn_iic._heads.Heads` numbers them; the main
    sub-heads by default) selects the joints returned.
    """
    if indices is None:
        indices = range(heads.n_main)
    totals = None
    for logits, partner_logits in _pair_batches(network, sampler, batch_size, n_passes):
        sums = [heads.logits(logits, h).softmax(dim=1).T
                @ heads.logits(partner_logits, h).softmax(dim=1) for h in indices]
        totals = sums if totals is None else [t + s for t, s in zip(totals, sums)]
    return [normalize_joint(_check_finite(t)) for t in totals]


@torch.no_grad()
def pair_label_counts(network, sampler, heads, batch_size, n_passes, partitions):
    """How often each pair of clusters holds the two samples of a pair, for each partition.

    ``partitions`` holds ``(index, merge)``: a head and the one-hot matrix
    summing its clusters into the partition's. Each sample of a pair is
    labelled, as :meth:`~sklearn_iic.IICClustering.predict` does, by the
    argmax of its merged probabilities; returns a count matrix per partition.
    """
    counts = [0] * len(partitions)
    for pair in _pair_batches(network, sampler, batch_size, n_passes):
        for i, (index, merge) in enumerate(partitions):
            sample, partner = (
                torch.nn.functional.one_hot(
                    (heads.logits(logits, index).softmax(dim=1) @ merge).argmax(dim=1),
                    merge.shape[1],
                ).double()
                for logits in pair
            )
            counts[i] = counts[i] + sample.T @ partner
    return counts


def _pair_batches(network, sampler, batch_size, n_passes):
    """The logits of batches of pairs of all samples, ``n_passes`` times over, in eval mode."""
    network.eval()
    order = torch.arange(sampler.n_samples, device=sampler.X.device).repeat(n_passes)
    for indices in order.split(batch_size):
        yield pair_logits(network, *sampler(indices))


@torch.no_grad()
def merged_probabilities(network, batches, heads, index, merge):
    """Soft assignments of head ``index`` merged into clusters, batch by batch.

    ``batches`` yields input tensors on the network's device; ``merge`` is the
    one-hot (head's clusters, n_clusters) matrix on that device. Only the
    merged probabilities are kept, on the CPU, so memory grows with
    ``n_clusters`` columns rather than with the network's full output.
    """
    network.eval()
    return torch.cat([
        _check_finite(heads.logits(network(x), index).softmax(dim=1) @ merge).cpu()
        for x in batches
    ])


def _check_finite(proba):
    """Return ``proba`` (probabilities, or sums of their products); raise if not finite.

    Inputs within float32's range can still overflow inside the network when
    they lie far outside the training data, and softmax then gives NaN.
    """
    if not torch.isfinite(proba).all():
        raise ValueError(
            "The network's output is not finite for some samples of X: their values, "
            "far outside the training data, overflow float32 inside the network."
        )
    return proba
