"""Data-parallel fits on torch.distributed: two gloo processes on the CPU against one process.

One pair of processes is spawned for the module and runs every scenario in
turn (starting processes costs seconds); each test checks one scenario's
results. The processes are joined with a deadline and killed past it, so a
collective that never completes fails the tests instead of hanging them.
"""

import contextlib
import datetime
import io
import multiprocessing
import pickle
import time

import numpy as np
import pytest
import torch
import torch.distributed as dist
from sklearn.datasets import load_digits, make_blobs

from sklearn_iic import MLP, IICClustering

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="needs torch.distributed with the gloo backend",
)

WORLD_SIZE = 2
# Seconds for the whole run of scenarios, and for one collective to complete.
DEADLINE = 240
COLLECTIVE_TIMEOUT = 60

# Several batches per epoch, repeats, micro-clusters, overclustering heads,
# whitening and neighbour pairs: every part of the fit that ranks share.
BATCHES = dict(
    n_clusters=3, n_epochs=4, batch_size=40, n_repeats=2, n_subheads=2, overclustering=2,
    tol=None, random_state=0,
)
# One batch per epoch, so that loss_curve_ holds the loss of every step.
STEPS = dict(n_clusters=3, n_epochs=6, batch_size=120, n_subheads=2, tol=None, random_state=0)
# The default convnets: BatchNorm over (n, channels, height, width) and (n, channels, length).
# Each fit must learn enough for its sub-heads' losses to differ by far more than
# rounding: 3 epochs of the image convnet on ten digit classes left both at
# -2e-7 and -3e-8, so the chosen head (and every probability) flipped with the
# CPU's summation order (Intel AVX-512/AMX; it held by chance on an AMD EPYC).
CONVNETS = dict(n_clusters=3, n_epochs=3, batch_size=40, n_subheads=2, tol=None, random_state=0)
IMAGES = dict(CONVNETS, n_epochs=8, learning_rate=3e-3, size_prior="equal")
# The images' default, prior heads beside the heads of equal sizes: the size
# prior is read at the end of each epoch from the joints of every rank.
IMAGES_PRIOR = dict(IMAGES, size_prior="learned")


def _data(kind="table"):
    if kind == "image":
        digits = load_digits()
        return digits.images[np.isin(digits.target, [0, 1, 6])][:120] / 16
    if kind == "series":
        rng = np.random.default_rng(0)
        time_points = np.linspace(0, 2 * np.pi, 32)
        frequency = rng.integers(1, 4, size=(120, 1, 1))
        return np.sin(frequency * time_points) + 0.1 * rng.standard_normal((120, 1, 32))
    X, _ = make_blobs(n_samples=120, centers=3, n_features=4, random_state=0)
    return X


class GradientRecorder(torch.nn.Module):
    """The default MLP, recording at each training forward pass the gradient of the step before.

    ``fit`` zeroes the gradients after the forward pass, so they are then the
    gradients of the previous step as the optimiser used them: averaged over
    ranks in a data-parallel fit.
    """

    def __init__(self, n_features, n_outputs):
        super().__init__()
        self.mlp = MLP(n_features, n_outputs)
        self.gradients = []

    def forward(self, x):
        grads = [p.grad for p in self.mlp.parameters()]
        if self.training and all(g is not None for g in grads):
            self.gradients.append(torch.cat([g.reshape(-1) for g in grads]).numpy().copy())
        return self.mlp(x)


class FailOnRank:
    """Gaussian noise that, on rank ``rank``, raises (or returns NaN) from call ``after`` on."""

    def __init__(self, rank, after, nan=False):
        self.rank, self.after, self.nan = rank, after, nan
        self.calls = 0

    def __call__(self, x, generator):
        self.calls += 1
        if dist.get_rank() == self.rank and self.calls >= self.after:
            if self.nan:
                return torch.full_like(x, float("nan"))
            raise RuntimeError("perturbation failed on purpose")
        return x + 0.2 * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


