import math

import numpy as np
import pytest
import torch

from sklearn_iic import iic_loss


def hand_iic(p, q, lamb=1.0):
    """The IIC loss written out entry by entry, in float64 numpy."""
    p, q = np.asarray(p, float), np.asarray(q, float)
    n, k = p.shape
    joint = np.zeros((k, k))
    for i in range(n):
        for c in range(k):
            for d in range(k):
                joint[c, d] += p[i, c] * q[i, d] / n
    joint = (joint + joint.T) / 2
    joint /= joint.sum()
    row, col = joint.sum(1), joint.sum(0)
    return -sum(
        joint[c, d] * (math.log(joint[c, d]) - lamb * math.log(row[c]) - lamb * math.log(col[d]))
        for c in range(k)
        for d in range(k)
    )


P = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.05, 0.05, 0.9]]
Q = [[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.5, 0.25, 0.25]]


def t(a):
    return torch.tensor(a, dtype=torch.float64)


@pytest.mark.parametrize("lamb", [1.0, 1.5, 0.5])
def test_loss_matches_hand_computation(lamb):
    assert iic_loss(t(P), t(Q), lamb).item() == pytest.approx(hand_iic(P, Q, lamb), abs=1e-12)


def test_loss_is_symmetrised():
    # The joint of (P, Q) is not symmetric; symmetrisation makes the loss order-free.
    raw = t(P).T @ t(Q)
    assert not torch.allclose(raw, raw.T)
    assert iic_loss(t(P), t(Q)).item() == pytest.approx(iic_loss(t(Q), t(P)).item(), abs=1e-14)


def test_lamb_adds_marginal_entropies():
    joint = t(P).T @ t(Q)
    joint = (joint + joint.T) / 2
    joint /= joint.sum()
    marginal = joint.sum(1)
    entropy = -(marginal * marginal.log()).sum().item()
    diff = iic_loss(t(P), t(Q), 1.5).item() - iic_loss(t(P), t(Q), 1.0).item()
    # loss(lamb) = -I + (lamb - 1) * (H(z) + H(z')), with H(z) = H(z') after symmetrisation.
    assert diff == pytest.approx(-0.5 * 2 * entropy, abs=1e-12)


@pytest.mark.parametrize("k", [2, 4, 10])
def test_bounds_reached_by_ideal_and_collapsed(k):
    ideal = torch.eye(k).repeat(3, 1)
    assert iic_loss(ideal, ideal).item() == pytest.approx(-math.log(k), abs=1e-6)
    collapsed = torch.zeros(3 * k, k)
    collapsed[:, 0] = 1
    assert iic_loss(collapsed, collapsed).item() == pytest.approx(0.0, abs=1e-6)
    # Uniform predictions carry no information either.
    uniform = torch.full((3 * k, k), 1.0 / k)
    assert iic_loss(uniform, uniform).item() == pytest.approx(0.0, abs=1e-6)


def test_loss_within_bounds_for_random_assignments():
    gen = torch.Generator().manual_seed(0)
    for k in (2, 5, 20):
        p = torch.randn(64, k, generator=gen).softmax(1)
        q = torch.randn(64, k, generator=gen).softmax(1)
        loss = iic_loss(p, q).item()
        assert -math.log(k) - 1e-6 <= loss <= 1e-6


def test_gradients_flow_to_both_sides_and_stay_finite_with_empty_clusters():
    logits = torch.zeros(8, 4)
    logits[:, :2] = torch.tensor([[5.0, -5.0]]).repeat(8, 1) * torch.tensor(
        [1.0, -1.0] * 4
    )[:, None]
    logits[:, 2:] = -200.0  # clusters 2 and 3 are empty
    a = logits.clone().requires_grad_()
    b = logits.clone().requires_grad_()
    loss = iic_loss(a.softmax(1), b.softmax(1))
    loss.backward()
    assert torch.isfinite(loss)
    for grad in (a.grad, b.grad):
        assert torch.isfinite(grad).all()
        assert grad.abs().sum() > 0


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="same shape"):
        iic_loss(torch.ones(4, 3) / 3, torch.ones(4, 2) / 2)
