"""Data-parallel training on torch.distributed: the ranks of a process group fit one estimator.

With ``IICClustering(distributed=True)``, every rank of the default process
group calls ``fit`` with the whole training set. The preparation is
deterministic given the seed (rank 0's), so every rank computes it itself
and gets the same bits: whitening, neighbours, the order of the batches and
the pairs of every global batch. Training divides the work: each rank feeds
the network its contiguous share of every global batch, and

* the ``p.T @ p'`` sums of every head are summed over ranks before the loss
  (the IIC loss is a non-linear function of this batch statistic: per-rank
  losses would train on batches ``world_size`` times smaller);
* BatchNorm layers normalise with the moments of the global batch, summed
  over ranks, as one process would;
* gradients are averaged over ranks, so every rank takes the same step.

After training every rank computes the pair joints, the merge and the labels
on the whole data set, again identically.

Ranks agree at checkpoints. Every section of collectives starts with one,
and a rank whose code fails between sections (validation, a perturbation,
anything of its own) joins the next checkpoint with its error instead, so
every rank raises rather than waits. A rank that fails inside a section (in
the network's forward or backward pass, between collectives) cannot do that:
the others then wait for the process group's timeout, or for the failed
process's exit to close its connections.
"""

import contextlib
import dataclasses
import hashlib

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.modules.batchnorm import _BatchNorm

from ._runtime import local_torch_rng
from ._training import smallest_batch

# Bytes of the hashes by which ranks compare their data, and of the error
# message that a failed rank sends the others.
_DIGEST_BYTES = 16
_MESSAGE_BYTES = 1000


@contextlib.contextmanager
def data_parallel(enabled):
    """The ranks to fit with (a :class:`DataParallel`), or None to fit in this process alone.

    An error raised in the block between collectives reaches the other ranks
    at their next checkpoint before it propagates here.
    """
    if not enabled:
        yield None
        return
    group = DataParallel()
    try:
        yield group
    except Exception as exc:
        group.fail(exc)
        raise