class StopAfterTwoEpochs:
    """A scikit-learn callback: records the tasks it sees, and stops training after two epochs.

    Keeps the summary of the model of every epoch (``fitted_estimator``), with
    the types of its BatchNorm layers.
    """

    def __init__(self):
        self.tasks, self.epoch_models = [], []

    def setup(self, estimator, context):
        pass

    def on_fit_task_begin(self, estimator, context):
        pass

    def on_fit_task_end(self, estimator, context, *, fitted_estimator=None):
        self.tasks.append((context.task_name, context.task_id))
        if context.task_name != "epoch":
            return False
        layers = {type(m).__name__ for m in fitted_estimator.network_.modules()}
        self.epoch_models.append(dict(
            _summary(fitted_estimator), batch_norms={n for n in layers if "BatchNorm" in n}
        ))
        return context.task_id == 1

    def teardown(self, estimator, context):
        pass


def _summary(model, kind="table"):
    return dict(
        loss_curve=model.loss_curve_,
        state={k: v.numpy().copy() for k, v in model.network_.state_dict().items()},
        labels=model.labels_,
        proba=model.predict_proba(_data(kind)),
        head_losses=model.head_losses_,
        best_head=model.best_head_,
        cluster_head=model.cluster_head_,
        merge_map=model.merge_map_,
    )


def _fit(rank):
    return _summary(IICClustering(**BATCHES, distributed=True).fit(_data()))


def _steps(rank):
    model = IICClustering(**STEPS, network=GradientRecorder, distributed=True).fit(_data())
    return dict(_summary(model), gradients=model.network_.network.first.gradients)


def _convnet_fit(kind, distributed, params=None):
    params = params or (IMAGES if kind == "image" else CONVNETS)
    model = IICClustering(**params, input_kind=kind, distributed=distributed)
    return _summary(model.fit(_data(kind)), kind)


def _unseeded_verbose(rank):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        model = IICClustering(
            n_clusters=3, n_epochs=2, random_state=None, verbose=1, distributed=True
        ).fit(_data())
    return dict(_summary(model), printed=out.getvalue())


def _callbacks(rank):
    callback = StopAfterTwoEpochs()
    model = IICClustering(**BATCHES, distributed=True).set_callbacks(callback).fit(_data())
    return dict(_summary(model), n_iter=model.n_iter_, converged=model.converged_,
                tasks=callback.tasks, epoch_models=callback.epoch_models)


def _other_X(rank):
    X = _data()
    X[7, 2] += 1e-3 * rank
    IICClustering(**BATCHES, distributed=True).fit(X)


def _other_parameters(rank):
    IICClustering(**dict(BATCHES, lamb=1.0 + rank), distributed=True).fit(_data())


def _invalid_X_on_one_rank(rank):
    X = _data()
    X[0, 0] = np.nan if rank == 1 else X[0, 0]
    IICClustering(**BATCHES, distributed=True).fit(X)


def _failing_perturbation(rank):
    # The check before training makes the first call; the fifth is in the second epoch.
    IICClustering(**BATCHES, perturbation=FailOnRank(1, after=5), distributed=True).fit(_data())


def _failing_perturbation_mid_epoch(rank):
    # The sixth call draws the pairs of the second step of the second epoch,
    # during its first step: the error travels with that step's gradients.
    IICClustering(**BATCHES, perturbation=FailOnRank(1, after=6), distributed=True).fit(_data())


