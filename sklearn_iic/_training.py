"""The training loop: minimise the IIC loss of every head, in steps to override, seen by callbacks.

:class:`TrainingLoop` knows nothing of the estimator: it trains any network
whose output logits are laid out as :class:`~sklearn_iic._heads.Heads` says,
on pairs drawn by a :class:`~sklearn_iic._pairs.PairSampler`. Its steps are
methods that a subclass overrides (``make_optimizer``, ``draw``,
``compute_loss``, ``train_step``, ``run_epoch``, ``fit_loop``), and callbacks
observe it; the progress report of ``verbose``, the convergence test of
``tol``, the statistics of the report and the informed start of images
(:class:`InformedStart`) are callbacks themselves.

Callbacks
---------
A callback is an object with any of the methods below (:class:`Callback`
has them all, doing nothing). The loop calls them on each callback, in the
order of ``loop.callbacks``, with the loop as first argument:

``on_train_begin(loop)``
    Once, before the first epoch (the network is in training mode).
``on_epoch_begin(loop, epoch)``
    ``epoch`` counts from 0.
``on_batch_begin(loop)``
    Before each step's forward pass.
``on_batch_end(loop, step)``
    After each optimiser step; ``step`` is the batch's :class:`Step`.
``on_epoch_end(loop, epoch, loss)``
    ``loss``: the epoch's mean main-head loss, already in
    ``loop.loss_curve``. A callback ends training after this epoch by setting
    ``loop.stop_training`` (and ``loop.converged``, when that is why).
``on_train_end(loop)``
    Once, after the last epoch.
``on_exception(loop, exception)``
    Instead of ``on_train_end`` when training raises, before the exception
    propagates.

Data-parallel training runs the same loop, with a
:class:`~sklearn_iic._distributed.DataParallel` group instead of the
:class:`LocalGroup` of one process: callbacks then run on every rank.
"""

import contextlib
import dataclasses
import math
import sys
import time

import torch

from ._loss import loss_from_joint, normalize_joint

# Devices on which torch.optim.Adam has a fused kernel.
_FUSED_ADAM_DEVICES = ("cpu", "cuda")


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


def kind_joints(p, q):
    """``p_h.T @ q_h`` of every head ``h`` of a kind, from ``(n, n_heads, size)`` probabilities."""
    return p.permute(1, 2, 0) @ q.transpose(0, 1)


def pair_logits(network, x, partner):
    """Logits of a batch and of its pairs, in one forward pass (one set of BatchNorm statistics)."""
    logits = network(torch.cat([x, partner]))
    return logits.chunk(2)


class LocalGroup:
    """The ranks of a fit in this process alone: one rank, nothing to share or wait for.

    The interface through which ``fit`` and :class:`TrainingLoop` meet the
    ranks of a fit; here every method is the identity or does nothing.
    :class:`~sklearn_iic._distributed.DataParallel` implements it on
    torch.distributed, so that neither ``fit`` nor the loop has a branch of
    its own for data-parallel training.
    """

    rank = 0
    world_size = 1

    def agree_on_plan(self, plan, X):
        """The plan every rank fits ``X`` with: ``plan`` itself."""
        return plan

    def checkpoint(self, value=0, hint="", **items):
        """Wait for the other ranks and compare ``items`` with theirs: returns ``value``."""
        return value

    def finish(self, **items):
        """The last checkpoint of a fit."""

    def training(self, network, generator):
        """Context of training ``network``: yields the module to run, ``network`` itself."""
        return contextlib.nullcontext(network)

    def steps(self):
        """Context of an epoch's training steps."""
        return contextlib.nullcontext()

    def deferring_errors(self):
        """Context of local code between the collectives of the steps: errors raise at once."""
        return contextlib.nullcontext()

    def share(self, x, partner):
        """This rank's share of a batch of pairs: all of it."""
        return x, partner

    def sum_joints(self, totals):
        """Every head's ``p.T @ p'`` summed over ranks: ``totals``."""
        return totals

    def average_gradients(self, parameters):
        """Average the gradients over ranks: nothing to do."""

    def sum(self, tensors):
        """Sums over ranks of ``tensors``: the tensors."""
        return list(tensors)


