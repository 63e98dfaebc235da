import numpy as np
import pytest
import torch
from torch import nn

from sklearn_iic._loss import iic_loss
from sklearn_iic._pairs import PairSampler
from sklearn_iic._training import Heads, pair_logits, train


def test_heads_layout():
    heads = Heads(50, 30, 5)
    assert heads.main_size == 50 and heads.n_outputs == 5 * 50 + 5 * 30
    logits = torch.randn(4, heads.n_outputs)
    probs = heads.probabilities(logits)
    assert [p.shape[1] for p in probs] == [50] * 5 + [30] * 5
    torch.testing.assert_close(probs[2], logits[:, 100:150].softmax(dim=1))
    torch.testing.assert_close(heads.main(logits, 2), logits[:, 100:150])
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
    losses = [iic_loss(p, q, 1.0) for p, q in zip(heads.probabilities(logits),
                                                    heads.probabilities(partner_logits))]
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
    from sklearn_iic._training import _Convergence

    rule = _Convergence(tol=0.1, patience=2)
    assert [rule.converged(x) for x in (1.0, 0.5, 0.45, 0.3, 0.35, 0.25)] == [
        False, False, False, False, False, True
    ]
    never = _Convergence(tol=None, patience=1)
    assert not any(never.converged(x) for x in (1.0, 1.0, 1.0))


def test_non_finite_loss_raises_before_the_step():
    sampler, generator = blobs_sampler()
    sampler.perturbation = lambda x, g: x * float("nan")
    network = nn.Linear(2, 3)
    before = network.weight.detach().clone()
    with pytest.raises(FloatingPointError, match="non-finite at epoch 1"):
        train(network, sampler, Heads(3, 0, 1), batch_size=60, n_epochs=3,
              learning_rate=0.01, lamb=1.0, generator=generator)
    assert torch.equal(network.weight, before)