def _collectives(rank):
    """Collective calls of a fit, by kind, and the BatchNorm layers of its network."""
    counts = {"all_gather": 0, "all_reduce": 0}
    originals = {name: getattr(dist, name) for name in counts}

    def counting(name):
        def call(*args, **kwargs):
            counts[name] += 1
            return originals[name](*args, **kwargs)
        return call

    try:
        for name in counts:
            setattr(dist, name, counting(name))
        model = IICClustering(**BATCHES, distributed=True).fit(_data())
    finally:
        for name, original in originals.items():
            setattr(dist, name, original)
    layers = [m for m in model.network_.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    return dict(counts, batch_norms=len(layers))


def _nan_on_one_rank(rank):
    IICClustering(
        **BATCHES, perturbation=FailOnRank(1, after=5, nan=True), distributed=True
    ).fit(_data())


def _small_batches_of_the_rows_trained_on(rank):
    # 3 rows trained on, in batches of 2 and 1: the second leaves a rank without a pair.
    IICClustering(
        n_clusters=3, max_samples=3, batch_size=2, n_epochs=1, random_state=0, distributed=True
    ).fit(_data())


def _rank_0_alone(rank):
    # A plain fit inside a process group makes no collective call: rank 1
    # waits at the barrier below, which any collective of rank 0 would meet.
    if rank == 0:
        return _summary(IICClustering(**BATCHES).fit(_data()))


SCENARIOS = {
    "fit": _fit,
    "steps": _steps,
    "image": lambda rank: _convnet_fit("image", True),
    "image_prior": lambda rank: _convnet_fit("image", True, IMAGES_PRIOR),
    "series": lambda rank: _convnet_fit("series", True),
    "unseeded_verbose": _unseeded_verbose,
    "callbacks": _callbacks,
    "other_X": _other_X,
    "other_parameters": _other_parameters,
    "invalid_X_on_one_rank": _invalid_X_on_one_rank,
    "failing_perturbation": _failing_perturbation,
    "failing_perturbation_mid_epoch": _failing_perturbation_mid_epoch,
    "collectives": _collectives,
    "nan_on_one_rank": _nan_on_one_rank,
    "small_batches": _small_batches_of_the_rows_trained_on,
    "rank_0_alone": _rank_0_alone,
}


def _run_rank(rank, store, out):
    """Run every scenario on this rank; record each result or error in ``out``/rank<r>.pkl."""
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD_SIZE,
        timeout=datetime.timedelta(seconds=COLLECTIVE_TIMEOUT),
    )
    results = {}
    for name, scenario in SCENARIOS.items():
        start = time.perf_counter()
        try:
            results[name] = ("ok", scenario(rank))
        except Exception as exc:
            results[name] = ("error", type(exc).__name__, str(exc))
        # The group is still in step after every scenario, failed or not.
        dist.barrier()
        results[f"{name} seconds"] = time.perf_counter() - start
        with open(out / f"rank{rank}.pkl", "wb") as file:
            pickle.dump(results, file)
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """Every scenario's result on each rank: {name: ("ok", value) or ("error", type, message)}."""
    out = tmp_path_factory.mktemp("ranks")
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_run_rank, args=(rank, out / "store", out))
        for rank in range(WORLD_SIZE)
    ]
    for process in processes:
        process.start()
    deadline = time.monotonic() + DEADLINE
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    hung = [process for process in processes if process.is_alive()]
    for process in hung:
        process.kill()
        process.join()
    results = []
    for rank in range(WORLD_SIZE):
        path = out / f"rank{rank}.pkl"
        results.append(pickle.loads(path.read_bytes()) if path.exists() else {})
    if hung or any(process.exitcode for process in processes):
        done = [sorted(r) for r in results]
        pytest.fail(f"The ranks hung or crashed (exit codes "
                    f"{[p.exitcode for p in processes]}); scenarios done per rank: {done}")
    return results


@pytest.fixture(scope="module")
def single():
    """The same fits in this process alone."""
    steps = IICClustering(**STEPS, network=GradientRecorder).fit(_data())
    return {
        "fit": _summary(IICClustering(**BATCHES).fit(_data())),
        "steps": dict(_summary(steps), gradients=steps.network_.network.first.gradients),
        "image": _convnet_fit("image", False),
        "image_prior": _convnet_fit("image", False, IMAGES_PRIOR),
        "series": _convnet_fit("series", False),
    }


def _ok(ranks, name):
    results = [r[name] for r in ranks]
    for result in results:
        assert result[0] == "ok", result
    return [result[1] for result in results]


def _assert_same_on_every_rank(results):
    first, *others = results
    for other in others:
        assert other["loss_curve"] == first["loss_curve"]
        np.testing.assert_array_equal(other["labels"], first["labels"])
        for name, value in first["state"].items():
            np.testing.assert_array_equal(other["state"][name], value, err_msg=name)