@dataclasses.dataclass
class Step:
    """The outcome of a training step's forward pass (:meth:`TrainingLoop.compute_loss`).

    ``probs`` and ``partner_probs`` hold the softmax of every head for the
    batch and for its pairs, a ``(n_pairs, n_heads, size)`` tensor per kind
    of head (main heads first; :meth:`~sklearn_iic._heads.Heads.kind_probabilities`);
    ``joints`` each head's ``p.T @ p'`` summed over the batch (and, trained
    data-parallel, over ranks), before normalisation, a ``(n_heads, size,
    size)`` tensor per kind, in the autograd graph;
    ``losses`` the IIC loss of every head, a vector per kind; ``main_loss``
    their mean over the main heads; ``loss``, the
    quantity minimised, adds the mean over the overclustering heads and the
    mean over the cluster heads (:meth:`~sklearn_iic._heads.Heads.losses`).
    """

    probs: list
    partner_probs: list
    joints: list
    losses: list
    main_loss: torch.Tensor
    loss: torch.Tensor


class TrainingLoop:
    """Train ``network`` in place by minimising the IIC loss of every head.

    Each step averages the loss over the main sub-heads and adds the average
    over the overclustering sub-heads and over the cluster sub-heads.
    Training stops after ``n_epochs``, or earlier once a callback sets
    ``stop_training`` (:class:`Convergence`).

    Parameters
    ----------
    network : torch.nn.Module
        Maps a batch to logits laid out as ``heads`` says.
    sampler : PairSampler
        Draws the pairs of a batch of sample indices.
    heads : Heads
    batch_size, n_epochs : int
    lamb : float
        Weight of the marginal entropies in the IIC loss.
    generator : torch.Generator
        Draws the order of the batches (the sampler draws the pairs).
    learning_rate : float, default=1e-3
    optimizer : callable or None, default=None
        Called as ``optimizer(parameters, lr=learning_rate)`` by
        :meth:`make_optimizer`; None: :class:`torch.optim.Adam`, fused
        (one kernel per step for all parameters) where torch has a fused
        kernel for the parameters' device.
    compile : bool or dict, default=False
        Run the steps through :func:`torch.compile` of the network (a dict
        holds its keyword arguments), which shares its parameters.
    callbacks : list, default=()
        Callbacks (see the module's docstring), called in this order.
    group : LocalGroup or DataParallel or None, default=None
        The ranks that train together; None: this process alone.

    Attributes
    ----------
    loss_curve : list of float
        Mean main-head loss of each epoch run.
    converged : bool
        Whether training stopped because the loss stopped improving.
    stop_training : bool
        Set by a callback to end training after the current epoch.
    step_lamb : float or torch.Tensor
        The ``lamb`` of the steps' losses: ``lamb``, unless a callback sets
        another (:class:`InformedStart`: 1.0, then a 0-d tensor on the
        device).
    size_prior : torch.Tensor or None
        Cluster shares that the main heads' sizes are pulled towards, a
        ``(n_main, size)`` tensor (see :func:`~sklearn_iic._loss.loss_from_joint`;
        a uniform row is the loss without a prior); None, the default, pulls
        every head towards equal sizes. Set by a callback
        (:class:`~sklearn_iic._size_prior.SizePrior`).
    epoch : int
        The epoch being run, from 0.
    optimizer_ : torch.optim.Optimizer
        The optimiser, once :meth:`fit` has made it.
    forward : torch.nn.Module
        The module the steps run during :meth:`fit`: the network, or its
        compiled view, or (data-parallel) its converted BatchNorm root.
    """

    def __init__(self, network, sampler, heads, *, batch_size, n_epochs, lamb, generator,
                 learning_rate=1e-3, optimizer=None, compile=False, callbacks=(),
                 group=None):
        self.network = network
        self.sampler = sampler
        self.heads = heads
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.lamb = lamb
        self.generator = generator
        self.learning_rate = learning_rate
        self.optimizer = optimizer
        self.compile = compile
        self.callbacks = list(callbacks)
        self.group = LocalGroup() if group is None else group

    def fit(self):
        """Train the network, then leave it in eval mode; returns the loop."""
        self.optimizer_ = self.make_optimizer()
        self.loss_curve, self.converged, self.stop_training = [], False, False
        self.step_lamb, self.size_prior = self.lamb, None
        self.network.train()
        try:
            with self.group.training(self.network, self.generator) as network:
                self.forward = self.compiled(network)
                self.notify("on_train_begin")
                self.fit_loop()
                self.notify("on_train_end")
        except BaseException as exc:
            self.notify("on_exception", exc)
            raise
        self.network.eval()
        return self

    def make_optimizer(self):
        parameters = list(self.network.parameters())
        if self.optimizer is not None:
            return self.optimizer(parameters, lr=self.learning_rate)
        # Adam's per-tensor steps were a tenth of a table's step; fused, they
        # are one kernel (docs/benchmarks.rst, "Cheaper steps: design and cost").
        fused = all(p.device.type in _FUSED_ADAM_DEVICES and p.is_floating_point()
                    for p in parameters)
        return torch.optim.Adam(parameters, lr=self.learning_rate, fused=fused or None)

    def compiled(self, network):
        """The module that the steps run: ``network``, or a compiled view of it."""
        if not self.compile:
            return network
        return torch.compile(network, **(self.compile if isinstance(self.compile, dict) else {}))

    def fit_loop(self):
        """Run epochs until ``n_epochs``, or until a callback sets ``stop_training``."""
        for epoch in range(self.n_epochs):
            self.epoch = epoch
            self.notify("on_epoch_begin", epoch)
            loss = self.run_epoch()
            self.loss_curve.append(loss)
            self.notify("on_epoch_end", epoch, loss)
            if self.stop_training:
                break

    def run_epoch(self):
        """A step per batch of a fresh order of the samples; returns the mean main-head loss.

        Each step draws the pairs of the step after it (:meth:`train_step`).
        The steps wait for no result of the device: whether every loss was
        finite is read with the epoch's loss, once the epoch is done. If one
        was not, the weights are put back as they were when the epoch began,
        and a FloatingPointError is raised.
        """
        batches = _epoch_batches(self.sampler.n_samples, self.batch_size, self.generator)
        start = [tensor.detach().clone() for tensor in self._state()]
        self.finite = True
        pairs = self.draw(batches[0])
        total = 0.0
        with self.group.steps():
            for following in [*batches[1:], None]:
                main_loss, pairs = self.train_step(*pairs, following)
                total = total + main_loss
        finite = torch.as_tensor(self.finite, dtype=total.dtype)
        total, finite = torch.stack([total, finite]).tolist()
        if not finite:
            with torch.no_grad():
                for tensor, saved in zip(self._state(), start):
                    tensor.copy_(saved)
            raise FloatingPointError(
                f"The IIC loss became non-finite at epoch {self.epoch + 1}. Try a lower "
                "learning_rate, a weaker perturbation, or standardising the input."
            )
        return total / len(batches)

    def _state(self):
        """The network's parameters and buffers: what a step changes."""
        return [*self.network.parameters(), *self.network.buffers()]

    def draw(self, indices):
        """The pairs ``(x, partner)`` of the samples ``indices``."""
        return self.sampler(indices)

    def train_step(self, x, partner, following=None):
        """One optimiser step on a batch of pairs; draws the pairs of the ``following`` indices.

        The following pairs are drawn between the backward pass and the
        averaging of the gradients, so that, trained data-parallel, a rank
        whose draw fails tells the others with that average, which every
        step makes anyway (``group.deferring_errors``).

        Returns
        -------
        main_loss : torch.Tensor
            The step's main-head loss, detached.
        pairs : tuple of torch.Tensor or None
            The pairs of ``following``; None without it.
        """
        with self.group.deferring_errors():
            self.notify("on_batch_begin")
        step = self.compute_loss(*self.group.share(x, partner))
        # On the device: no step waits to learn whether its loss was finite.
        self.finite = torch.isfinite(step.loss.detach()) & self.finite
        self.optimizer_.zero_grad(set_to_none=True)
        step.loss.backward()
        pairs = None
        with self.group.deferring_errors():
            if following is not None:
                pairs = self.draw(following)
        self.group.average_gradients(self.network.parameters())
        self.optimizer_.step()
        with self.group.deferring_errors():
            self.notify("on_batch_end", step)
        return step.main_loss.detach(), pairs

    def compute_loss(self, x, partner):
        """Forward pass of a batch of pairs and the IIC loss of every head: a :class:`Step`.

        Each head's ``p.T @ p'`` is summed over ranks (``group.sum_joints``)
        before its loss. A non-finite loss is noted by :meth:`train_step` and
        raised at the end of the epoch (:meth:`run_epoch`).
        """
        logits, partner_logits = pair_logits(self.forward, x, partner)
        probs = self.heads.kind_probabilities(logits)
        partner_probs = self.heads.kind_probabilities(partner_logits)
        totals = self.group.sum_joints([kind_joints(p, q) for p, q in zip(probs, partner_probs)])
        priors = [self.size_prior] + [None] * (len(totals) - 1)
        losses = [loss_from_joint(normalize_joint(t), self.step_lamb, prior)
                  for t, prior in zip(totals, priors)]
        loss, main_loss = self.heads.losses(losses)
        return Step(probs, partner_probs, totals, losses, main_loss, loss)

    def notify(self, hook, *args):
        """Call method ``hook`` of every callback that has one, with the loop and ``args``."""
        for callback in self.callbacks:
            method = getattr(callback, hook, None)
            if method is not None:
                method(self, *args)


