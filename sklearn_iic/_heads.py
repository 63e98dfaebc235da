"""The layout of the cluster heads in a network's output logits.

A network maps a batch to logits; :class:`Heads` says which columns belong
to which cluster head. Training, inference and the plan of a fit read the
heads through it, never through column arithmetic of their own.
"""


class Heads:
    """Layout of the cluster heads in the network's output logits.

    The logits hold ``n_subheads`` main heads of ``n_clusters`` columns (the
    micro-clusters when they are merged afterwards), then
    ``n_subheads`` overclustering heads of ``n_overclusters`` columns (none
    when ``n_overclusters`` is 0).
    """

    def __init__(self, n_clusters, n_overclusters, n_subheads):
        self.sizes = [n_clusters] * n_subheads + [n_overclusters] * n_subheads * bool(
            n_overclusters
        )
        self.n_subheads = n_subheads

    def __repr__(self):
        return f"Heads(sizes={self.sizes})"

    @property
    def main_size(self):
        """Clusters of each main sub-head (the micro-clusters, when they are merged)."""
        return self.sizes[0]

    @property
    def n_outputs(self):
        return sum(self.sizes)

    def probabilities(self, logits):
        """Softmax of each head: main heads first, then overclustering heads."""
        return [chunk.softmax(dim=1) for chunk in logits.split(self.sizes, dim=1)]

    def main(self, logits, head):
        """Logits of main sub-head ``head``."""
        size = self.main_size
        return logits[:, head * size : (head + 1) * size]