def _cancelled_by_batch_norm(state):
    """Biases of the layers that feed BatchNorm, and BatchNorm's running means, which absorb them.

    BatchNorm subtracts the batch mean, so such a bias changes no output in
    training and its exact gradient is zero: its computed gradient is
    rounding noise, in which Adam takes steps of up to ``learning_rate``
    either way. The running mean follows the bias with a lag, so the
    probabilities of the fitted network (eval mode) move a little with it.
    """
    names = set()
    for name in state:
        prefix, _, field = name.rpartition(".")
        parent, _, index = prefix.rpartition(".")
        if field == "bias" and index.isdigit():
            following = f"{parent}.{int(index) + 1}.running_mean".lstrip(".")
            if following in state:
                names |= {name, following}
    return names


def _assert_close_to_single(result, single):
    # Summed in another order, the floats differ in their last bits; Adam
    # amplifies that in weights of tiny gradient, by up to a learning rate (1e-3).
    np.testing.assert_allclose(result["loss_curve"], single["loss_curve"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result["proba"], single["proba"], atol=1e-3)
    cancelled = _cancelled_by_batch_norm(single["state"])
    for name, value in single["state"].items():
        if name not in cancelled:
            np.testing.assert_allclose(result["state"][name], value, rtol=0, atol=1e-3,
                                       err_msg=name)
    np.testing.assert_allclose(result["head_losses"], single["head_losses"], rtol=1e-4, atol=1e-5)
    assert result["best_head"] == single["best_head"]
    # Two cluster sub-heads started from one k-means partition (in another
    # column order) give the same clusters, and which of them labels is a
    # last bit of their losses (it differed on an AMD EPYC with AVX2): the
    # labels and probabilities are the same, the columns the merge map
    # numbers are not.
    if result["cluster_head"] == single["cluster_head"]:
        np.testing.assert_array_equal(result["merge_map"], single["merge_map"])
    np.testing.assert_array_equal(result["labels"], single["labels"])


def test_two_ranks_fit_as_one_process(ranks, single):
    results = _ok(ranks, "fit")
    _assert_same_on_every_rank(results)
    _assert_close_to_single(results[0], single["fit"])
    assert _cancelled_by_batch_norm(single["fit"]["state"])


def _assert_same_labels_as_single(result, single):
    assert result["best_head"] == single["best_head"]
    np.testing.assert_array_equal(result["labels"], single["labels"])
    np.testing.assert_allclose(result["head_losses"], single["head_losses"], atol=1e-3)


@pytest.mark.parametrize("kind", ["image", "series"])
def test_convnets_fit_as_one_process(ranks, single, kind):
    results = _ok(ranks, kind)
    _assert_same_on_every_rank(results)
    # The choice of the sub-head is decided by the data, not by rounding: the
    # losses of the two sub-heads differ by over 100 times the tolerance below.
    assert np.ptp(single[kind]["head_losses"]) > 1e-3
    if kind == "image":
        # Images start on the mutual information alone (InformedStart), near
        # uniform assignments, where Adam amplifies the last bits of the ranks'
        # sums: losses 5e-4 apart (relative), probabilities 4e-3, a weight
        # 4e-2, head losses 3e-4 (Intel Xeon, AVX-512); the labels are the same.
        _assert_same_labels_as_single(results[0], single[kind])
    else:
        _assert_close_to_single(results[0], single[kind])
    # The image convnet's convolutions have no bias for BatchNorm to cancel.
    assert bool(_cancelled_by_batch_norm(single[kind]["state"])) == (kind == "series")


def test_size_prior_trains_as_one_process(ranks, single):
    # Every rank reads the same prior from the joints summed over ranks. The
    # weights then move apart from one process's by more than rounding (Adam
    # amplifies the prior heads' last bits, 5e-3 in a BatchNorm mean on an
    # Intel Xeon with AVX-512), but the labels and the head that gives them
    # are the same.
    results = _ok(ranks, "image_prior")
    _assert_same_on_every_rank(results)
    expected = single["image_prior"]
    assert len(expected["head_losses"]) == 2 * IMAGES_PRIOR["n_subheads"]
    _assert_same_labels_as_single(results[0], expected)


def test_every_step_matches_one_process(ranks, single):
    # Adam's steps hardly depend on the scale of the gradient, so the
    # gradients themselves are compared: each rank's backward carries a factor
    # world_size (the gradient of the sum over ranks), which averaging removes.
    results = _ok(ranks, "steps")
    _assert_same_on_every_rank(results)
    _assert_close_to_single(results[0], single["steps"])
    gradients, expected = results[0]["gradients"], single["steps"]["gradients"]
    assert len(gradients) == len(expected) == STEPS["n_epochs"] - 1
    # The first step starts from the same weights: equal up to rounding.
    np.testing.assert_allclose(gradients[0], expected[0], rtol=0,
                               atol=1e-5 * np.abs(expected[0]).max())
    for gradient, reference in zip(gradients, expected):
        np.testing.assert_allclose(np.linalg.norm(gradient), np.linalg.norm(reference), rtol=1e-3)
        np.testing.assert_allclose(gradient, reference, rtol=0, atol=2e-2 * np.abs(reference).max())


def test_seed_and_report_come_from_rank_0(ranks):
    results = _ok(ranks, "unseeded_verbose")
    _assert_same_on_every_rank(results)
    assert "epoch    2/2" in results[0]["printed"]
    assert results[1]["printed"] == ""


def test_callbacks_run_on_rank_0_and_stop_every_rank(ranks):
    first, second = results = _ok(ranks, "callbacks")
    _assert_same_on_every_rank(results)
    assert first["n_iter"] == second["n_iter"] == 2 < BATCHES["n_epochs"]
    assert not first["converged"] and not second["converged"]
    assert first["tasks"] == [("epoch", 0), ("epoch", 1), ("merge", 2), ("fit", 0)]
    assert second["tasks"] == []
    # The model of the last epoch, made on rank 0 during training, is the fitted model.
    last = first["epoch_models"][-1]
    assert last["batch_norms"] == {"BatchNorm1d"}
    np.testing.assert_array_equal(last["proba"], first["proba"])
    np.testing.assert_array_equal(last["labels"], first["labels"])


@pytest.mark.parametrize("scenario, what", [("other_X", "X"), ("other_parameters", "settings")])
def test_ranks_that_differ_all_raise(ranks, scenario, what):
    for result in (r[scenario] for r in ranks):
        assert result[:2] == ("error", "ValueError")
        assert f"{what} differ between ranks: rank(s) [1] differ from rank 0" in result[2]


@pytest.mark.parametrize("scenario, error, message", [
    ("invalid_X_on_one_rank", "ValueError", "Input X contains NaN"),
    ("failing_perturbation", "RuntimeError", "perturbation failed on purpose"),
    ("failing_perturbation_mid_epoch", "RuntimeError", "perturbation failed on purpose"),
])
def test_a_failing_rank_stops_every_rank(ranks, scenario, error, message):
    first, second = (r[scenario] for r in ranks)
    # Rank 1 raises its own error; rank 0 learns of it at its next checkpoint.
    assert second[:2] == ("error", error) and message in second[2]
    assert first[:2] == ("error", "RuntimeError")
    assert "failed on rank(s) [1] of 2, so every rank stops" in first[2]
    assert f"rank 1: {error}: " in first[2] and message in first[2]


def test_no_step_makes_a_collective_beyond_its_loss_and_gradients(ranks):
    n_epochs, steps = BATCHES["n_epochs"], BATCHES["n_epochs"] * 3  # 120 rows, batches of 40
    for counts in _ok(ranks, "collectives"):
        # Checkpoints: the plan, before training, before each epoch's steps, the end.
        assert counts["all_gather"] == 3 + n_epochs
        # Per step: each BatchNorm layer's moments (two in the micro-clusters'
        # MLP, one in the cluster heads') and the heads' joints, forward and
        # backward, and the gradients (with the failure flag).
        assert counts["batch_norms"] == 3
        assert counts["all_reduce"] == steps * (2 * counts["batch_norms"] + 2 + 1)


def test_non_finite_values_on_one_rank_stop_every_rank(ranks):
    for result in (r["nan_on_one_rank"] for r in ranks):
        assert result[:2] == ("error", "FloatingPointError")


def test_batches_too_small_to_share_raise_on_every_rank(ranks):
    for result in (r["small_batches"] for r in ranks):
        assert result[:2] == ("error", "ValueError")
        assert "Batches of 1 pairs cannot be shared among 2 ranks" in result[2]


def test_plain_fit_in_a_process_group_is_unchanged(ranks, single):
    alone = ranks[0]["rank_0_alone"]
    assert alone[0] == "ok"
    assert alone[1]["loss_curve"] == single["fit"]["loss_curve"]
    np.testing.assert_array_equal(alone[1]["labels"], single["fit"]["labels"])
    for name, value in single["fit"]["state"].items():
        np.testing.assert_array_equal(alone[1]["state"][name], value, err_msg=name)


def test_distributed_needs_a_process_group():
    assert not dist.is_initialized()
    with pytest.raises(ValueError, match="none is initialised: launch the script with torchrun"):
        IICClustering(distributed=True).fit(_data())


def test_batch_norm_layers_are_converted_and_put_back():
    from sklearn_iic._distributed import _convert_batch_norm, _GlobalBatchNorm

    shared = torch.nn.BatchNorm1d(4)
    network = torch.nn.Sequential(torch.nn.Linear(3, 4), shared, torch.nn.ReLU(), shared,
                                  torch.nn.Sequential(torch.nn.BatchNorm1d(4, affine=False)))
    before = list(network.modules())
    parameters = list(network.parameters())
    buffers = list(network.buffers())
    converted = {}
    same = _convert_batch_norm(network, lambda layer: _GlobalBatchNorm(layer, None), converted)
    assert same is network and len(converted) == 2
    assert network[1] is network[3] and isinstance(network[1], _GlobalBatchNorm)
    assert isinstance(network[4][0], _GlobalBatchNorm) and network[4][0].weight is None
    # The new layers hold the same tensors: training them trains the old ones.
    assert all(a is b for a, b in zip(network.parameters(), parameters))
    assert all(a is b for a, b in zip(network.buffers(), buffers))
    with pytest.raises(ValueError, match="expected 2D or 3D input"):
        network[1](torch.zeros(2, 4, 1, 1))
    network.eval()
    x = torch.randn(5, 4)
    torch.testing.assert_close(network[1](x), torch.nn.functional.batch_norm(
        x, shared.running_mean, shared.running_var, shared.weight, shared.bias))
    originals = {new: layer for layer, new in converted.items()}
    _convert_batch_norm(network, originals.__getitem__, {})
    assert list(network.modules()) == before
    layer = torch.nn.BatchNorm2d(3)
    assert isinstance(_convert_batch_norm(layer, lambda bn: _GlobalBatchNorm(bn, None), {}),
                      _GlobalBatchNorm)


def _noise(x, generator):
    return x


def _other_noise(x, generator):
    return x


def test_plans_are_compared_field_by_field_without_addresses():
    import dataclasses
    import functools

    from sklearn_iic._distributed import _describe, _settings
    from sklearn_iic._plan import make_plan
    from sklearn_iic.perturbations import Compose, GaussianNoise

    plan = make_plan(IICClustering(perturbation=_noise).get_params(), 4, 120)
    text = _settings(plan)
    assert b" at 0x" not in text and b"seed" not in text
    assert b"perturbation=" + _describe(_noise) + b";" in text
    assert _describe(_noise) != _describe(_other_noise)
    assert _settings(dataclasses.replace(plan, seed=plan.seed + 1)) == text
    assert _settings(dataclasses.replace(plan, device=torch.device("cuda", 1))) != text
    # Objects by their class and attributes; arrays by their values.
    assert _describe(GaussianNoise(0.1)) == _describe(GaussianNoise(0.1))
    assert _describe(GaussianNoise(0.1)) != _describe(GaussianNoise(0.2))
    assert _describe(Compose([GaussianNoise(0.1)])) != _describe(GaussianNoise(0.1))
    assert _describe(np.arange(3)) == _describe(np.arange(3)) != _describe(np.arange(1, 4))
    assert _describe(functools.partial(_noise, 1)) != _describe(functools.partial(_noise, 2))
    assert _describe({"b", "a"}) == _describe({"a", "b"})
    cycle = []
    cycle.append(cycle)
    assert _describe(cycle).startswith(b"list(cycle:")
    module = torch.nn.Linear(2, 2)
    assert b" at 0x" not in _describe(module)
    assert _describe(module) != _describe(torch.nn.Linear(2, 2))  # other weights


@contextlib.contextmanager
def _one_rank_group(tmp_path, backend):
    """A process group of this process alone, with ``backend`` (None: torch's default)."""
    given = {} if backend is None else {"backend": backend}
    dist.init_process_group(
        **given, init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1,
        timeout=datetime.timedelta(seconds=COLLECTIVE_TIMEOUT),
    )
    try:
        yield
    finally:
        dist.destroy_process_group()


needs_nccl = pytest.mark.skipif(
    not (torch.cuda.is_available() and dist.is_nccl_available()), reason="needs CUDA and NCCL"
)


@pytest.mark.parametrize("backend, device, control", [
    ("gloo", "cpu", "cpu"),
    ("cpu:gloo", "cpu", "cpu"),
    ("cpu:gloo,cuda:gloo", "cpu", "cpu"),
    pytest.param(None, "cpu", "cpu", marks=pytest.mark.skipif(
        torch.cuda.is_available(), reason="without a backend, a GPU machine gets NCCL")),
    pytest.param("nccl", "cuda", "cuda", marks=needs_nccl),
    pytest.param("cpu:gloo,cuda:nccl", "cuda", "cpu", marks=needs_nccl),
])
def test_control_tensors_go_where_the_group_carries_them(tmp_path, backend, device, control):
    from sklearn_iic._distributed import DataParallel

    with _one_rank_group(tmp_path, backend):
        # get_backend() names no backend for some of these groups ("undefined",
        # "cpu:gloo"): the control device must not depend on it.
        assert DataParallel()._control.type == control
        model = IICClustering(**BATCHES, device=device, distributed=True)
        model.fit(_data())
    assert model.labels_.shape == (120,)


@pytest.mark.parametrize("backends, control", [
    ("cpu:gloo,cuda:gloo", "cpu"), ("cpu:gloo", "cpu"), ("cpu:gloo,cuda:nccl", "cpu"),
    ("cuda:nccl", "cuda"), ("cuda:gloo", "cuda"),
])
def test_control_device_of_each_backend_configuration(backends, control):
    from sklearn_iic._distributed import _carried_devices, _control_device

    assert _control_device(_carried_devices(backends), backends) == torch.device(control)


def test_a_group_without_cpu_or_cuda_tensors_is_refused():
    from sklearn_iic._distributed import _carried_devices, _control_device

    with pytest.raises(ValueError, match=r"\(xpu:xccl\) carry neither CPU nor CUDA"):
        _control_device(_carried_devices("xpu:xccl"), "xpu:xccl")


@pytest.mark.parametrize("backend, device, missing", [
    ("cuda:gloo", "cpu", "CPU"),  # as with NCCL alone
    ("cpu:gloo", "cuda", "CUDA"),
])
def test_training_device_must_be_carried_by_the_group(tmp_path, backend, device, missing):
    import dataclasses

    from sklearn_iic._distributed import DataParallel
    from sklearn_iic._plan import make_plan

    X = _data()
    plan = make_plan(IICClustering(**BATCHES, device="cpu").get_params(), 4, len(X))
    # A CUDA plan on any machine: the check comes before anything runs on the device.
    plan = dataclasses.replace(plan, device=torch.device(device))
    with _one_rank_group(tmp_path, backend):
        group = DataParallel()
        with pytest.raises(ValueError, match=f"carry no {missing} tensors, which training on "
                                             f"device='{device}' needs"):
            group.agree_on_plan(plan, X)
