"""Whitening of feature vectors: an affine map under which neighbours differ isotropically."""

import math

import numpy as np
import torch
from sklearn.covariance import ledoit_wolf
from torch import nn

from ._pairs import nearest_neighbors

# Neighbours whose differences give the local covariance: fewer blurred
# iris's stretched clusters, more spanned several clusters on digits
# (docs/benchmarks.rst, "The whitening's neighbours").
_NEIGHBORS = 30
# The local covariance is estimated from the neighbours of at most this many
# rows, among themselves: its cost is then bounded whatever n_samples.
_MAX_ROWS = 10_000
# ... and from at most this many difference values (rows * n_neighbors *
# n_features: about 2,800 rows of 50 features). The differences are held a few
# times over (float32, float64, scikit-learn's Ledoit-Wolf), so this bounds
# the memory of the estimate at about 100 MiB; more had added hundreds of MB
# to large fits (docs/benchmarks.rst, "The whitening's neighbours").
_MAX_DIFFERENCE_VALUES = 2**22
# Directions in which neighbours never differ (constant features) are scaled
# as if they varied this much relative to the average direction, rather than
# blown up.
_MIN_RELATIVE_VARIANCE = 1e-4
# Wide data. The covariance of neighbour differences in every direction is
# estimated well only from enough rows: at least _ROWS_PER_FEATURE per feature
# and _ROWS_PER_EFFECTIVE_DIMENSION per effective dimension of the
# standardised rows (their participation ratio, about n_features for
# independent noise features). With fewer, the map whitened the noise of the
# estimate, neighbours in its coordinates were hardly alike and the defaults
# collapsed ("IICClustering, before" in docs/benchmarks/wide.md). Below
# either bound the map is fitted in, and keeps, only the leading
# max(_MIN_WHITENED_DIMENSIONS, rows // _ROWS_PER_WHITENED_DIMENSION)
# principal components of the standardised rows ("IICClustering" there).
# The bounds and the number of components were chosen on tables on either
# side of them (docs/benchmarks.rst, "Whitening wide tables").
_ROWS_PER_FEATURE = 5
_ROWS_PER_EFFECTIVE_DIMENSION = 20
_ROWS_PER_WHITENED_DIMENSION = 40
_MIN_WHITENED_DIMENSIONS = 5


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
        Both kept in float64. On wide data its last columns are zero: the
        map keeps only the leading principal components (see ``whiten`` in
        :class:`~sklearn_iic.IICClustering`).

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

    Wide data are whitened in fewer directions. When the rows of the estimate
    number fewer than 5 per feature, or fewer than 20 per effective dimension
    (:func:`effective_dimension` of the standardised rows; about
    ``n_features`` when the features are independent noise), the covariance
    is estimated, and the map whitens, in the leading ``max(5, rows // 40)``
    principal components of the standardised rows only (from a random subset
    of at most 2,364 rows, 2**22 standardised values and 2**22 differences
    of those components); the
    other directions are mapped to zero, in the last columns of the map. With
    more directions than that, the map whitened the noise of the estimate and
    neighbours in the whitened coordinates were no longer alike.

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
    mean, scale, standard = _standardised_rows(X, rows, generator)
    dimensions = n_features
    if _too_wide(standard):
        # The projected differences have fewer columns, so more rows fit the
        # budget: rows * k * (rows // 40) values for up to sqrt(40 * budget /
        # k) rows (2,364 with 30 neighbours). The rows themselves are held
        # whole for their principal directions.
        rows = min(
            n_samples, _MAX_ROWS, max(k + 1, _MAX_DIFFERENCE_VALUES // n_features),
            max(k + 1, math.isqrt(_ROWS_PER_WHITENED_DIMENSION * _MAX_DIFFERENCE_VALUES // k)),
        )
        dimensions = min(
            n_features, rows - 1,
            max(_MIN_WHITENED_DIMENSIONS, rows // _ROWS_PER_WHITENED_DIMENSION),
        )
        rows = min(rows, max(k + 1, _MAX_DIFFERENCE_VALUES // (k * dimensions)))
        if rows != standard.shape[0]:
            mean, scale, standard = _standardised_rows(X, rows, generator)
    basis = None
    if dimensions < n_features:
        basis = torch.linalg.svd(standard, full_matrices=False).Vh[:dimensions].T
        standard = standard @ basis
    standard = standard.float()
    neighbors = nearest_neighbors(standard, k, generator).long()
    differences = (standard[:, None, :] - standard[neighbors]).reshape(-1, dimensions)
    covariance, _ = ledoit_wolf(differences.double().cpu().numpy(), assume_centered=True)
    variances, vectors = np.linalg.eigh(covariance)
    if not np.isfinite(variances).all() or variances.max() <= 0:
        # Neighbours identical to each other: no direction is preferred.
        variances, vectors = np.ones(dimensions), np.eye(dimensions)
    variances = np.maximum(variances, _MIN_RELATIVE_VARIANCE * variances.mean())
    matrix = torch.as_tensor(vectors / np.sqrt(variances), device=X.device)
    if basis is not None:
        # The whitened principal components first, then zeros for the dropped
        # directions: the map keeps n_features columns.
        matrix = nn.functional.pad(basis @ matrix, (0, n_features - dimensions))
    return Whitening(mean, matrix / scale[:, None])


def _standardised_rows(X, rows, generator):
    """Mean and scale of a random subset of ``rows`` rows of X, and the subset standardised."""
    sample = X
    if rows < X.shape[0]:
        sample = X[torch.randperm(X.shape[0], generator=generator, device=X.device)[:rows]]
    sample = sample.double()
    mean = sample.mean(dim=0)
    scale = sample.std(dim=0, unbiased=False)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # constant features
    return mean, scale, (sample - mean) / scale


def effective_dimension(standard):
    """Participation ratio ``(sum l)**2 / sum l**2`` of the variances ``l`` of centred rows.

    Between 1 (the rows lie on a line) and the number of columns (equal
    variance in every direction); 0 for identical rows. From the Gram matrix
    of the shorter side, so that wide rows cost ``rows**2`` memory.
    """
    gram = standard @ standard.T if standard.shape[0] < standard.shape[1] else standard.T @ standard
    total = float(gram.trace())
    return total**2 / float((gram**2).sum()) if total > 0 else 0.0


def _too_wide(standard):
    """Whether standardised rows are too few to whiten every direction of their features."""
    rows, n_features = standard.shape
    return n_features > _MIN_WHITENED_DIMENSIONS and (
        rows < _ROWS_PER_FEATURE * n_features
        or rows < _ROWS_PER_EFFECTIVE_DIMENSION * effective_dimension(standard)
    )