class Callback:
    """A training callback whose hooks do nothing: subclass it and override those you need.

    The hooks and their order are described in the docstring of
    :mod:`sklearn_iic._training`.
    """

    def on_train_begin(self, loop):
        pass

    def on_epoch_begin(self, loop, epoch):
        pass

    def on_batch_begin(self, loop):
        pass

    def on_batch_end(self, loop, step):
        pass

    def on_epoch_end(self, loop, epoch, loss):
        pass

    def on_train_end(self, loop):
        pass

    def on_exception(self, loop, exception):
        pass


class EpochStatistics(Callback):
    """The first main sub-head's pairs over each epoch: mutual information and cluster sizes.

    After each epoch, ``information`` holds the mutual information
    ``I(z; z')`` of the epoch's pairs in nats, and ``counts`` the samples of
    each cluster (by their most likely one), largest first; trained
    data-parallel, of the pairs of every rank. Both are summed on the
    device step by step and read together once an epoch.
    """

    def on_epoch_begin(self, loop, epoch):
        self.joint = 0.0
        self.sizes = torch.zeros(loop.heads.main_size, dtype=torch.int64,
                                 device=loop.generator.device)

    def on_batch_end(self, loop, step):
        p, q = step.probs[0][:, 0].detach(), step.partner_probs[0][:, 0].detach()
        self.joint = self.joint + p.T @ q
        # Not bincount, which reads the largest label back from the device.
        labels = p.argmax(dim=1)
        self.sizes = self.sizes.index_add(0, labels, torch.ones_like(labels))

    def summed(self, loop):
        """The epoch's mutual information and cluster sizes, summed over ranks, on the device."""
        joint, sizes = loop.group.sum([self.joint, self.sizes])
        return -loss_from_joint(normalize_joint(joint)), sizes

    def on_epoch_end(self, loop, epoch, loss):
        information, sizes = self.summed(loop)
        # One read from the device for both.
        counts = sizes.sort(descending=True).values
        values = torch.cat([information.reshape(1).double(), counts.double()]).tolist()
        self.information, self.counts = values[0], [int(n) for n in values[1:]]


