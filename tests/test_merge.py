import itertools

import numpy as np
import pytest
import torch

from sklearn_iic._loss import loss_from_joint, normalize_joint
from sklearn_iic._merge import (
    choose_cluster_head,
    choose_head,
    cut_tree,
    merge_matrix,
    merge_tree,
    merged_joint,
    n_clusters_from_tree,
    normalized_cut,
    rank_by_size,
)


def normalized(counts):
    """A joint as the fit hands it over: symmetrised and summing to one."""
    return normalize_joint(torch.as_tensor(counts, dtype=torch.float64)).numpy()


def mutual_information(joint, groups):
    merged = np.zeros((groups.max() + 1,) * 2)
    np.add.at(merged, (groups[:, None], groups[None, :]), joint)
    marginal = merged.sum(axis=1)
    nonzero = merged > 0
    ratio = merged / np.outer(marginal, marginal)
    return float((merged[nonzero] * np.log(ratio[nonzero])).sum())


def lift(joint, groups, a, b):
    """``P(a, b) / (P(a) P(b))`` of groups ``a`` and ``b``, by hand."""
    mass = joint.sum(axis=1)
    in_a, in_b = groups == a, groups == b
    return joint[np.ix_(in_a, in_b)].sum() / (mass[in_a].sum() * mass[in_b].sum())


def cosine(joint, groups, a, b):
    """``P(a, b) / sqrt(P(a, a) P(b, b))`` of groups ``a`` and ``b``, by hand."""
    in_a, in_b = groups == a, groups == b
    return joint[np.ix_(in_a, in_b)].sum() / np.sqrt(
        joint[np.ix_(in_a, in_a)].sum() * joint[np.ix_(in_b, in_b)].sum()
    )


def greedy_by_brute_force(joint, n_clusters):
    """Reference: at each step try every pair of groups, merge the one of the largest cosine.

    Also returns the lift of each merge.
    """
    groups = np.arange(joint.shape[0])
    lifts = []
    while len(np.unique(groups)) > n_clusters:
        candidates = [(cosine(joint, groups, a, b), -a, -b)
                      for a, b in itertools.combinations(np.unique(groups), 2)]
        _, a, b = max(candidates)
        lifts.append(lift(joint, groups, -a, -b))
        groups = np.where(groups == -b, -a, groups)
    return np.unique(groups, return_inverse=True)[1], np.array(lifts)


def random_joint(seed):
    """A symmetric joint of 3 to 11 micro-clusters, unnormalised, with many small entries."""
    rng = np.random.default_rng(seed)
    k = int(rng.integers(3, 12))
    joint = rng.random((k, k)) ** 4
    return k, joint + joint.T


def information_greedy_by_brute_force(joint, n_clusters):
    """Reference: try every merge of every step, keep the one with the most MI."""
    groups = np.arange(joint.shape[0])
    while len(np.unique(groups)) > n_clusters:
        candidates = []
        for a, b in itertools.combinations(np.unique(groups), 2):
            merged = np.where(groups == b, a, groups)
            merged = np.unique(merged, return_inverse=True)[1]
            candidates.append((mutual_information(joint, merged), -a, -b, merged))
        groups = max(candidates, key=lambda c: c[:3])[3]
    return groups


@pytest.mark.parametrize("seed", range(10))
def test_information_linkage_matches_brute_force_greedy(seed):
    k, joint = random_joint(seed)
    children, distances = merge_tree(normalized(joint), linkage="information")
    assert np.all(np.diff(distances) >= 0)
    for n_clusters in range(1, k + 1):
        groups = cut_tree(children, n_clusters)
        expected = information_greedy_by_brute_force(joint / joint.sum(), n_clusters)
        # Same partition (cut_tree numbers groups by their lowest micro-cluster, as does the
        # brute force).
        np.testing.assert_array_equal(groups, expected)


