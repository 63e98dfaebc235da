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
def pair_joints(network, sampler, heads, batch_size, n_passes=1, subheads=None):
    """Joint distribution of main sub-heads over ``n_passes`` passes of pairs of all samples.

    The network is evaluated in eval mode; the joints are summed over batches
    before normalisation, so they describe the whole data set. ``subheads``
    (indices of main sub-heads, all by default) selects the joints returned.
    """
    network.eval()
    if subheads is None:
        subheads = range(heads.n_subheads)
    totals = None
    order = torch.arange(sampler.n_samples, device=sampler.X.device).repeat(n_passes)
    for indices in order.split(batch_size):
        logits, partner_logits = pair_logits(network, *sampler(indices))
        probs, partner_probs = heads.probabilities(logits), heads.probabilities(partner_logits)
        sums = [probs[h].T @ partner_probs[h] for h in subheads]
        totals = sums if totals is None else [t + s for t, s in zip(totals, sums)]
    return [normalize_joint(_check_finite(t)) for t in totals]


@torch.no_grad()
def merged_probabilities(network, batches, heads, head, merge):
    """Soft assignments of main sub-head ``head`` merged into clusters, batch by batch.

    ``batches`` yields input tensors on the network's device; ``merge`` is the
    one-hot (n_microclusters, n_clusters) matrix on that device. Only the merged
    probabilities are kept, on the CPU, so memory grows with ``n_clusters``
    columns rather than with the network's full output.
    """
    network.eval()
    return torch.cat(
        [_check_finite(heads.main(network(x), head).softmax(dim=1) @ merge).cpu() for x in batches]
    )


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
