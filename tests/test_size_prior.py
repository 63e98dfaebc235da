"""The size prior: its loss, the sizes read from micro-clusters, the choice of head, the plan."""

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from sklearn_iic import IICClustering
from sklearn_iic._heads import Heads
from sklearn_iic._loss import loss_from_joint, normalize_joint
from sklearn_iic._merge import choose_head
from sklearn_iic._size_prior import matched_group_sizes, merged_groups

JOINT = np.array([[0.30, 0.05, 0.02], [0.05, 0.25, 0.03], [0.02, 0.03, 0.25]])


def hand_prior_loss(joint, lamb, prior):
    """-I(z; z') + (lamb - 1) (KL(P || pi) + KL(P' || pi)) - 2 (lamb - 1) ln k, in numpy."""
    joint = (joint + joint.T) / 2
    joint = joint / joint.sum()
    k = len(joint)
    row, col = joint.sum(1), joint.sum(0)
    information = sum(joint[c, d] * math.log(joint[c, d] / (row[c] * col[d]))
                      for c in range(k) for d in range(k))
    divergence = sum(m[c] * math.log(m[c] / prior[c]) for m in (row, col) for c in range(k))
    return -information + (lamb - 1) * divergence - 2 * (lamb - 1) * math.log(k)


@pytest.mark.parametrize("lamb", [1.0, 1.5, 2.0])
@pytest.mark.parametrize("prior", [[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
def test_prior_loss_matches_hand_computation(lamb, prior):
    joint = torch.tensor(JOINT, dtype=torch.float64)
    loss = loss_from_joint(normalize_joint(joint), lamb, torch.tensor(prior, dtype=torch.float64))
    assert loss.item() == pytest.approx(hand_prior_loss(JOINT, lamb, prior), abs=1e-12)


@pytest.mark.parametrize("lamb", [1.0, 1.5])
def test_uniform_prior_is_the_loss_without_one(lamb):
    joint = normalize_joint(torch.tensor(JOINT, dtype=torch.float64))
    uniform = torch.full((3,), 1 / 3, dtype=torch.float64)
    assert loss_from_joint(joint, lamb, uniform).item() == pytest.approx(
        loss_from_joint(joint, lamb).item(), abs=1e-12)


def test_prior_loss_of_a_stack_has_a_prior_per_joint():
    joint = normalize_joint(torch.tensor(JOINT, dtype=torch.float64))
    priors = torch.tensor([[0.6, 0.3, 0.1], [1 / 3, 1 / 3, 1 / 3]], dtype=torch.float64)
    losses = loss_from_joint(torch.stack([joint, joint]), 1.5, priors)
    assert losses[0].item() == pytest.approx(loss_from_joint(joint, 1.5, priors[0]).item())
    assert losses[1].item() == pytest.approx(loss_from_joint(joint, 1.5).item())


def test_prior_pulls_the_marginal_towards_it():
    # Gradient descent on the marginal alone (a diagonal joint): with a prior
    # of (0.7, 0.3) the sizes move away from equal, towards the prior.
    logits = torch.zeros(2, requires_grad=True)
    prior = torch.tensor([0.7, 0.3])
    optimizer = torch.optim.SGD([logits], lr=0.5)
    for _ in range(200):
        optimizer.zero_grad()
        loss_from_joint(torch.diag(logits.softmax(0)), 1.5, prior).backward()
        optimizer.step()
    share = logits.softmax(0)[0].item()
    assert 0.55 < share < 0.7


def block_joint(masses):
    """Pair joint of micro-clusters that pair only within their block, one block per class."""
    block = np.repeat(np.arange(len(masses)), [n for n, _ in masses])
    within = block[:, None] == block[None, :]
    weight = np.array([mass / n**2 for n, mass in masses])[block]
    return within * weight[:, None], block


def test_matched_group_sizes_reads_the_blocks_and_follows_the_shared_samples():
    # Four micro-clusters of a large class, two of a small one; the head's
    # cluster 0 holds the small class, cluster 1 the large one.
    joint, block = block_joint([(4, 0.8), (2, 0.2)])
    cross = np.stack([joint.sum(1) * (block == 1), joint.sum(1) * (block == 0)])
    prior = matched_group_sizes(merged_groups(joint, 2, min_share=1e-3), cross, 2)
    np.testing.assert_allclose(prior, [0.2, 0.8])


def test_matched_group_sizes_leaves_out_micro_clusters_that_hold_too_little():
    joint, block = block_joint([(3, 0.6), (1, 0.396), (1, 0.004)])
    # The 0.004 micro-cluster, below min_share, would be a group of its own.
    cross = np.stack([joint.sum(1) * (block == 0), joint.sum(1) * (block == 1)])
    groups, _ = merged = merged_groups(joint, 2, min_share=0.01)
    np.testing.assert_array_equal(groups, [0, 0, 0, 1, -1])
    prior = matched_group_sizes(merged, cross, 2)
    np.testing.assert_allclose(prior, [0.6 / 0.996, 0.396 / 0.996])
    # Fewer micro-clusters holding min_share than clusters: no prior to read.
    merged = merged_groups(joint, 5, min_share=0.1)
    assert merged[0] is None
    np.testing.assert_allclose(matched_group_sizes(merged, np.ones((5, 5)), 5), [0.2] * 5)


def test_a_prior_head_labels_only_when_its_pairs_explain_clearly_more():
    def joint(sizes, leak):
        """Clusters of these sizes, each sending ``leak`` of its pairs to the next one."""
        k = len(sizes)
        counts = np.zeros((k, k))
        for c, size in enumerate(sizes):
            counts[c, c] += size * (1 - leak)
            counts[c, (c + 1) % k] += size * leak
        return normalize_joint(torch.as_tensor(counts))

    equal = joint([0.25] * 4, 0.10)
    clearly_better = joint([0.55, 0.25, 0.1, 0.1], 0.01)
    barely_better = joint([0.25] * 4, 0.099)
    _, _, best, _ = choose_head([equal, clearly_better], 4, prior_heads=range(1, 2))
    assert best == 1
    _, _, best, _ = choose_head([equal, barely_better], 4, prior_heads=range(1, 2))
    assert best == 0
    # A prior head with an empty cluster is passed over for one without.
    empty = joint([0.6, 0.3, 0.1, 0.0], 0.0)
    _, _, best, _ = choose_head([equal, empty, clearly_better], 4, prior_heads=range(1, 3),
                                min_share=1e-3)
    assert best == 2


def test_heads_layout_with_prior_heads():
    heads = Heads(10, 50, 3, prior_heads=True, n_overclustering_heads=1)
    assert heads.n_main == 6 and list(heads.prior_heads) == [3, 4, 5]
    assert heads.kinds == [(6, 10), (1, 50)]
    assert heads.n_outputs == 6 * 10 + 50
    assert list(Heads(10, 0, 3).prior_heads) == []
    assert Heads(50, 20, 3, cluster_size=10).kinds == [(3, 50), (3, 20), (3, 10)]


def test_overclustering_weight_scales_only_the_overclustering_loss():
    heads = Heads(10, 50, 2, prior_heads=True, n_overclustering_heads=1,
                  overclustering_weight=0.1)
    losses = [torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([10.0])]
    total, main = heads.losses(losses)
    # Equal-size heads' mean, plus the prior heads' mean, plus a tenth of the overclustering.
    assert main.item() == 1.5 and total.item() == pytest.approx(1.5 + 3.5 + 1.0)


def tiny_images(n_per_class=(60, 30, 12)):
    X, y = load_digits(n_class=3, return_X_y=True)
    rows = np.concatenate([np.flatnonzero(y == c)[:n] for c, n in enumerate(n_per_class)])
    return X[rows].reshape(-1, 8, 8) / 16, y[rows]


FAST = dict(n_epochs=4, n_subheads=2, tol=None, random_state=0)


# Four epochs are too few to label three clusters: these fits check the plan.
@pytest.mark.filterwarnings("ignore:IICClustering labelled the data")
def test_images_train_prior_heads_by_default():
    X, _ = tiny_images()
    model = IICClustering(n_clusters=3, **FAST).fit(X)
    heads = model._plan.heads
    assert list(heads.prior_heads) == [2, 3]
    assert heads.kinds == [(4, 3), (1, 50)]  # an overclustering head to read the prior from
    assert model.head_losses_.shape == (4,)
    equal = IICClustering(n_clusters=3, size_prior="equal", **FAST).fit(X)
    assert list(equal._plan.heads.prior_heads) == [] and equal.head_losses_.shape == (2,)


class RecordingPriors(IICClustering):
    """Keeps the training loop, to read the size prior it trained with."""

    def _training_loop(self, *args):
        self.loop_ = super()._training_loop(*args)
        return self.loop_


def test_prior_heads_train_towards_the_sizes_read_from_the_micro_clusters():
    X, _ = tiny_images((90, 30, 10))
    model = RecordingPriors(n_clusters=3, n_epochs=10, n_subheads=2, tol=None,
                            random_state=0).fit(X)
    prior = model.loop_.size_prior.numpy()
    np.testing.assert_allclose(prior[:2], 1 / 3)  # the heads of equal sizes
    np.testing.assert_allclose(prior.sum(axis=1), 1, rtol=1e-6)
    # The prior heads' priors are far from equal: a large class and a small one.
    assert (prior[2:].max(axis=1) > 0.45).all() and (prior[2:].min(axis=1) < 0.2).all()


@pytest.mark.filterwarnings("ignore:IICClustering labelled the data")
def test_tables_and_series_train_no_prior_heads_unless_asked():
    X, _ = tiny_images()
    table = IICClustering(n_clusters=3, **FAST).fit(X.reshape(len(X), -1))
    assert list(table._plan.heads.prior_heads) == []
    series = IICClustering(n_clusters=3, input_kind="series", **FAST).fit(X.reshape(len(X), -1))
    assert list(series._plan.heads.prior_heads) == []
    # Heads of n_clusters (not merged micro-clusters) take a prior when asked.
    learned = IICClustering(n_clusters=3, input_kind="series", size_prior="learned",
                            n_microclusters=None, **FAST)
    assert list(learned.fit(X.reshape(len(X), -1))._plan.heads.prior_heads) == [2, 3]


def test_learned_prior_with_merged_micro_clusters_is_a_clear_error():
    X, _ = tiny_images()
    with pytest.raises(ValueError, match="size_prior='learned' trains heads of n_clusters"):
        IICClustering(n_clusters=3, size_prior="learned", **FAST).fit(X.reshape(len(X), -1))


def test_a_network_module_gets_no_prior_heads():
    X, _ = tiny_images()
    network = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3 * 2))
    model = IICClustering(n_clusters=3, network=network, **FAST).fit(X)
    assert list(model._plan.heads.prior_heads) == []
