"""No training step waits for the device: results are read back once an epoch.

On a GPU, reading a result on the host (``float(t)``, ``t.item()``,
``bool(t)``, ``bincount`` sizing its output, a boolean mask) drains the
queue of kernels, so the GPU idles while Python catches up. These calls are
counted on the CPU with a :class:`~torch.overrides.TorchFunctionMode`, where
the estimator's own code makes them; on a machine with CUDA the steps also
run under ``torch.cuda.set_sync_debug_mode("error")``.
"""

import collections
import sys

import pytest
import torch
from sklearn.datasets import load_digits
from torch.overrides import TorchFunctionMode

from sklearn_iic import IICClustering
from sklearn_iic._training import Callback

# Tensor methods and functions that make the host wait for the device.
_SYNCING = {
    "__bool__", "__float__", "__int__", "__index__", "item", "tolist", "cpu", "numpy",
    "nonzero", "argwhere", "unique", "bincount", "masked_select", "repeat_interleave",
}


def _is_syncing(func, args, kwargs):
    name = getattr(func, "__name__", "")
    if name in _SYNCING:
        return True
    if name == "__getitem__" and len(args) > 1:
        index = args[1] if isinstance(args[1], tuple) else (args[1],)
        return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in index)
    if name == "to":
        return any(str(a) == "cpu" for a in [*args[1:], *kwargs.values()])
    return False


class SyncCounter(TorchFunctionMode):
    """Counts syncing calls made directly by sklearn_iic's code (not torch's, such as Adam's)."""

    def __init__(self):
        super().__init__()
        self.count = 0
        self.where = collections.Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _is_syncing(func, args, kwargs):
            caller = sys._getframe(1)
            if "sklearn_iic" in caller.f_code.co_filename:
                self.count += 1
                self.where[f"{caller.f_code.co_filename}:{caller.f_lineno}"] += 1
        return func(*args, **kwargs)


class CountSyncsInTraining(Callback):
    """Syncs counted during training, and during its steps alone."""

    def __init__(self, counter):
        self.counter = counter
        self.in_steps = 0

    def on_train_begin(self, loop):
        self.begin = self.counter.count

    def on_batch_begin(self, loop):
        self.step_begin = self.counter.count

    def on_batch_end(self, loop, step):
        self.in_steps += self.counter.count - self.step_begin

    def on_train_end(self, loop):
        self.in_training = self.counter.count - self.begin


class Observed(IICClustering):
    """IICClustering with a training callback appended, through its documented override point."""

    def _training_loop(self, *args, **kwargs):
        loop = super()._training_loop(*args, **kwargs)
        loop.callbacks.append(self.observer)
        return loop


@pytest.fixture(scope="module")
def digits():
    return load_digits().data[:600] / 16


@pytest.mark.filterwarnings("ignore::UserWarning")  # 3 epochs: unconverged, clusters unused
@pytest.mark.parametrize("params", [
    dict(),  # micro-clusters on neighbour pairs, the convergence test
    dict(image_shape=(8, 8)),  # a head of n_clusters on perturbed images
    dict(verbose=1, overclustering=2),  # the progress report, an overclustering head
], ids=["features", "images", "verbose"])
def test_no_sync_in_a_training_step_and_at_most_three_an_epoch(digits, params, capsys):
    counter = SyncCounter()
    model = Observed(10, n_epochs=3, batch_size=100, random_state=0, **params)
    model.observer = CountSyncsInTraining(counter)
    with counter:
        model.fit(digits)
    # Six steps an epoch: a sync in any of them would count at least six.
    assert model.n_iter_ == 3
    assert model.observer.in_steps == 0, counter.where
    # Each epoch reads its loss once: the counter sees what it should.
    assert model.n_iter_ <= model.observer.in_training <= 3 * model.n_iter_, counter.where


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("params", [dict(), dict(image_shape=(8, 8))], ids=["features", "images"])
def test_cuda_steps_run_under_sync_debug_mode_error(digits, params):
    class Strict(Callback):
        def on_batch_begin(self, loop):
            torch.cuda.set_sync_debug_mode("error")

        def on_batch_end(self, loop, step):
            torch.cuda.set_sync_debug_mode("default")

        def on_exception(self, loop, exception):
            torch.cuda.set_sync_debug_mode("default")

    model = Observed(10, n_epochs=2, batch_size=100, device="cuda", random_state=0, **params)
    model.observer = Strict()
    model.fit(digits)
    assert model.n_iter_ == 2
