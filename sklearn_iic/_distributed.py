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
  over ranks, as one process would: for the time of training they are
  replaced by :class:`_GlobalBatchNorm` layers that share their parameters
  and statistics, as :meth:`torch.nn.SyncBatchNorm.convert_sync_batchnorm`
  converts them (SyncBatchNorm itself runs on GPUs only), and put back
  after;
* gradients are averaged over ranks, so every rank takes the same step.

After training every rank computes the pair joints, the merge and the labels
on the whole data set, again identically.

Ranks agree at checkpoints: before training, before every epoch's steps
(and before each epoch's report of ``verbose``) and at the end of the fit.
A rank whose code fails outside the training steps (validation, a
perturbation, anything of its own) joins the next checkpoint with its error
instead, so every rank raises rather than waits. Inside an epoch's steps a
rank's own code runs between the collectives of the network's passes: the
draw of the next batch's pairs (the perturbation) and the batch callbacks.
An error there is held until the next gradient average, which every step
makes and which carries a failure flag, or the next checkpoint, and every
rank raises there; so no step makes a collective beyond those of its loss
and gradients. A rank that fails inside the
network's forward or backward pass, between collectives, cannot tell the
others: they then wait for the process group's timeout, or for the failed
process's exit to close its connections.
"""

import contextlib
import dataclasses
import functools
import hashlib

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.modules.batchnorm import _BatchNorm

from ._runtime import local_torch_rng
from ._training import LocalGroup, smallest_batch

# Bytes of the hashes by which ranks compare their data, and of the error
# message that a failed rank sends the others.
_DIGEST_BYTES = 16
_MESSAGE_BYTES = 1000


@contextlib.contextmanager
def data_parallel(enabled):
    """The ranks to fit with: a :class:`DataParallel`, or a :class:`LocalGroup` of this process.

    An error raised in the block outside a section of collectives reaches
    the other ranks at their next checkpoint before it propagates here.
    """
    if not enabled:
        yield LocalGroup()
        return
    group = DataParallel()
    try:
        yield group
    except Exception as exc:
        group.fail(exc)
        raise


class DataParallel:
    """The ranks of torch.distributed's default process group, fitting one estimator together.

    It implements the interface of :class:`~sklearn_iic._training.LocalGroup`.
    A rank is either in a local phase, where it makes no collective call and
    the next collective of every rank is a checkpoint, or in a section of
    collectives (a checkpoint, an epoch's training steps, the sums of a
    report), which every rank runs in step. Only :meth:`_section` changes
    which.
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
        # The backend's name (get_backend) says "undefined" for a group
        # initialised without one, and "cpu:gloo,cuda:nccl" for pairs: the
        # devices come from the pairs of its configuration instead.
        self._backends = dist.get_backend_config()
        self._devices = _carried_devices(self._backends)
        self._control = _control_device(self._devices, self._backends)
        self._state = "local"
        self._held = None  # an error held by deferring_errors, until the ranks hear of it

    @contextlib.contextmanager
    def _section(self, last=False):
        """Run the block as a section of collectives: the one place the state changes.

        An exception raised in the block leaves the state "collective": the
        other ranks wait in a collective, or raise too, and :meth:`fail`
        sends them nothing. After the last section of a fit (``last``) the
        state is "done", and nothing is sent either.
        """
        before = self._state
        self._state = "collective"
        yield
        self._state = "done" if last else before

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
        if plan.device.type not in self._devices:
            raise ValueError(
                f"The process group's backends ({self._backends}) carry no "
                f"{plan.device.type.upper()} tensors, which training on "
                f"device={str(plan.device)!r} needs. Initialise the group with a backend for "
                "them, e.g. init_process_group('cpu:gloo,cuda:nccl'); the gloo backend "
                "trains on CPUs."
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
        with self._section():
            records = self._exchange(_digest(*digests), value)
            combined = records[:, 1 : 1 + _DIGEST_BYTES]
            differ = (combined != combined[0]).any(axis=1)
            if differ.any():
                each = self._all_gather(b"".join(digests)).reshape(self.world_size, len(items), -1)
                names = [name for i, name in enumerate(items) if (each[:, i] != each[0, i]).any()]
                raise ValueError(
                    f"{' and '.join(names)} differ between ranks: rank(s) "
                    f"{np.flatnonzero(differ).tolist()} differ from rank 0. {hint}".strip()
                )
        return int(records[0, 1 + _DIGEST_BYTES :].view(np.int64)[0])

    def finish(self, **items):
        """The last checkpoint of a fit: check that every rank ends with the same ``items``."""
        with self._section(last=True):
            self.checkpoint(hint="The ranks' computations diverged.", **items)

    def fail(self, exc):
        """Send ``exc``, which stops this rank, to the other ranks at their next checkpoint.

        Only from a local phase: inside a section of collectives the other
        ranks wait in a collective that this rank cannot match, or raise too.
        """
        if self._state == "local":
            with self._section():
                self._exchange(bytes(_DIGEST_BYTES), 0, failure=exc)

    @contextlib.contextmanager
    def deferring_errors(self):
        """Hold an error raised in the block until the next gradient average or checkpoint.

        For a rank's own code between the collectives of the training steps,
        where raising at once would leave the other ranks waiting in a
        collective: the rank carries on to the next gradient average or
        checkpoint, where every rank learns of the error and raises.
        """
        try:
            yield
        except Exception as exc:
            if self._held is None:
                self._held = exc

    def _exchange(self, digest, value, failure=None):
        """All-gather every rank's (failed, digest, value); raise on every rank if one failed.

        This rank has failed with ``failure`` (then, if a rank failed, it
        returns None and the caller raises ``failure``) or with an error held
        by :meth:`deferring_errors` (which it raises). The other ranks raise a
        RuntimeError that names the failed ranks and their errors. Called
        inside a section.

        Returns
        -------
        records : ndarray of shape (world_size, 1 + digest bytes + 8), uint8
        """
        own = failure if failure is not None else self._held
        record = bytes([own is not None]) + digest + np.int64(value).tobytes()
        records = self._all_gather(record)
        failed = np.flatnonzero(records[:, 0])
        if not failed.size:
            return records
        # Every rank gathers the messages, so that the collectives stay matched.
        message = b"" if own is None else f"{type(own).__name__}: {own}".encode()
        messages = self._all_gather(message[:_MESSAGE_BYTES].ljust(_MESSAGE_BYTES, b"\0"))
        if failure is not None:
            return None
        if own is not None:
            raise own
        texts = [messages[r].tobytes().rstrip(b"\0").decode(errors="replace") for r in failed]
        reasons = "; ".join(f"rank {rank}: {text}" for rank, text in zip(failed, texts))
        raise RuntimeError(
            f"IICClustering.fit failed on rank(s) {failed.tolist()} of {self.world_size}, "
            f"so every rank stops. {reasons}"
        )

    def _all_gather(self, data):
        """Every rank's ``data`` (bytes of the same length on every rank), as uint8 rows."""
        tensor = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(self._control)
        gathered = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(gathered, tensor)
        return torch.stack(gathered).cpu().numpy()

    @contextlib.contextmanager
    def training(self, network, generator):
        """Train with global-batch BatchNorm, and a torch random stream of this rank's own.

        Yields the module to train: ``network``, its BatchNorm layers
        replaced by :class:`_GlobalBatchNorm` layers for the block, then put
        back (so the trained network holds its own layers, trained). Layers
        that draw from torch's global generator (dropout) draw independently
        on every rank, seeded from ``generator``'s seed and the rank.
        """
        seed = np.random.SeedSequence([generator.initial_seed(), self.rank]).generate_state(1)[0]
        converted = {}
        trained = _convert_batch_norm(network, lambda layer: _GlobalBatchNorm(layer, self),
                                      converted)
        try:
            with local_torch_rng(int(seed), generator.device):
                yield trained
        finally:
            originals = {new: layer for layer, new in converted.items()}
            _convert_batch_norm(trained, originals.__getitem__, {})

    @contextlib.contextmanager
    def steps(self):
        """An epoch's training steps: a checkpoint, then one section of collectives."""
        self.checkpoint()
        with self._section():
            yield

    def share(self, x, partner):
        """This rank's contiguous share of a global batch of pairs."""
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
        """Average the gradients over ranks, and raise on every rank if one holds an error.

        Every rank's loss is the loss of the global batch, and the backward
        of the sum over ranks sums their gradients: each rank ends with
        ``world_size`` times its share of the global gradient, so the mean
        over ranks is that gradient. One more element, summed with them,
        counts the ranks that hold an error (:meth:`deferring_errors`).
        """
        grads = [p.grad for p in parameters if p.grad is not None]
        failed = torch.full((1,), float(self._held is not None), dtype=grads[0].dtype,
                            device=grads[0].device)
        flat = torch.cat([*(g.reshape(-1) for g in grads), failed])
        dist.all_reduce(flat)
        if flat[-1]:
            self._exchange(bytes(_DIGEST_BYTES), 0)
        flat /= self.world_size
        for grad, chunk in zip(grads, flat.split([*(g.numel() for g in grads), 1])):
            grad.copy_(chunk.view_as(grad))

    def sum(self, tensors):
        """Sums over ranks of ``tensors`` (no gradient): a section of its own."""
        self.checkpoint()
        with self._section():
            tensors = [t.clone() for t in tensors]
            for tensor in tensors:
                dist.all_reduce(tensor)
        return tensors


def _carried_devices(backends):
    """The device types whose tensors a process group carries.

    Parameters
    ----------
    backends : str
        The group's ``device:backend`` pairs, joined by commas, as
        :func:`torch.distributed.get_backend_config` returns them:
        ``"cpu:gloo,cuda:gloo"`` for ``init_process_group("gloo")``,
        ``"cuda:nccl"`` for ``"nccl"``, the pairs given for a backend such as
        ``"cpu:gloo,cuda:nccl"``, and for none the default backend of the
        machine's accelerator (``"cpu:gloo"`` without one).

    Returns
    -------
    devices : set of str
    """
    return {pair.partition(":")[0] for pair in backends.split(",")}


def _control_device(devices, backends):
    """The device of the checkpoints' small tensors, in a group that carries ``devices``.

    The CPU whenever a backend of the group carries CPU tensors, where the
    checkpoints' bytes are: no copy to a GPU and back. CUDA only where no
    backend carries CPU tensors (NCCL alone); its current GPU at each call,
    the one NCCL communicates from.

    Parameters
    ----------
    devices : set of str
        The device types the group carries (:func:`_carried_devices`).
    backends : str
        The group's configuration, for the error message.

    Returns
    -------
    device : torch.device
    """
    if "cpu" in devices:
        return torch.device("cpu")
    if "cuda" in devices:
        return torch.device("cuda")
    raise ValueError(
        f"The process group's backends ({backends}) carry neither CPU nor CUDA tensors; "
        "distributed=True trains on CPUs or CUDA GPUs."
    )


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


def _convert_batch_norm(module, convert, converted):
    """``module`` with each BatchNorm layer ``layer`` in it replaced by ``convert(layer)``.

    Replaces the layers in their parent modules, as
    :meth:`torch.nn.SyncBatchNorm.convert_sync_batchnorm` does, and returns
    the module (the new layer when ``module`` is a BatchNorm layer).
    ``converted`` maps each layer replaced to its replacement: a layer found
    in several places is converted once.
    """
    if isinstance(module, _BatchNorm):
        if module not in converted:
            converted[module] = convert(module)
        return converted[module]
    # Every name of the module's children, also when one child has several.
    for name, child in list(module._modules.items()):
        if child is not None:
            module.add_module(name, _convert_batch_norm(child, convert, converted))
    return module


class _GlobalBatchNorm(_BatchNorm):
    """A BatchNorm layer that normalises with the global batch's moments in training.

    Holds the parameters and running statistics of the ``layer`` it
    replaces (the same tensors, so that training updates them) and checks
    its input as that layer does. Each rank's count, sum and sum of squares
    about its own mean are summed over ranks in float64; the gradient flows
    back through the sum to every rank's share. Running statistics are
    updated as torch's BatchNorm does. Out of training it normalises with
    the running statistics, as BatchNorm does.
    """

    def __init__(self, layer, group):
        super().__init__(layer.num_features, layer.eps, layer.momentum, layer.affine,
                         layer.track_running_stats)
        self.weight, self.bias = layer.weight, layer.bias
        self.running_mean, self.running_var = layer.running_mean, layer.running_var
        self.num_batches_tracked = layer.num_batches_tracked
        self.train(layer.training)
        self.layer_type = type(layer)
        self.group = group

    def _check_input_dim(self, x):
        self.layer_type._check_input_dim(self, x)

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        self._check_input_dim(x)
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
        scale = (var + self.eps).rsqrt()
        if self.weight is not None:
            scale = scale * self.weight
        shift = -mean * scale
        if self.bias is not None:
            shift = shift + self.bias
        return torch.addcmul(shift.to(x.dtype).view(shape), x, scale.to(x.dtype).view(shape))

    @torch.no_grad()
    def _update_running_stats(self, mean, unbiased_var):
        if not self.track_running_stats or self.running_mean is None:
            return
        factor = 0.0 if self.momentum is None else self.momentum
        if self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked)
        dtype = self.running_mean.dtype
        self.running_mean.mul_(1 - factor).add_(mean.to(dtype), alpha=factor)
        self.running_var.mul_(1 - factor).add_(unbiased_var.to(dtype), alpha=factor)


def _settings(plan):
    """The plan's settings that every rank must share, field by field, as bytes.

    Every field but the seed (rank 0's is used) and the GPU index of
    ``device`` (each rank trains on its own), described by :func:`_describe`.
    """
    parts = []
    for field in dataclasses.fields(plan):
        value = getattr(plan, field.name)
        if field.name == "seed":
            continue
        if field.name == "device":
            value = value.type
        parts.append(field.name.encode() + b"=" + _describe(value) + b";")
    return b"".join(parts)


def _describe(value, path=()):
    """Bytes that stand for a setting, equal on ranks that hold equal settings.

    * None, numbers, strings, bytes, devices and dtypes: their repr;
    * tuples, lists and dicts: their items, by these rules (sets: sorted);
    * arrays and tensors: dtype, shape and a hash of their values;
    * functions, methods and classes: module and qualified name (and a bound
      method's object, by these rules); partial functions: their function
      and arguments;
    * other objects (perturbations, modules): their class, by module and
      qualified name, and their attributes (``vars``), by these rules; their
      class alone when they have none (or refer back to themselves).

    Memory addresses, which differ between processes, never enter.
    """
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes, np.generic,
                                           torch.device, torch.dtype)):
        return repr(value).encode()
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return b"array:" + _digest(value).hex().encode()
    if id(value) in path:
        return b"cycle:" + _qualified_name(type(value))
    path = (*path, id(value))
    if isinstance(value, (tuple, list)):
        return _container(type(value), (_describe(item, path) for item in value))
    if isinstance(value, (set, frozenset)):
        return _container(type(value), sorted(_describe(item, path) for item in value))
    if isinstance(value, dict):
        return _container(type(value), (
            _describe(key, path) + b":" + _describe(item, path) for key, item in value.items()
        ))
    if isinstance(value, functools.partial):
        return b"partial" + _describe((value.func, value.args, value.keywords), path)
    if isinstance(value, type) or (callable(value) and hasattr(value, "__qualname__")):
        owner = getattr(value, "__self__", None)
        name = _qualified_name(value)
        return name if owner is None else name + b"@" + _describe(owner, path)
    attributes = getattr(value, "__dict__", None)
    if not attributes:
        return _qualified_name(type(value))
    return _qualified_name(type(value)) + _describe(attributes, path)


def _container(kind, descriptions):
    return kind.__qualname__.encode() + b"(" + b",".join(descriptions) + b")"


def _qualified_name(value):
    return f"{getattr(value, '__module__', None)}.{value.__qualname__}".encode()


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
