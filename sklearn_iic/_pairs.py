"""Pair construction: each sample ``x`` is paired with a perturbed copy and/or a neighbour."""

import numpy as np
import torch
from sklearn.neighbors import NearestNeighbors


def nearest_neighbors(X, n_neighbors):
    """Indices of the ``n_neighbors`` nearest other samples of each row of ``X``.

    Uses scikit-learn's :class:`~sklearn.neighbors.NearestNeighbors` on the CPU;
    ``n_neighbors`` is capped at ``n_samples - 1``.
    """
    n_neighbors = min(n_neighbors, X.shape[0] - 1)
    # kneighbors() without X excludes each sample from its own neighbours.
    indices = NearestNeighbors(n_neighbors=n_neighbors).fit(X).kneighbors(return_distance=False)
    # Rounding in the distances (which varies with BLAS threading) reorders near
    # ties; sorting makes the pairs depend only on the neighbour sets.
    return np.sort(indices, axis=1)


class PairSampler:
    """Draws the pairs ``(x, x')`` of a batch of sample indices.

    ``x'`` is ``x`` itself or, with ``neighbors``, one of its nearest
    neighbours drawn afresh at every call; ``perturbation`` is then applied to
    ``x'``. With ``n_repeats > 1`` every sample appears that many times in the
    batch, each time against an independent draw.

    Parameters
    ----------
    X : torch.Tensor of shape (n_samples, ...)
        The data, on the training device.
    perturbation : callable or None
        ``perturbation(x, generator)``.
    neighbors : torch.Tensor of shape (n_samples, n_neighbors) or None
        Neighbour indices on the training device.
    n_repeats : int
    generator : torch.Generator
        Source of all randomness, on the training device.
    """

    def __init__(self, X, *, perturbation, neighbors, n_repeats, generator):
        self.X = X
        self.perturbation = perturbation
        self.neighbors = neighbors
        self.n_repeats = n_repeats
        self.generator = generator

    @property
    def n_samples(self):
        return self.X.shape[0]

    def __call__(self, indices):
        indices = indices.repeat(self.n_repeats)
        x = self.X[indices]
        if self.neighbors is None:
            partner = x
        else:
            choice = torch.randint(
                self.neighbors.shape[1], indices.shape,
                generator=self.generator, device=indices.device,
            )
            partner = self.X[self.neighbors[indices, choice]]
        if self.perturbation is not None:
            partner = self.perturbation(partner, self.generator)
        return x, partner
