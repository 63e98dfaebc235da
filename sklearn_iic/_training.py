"""Cluster heads and the training loop: minimise the IIC loss of every head.

The loop knows nothing of the estimator: it trains any network whose output
logits are laid out as :class:`Heads` says, on pairs drawn by a
:class:`~sklearn_iic._pairs.PairSampler`.
"""

import contextlib
import math
import sys
import time

import torch

from ._loss import loss_from_joint, normalize_joint


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


def batches_per_epoch(n_samples, batch_size):
    """Optimiser steps of an epoch: batches of at most ``batch_size`` samples."""
    return -(-n_samples // batch_size)


def _epoch_batches(n_samples, batch_size, generator):
    order = torch.randperm(n_samples, generator=generator, device=generator.device)
    # Near-equal batches: no tiny last batch to upset BatchNorm or the joint.
    return order.tensor_split(batches_per_epoch(n_samples, batch_size))


def smallest_batch(n_samples, batch_size):
    """Samples in the smallest of the near-equal batches that an epoch is split into."""
    return n_samples // batches_per_epoch(n_samples, batch_size)


def pair_logits(network, x, partner):
    """Logits of a batch and of its pairs, in one forward pass (one set of BatchNorm statistics)."""
    logits = network(torch.cat([x, partner]))
    return logits.chunk(2)


# Cluster sizes printed per epoch by verbose fits.
_SIZES_SHOWN = 10
# Epoch lines printed by verbose fits, about: a line every
# ceil(n_epochs / _LINES_SHOWN) epochs, besides the first and last epochs.
_LINES_SHOWN = 20


class _EpochMonitor:
    """Per-epoch report for ``verbose``: loss, mutual information and cluster sizes.

    Tracks the first main sub-head, its cluster sizes largest first (the
    largest ten, and how many are used, for micro-clusters). A line is
    written for the first and the last epoch and every ``ceil(n_epochs /
    20)`` epochs in between, so that long fits print about 20 lines. On a
    terminal a tqdm progress bar (when tqdm is installed) shows the figures
    of every epoch and the lines are written above it; into a file or a
    captured log only the lines go, so that bar updates never run into them.
    Trained data-parallel (``group``), the figures are summed over ranks and
    rank 0 alone reports.
    """

    def __init__(self, n_epochs, n_clusters, lamb, group=None):
        self.n_epochs = n_epochs
        self.n_clusters = n_clusters
        self.group = group
        self.silent = group is not None and group.rank != 0
        self.start = time.perf_counter()
        self.every = math.ceil(n_epochs / _LINES_SHOWN)
        self.unwritten = None  # the latest epoch's line, until written
        self.bar = None
        if not self.silent and sys.stderr is not None and sys.stderr.isatty():
            try:
                from tqdm.auto import tqdm
            except ImportError:
                pass
            else:
                self.bar = tqdm(total=n_epochs, desc="IICClustering", unit="epoch", leave=False)
        self._write(
            f"[IICClustering] loss: the IIC loss minimised (lamb={lamb}), mean of the epoch's "
            "steps; MI: mutual information I(z; z') of the epoch's pairs, in nats, at most "
            f"ln {n_clusters} = {math.log(n_clusters):.3f}; sizes: clusters of the first "
            "sub-head, largest first."
        )

    def _write(self, line):
        if self.silent:
            return
        if self.bar is None:
            print(line, flush=True)
        else:
            self.bar.write(line)

    def begin_epoch(self):
        self.joint = 0.0
        self.sizes = 0

    def update(self, p, q):
        self.joint = self.joint + p.T @ q
        self.sizes = self.sizes + torch.bincount(p.argmax(dim=1), minlength=self.n_clusters)

    def end_epoch(self, epoch, loss):
        joint, sizes = self.joint, self.sizes
        if self.group is not None:
            joint, sizes = self.group.sum([joint, sizes])
        information = -float(loss_from_joint(normalize_joint(joint)))
        counts = sizes.sort(descending=True).values.tolist()
        sizes = " ".join(str(n) for n in counts[:_SIZES_SHOWN])
        if len(counts) > _SIZES_SHOWN:
            sizes += f" ...; {sum(n > 0 for n in counts)} of {len(counts)} used"
        self.unwritten = (
            f"[IICClustering] epoch {epoch + 1:4d}/{self.n_epochs}  loss {loss:+.4f}  "
            f"MI {information:.4f}  sizes [{sizes}]  ({time.perf_counter() - self.start:.1f}s)"
        )
        if epoch == 0 or (epoch + 1) % self.every == 0 or epoch + 1 == self.n_epochs:
            self._flush()
        if self.bar is not None:
            self.bar.update()
            self.bar.set_postfix(loss=f"{loss:+.4f}", MI=f"{information:.4f}")

    def _flush(self):
        if self.unwritten is not None:
            self._write(self.unwritten)
            self.unwritten = None

    def end(self):
        """Write the last epoch's line, if skipped (training converged in between)."""
        self._flush()

    def close(self):
        if self.bar is not None:
            self.bar.close()


class _Convergence:
    """Stop once the epoch loss has not improved on its best by ``tol`` for ``patience`` epochs.

    As scikit-learn's MLP and SGD estimators do with ``tol`` and
    ``n_iter_no_change``; ``tol=None`` never stops early.
    """

    def __init__(self, tol, patience):
        self.tol, self.patience = tol, patience
        self.best, self.stale = math.inf, 0

    def converged(self, loss):
        if self.tol is None:
            return False
        self.stale = self.stale + 1 if loss > self.best - self.tol else 0
        self.best = min(self.best, loss)
        return self.stale >= self.patience


def train(network, sampler, heads, *, batch_size, n_epochs, learning_rate, lamb,
          generator, tol=None, n_iter_no_change=10, verbose=0, compile=False, group=None):
    """Train ``network`` in place by minimising the IIC loss of every head.

    Each step averages the loss over the main sub-heads and adds the average
    over the overclustering sub-heads. ``compile`` (True or keyword arguments
    of :func:`torch.compile`) runs the steps through a compiled view of the
    network, which shares its parameters. Training stops after ``n_epochs``,
    or earlier once the epoch loss has not improved by ``tol`` for
    ``n_iter_no_change`` epochs.

    With ``group`` (a :class:`~sklearn_iic._distributed.DataParallel`), every
    rank draws the same global batches of pairs and trains on its share of
    each: the heads' ``p.T @ p'`` sums, and BatchNorm's moments, are summed
    over ranks before the loss, and the gradients averaged, so that every
    rank takes the step of the global batch.

    Returns
    -------
    loss_curve : list of float
        Mean main-head loss of each epoch run.
    converged : bool
        Whether training stopped because the loss stopped improving.
    """
    optimizer = torch.optim.Adam(network.parameters(), lr=learning_rate)
    forward = network
    if compile:
        forward = torch.compile(network, **(compile if isinstance(compile, dict) else {}))
    n_main = heads.n_subheads
    monitor = _EpochMonitor(n_epochs, heads.main_size, lamb, group) if verbose else None
    convergence = _Convergence(tol, n_iter_no_change)
    network.train()
    loss_curve, converged = [], False
    with contextlib.ExitStack() as stack:
        if monitor:
            stack.callback(monitor.close)
        if group is not None:
            stack.enter_context(group.training(network, generator))
        for epoch in range(n_epochs):
            epoch_loss = 0.0
            batches = _epoch_batches(sampler.n_samples, batch_size, generator)
            if monitor:
                monitor.begin_epoch()
            for indices in batches:
                x, partner = sampler(indices)
                if group is not None:
                    x, partner = group.share(x, partner)
                logits, partner_logits = pair_logits(forward, x, partner)
                probs = heads.probabilities(logits)
                partner_probs = heads.probabilities(partner_logits)
                # iic_loss of each head, with its p.T @ p' summed over ranks in between.
                totals = [p.T @ q for p, q in zip(probs, partner_probs)]
                if group is not None:
                    totals = group.sum_joints(totals)
                losses = [loss_from_joint(normalize_joint(t), lamb) for t in totals]
                main_loss = torch.stack(losses[:n_main]).mean()
                loss = main_loss
                if len(losses) > n_main:
                    loss = loss + torch.stack(losses[n_main:]).mean()
                # Checked at every step, before the weights take a non-finite update.
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"The IIC loss became non-finite at epoch {epoch + 1}. Try a lower "
                        "learning_rate, a weaker perturbation, or standardising the input."
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if group is not None:
                    group.average_gradients(network.parameters())
                optimizer.step()
                epoch_loss = epoch_loss + main_loss.detach()
                if monitor:
                    monitor.update(probs[0].detach(), partner_probs[0].detach())
            epoch_loss = float(epoch_loss) / len(batches)
            loss_curve.append(epoch_loss)
            if monitor:
                monitor.end_epoch(epoch, epoch_loss)
            if convergence.converged(epoch_loss):
                converged = True
                break
        if monitor:
            monitor.end()
    network.eval()
    return loss_curve, converged