def test_blocks_merge_into_their_block():
    # Micro-clusters 0, 2, 4 pair only among themselves, as do 1, 3, 5.
    joint = np.zeros((6, 6))
    for block in ([0, 2, 4], [1, 3, 5]):
        joint[np.ix_(block, block)] = 1.0
    children, distances = merge_tree(normalized(joint))
    groups = cut_tree(children, 2)
    np.testing.assert_array_equal(groups, [0, 1, 0, 1, 0, 1])
    # Two balanced groups that never pair with each other: I = ln 2.
    assert mutual_information(joint / joint.sum(), groups) == pytest.approx(np.log(2))
    # Within a block the lift is 1 / (3 * (1/6)) = 2; the last merge joins
    # groups never paired, at -log(eps) rather than infinity.
    np.testing.assert_allclose(distances[:4], -np.log(2))
    assert distances[4] == pytest.approx(-np.log(np.finfo(np.float64).eps))


def test_small_groups_are_not_merged_for_balance():
    # Six micro-clusters in a chain (each pairs with itself and, less, with
    # the next), and a seventh that pairs only with itself. The mutual
    # information of two groups is largest for near halves, so it cuts the
    # chain and joins the seventh to one end; the cosine keeps the chain
    # whole and the small cluster apart.
    joint = np.eye(7)
    for i in range(5):
        joint[i, i + 1] = joint[i + 1, i] = 0.2
    groups = cut_tree(merge_tree(normalized(joint))[0], 2)
    np.testing.assert_array_equal(groups, [0, 0, 0, 0, 0, 0, 1])
    # The information linkage keeps that preference for equal sizes.
    groups = cut_tree(merge_tree(normalized(joint), linkage="information")[0], 2)
    np.testing.assert_array_equal(groups, [0, 0, 1, 1, 1, 1, 0])


def test_a_small_cluster_pairing_a_little_with_a_large_one_stays_apart():
    # Two clusters of four micro-clusters (pairing with themselves and, less,
    # within their cluster), and a small micro-cluster that pairs mostly with
    # itself and a little with micro-cluster 0. Relative to chance (the lift)
    # those few pairs are many, as the small one has little mass: average
    # linkage of the lift joined it to micro-cluster 0 first, and cut three
    # groups as [8 + 0, 1-3, 4-7]. Relative to the pairs within each group,
    # they are few: the two clusters and the small one.
    joint = np.zeros((9, 9))
    for block in (range(4), range(4, 8)):
        for i in block:
            for j in block:
                joint[i, j] = 1.0 if i == j else 0.3
    joint[3, 4] = joint[4, 3] = 0.01
    joint[8, 8], joint[8, 0], joint[0, 8] = 0.1, 0.05, 0.05
    groups = cut_tree(merge_tree(normalized(joint))[0], 3)
    np.testing.assert_array_equal(groups, [0, 0, 0, 0, 1, 1, 1, 1, 2])


def test_a_ring_of_micro_clusters_is_cut_into_arcs():
    # Micro-clusters on a ring, each pairing with itself and its two neighbours:
    # the two groups are contiguous arcs.
    k = 12
    joint = np.zeros((k, k))
    for i in range(k):
        for j in (i - 1, i, i + 1):
            joint[i, j % k] = 1.0
    groups = cut_tree(merge_tree(normalized(joint))[0], 2)
    assert np.count_nonzero(groups != np.roll(groups, 1)) == 2


@pytest.mark.parametrize("seed", range(10))
def test_matches_brute_force_greedy(seed):
    k, joint = random_joint(seed)
    children, distances = merge_tree(normalized(joint))
    assert children.shape == (k - 1, 2) and distances.shape == (k - 1,)
    for n_clusters in range(1, k + 1):
        groups = cut_tree(children, n_clusters)
        assert len(np.unique(groups)) == n_clusters
        expected, _ = greedy_by_brute_force(joint / joint.sum(), n_clusters)
        np.testing.assert_array_equal(groups, expected)
    _, lifts = greedy_by_brute_force(joint / joint.sum(), 1)
    # Heights: -log(lift) of each merge, never below a merge made earlier.
    np.testing.assert_allclose(distances, np.maximum.accumulate(-np.log(lifts)), rtol=1e-10)


