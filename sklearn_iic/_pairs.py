"""Pair construction: each sample ``x`` is paired with a perturbed copy and/or a neighbour."""

import torch
from sklearn.neighbors import NearestNeighbors

# Distances held at once by the GPU neighbour search (float32 entries: 256 MiB).
_DISTANCE_BLOCK = 2**26
# Above this many samples, neighbours are sought among a random subset of this
# size, so that the search grows linearly with n_samples.
_MAX_REFERENCE = 50_000


@torch.no_grad()
def nearest_neighbors(X, n_neighbors, generator):
    """Indices of the ``n_neighbors`` nearest other samples of each sample of ``X``.

    Exact Euclidean search where ``X`` lives: scikit-learn's
    :class:`~sklearn.neighbors.NearestNeighbors` on the CPU (2.5x faster there
    than the blocked search), and on a GPU blocks of rows against the
    candidates, so that memory stays at about 256 MiB of distances. Up to
    50,000 samples every sample is a candidate and time grows as
    ``n_samples ** 2``; beyond, the candidates are a random subset of 50,000
    samples (drawn with ``generator``), so time grows linearly with
    ``n_samples`` and neighbours are those of a sample as dense as 50,000 points.
    ``n_neighbors`` is capped at ``n_samples - 1``.

    Parameters
    ----------
    X : torch.Tensor of shape (n_samples, ...)
        The data; images are compared pixel by pixel.
    n_neighbors : int
    generator : torch.Generator
        On X's device; draws the candidate subset of large data sets.

    Returns
    -------
    indices : torch.Tensor of shape (n_samples, n_neighbors), on X's device
        Sorted within each row, so that the pairs depend only on the
        neighbour sets, not on how rounding ordered near ties.
    """
    n_samples = X.shape[0]
    k = min(n_neighbors, n_samples - 1)
    flat = X.reshape(n_samples, -1)
    candidates = torch.arange(n_samples, device=X.device)
    if n_samples > _MAX_REFERENCE:
        candidates = torch.randperm(n_samples, generator=generator, device=X.device)
        candidates = candidates[:_MAX_REFERENCE].sort().values
    # One extra neighbour, as a sample may find itself among its candidates.
    if flat.device.type == "cpu":
        search = NearestNeighbors(n_neighbors=k + 1).fit(flat[candidates].numpy())
        found = torch.from_numpy(search.kneighbors(flat.numpy(), return_distance=False))
    else:
        found = _blocked_neighbors(flat, flat[candidates], k + 1)
    found = candidates[found]
    # Drop the sample itself where found, else the farthest of the k + 1.
    rank = torch.arange(k + 1, device=X.device).expand_as(found)
    rank = torch.where(found == torch.arange(n_samples, device=X.device)[:, None], k + 1, rank)
    return found.gather(1, rank.argsort(dim=1)[:, :k]).sort(dim=1).values


def _blocked_neighbors(queries, candidates, k):
    """Exact kNN (indices into ``candidates``) of 2-D ``queries``, a block at a time."""
    squared = (candidates * candidates).sum(dim=1)
    rows = max(1, _DISTANCE_BLOCK // candidates.shape[0])
    blocks = []
    for block in queries.split(rows):
        distances = (block * block).sum(dim=1, keepdim=True) - 2 * block @ candidates.T + squared
        blocks.append(distances.topk(k, dim=1, largest=False).indices)
    return torch.cat(blocks)


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
