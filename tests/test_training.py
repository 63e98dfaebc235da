import numpy as np
import pytest
import torch
from torch import nn

from sklearn_iic._heads import Heads
from sklearn_iic._loss import iic_loss
from sklearn_iic._pairs import PairSampler
from sklearn_iic._training import (
    Callback,
    Convergence,
    EpochStatistics,
    InformedStart,
    TrainingLoop,
    batches_per_epoch,
    pair_logits,
)


def test_heads_layout():
    heads = Heads(50, 30, 5)
    assert heads.main_size == 50 and heads.n_outputs == 5 * 50 + 5 * 30
    logits = torch.randn(4, heads.n_outputs)
    probs = heads.kind_probabilities(logits)
    assert [p.shape for p in probs] == [(4, 5, 50), (4, 5, 30)]
    torch.testing.assert_close(probs[0][:, 2], logits[:, 100:150].softmax(dim=1))
    torch.testing.assert_close(probs[1][:, 1], logits[:, 250 + 30 : 250 + 60].softmax(dim=1))
    torch.testing.assert_close(heads.logits(logits, 2), logits[:, 100:150])
    torch.testing.assert_close(heads.logits(logits, 7), logits[:, 250 + 60 : 250 + 90])
    assert heads.cluster_size == 0 and heads.n_cluster_outputs == 0
    with_clusters = Heads(50, 0, 2, cluster_size=4)
    assert with_clusters.sizes == [50, 50, 4, 4] and with_clusters.cluster_index(1) == 3
    assert with_clusters.labelling_index(1, None) == 1
    assert with_clusters.labelling_index(1, 0) == 2
    torch.testing.assert_close(with_clusters.logits(torch.arange(108.0)[None], 3),
                               torch.arange(104.0, 108.0)[None])
    assert Heads(3, 0, 2).sizes == [3, 3]


def test_pair_logits_is_one_forward_pass():
    calls = []

    class Counting(nn.Linear):
        def forward(self, x):
            calls.append(x.shape[0])
            return super().forward(x)

    a, b = pair_logits(Counting(2, 3), torch.zeros(4, 2), torch.ones(4, 2))
    assert calls == [8] and a.shape == b.shape == (4, 3)


def blobs_sampler(seed=0):
    generator = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
    X = centres.repeat_interleave(40, 0) + torch.randn(120, 2, generator=generator)
    noise = lambda x, g: x + 0.3 * torch.randn(x.shape, generator=g)  # noqa: E731
    sampler = PairSampler(X, perturbation=noise, neighbors=None, n_repeats=1, generator=generator)
    return sampler, generator


def train(network, sampler, heads, *, tol=None, n_iter_no_change=10, **params):
    """Train with the loop as ``fit`` does; its loss curve and whether it converged."""
    loop = TrainingLoop(network, sampler, heads, callbacks=[Convergence(tol, n_iter_no_change)],
                        **params).fit()
    return loop.loss_curve, loop.converged


def test_one_epoch_of_one_batch_is_one_adam_step_on_the_iic_loss():
    sampler, generator = blobs_sampler()
    torch.manual_seed(0)
    network = nn.Linear(2, 6)
    reference = nn.Linear(2, 6)
    reference.load_state_dict(network.state_dict())
    heads = Heads(3, 0, 2)
    curve, converged = train(network, sampler, heads, batch_size=120, n_epochs=1,
                             learning_rate=0.01, lamb=1.0, generator=generator)
    assert not converged
    # The same step by hand, on the same batch and pairs.
    sampler2, generator2 = blobs_sampler()
    order = torch.randperm(120, generator=generator2)
    x, partner = sampler2(order)
    logits, partner_logits = reference(torch.cat([x, partner])).chunk(2)
    losses = [iic_loss(p.softmax(dim=1), q.softmax(dim=1), 1.0)
              for p, q in zip(logits.split(heads.sizes, dim=1),
                              partner_logits.split(heads.sizes, dim=1))]
    loss = torch.stack(losses).mean()
    optimizer = torch.optim.Adam(reference.parameters(), lr=0.01)
    loss.backward()
    optimizer.step()
    assert curve == [pytest.approx(loss.item(), abs=1e-6)]
    torch.testing.assert_close(network.weight, reference.weight)
    assert not network.training