def test_tree_numbers_nodes_as_agglomerative_clustering():
    # Pairs (0, 1) and (2, 3), then their groups: nodes 4 and 5 are merged into 6.
    joint = np.array([[4, 3, 0, 0.1], [3, 4, 0, 0], [0, 0, 4, 2], [0.1, 0, 2, 4]])
    children, _ = merge_tree(normalized(joint))
    np.testing.assert_array_equal(children, [[0, 1], [2, 3], [4, 5]])
    np.testing.assert_array_equal(cut_tree(children, 3), [0, 0, 1, 2])


def test_empty_micro_clusters_and_no_merge():
    joint = np.diag([0.5, 0.0, 0.5])
    children, distances = merge_tree(joint)
    assert np.all(np.isfinite(distances))
    groups = cut_tree(children, 2)
    assert groups[0] != groups[2]
    np.testing.assert_array_equal(cut_tree(children, 3), [0, 1, 2])
    # A single micro-cluster: an empty tree, one group.
    children, distances = merge_tree(np.ones((1, 1)))
    assert children.shape == (0, 2) and distances.shape == (0,)
    np.testing.assert_array_equal(cut_tree(children, 1), [0])


def test_merge_matrix_and_merged_joint():
    groups = np.array([1, 0, 1, 2])
    merge = merge_matrix(groups, 3)
    assert merge.shape == (4, 3) and merge.dtype == torch.float32
    np.testing.assert_array_equal(merge.sum(0).numpy(), [1, 2, 1])
    joint = torch.arange(16.0).view(4, 4)
    joint = normalize_joint(joint)
    merged = merged_joint(joint, groups, 3)
    # Entry (a, b) sums the micro-cluster entries of groups a and b.
    assert merged[1, 1] == pytest.approx(float(joint[[0, 2]][:, [0, 2]].sum()))
    assert merged[0, 2] == pytest.approx(float(joint[1, 3]))
    assert float(merged.sum()) == pytest.approx(1.0)


def test_choose_head_keeps_the_most_informative_sub_head():
    # Sub-head 0 pairs micro-clusters within two blocks (ln 2 of information
    # once merged); sub-head 1 pairs every micro-cluster with every other.
    blocks = np.zeros((4, 4))
    blocks[np.ix_([0, 1], [0, 1])] = blocks[np.ix_([2, 3], [2, 3])] = 1
    joints = [torch.as_tensor(normalized(blocks)), torch.full((4, 4), 1 / 16)]
    (children, _), losses, best, n_clusters = choose_head(joints, 2)
    groups = cut_tree(children, 2)
    assert best == 0 and n_clusters == 2
    assert groups[0] == groups[1] != groups[2] == groups[3]
    assert losses[0] == pytest.approx(-np.log(2), abs=1e-6)
    assert losses[1] == pytest.approx(0.0, abs=1e-6)
    assert losses[0] == pytest.approx(
        float(loss_from_joint(merged_joint(joints[0], groups, 2))), abs=1e-7
    )


def test_rank_by_size_numbers_clusters_largest_first():
    labels = np.array([2, 2, 2, 0, 1, 1, 3, 3, 3, 3])
    rank = rank_by_size(labels, 5)
    np.testing.assert_array_equal(rank[labels], [1, 1, 1, 3, 2, 2, 0, 0, 0, 0])
    # The empty cluster 4 comes last.
    assert rank[4] == 4


def test_rank_by_size_numbers_equal_sizes_by_their_first_sample():
    # The same partition from heads whose columns are in another order.
    for labels in ([1, 1, 0, 0, 2, 2], [2, 2, 1, 1, 0, 0], [0, 0, 2, 2, 1, 1]):
        labels = np.array(labels)
        np.testing.assert_array_equal(rank_by_size(labels, 4)[labels], [0, 0, 1, 1, 2, 2])


