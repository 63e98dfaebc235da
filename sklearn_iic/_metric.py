"""The metric of feature vectors: an affine map under which neighbours differ isotropically."""

import numpy as np
import torch
from sklearn.covariance import ledoit_wolf
from torch import nn

from ._pairs import nearest_neighbors

# Neighbours whose differences give the local covariance. Measured with
# n_neighbors=10 pairs (median ARI of 10 seeds): 10 gave iris 0.73, 20 gave
# 0.89, 30 gave 0.92 (wine 0.91, digits 0.87, moons and circles all found);
# 50 lost digits (0.78): the neighbourhoods then span several clusters.
_NEIGHBORS = 30
# The local covariance is estimated from the neighbours of at most this many
# rows, among themselves: its cost is then bounded whatever n_samples.
_MAX_ROWS = 10_000
# ... and from at most this many difference values (rows * n_neighbors *
# n_features: about 2,800 rows of 50 features). The differences are held a few
# times over (float32, float64, scikit-learn's Ledoit-Wolf), so this bounds
# the memory of the estimate at about 100 MiB; at 2**24 values it had added
# 400 MB to fits of 10,000 rows and more.
_MAX_DIFFERENCE_VALUES = 2**22
# Directions in which neighbours never differ (constant features) are scaled
# as if they varied this much relative to the average direction, rather than
# blown up.
_MIN_RELATIVE_VARIANCE = 1e-4


class Whitening(nn.Module):
    """The fixed affine map ``x -> (x - mean) @ matrix``, the first layer of a whitened network.

    :class:`~sklearn_iic.IICClustering` fits it with ``whiten=True`` (the
    default on feature vectors) and keeps it as ``network_.whitening``, ahead
    of the trained network: the network sees the data in coordinates where
    nearest neighbours differ equally in every direction, whatever the units
    of the features.

    Parameters
    ----------
    mean : torch.Tensor of shape (n_features,)
    matrix : torch.Tensor of shape (n_features, n_features)
        Both kept in float64.

    Examples
    --------
    >>> import torch
    >>> from sklearn_iic import Whitening
    >>> w = Whitening(torch.tensor([1.0, 0.0]), torch.diag(torch.tensor([0.5, 2.0])))
    >>> w(torch.tensor([[3.0, 1.0]]))
    tensor([[1., 2.]])
    """

    def __init__(self, mean, matrix):
        super().__init__()
        # Buffers, not parameters: they move with the network but are not trained.
        self.register_buffer("mean", mean.double())
        self.register_buffer("matrix", matrix.double())

    def forward(self, x):
        # In float64: a float32 product rounds differently with the number of
        # rows, and a sample's prediction must not depend on its batch.
        # .double() also keeps a network cast to float32 working.
        return ((x.double() - self.mean.double()) @ self.matrix.double()).to(x.dtype)


@torch.no_grad()
def local_whitening(X, generator, n_neighbors=_NEIGHBORS):
    """The :class:`Whitening` of ``X`` that makes differences between nearest neighbours isotropic.

    The features are first standardised (in float64), so that the map does
    not depend on their units: any positive scale and offset of a feature
    gives the same whitened data. In those coordinates, the covariance of
    ``x - x'`` over every sample ``x`` and each of its ``n_neighbors``
    nearest neighbours ``x'`` (among a random subset of at most 10,000 rows
    and 2**22 difference values: 2,796 rows of 50 features) is estimated with
    Ledoit-Wolf shrinkage; the map centres ``X``, standardises it and
    multiplies by the inverse square root of that covariance. Afterwards,
    moving to a neighbour is equally likely in every direction: directions
    along which the data are stretched within a cluster shrink, and
    directions between clusters, where neighbours rarely differ, grow.

    Parameters
    ----------
    X : torch.Tensor of shape (n_samples, n_features)
        At least 2 samples.
    generator : torch.Generator
        On X's device; draws the subset.
    n_neighbors : int, default=30

    Returns
    -------
    whitening : Whitening
        On X's device.
    """
    n_samples, n_features = X.shape
    k = min(n_neighbors, n_samples - 1)
    rows = min(n_samples, _MAX_ROWS, max(k + 1, _MAX_DIFFERENCE_VALUES // (k * n_features)))
    sample = X
    if rows < n_samples:
        sample = X[torch.randperm(n_samples, generator=generator, device=X.device)[:rows]]
    mean = sample.double().mean(dim=0)
    scale = sample.double().std(dim=0, unbiased=False)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # constant features
    standard = ((sample.double() - mean) / scale).float()
    neighbors = nearest_neighbors(standard, k, generator).long()
    differences = (standard[:, None, :] - standard[neighbors]).reshape(-1, n_features)
    covariance, _ = ledoit_wolf(differences.double().cpu().numpy(), assume_centered=True)
    variances, vectors = np.linalg.eigh(covariance)
    if not np.isfinite(variances).all() or variances.max() <= 0:
        # Neighbours identical to each other: no direction is preferred.
        variances, vectors = np.ones(n_features), np.eye(n_features)
    variances = np.maximum(variances, _MIN_RELATIVE_VARIANCE * variances.mean())
    matrix = torch.as_tensor(vectors / np.sqrt(variances), device=X.device)
    return Whitening(mean, matrix / scale[:, None])