def test_training_lowers_the_loss():
    sampler, generator = blobs_sampler()
    torch.manual_seed(0)
    network = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 3))
    curve, _ = train(network, sampler, Heads(3, 0, 1), batch_size=60, n_epochs=30,
                     learning_rate=0.01, lamb=1.0, generator=generator)
    assert len(curve) == 30 and curve[-1] < curve[0] - 0.3
    assert curve[-1] >= -np.log(3) - 1e-6


def test_training_stops_once_the_loss_stops_improving():
    sampler, generator = blobs_sampler()
    torch.manual_seed(0)
    network = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 3))
    curve, converged = train(network, sampler, Heads(3, 0, 1), batch_size=60, n_epochs=500,
                             learning_rate=0.01, lamb=1.0, generator=generator, tol=1e-3,
                             n_iter_no_change=5)
    assert converged and len(curve) < 500
    # The last 5 epochs did not improve on the best before them by tol.
    assert min(curve[-5:]) > min(curve[:-5]) - 1e-3
    assert min(curve[-6:-5]) <= min(curve[:-6]) - 1e-3 or len(curve) == 5


def test_convergence_rule_counts_epochs_without_improvement():
    rule = Convergence(tol=0.1, patience=2)
    assert [rule.converged(x) for x in (1.0, 0.5, 0.45, 0.3, 0.35, 0.25)] == [
        False, False, False, False, False, True
    ]
    never = Convergence(tol=None, patience=1)
    assert not any(never.converged(x) for x in (1.0, 1.0, 1.0))


def test_convergence_rule_does_not_count_the_uninformative_start():
    # A plateau where paired samples share no information is where IIC rests
    # before it finds structure: it never ends training, however long.
    rule = Convergence(tol=0.1, patience=2)
    start = [rule.converged(-3.9, information=1e-4) for _ in range(10)]
    assert not any(start)
    # Once informative, epochs without improvement count again...
    assert [rule.converged(-5.0, 1.5), rule.converged(-5.0, 1.5), rule.converged(-5.0, 1.5)] == [
        False, False, True
    ]
    # ...and an uninformative epoch between them neither counts nor resets.
    rule = Convergence(tol=0.1, patience=2)
    assert [rule.converged(x, i) for x, i in ((-5.0, 1.5), (-5.0, 1.5), (-5.0, 0.0), (-5.0, 1.5))
            ] == [False, False, False, True]


def test_fit_loop_measures_information_for_the_convergence_test():
    sampler, generator = blobs_sampler()
    torch.manual_seed(0)
    heads = Heads(3, 0, 2)
    network = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, heads.n_outputs))
    rule = Convergence(tol=1e-3, patience=1000)
    TrainingLoop(network, sampler, heads, batch_size=40, n_epochs=20, learning_rate=0.01,
                 lamb=1.0, generator=generator, callbacks=[rule]).fit()
    # Three blobs are learnt in 60 steps: the first sub-head's pairs are informative.
    assert rule.information > 0.1
    assert sum(rule.counts) == sampler.n_samples

class LambLog(EpochStatistics):
    """Each epoch's step ``lamb`` and the information its pairs shared."""

    def on_train_begin(self, loop):
        self.lambs, self.informations = [], []

    def on_epoch_begin(self, loop, epoch):
        super().on_epoch_begin(loop, epoch)
        self.lambs.append(float(loop.step_lamb))

    def on_epoch_end(self, loop, epoch, loss):
        super().on_epoch_end(loop, epoch, loss)
        self.informations.append(self.information)


def test_informed_start_trains_on_the_information_alone_until_pairs_share_some():
    sampler, generator = blobs_sampler()
    torch.manual_seed(0)
    heads = Heads(3, 0, 1)
    network = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, heads.n_outputs))
    # Nearly uniform assignments: the pairs start sharing almost nothing.
    with torch.no_grad():
        network[2].weight.mul_(1e-3)
    log = LambLog()
    loop = TrainingLoop(network, sampler, heads, batch_size=60, n_epochs=12, learning_rate=0.01,
                        lamb=1.5, generator=generator, callbacks=[InformedStart(), log]).fit()
    informed = next(i for i, nats in enumerate(log.informations) if nats >= 0.01)
    assert 0 < informed < 11
    assert log.lambs == [1.0] * (informed + 1) + [1.5] * (11 - informed)
    assert float(loop.step_lamb) == 1.5
    # The epochs on lamb=1 lose minus the information, at most 0; then the
    # entropies' bonus, 0.5 (H(z) + H(z')), takes the loss below -ln 3.
    assert all(-np.log(3) - 1e-6 <= x <= 1e-6 for x in loop.loss_curve[: informed + 1])
    assert loop.loss_curve[-1] < -np.log(3)


