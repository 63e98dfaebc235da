"""Device handling, cluster heads and the training loop."""

import contextlib
import time

import torch

from ._loss import iic_loss, normalize_joint

# Rows per forward pass at prediction time: bounds memory for any n_samples.
PREDICT_BATCH_SIZE = 8192


def resolve_device(device):
    """Turn the ``device`` parameter into a :class:`torch.device`."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a valid torch device: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={str(device)!r} was requested but CUDA is not available; "
            "use device='auto' or 'cpu'."
        )
    return device


@contextlib.contextmanager
def torch_threads(n_threads):
    """Run with ``n_threads`` intra-op threads, restoring the previous number."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def local_torch_rng(seed, device):
    """Seed torch for the block and restore the global RNG state afterwards.

    Modules built and trained inside (weight initialisation, dropout) are then
    reproducible, and the caller's global torch RNG is neither read nor changed.
    """
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class Heads:
    """Layout of the cluster heads in the network's output logits.

    The logits hold ``n_subheads`` main heads of ``n_clusters`` columns, then
    ``n_subheads`` overclustering heads of ``n_overclusters`` columns (none
    when ``n_overclusters`` is 0).
    """

    def __init__(self, n_clusters, n_overclusters, n_subheads):
        self.sizes = [n_clusters] * n_subheads + [n_overclusters] * n_subheads * bool(
            n_overclusters
        )
        self.n_subheads = n_subheads

    @property
    def n_outputs(self):
        return sum(self.sizes)

    def probabilities(self, logits):
        """Softmax of each head: main heads first, then overclustering heads."""
        return [chunk.softmax(dim=1) for chunk in logits.split(self.sizes, dim=1)]

    def main(self, logits, head):
        """Logits of main sub-head ``head``."""
        size = self.sizes[0]
        return logits[:, head * size : (head + 1) * size]


def _epoch_batches(n_samples, batch_size, generator):
    order = torch.randperm(n_samples, generator=generator, device=generator.device)
    n_batches = -(-n_samples // batch_size)
    # Near-equal batches: no tiny last batch to upset BatchNorm or the joint.
    return order.tensor_split(n_batches)


def _pair_logits(network, x, partner):
    logits = network(torch.cat([x, partner]))
    return logits.chunk(2)


def train(network, sampler, heads, *, batch_size, n_epochs, learning_rate, lamb,
          generator, verbose=0):
    """Train ``network`` in place by minimising the IIC loss of every head.

    Each step averages the loss over the main sub-heads and adds the average
    over the overclustering sub-heads. Returns the mean main-head loss of each
    epoch.
    """
    optimizer = torch.optim.Adam(network.parameters(), lr=learning_rate)
    n_main = heads.n_subheads
    network.train()
    loss_curve = []
    start = time.perf_counter()
    for epoch in range(n_epochs):
        epoch_loss = 0.0
        batches = _epoch_batches(sampler.n_samples, batch_size, generator)
        for indices in batches:
            logits, partner_logits = _pair_logits(network, *sampler(indices))
            losses = [
                iic_loss(p, q, lamb)
                for p, q in zip(heads.probabilities(logits), heads.probabilities(partner_logits))
            ]
            main_loss = torch.stack(losses[:n_main]).mean()
            loss = main_loss
            if len(losses) > n_main:
                loss = loss + torch.stack(losses[n_main:]).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            # Accumulate on the device: no host synchronisation per batch.
            epoch_loss = epoch_loss + main_loss.detach()
        epoch_loss = float(epoch_loss) / len(batches)
        if not torch.isfinite(torch.tensor(epoch_loss)):
            raise FloatingPointError(
                f"The IIC loss became non-finite at epoch {epoch + 1}. Try a lower "
                "learning_rate, a weaker perturbation, or standardising the input."
            )
        loss_curve.append(epoch_loss)
        if verbose:
            print(f"[IICClustering] epoch {epoch + 1:4d}/{n_epochs}  loss {epoch_loss:+.4f}  "
                  f"({time.perf_counter() - start:.1f}s)")
    network.eval()
    return loss_curve


@torch.no_grad()
def pair_joints(network, sampler, heads, batch_size):
    """Joint distribution of each main sub-head over one pass of pairs of all samples.

    The network is evaluated in eval mode; the joints are summed over batches
    before normalisation, so they describe the whole data set.
    """
    network.eval()
    totals = None
    order = torch.arange(sampler.n_samples, device=sampler.X.device)
    for indices in order.split(batch_size):
        logits, partner_logits = _pair_logits(network, *sampler(indices))
        probs = heads.probabilities(logits)[: heads.n_subheads]
        partner_probs = heads.probabilities(partner_logits)[: heads.n_subheads]
        sums = [p.T @ q for p, q in zip(probs, partner_probs)]
        totals = sums if totals is None else [t + s for t, s in zip(totals, sums)]
    return [normalize_joint(t) for t in totals]


@torch.no_grad()
def predict_logits(network, X, batch_size=PREDICT_BATCH_SIZE):
    """Logits of ``network`` on ``X`` in eval mode, in batches of bounded size."""
    network.eval()
    return torch.cat([network(chunk) for chunk in X.split(batch_size)])
