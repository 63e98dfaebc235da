import numpy as np
import torch
from torch import nn

from sklearn_iic._heads import Heads
from sklearn_iic._inference import merged_probabilities, pair_joints, prediction_batch_size
from sklearn_iic._loss import joint_distribution
from sklearn_iic._merge import merge_matrix
from sklearn_iic._pairs import PairSampler


def test_prediction_batch_size_bounds_memory():
    assert prediction_batch_size(4) == 8192
    assert prediction_batch_size(784) == 2**20 // 784
    assert prediction_batch_size(10**7) == 64


def test_pair_joints_sum_over_passes_and_batches():
    torch.manual_seed(0)
    X = torch.randn(30, 3)
    network = nn.Linear(3, 8).eval()
    heads = Heads(4, 0, 2)
    sampler = PairSampler(X, perturbation=None, neighbors=None, n_repeats=1,
                          generator=torch.Generator())
    joints = pair_joints(network, sampler, heads, batch_size=7, n_passes=3)
    probs = [chunk.softmax(dim=1) for chunk in network(X).detach().split(heads.sizes, dim=1)]
    # Pairs of a sample with itself, three times over: the joint of the whole set.
    for joint, p in zip(joints, probs):
        torch.testing.assert_close(joint, joint_distribution(p, p))
    (only,) = pair_joints(network, sampler, heads, 7, 1, indices=[1])
    torch.testing.assert_close(only, joints[1])


def test_merged_probabilities_sum_micro_clusters_batch_by_batch():
    torch.manual_seed(0)
    X = torch.randn(10, 3)
    network = nn.Linear(3, 12).eval()
    heads = Heads(6, 0, 2)
    groups = np.array([0, 1, 0, 2, 2, 1])
    merge = merge_matrix(groups, 3)
    proba = merged_probabilities(network, X.split(4), heads, 1, merge)
    micro = network(X)[:, 6:].softmax(dim=1).detach()
    expected = torch.stack([micro[:, groups == c].sum(1) for c in range(3)], 1)
    torch.testing.assert_close(proba, expected)
    torch.testing.assert_close(proba.sum(1), torch.ones(10))