def block_joint(sizes, leak=0.0):
    """Micro-clusters of one mass each, pairing within their block; ``leak`` between all."""
    k = sum(sizes)
    joint = np.full((k, k), leak)
    start = 0
    for size in sizes:
        joint[start:start + size, start:start + size] = 1.0
        start += size
    return normalized(joint)


@pytest.mark.parametrize("sizes", [[3, 3, 3], [10, 2], [6, 2, 1, 1], [2] * 8])
def test_n_clusters_from_tree_finds_separated_blocks(sizes):
    # Blocks that pair only within themselves (with a little noise between
    # all): the rise in -log(lift) after the last merge within a block dwarfs
    # every other, whatever the sizes of the blocks.
    _, distances = merge_tree(block_joint(sizes, leak=1e-3))
    assert n_clusters_from_tree(distances, 10) == len(sizes)


def test_n_clusters_from_tree_keeps_the_most_groups_of_a_comparable_rise():
    # Hand-made distances of 12 leaves: the largest rise (8) leaves 2 groups,
    # a rise of 5 (over half of it) leaves 6 groups, a rise of 3 leaves 4:
    # six groups are kept, and no more than max_clusters are considered.
    distances = np.array([0, 0.1, 0.2, 0.3, 0.4, 0.5, 5.5, 5.6, 8.6, 8.7, 16.7])
    assert n_clusters_from_tree(distances, 10) == 6
    assert n_clusters_from_tree(distances, 5) == 2
    # Too few leaves to measure a rise: two groups (or one leaf).
    assert n_clusters_from_tree(np.array([1.0]), 10) == 2
    assert n_clusters_from_tree(np.array([]), 10) == 1


def test_choose_head_chooses_the_median_number_of_clusters():
    # Two sub-heads see three blocks, one sees the joint as uniform noise.
    three = torch.as_tensor(block_joint([2, 2, 2], leak=1e-3))
    noise = torch.as_tensor(normalized(np.random.default_rng(0).random((6, 6)) + 1))
    _, losses, best, n_clusters = choose_head([three, noise, three], 5, choose_n_clusters=True)
    assert n_clusters == 3
    # The leak between blocks costs a little of the ln 3 of three separate blocks.
    assert best == 0 and losses[0] == pytest.approx(-np.log(3), abs=2e-2)


def test_normalized_cut_by_hand():
    # Cluster 0: 6 pairs inside, 2 to cluster 1 (both sides counted: 12
    # inside, 2 out of 14); cluster 1: 4 pairs inside, the 2 from cluster 0
    # (8 inside, 2 out of 10); cluster 2 is empty and counts 1.
    counts = np.array([[6.0, 2.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 0.0]])
    assert normalized_cut(counts) == pytest.approx(2 / 14 + 2 / 10 + 1)
    assert normalized_cut(np.diag([3.0, 5.0])) == 0.0


def test_normalized_cut_prefers_whole_clusters_to_a_split_and_a_merge():
    # Three groups of equal pairs inside; splitting the first in halves and
    # merging the other two cuts more pairs than the three groups as they are.
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 100)
    partner = np.where(rng.random(300) < 0.9, labels, rng.integers(0, 3, 300))
    whole = np.zeros((3, 3))
    np.add.at(whole, (labels, partner), 1)
    relabel = np.array([0, 2, 2])
    split = np.where((labels == 0) & (np.arange(300) % 2 == 1), 1, relabel[labels])
    split_partner = np.where(
        (partner == 0) & (rng.random(300) < 0.5), 1, relabel[partner])
    other = np.zeros((3, 3))
    np.add.at(other, (split, split_partner), 1)
    assert normalized_cut(whole) < normalized_cut(other)


def test_choose_cluster_head_keeps_the_most_informative():
    informative = normalize_joint(torch.eye(3, dtype=torch.float64) + 0.01)
    uniform = normalize_joint(torch.ones(3, 3, dtype=torch.float64))
    assert choose_cluster_head([uniform, informative, uniform]) == 1
