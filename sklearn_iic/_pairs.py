"""Pair construction: each sample ``x`` is paired with a perturbed copy and/or a neighbour."""

import torch
from sklearn.neighbors import NearestNeighbors

# Distances held at once by the GPU neighbour search (float32 entries: 256 MiB);
# also the query block of the CPU search.
_DISTANCE_BLOCK = 2**26
# Above this many samples, neighbours are sought among a random subset of this
# size, so that the search grows linearly with n_samples.
_MAX_REFERENCE = 50_000


def random_rows(n_samples, n_rows, generator):
    """Indices of ``n_rows`` of ``n_samples`` rows, drawn without replacement, in order."""
    order = torch.randperm(n_samples, generator=generator, device=generator.device)
    return order[:n_rows].sort().values


@torch.no_grad()
def nearest_neighbors(X, n_neighbors, generator, transform=None):
    """Indices of the ``n_neighbors`` nearest other samples of each sample of ``X``.

    Exact Euclidean search where ``X`` lives: scikit-learn's
    :class:`~sklearn.neighbors.NearestNeighbors` on the CPU (faster there
    than matrix products: docs/benchmarks.rst, "Threads, layout and the
    neighbour search"), and on a GPU matrix products and ``topk``. Queries
    go in blocks of rows, so that at most about 256 MiB of distances (GPU) or
    of temporary indices exist at a time. Up to 50,000 samples every sample is
    a candidate and time grows as ``n_samples ** 2``; beyond, the candidates
    are a random subset of 50,000 samples (drawn with ``generator``), so time
    grows linearly with ``n_samples`` and neighbours are those of a sample as
    dense as 50,000 points. ``n_neighbors`` is capped at ``n_samples - 1``.

    Parameters
    ----------
    X : torch.Tensor of shape (n_samples, ...)
        The data; images are compared pixel by pixel.
    n_neighbors : int
    generator : torch.Generator
        On X's device; draws the candidate subset of large data sets.
    transform : callable or None, default=None
        Map of rows (such as a :class:`~sklearn_iic.Whitening`) in
        whose output distances are measured; applied block by block, so no
        transformed copy of ``X`` is made.

    Returns
    -------
    indices : torch.Tensor of shape (n_samples, n_neighbors), int32, on X's device
        Sorted within each row, so that the pairs depend only on the
        neighbour sets, not on how rounding ordered near ties.
    """
    n_samples = X.shape[0]
    flat = X.reshape(n_samples, -1)
    candidates = torch.arange(n_samples, device=X.device)
    if n_samples > _MAX_REFERENCE:
        candidates = random_rows(n_samples, _MAX_REFERENCE, generator)

    def itself(found, start, block):
        rows = torch.arange(start, start + found.shape[0], device=X.device)
        return found == rows[:, None]

    k = min(n_neighbors, n_samples - 1)
    return _search(flat, flat[candidates], candidates, k, transform, itself)


@torch.no_grad()
def neighbors_among(X, reference, n_neighbors, transform=None):
    """Indices of the ``n_neighbors`` nearest ``reference`` rows of each sample of ``X``.

    As :func:`nearest_neighbors`, with the candidates given: a model pairs
    new samples with the data it was fitted on. A reference row equal to the
    sample, found nearest, is taken for the sample itself and skipped, so that
    scoring the training data pairs it as training did.
    """
    flat = X.reshape(X.shape[0], -1)
    reference = reference.reshape(reference.shape[0], -1)

    def itself(found, start, block):
        mask = torch.zeros(found.shape, dtype=torch.bool, device=found.device)
        mask[:, 0] = (reference[found[:, 0]] == block).all(dim=1)
        return mask

    k = min(n_neighbors, reference.shape[0] - 1)
    candidates = torch.arange(reference.shape[0], device=X.device)
    return _search(flat, reference, candidates, k, transform, itself)


def _search(queries, reference, candidates, k, transform, itself):
    """The ``k`` nearest ``reference`` rows (numbered by ``candidates``) of each query.

    One neighbour more is sought, as a query may find itself: where
    ``itself(found, start, block)`` marks it, it is dropped, else the farthest.
    """
    if transform is None:
        transform = _identity
    device = queries.device
    reference_t = transform(reference)
    if device.type == "cpu":
        search = NearestNeighbors(n_neighbors=k + 1).fit(reference_t.numpy())
        def find(block):
            return torch.from_numpy(search.kneighbors(block.numpy(), return_distance=False))
    else:
        squared = (reference_t * reference_t).sum(dim=1)
        def find(block):
            return _torch_neighbors(block, reference_t, squared, k + 1)
    neighbors = torch.empty((queries.shape[0], k), dtype=torch.int32, device=device)
    rows = max(1, _DISTANCE_BLOCK // reference.shape[0])
    for start in range(0, queries.shape[0], rows):
        block = queries[start : start + rows]
        found = candidates[find(transform(block))]
        rank = torch.arange(k + 1, device=device).expand_as(found)
        rank = torch.where(itself(found, start, block), k + 1, rank)
        found = found.gather(1, rank.argsort(dim=1)[:, :k])
        neighbors[start : start + rows] = found.sort(dim=1).values
    return neighbors


def _identity(x):
    return x


def _torch_neighbors(queries, reference, squared, k):
    """Exact kNN (indices into ``reference``) of ``queries`` by matrix products."""
    distances = (queries * queries).sum(dim=1, keepdim=True) - 2 * queries @ reference.T + squared
    return distances.topk(k, dim=1, largest=False).indices


class PairSampler:
    """Draws the pairs ``(x, x')`` of a batch of sample indices.

    ``x'`` is ``x`` itself or, with ``neighbors``, one of its nearest
    neighbours drawn afresh at every call; ``perturbation`` is then applied to
    ``x'``, and with ``perturb_x`` to ``x`` too (an independent draw). With
    ``n_repeats > 1`` every sample appears that many times in the batch, each
    time against an independent draw.

    Parameters
    ----------
    X : torch.Tensor of shape (n_samples, ...)
        The data, on the training device.
    perturbation : callable or None
        ``perturbation(x, generator)``.
    neighbors : torch.Tensor of shape (n_samples, n_neighbors) or None
        Neighbour indices (any integer type) into ``pool`` on the training device.
    n_repeats : int
    generator : torch.Generator
        Source of all randomness, on the training device.
    pool : torch.Tensor or None, default=None
        The samples that ``neighbors`` index; ``X`` itself when None.
    perturb_x : bool, default=False
        Perturb the sample side too. When ``g`` leaves a trace the network can
        see (the seam of a circular shift, noise on a smooth series), heads
        perturbed on one side only can learn "perturbed or not", which the
        symmetric joint scores as a perfect pairing.
    """

    def __init__(self, X, *, perturbation, neighbors, n_repeats, generator, pool=None,
                 perturb_x=False):
        self.X = X
        self.perturbation = perturbation
        self.perturb_x = perturb_x
        self.neighbors = neighbors
        self.n_repeats = n_repeats
        self.generator = generator
        self.pool = X if pool is None else pool

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
            partner = self.pool[self.neighbors[indices, choice].long()]
        if self.perturbation is not None:
            partner = self.perturbation(partner, self.generator)
            if self.perturb_x:
                x = self.perturbation(x, self.generator)
        return x, partner
