"""The layout of the cluster heads in a network's output logits.

A network maps a batch to logits; :class:`Heads` says which columns belong
to which cluster head. Training, inference and the plan of a fit read the
heads through it, never through column arithmetic of their own.
"""


class Heads:
    """Layout of the cluster heads in the network's output logits.

    The logits hold ``n_subheads`` main heads of ``main_size`` columns (the
    micro-clusters when they are merged afterwards), then, with
    ``prior_heads``, ``n_subheads`` more main heads whose sizes are pulled
    towards a prior rather than towards equal sizes (the *prior heads*,
    :mod:`~sklearn_iic._size_prior`; the ``n_main`` main heads are all
    candidates to label), then ``n_overclustering_heads`` (by default
    ``n_subheads``) overclustering heads of ``n_overclusters`` columns (none
    when ``n_overclusters`` is 0), then ``n_subheads`` cluster heads of
    ``cluster_size`` columns (none when 0): heads of ``n_clusters`` trained
    beside micro-clusters, whose clusters compete with the merged ones.
    Heads are numbered in that order, from 0, by their ``index``. The
    overclustering heads' loss is weighed by ``overclustering_weight`` in the
    quantity trained.
    """

    def __init__(self, main_size, n_overclusters, n_subheads, cluster_size=0,
                 prior_heads=False, n_overclustering_heads=None, overclustering_weight=1.0):
        self.n_subheads = n_subheads
        self.n_main = n_subheads * (2 if prior_heads else 1)
        if n_overclustering_heads is None:
            n_overclustering_heads = n_subheads
        self.n_overclustering_heads = n_overclustering_heads * bool(n_overclusters)
        self.overclustering_weight = overclustering_weight
        self.sizes = [main_size] * self.n_main + [n_overclusters] * self.n_overclustering_heads
        self.n_auxiliary = len(self.sizes)  # heads before the cluster heads
        self.sizes += [cluster_size] * n_subheads * bool(cluster_size)

    def __repr__(self):
        return f"Heads(sizes={self.sizes})"

    @property
    def main_size(self):
        """Clusters of each main sub-head (the micro-clusters, when they are merged)."""
        return self.sizes[0]

    @property
    def n_outputs(self):
        return sum(self.sizes)

    @property
    def cluster_size(self):
        """Clusters of each cluster head; 0 when there are none."""
        return self.sizes[-1] if len(self.sizes) > self.n_auxiliary else 0

    @property
    def n_cluster_outputs(self):
        """The last logits, those of the cluster heads."""
        return sum(self.sizes[self.n_auxiliary :])

    @property
    def n_cluster_heads(self):
        """Cluster sub-heads: ``n_subheads``, or 0 when there are none."""
        return len(self.sizes) - self.n_auxiliary

    def cluster_index(self, head):
        """Index of cluster sub-head ``head`` among all heads."""
        return self.n_auxiliary + head

    def labelling_index(self, best_head, cluster_head):
        """Index of the head that labels: cluster sub-head ``cluster_head``, or ``best_head``."""
        return best_head if cluster_head is None else self.cluster_index(cluster_head)

    @property
    def prior_heads(self):
        """Indices of the prior heads: none, or the last ``n_subheads`` main heads."""
        return range(self.n_subheads, self.n_main)

    @property
    def kinds(self):
        """``(n_heads, size)`` of each kind of head present: main, overclustering, cluster."""
        kinds = [(self.n_main, self.main_size)]
        if self.n_overclustering_heads:
            kinds.append((self.n_overclustering_heads, self.sizes[self.n_main]))
        if self.n_cluster_heads:
            kinds.append((self.n_cluster_heads, self.cluster_size))
        return kinds

    def kind_probabilities(self, logits):
        """Softmax of every head, a ``(n_samples, n_heads, size)`` tensor per kind of head.

        The heads of a kind are equal in size, so one softmax serves them all,
        and their joints and losses are batched too: a training step runs a
        few operators per kind of head instead of a few per head.
        """
        widths = [n_heads * size for n_heads, size in self.kinds]
        return [chunk.unflatten(1, kind).softmax(dim=2)
                for chunk, kind in zip(logits.split(widths, dim=1), self.kinds)]

    def logits(self, logits, index):
        """Logits of head ``index`` (main sub-head ``index`` below ``n_main``)."""
        start = sum(self.sizes[:index])
        return logits[:, start : start + self.sizes[index]]

    def losses(self, losses):
        """The quantity training minimises from the heads' losses, and the main heads' mean.

        ``losses`` holds a vector per kind of head (the loss of each of its
        heads). The mean loss of each kind, summed: the main heads' (the
        prior heads' mean counts as a kind of its own), plus the
        overclustering heads' times ``overclustering_weight``, plus the
        cluster heads'. The main heads' mean is that of the heads pulled
        towards equal sizes.
        """
        main = losses[0][: self.n_subheads].mean()
        total = main
        if self.prior_heads:
            total = total + losses[0][self.n_subheads :].mean()
        for index, kind in enumerate(losses[1:], start=1):
            over = index == 1 and self.n_overclustering_heads
            total = total + (self.overclustering_weight if over else 1.0) * kind.mean()
        return total, main