# Paired samples share almost no information while the network rests on the
# independent, uniform assignment IIC can sit on for a hundred steps and more
# before it finds structure; epochs below this many nats are not counted by
# the convergence test (docs/benchmarks.rst, "Patience"), and on images keep
# lamb at 1 (InformedStart).
_UNINFORMED_NATS = 0.01


class Convergence(EpochStatistics):
    """Stop once the epoch loss has not improved on its best by ``tol`` for ``patience`` epochs.

    As scikit-learn's MLP and SGD estimators do with ``tol`` and
    ``n_iter_no_change``; ``tol=None`` never stops early. An epoch whose
    pairs share less than ``_UNINFORMED_NATS`` of mutual information (of the
    first main sub-head, as :class:`EpochStatistics` measures it) is not
    counted: a plateau of the uninformative start is not convergence.
    """

    def __init__(self, tol, patience):
        self.tol, self.patience = tol, patience
        self.best, self.stale = math.inf, 0

    def converged(self, loss, information=math.inf):
        if self.tol is None:
            return False
        if loss <= self.best - self.tol:
            self.stale = 0
        elif information >= _UNINFORMED_NATS:
            self.stale += 1
        self.best = min(self.best, loss)
        return self.stale >= self.patience

    def on_batch_end(self, loop, step):
        if self.tol is not None:
            super().on_batch_end(loop, step)

    def on_epoch_end(self, loop, epoch, loss):
        if self.tol is None:
            return
        super().on_epoch_end(loop, epoch, loss)
        if self.converged(loss, self.information):
            loop.converged = loop.stop_training = True