@pytest.mark.parametrize("lamb", [0.5, 1.0])
def test_informed_start_leaves_lamb_at_or_below_one_alone(lamb):
    sampler, generator = blobs_sampler()
    log = LambLog()
    TrainingLoop(nn.Linear(2, 3), sampler, Heads(3, 0, 1), batch_size=60, n_epochs=2, lamb=lamb,
                 generator=generator, callbacks=[InformedStart(), log]).fit()
    assert log.lambs == [lamb, lamb]


def test_non_finite_loss_raises_with_the_weights_of_the_epochs_start():
    sampler, generator = blobs_sampler()
    sampler.perturbation = lambda x, g: x * float("nan")
    network = nn.Linear(2, 3)
    before = network.weight.detach().clone()
    with pytest.raises(FloatingPointError, match="non-finite at epoch 1"):
        train(network, sampler, Heads(3, 0, 1), batch_size=60, n_epochs=3,
              learning_rate=0.01, lamb=1.0, generator=generator)
    assert torch.equal(network.weight, before)


def test_non_finite_loss_in_a_later_epoch_keeps_the_weights_that_epoch_began_with():
    sampler, generator = blobs_sampler()
    calls = []

    def breaks_in_the_second_epoch(x, g):
        calls.append(len(x))
        return x * float("nan") if len(calls) > batches_per_epoch(sampler.n_samples, 60) else x

    sampler.perturbation = breaks_in_the_second_epoch

    class WeightsAtEpochBegin(Callback):
        def on_epoch_begin(self, loop, epoch):
            self.weight = loop.network.weight.detach().clone()

    network, seen = nn.Linear(2, 3), WeightsAtEpochBegin()
    with pytest.raises(FloatingPointError, match="non-finite at epoch 2"):
        TrainingLoop(network, sampler, Heads(3, 0, 1), batch_size=60, n_epochs=3,
                     learning_rate=0.01, lamb=1.0, generator=generator, callbacks=[seen]).fit()
    assert torch.isfinite(network.weight).all()
    assert torch.equal(network.weight, seen.weight)


class Recorder(Callback):
    """Records every hook the loop calls, with its arguments."""

    def __init__(self):
        self.calls = []

    def on_train_begin(self, loop):
        self.calls.append(("train_begin", loop.network.training))

    def on_epoch_begin(self, loop, epoch):
        self.calls.append(("epoch_begin", epoch))

    def on_batch_begin(self, loop):
        self.calls.append(("batch_begin",))

    def on_batch_end(self, loop, step):
        self.calls.append(("batch_end", step.probs[0].shape, step.main_loss.item()))

    def on_epoch_end(self, loop, epoch, loss):
        self.calls.append(("epoch_end", epoch, loss, loop.loss_curve[-1]))

    def on_train_end(self, loop):
        self.calls.append(("train_end",))

    def on_exception(self, loop, exception):
        self.calls.append(("exception", type(exception).__name__))


def test_callbacks_see_every_hook_in_order():
    sampler, generator = blobs_sampler()
    recorder = Recorder()
    loop = TrainingLoop(nn.Linear(2, 6), sampler, Heads(3, 0, 2), batch_size=60, n_epochs=2,
                        lamb=1.0, generator=generator, callbacks=[recorder]).fit()
    names = [call[0] for call in recorder.calls]
    epoch = ["epoch_begin", "batch_begin", "batch_end", "batch_begin", "batch_end", "epoch_end"]
    assert names == ["train_begin", *epoch, *epoch, "train_end"]
    assert recorder.calls[0] == ("train_begin", True)
    # Each epoch's loss is the mean of its two steps' main losses, as in the loss curve.
    steps = [call[2] for call in recorder.calls if call[0] == "batch_end"]
    ends = [call for call in recorder.calls if call[0] == "epoch_end"]
    for (_, epoch_index, loss, recorded), pair in zip(ends, (steps[:2], steps[2:])):
        assert loss == recorded == loop.loss_curve[epoch_index]
        assert loss == pytest.approx(np.mean(pair), abs=1e-6)
    # A step's probabilities: (pairs, heads, clusters) per kind of head.
    assert recorder.calls[3][1] == (60, 2, 3)
    assert not loop.network.training