class DataParallel:
    """The ranks of torch.distributed's default process group, fitting one estimator together.

    Between checkpoints a rank is either in a local phase, where it makes no
    collective call and the next collective of every rank is a checkpoint,
    or in a section of collectives (from :meth:`share` to
    :meth:`average_gradients` in a training step).
    """

    def __init__(self):
        if not (dist.is_available() and dist.is_initialized()):
            raise ValueError(
                "distributed=True fits with the ranks of torch.distributed's default process "
                "group, and none is initialised: launch the script with torchrun and call "
                "torch.distributed.init_process_group() before fit."
            )
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        # Checkpoints send small CPU tensors, which NCCL cannot carry.
        self._control = torch.device("cpu")
        if dist.get_backend() == "nccl":
            self._control = torch.device("cuda", torch.cuda.current_device())
        self._state = "local"

    def agree_on_plan(self, plan, X):
        """Check that every rank fits the same ``X`` with the same settings.

        Returns
        -------
        plan : Plan
            ``plan`` with rank 0's seed (so ``random_state=None`` works too)
            and, for ``"cuda"``, this rank's current GPU.
        """
        if plan.compile:
            raise ValueError("compile is not supported with distributed=True.")
        if self._control.type == "cuda" and plan.device.type != "cuda":
            raise ValueError(
                f"The process group's nccl backend needs training on a GPU; got "
                f"device={str(plan.device)!r}. Use the gloo backend to train on CPUs."
            )
        # The smallest batch of the rows trained on must give every rank a pair.
        smallest = smallest_batch(plan.n_train_samples, plan.batch_size) * plan.n_repeats
        if smallest < self.world_size:
            raise ValueError(
                f"Batches of {smallest} pairs cannot be shared among {self.world_size} "
                "ranks; raise batch_size."
            )
        seed = self.checkpoint(
            value=plan.seed, X=X, settings=_settings(plan),
            hint="With distributed=True every rank passes the same X and parameters, and "
            "allows the same number of torch threads.",
        )
        device = plan.device
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        return dataclasses.replace(plan, seed=seed, device=device)

    def checkpoint(self, value=0, hint="", **items):
        """Wait for every rank; raise on every rank if one failed or the ``items`` differ.

        Parameters
        ----------
        value : int, default=0
            A number of which rank 0's is returned.
        hint : str, default=""
            Appended to the error raised when the items differ.
        **items
            Named bytes, arrays, tensors, state dicts or None, compared by hash.

        Returns
        -------
        value : int
            Rank 0's ``value``.
        """
        digests = [_digest(item) for item in items.values()]
        records = self._exchange(None, _digest(*digests), value)
        combined = records[:, 1 : 1 + _DIGEST_BYTES]
        differ = (combined != combined[0]).any(axis=1)
        if differ.any():
            self._state = "collective"
            each = self._all_gather(b"".join(digests)).reshape(self.world_size, len(items), -1)
            self._state = "done"
            names = [name for i, name in enumerate(items) if (each[:, i] != each[0, i]).any()]
            raise ValueError(
                f"{' and '.join(names)} differ between ranks: rank(s) "
                f"{np.flatnonzero(differ).tolist()} differ from rank 0. {hint}".strip()
            )
        return int(records[0, 1 + _DIGEST_BYTES :].view(np.int64)[0])

    def finish(self, **items):
        """The last checkpoint of a fit: check that every rank ends with the same ``items``."""
        self.checkpoint(hint="The ranks' computations diverged.", **items)
        self._state = "done"

    def fail(self, exc):
        """Send ``exc``, which stops this rank, to the other ranks at their next checkpoint.

        Only from a local phase: inside a section of collectives the other
        ranks wait in a collective that this rank cannot match.
        """
        if self._state == "local":
            self._exchange(exc, bytes(_DIGEST_BYTES), 0)

    def _exchange(self, failure, digest, value):
        """All-gather every rank's (failed, digest, value); raise if another rank failed.

        Returns
        -------
        records : ndarray of shape (world_size, 1 + digest bytes + 8), uint8
        """
        self._state = "collective"
        record = bytes([failure is not None]) + digest + np.int64(value).tobytes()
        records = self._all_gather(record)
        failed = np.flatnonzero(records[:, 0])
        if failed.size:
            # Every rank gathers the messages, so that the collectives stay matched.
            message = b"" if failure is None else f"{type(failure).__name__}: {failure}".encode()
            messages = self._all_gather(message[:_MESSAGE_BYTES].ljust(_MESSAGE_BYTES, b"\0"))
            self._state = "done"
            if failure is not None:
                return None
            texts = [messages[r].tobytes().rstrip(b"\0").decode(errors="replace") for r in failed]
            reasons = "; ".join(f"rank {rank}: {text}" for rank, text in zip(failed, texts))
            raise RuntimeError(
                f"IICClustering.fit failed on rank(s) {failed.tolist()} of {self.world_size}, "
                f"so every rank stops. {reasons}"
            )
        self._state = "local"
        return records

    def _all_gather(self, data):
        """Every rank's ``data`` (bytes of the same length on every rank), as uint8 rows."""
        tensor = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(self._control)
        gathered = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(gathered, tensor)
        return torch.stack(gathered).cpu().numpy()

    @contextlib.contextmanager
    def training(self, network, generator):
        """Train with global-batch BatchNorm, and a torch random stream of this rank's own.

        BatchNorm layers keep their class: only their forward in training
        mode is replaced for the block. Layers that draw from torch's global
        generator (dropout) draw independently on every rank, seeded from
        ``generator``'s seed and the rank.
        """
        layers = [module for module in network.modules() if isinstance(module, _BatchNorm)]
        for layer in layers:
            layer.forward = _GlobalBatchNorm(layer, self)
        seed = np.random.SeedSequence([generator.initial_seed(), self.rank]).generate_state(1)[0]
        try:
            with local_torch_rng(int(seed), generator.device):
                yield
        finally:
            for layer in layers:
                del layer.forward

    def share(self, x, partner):
        """This rank's contiguous share of a global batch of pairs: a step's section starts."""
        self.checkpoint()
        self._state = "collective"
        return x.tensor_split(self.world_size)[self.rank], partner.tensor_split(
            self.world_size
        )[self.rank]

    def sum_joints(self, totals):
        """Sum every head's ``p.T @ p'`` over ranks, in one collective that carries gradients."""
        total = _SumOverRanks.apply(torch.cat([t.reshape(-1) for t in totals]))
        return [
            chunk.view_as(t) for chunk, t in zip(total.split([t.numel() for t in totals]), totals)
        ]

    def average_gradients(self, parameters):
        """Average the gradients over ranks: the section of a step ends.

        Every rank's loss is the loss of the global batch, and the backward
        of the sum over ranks sums their gradients: each rank ends with
        ``world_size`` times its share of the global gradient, so the mean
        over ranks is that gradient.
        """
        grads = [p.grad for p in parameters if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world_size
        for grad, chunk in zip(grads, flat.split([g.numel() for g in grads])):
            grad.copy_(chunk.view_as(grad))
        self._state = "local"

    def sum(self, tensors):
        """Sums over ranks of ``tensors`` (no gradient): a section of its own."""
        self.checkpoint()
        self._state = "collective"
        tensors = [t.clone() for t in tensors]
        for tensor in tensors:
            dist.all_reduce(tensor)
        self._state = "local"
        return tensors


class _SumOverRanks(torch.autograd.Function):
    """all_reduce(SUM) with a gradient: the backward sums the gradients over ranks.

    torch.distributed.nn.functional.all_reduce does the same but is
    deprecated, with a warning at every call.
    """

    @staticmethod
    def forward(ctx, tensor):
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class _GlobalBatchNorm:
    """Forward of a BatchNorm layer that normalises with the global batch's moments in training.

    Each rank's count, sum and sum of squares about its own mean are summed
    over ranks in float64; the gradient flows back through the sum to every
    rank's share. Running statistics are updated as torch's BatchNorm does.
    Out of training the layer's own forward runs: the ranks then evaluate
    the whole data set.
    """

    def __init__(self, layer, group):
        self.layer, self.group = layer, group

    def __call__(self, x):
        layer = self.layer
        if not layer.training:
            return type(layer).forward(layer, x)
        layer._check_input_dim(x)
        dims = [0, *range(2, x.ndim)]
        shape = [1, -1] + [1] * (x.ndim - 2)
        count = x.numel() // x.shape[1]
        local_mean = x.mean(dim=dims)
        # Squares about each rank's own mean: no cancellation in float32.
        squares = (x - local_mean.view(shape)).square().sum(dim=dims).double()
        local_mean = local_mean.double()
        moments = torch.stack([
            torch.full_like(local_mean, count), count * local_mean,
            squares + count * local_mean.square(),
        ])
        n, total, second = _SumOverRanks.apply(moments)
        mean = total / n
        var = second / n - mean.square()
        self._update_running_stats(mean, var * n / (n - 1))
        # x * scale + shift, as torch's CPU kernel computes it: one pass over x.
        scale = (var + layer.eps).rsqrt()
        if layer.weight is not None:
            scale = scale * layer.weight
        shift = -mean * scale
        if layer.bias is not None:
            shift = shift + layer.bias
        return torch.addcmul(shift.to(x.dtype).view(shape), x, scale.to(x.dtype).view(shape))

    @torch.no_grad()
    def _update_running_stats(self, mean, unbiased_var):
        layer = self.layer
        if not layer.track_running_stats or layer.running_mean is None:
            return
        factor = 0.0 if layer.momentum is None else layer.momentum
        if layer.num_batches_tracked is not None:
            layer.num_batches_tracked.add_(1)
            if layer.momentum is None:  # cumulative moving average
                factor = 1.0 / float(layer.num_batches_tracked)
        dtype = layer.running_mean.dtype
        layer.running_mean.mul_(1 - factor).add_(mean.to(dtype), alpha=factor)
        layer.running_var.mul_(1 - factor).add_(unbiased_var.to(dtype), alpha=factor)


def _settings(plan):
    """The plan's settings that every rank must share, as text: not the seed nor the GPU index."""
    settings = []
    for field in dataclasses.fields(plan):
        value = getattr(plan, field.name)
        if field.name == "seed":
            continue
        if field.name == "device":
            value = value.type
        text = repr(value)
        # Reprs holding memory addresses (functions, plain objects) differ between processes.
        settings.append((field.name, type(value).__qualname__ if " at 0x" in text else text))
    return repr(settings).encode()


def _digest(*items):
    """A short hash of bytes, arrays, tensors, dicts of them (state dicts) and None."""
    digest = hashlib.blake2b(digest_size=_DIGEST_BYTES)
    for item in items:
        _hash_into(digest, item)
    return digest.digest()


def _hash_into(digest, item):
    if item is None:
        return
    if isinstance(item, dict):
        for name, value in item.items():
            digest.update(name.encode())
            _hash_into(digest, value)
        return
    if isinstance(item, torch.Tensor):
        digest.update(repr((item.dtype, tuple(item.shape))).encode())
        item = item.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
    if isinstance(item, np.ndarray):
        digest.update(repr((item.dtype.str, item.shape)).encode())
        item = np.ascontiguousarray(item).reshape(-1).view(np.uint8)
    digest.update(item)