class InformedStart(EpochStatistics):
    """Train on the mutual information alone (``lamb=1``) until an epoch's pairs share information.

    A ``lamb`` above 1 adds ``(lamb - 1) (H(z) + H(z'))`` to what the loss
    rewards, and the marginal entropies are largest when every sample's
    assignment is uniform: from a start whose pairs share little, the steps
    flatten the assignments there, where the mutual information has no
    gradient, and training can stay for good (on MNIST-5k long-tailed in
    reverse class order, every epoch; docs/benchmarks.rst, "Cluster sizes on
    images"). The steps' ``lamb`` is 1 until the first epoch whose pairs
    share at least ``_UNINFORMED_NATS`` (of the first main sub-head, as
    :class:`EpochStatistics` measures it), and ``loop.lamb`` from the next.
    The switch stays on the device (``loop.step_lamb`` becomes a tensor):
    it reads nothing back. A ``lamb`` of 1 or less adds no such reward and
    is left alone.
    """

    def on_train_begin(self, loop):
        self.active = loop.lamb > 1
        if self.active:
            loop.step_lamb = 1.0
            self.informed = torch.tensor(False, device=loop.generator.device)

    def on_epoch_begin(self, loop, epoch):
        if self.active:
            super().on_epoch_begin(loop, epoch)

    def on_batch_end(self, loop, step):
        if self.active:
            super().on_batch_end(loop, step)

    def on_epoch_end(self, loop, epoch, loss):
        if not self.active:
            return
        information, _ = self.summed(loop)
        self.informed = self.informed | (information >= _UNINFORMED_NATS)
        loop.step_lamb = torch.where(self.informed, information.new_tensor(loop.lamb),
                                     information.new_tensor(1.0))


# Cluster sizes printed per epoch by verbose fits.
_SIZES_SHOWN = 10
# Epoch lines printed by verbose fits, about: a line every
# ceil(n_epochs / _LINES_SHOWN) epochs, besides the first and last epochs.
_LINES_SHOWN = 20


class ProgressReport(EpochStatistics):
    """Per-epoch report for ``verbose``: loss, mutual information and cluster sizes.

    Tracks the first main sub-head, its cluster sizes largest first (the
    largest ten, and how many are used, for micro-clusters). A line is
    written for the first and the last epoch and every ``ceil(n_epochs /
    20)`` epochs in between, so that long fits print about 20 lines. On a
    terminal a tqdm progress bar (when tqdm is installed) shows the figures
    of every epoch and the lines are written above it; into a file or a
    captured log only the lines go, so that bar updates never run into them.
    Trained data-parallel, rank 0 alone reports, the figures of every rank.
    """

    def on_train_begin(self, loop):
        self.n_epochs = loop.n_epochs
        self.silent = loop.group.rank != 0
        self.start = time.perf_counter()
        self.every = math.ceil(loop.n_epochs / _LINES_SHOWN)
        self.unwritten = None  # the latest epoch's line, until written
        self.bar = None
        if not self.silent and sys.stderr is not None and sys.stderr.isatty():
            try:
                from tqdm.auto import tqdm
            except ImportError:
                pass
            else:
                self.bar = tqdm(total=loop.n_epochs, desc="IICClustering", unit="epoch",
                                leave=False)
        n_clusters = loop.heads.main_size
        lamb = f"lamb={loop.lamb}"
        if loop.lamb > 1 and any(isinstance(c, InformedStart) for c in loop.callbacks):
            lamb = f"lamb=1 until an epoch's pairs share information, then {lamb}"
        self._write(
            f"[IICClustering] loss: the IIC loss minimised ({lamb}), mean of the "
            "epoch's steps; MI: mutual information I(z; z') of the epoch's pairs, in nats, at "
            f"most ln {n_clusters} = {math.log(n_clusters):.3f}; sizes: clusters of the first "
            "sub-head, largest first."
        )

    def _write(self, line):
        if self.silent:
            return
        if self.bar is None:
            print(line, flush=True)
        else:
            self.bar.write(line)

    def on_epoch_end(self, loop, epoch, loss):
        super().on_epoch_end(loop, epoch, loss)
        counts, information = self.counts, self.information
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

    def on_train_end(self, loop):
        # The last epoch's line, if skipped (training converged in between).
        self._flush()
        self._close()

    def on_exception(self, loop, exception):
        self._close()

    def _close(self):
        if self.bar is not None:
            self.bar.close()