def test_a_callback_stops_training_after_an_epoch():
    class StopAfterTwo(Callback):
        def on_epoch_end(self, loop, epoch, loss):
            loop.stop_training = epoch == 1

    sampler, generator = blobs_sampler()
    loop = TrainingLoop(nn.Linear(2, 3), sampler, Heads(3, 0, 1), batch_size=60, n_epochs=10,
                        lamb=1.0, generator=generator, callbacks=[StopAfterTwo()]).fit()
    assert len(loop.loss_curve) == 2 and not loop.converged


def test_on_exception_replaces_on_train_end():
    sampler, generator = blobs_sampler()
    sampler.perturbation = lambda x, g: x * float("nan")
    recorder = Recorder()
    loop = TrainingLoop(nn.Linear(2, 3), sampler, Heads(3, 0, 1), batch_size=60, n_epochs=3,
                        lamb=1.0, generator=generator, callbacks=[recorder, object()])
    with pytest.raises(FloatingPointError):
        loop.fit()
    # Detected with the epoch's loss, after its steps and before its end.
    names = [call[0] for call in recorder.calls]
    n_steps = batches_per_epoch(sampler.n_samples, 60)
    assert names == ["train_begin", "epoch_begin", *["batch_begin", "batch_end"] * n_steps,
                     "exception"]
    assert recorder.calls[-1] == ("exception", "FloatingPointError")


def sgd_step(optimizer):
    """Weights after one epoch of one batch with ``optimizer``, and after the same step by hand."""
    sampler, generator = blobs_sampler()
    torch.manual_seed(0)
    network = nn.Linear(2, 3)
    reference = nn.Linear(2, 3)
    reference.load_state_dict(network.state_dict())
    loop = optimizer(network, sampler, generator)
    loop.fit()
    sampler2, generator2 = blobs_sampler()
    x, partner = sampler2(torch.randperm(120, generator=generator2))
    logits, partner_logits = reference(torch.cat([x, partner])).chunk(2)
    iic_loss(logits.softmax(dim=1), partner_logits.softmax(dim=1), 1.0).backward()
    torch.optim.SGD(reference.parameters(), lr=0.5).step()
    return network.weight, reference.weight


def test_the_optimiser_is_a_parameter():
    weight, expected = sgd_step(lambda network, sampler, generator: TrainingLoop(
        network, sampler, Heads(3, 0, 1), batch_size=120, n_epochs=1, lamb=1.0,
        generator=generator, optimizer=torch.optim.SGD, learning_rate=0.5,
    ))
    torch.testing.assert_close(weight, expected)


def test_the_optimiser_is_an_override():
    class SGDLoop(TrainingLoop):
        def make_optimizer(self):
            return torch.optim.SGD(self.network.parameters(), lr=0.5)

    weight, expected = sgd_step(lambda network, sampler, generator: SGDLoop(
        network, sampler, Heads(3, 0, 1), batch_size=120, n_epochs=1, lamb=1.0,
        generator=generator,
    ))
    torch.testing.assert_close(weight, expected)


@pytest.mark.filterwarnings("ignore:IICClustering labelled the data")
def test_a_subclass_of_the_estimator_adds_a_callback():
    # The example of the user guide's section on observing and extending training.
    from sklearn.base import clone
    from sklearn.datasets import load_wine

    from sklearn_iic import IICClustering

    class StepLosses(Callback):
        """Mean main-head loss of every step."""

        def __init__(self):
            self.losses = []

        def on_batch_end(self, loop, step):
            self.losses.append(step.main_loss.item())

    class LoggedIIC(IICClustering):
        def _training_loop(self, *args, **kwargs):
            loop = super()._training_loop(*args, **kwargs)
            self.step_log_ = StepLosses()
            loop.callbacks.append(self.step_log_)
            return loop

    X = load_wine().data
    params = dict(n_clusters=3, n_epochs=4, batch_size=64, tol=None, random_state=0)
    logged = LoggedIIC(**params).fit(X)
    plain = IICClustering(**params).fit(X)
    assert len(logged.step_log_.losses) == 4 * 3
    np.testing.assert_allclose(np.reshape(logged.step_log_.losses, (4, 3)).mean(axis=1),
                               logged.loss_curve_, rtol=1e-6)
    assert logged.loss_curve_ == plain.loss_curve_
    np.testing.assert_array_equal(logged.labels_, plain.labels_)
    assert clone(logged).get_params() == LoggedIIC(**params).get_params()
