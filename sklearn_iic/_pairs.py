"""Pair construction: each sample ``x`` is paired with a perturbed copy and/or a neighbour."""

import torch
from sklearn.neighbors import NearestNeighbors

# Distances held at once by the GPU neighbour search (float32 entries: 256 MiB).
_DISTANCE_BLOCK = 2**26


@torch.no_grad()
def nearest_neighbors(X, n_neighbors):
    """Indices of the ``n_neighbors`` nearest other samples of each sample of ``X``.

    Exact Euclidean search where ``X`` lives: scikit-learn's
    :class:`~sklearn.neighbors.NearestNeighbors` on the CPU (2.5x faster there
    than the blocked search), and on a GPU blocks of rows against all samples,
    so that memory stays at about 256 MiB of distances whatever
    ``n_samples``. Either way time grows as ``n_samples ** 2 * n_features``.
    ``n_neighbors`` is capped at ``n_samples - 1``.

    Parameters
    ----------
    X : torch.Tensor of shape (n_samples, ...)
        The data; images are compared pixel by pixel.
    n_neighbors : int

    Returns
    -------
    indices : torch.Tensor of shape (n_samples, n_neighbors), on X's device
        Sorted within each row, so that the pairs depend only on the
        neighbour sets, not on how rounding ordered near ties.
    """
    n_samples = X.shape[0]
    k = min(n_neighbors, n_samples - 1)
    flat = X.reshape(n_samples, -1)
    if flat.device.type == "cpu":
        # kneighbors() without X excludes each sample from its own neighbours.
        found = NearestNeighbors(n_neighbors=k).fit(flat.numpy()).kneighbors(return_distance=False)
        return torch.from_numpy(found).sort(dim=1).values
    return _blocked_neighbors(flat, k)


def _blocked_neighbors(flat, k):
    """Exact kNN of the rows of a 2-D tensor, a block of rows at a time."""
    n_samples = flat.shape[0]
    squared = (flat * flat).sum(dim=1)
    rows = max(1, _DISTANCE_BLOCK // n_samples)
    blocks = []
    for start in range(0, n_samples, rows):
        block = flat[start : start + rows]
        distances = squared[start : start + rows, None] - 2 * block @ flat.T + squared
        # A sample is not its own neighbour.
        own = torch.arange(block.shape[0], device=flat.device)
        distances[own, start + own] = torch.inf
        blocks.append(distances.topk(k, dim=1, largest=False).indices)
    return torch.cat(blocks).sort(dim=1).values


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
