import numpy as np
import pytest
import torch

from sklearn_iic import IICClustering
from sklearn_iic._input import kind_of_shape
from sklearn_iic._plan import joint_passes, make_plan, shift_distance
from sklearn_iic.perturbations import Compose, GaussianNoise, RandomAffine, default_perturbation


def plan(n_samples=1000, input_shape=4, shift_distance=None, **params):
    measured = None if shift_distance is None else lambda znormalize: shift_distance
    return make_plan(IICClustering(**params).get_params(), input_shape, n_samples, measured)


def test_auto_settings_for_feature_vectors():
    p = plan(n_clusters=3, random_state=0)
    assert kind_of_shape(p.input_shape) == "table" and p.whiten
    assert p.pairs == "both" and p.uses_neighbors
    assert p.perturbation == GaussianNoise(0.1)
    # max(50, 5 * n_clusters) micro-clusters in each of 5 sub-heads, then
    # 5 cluster heads of n_clusters.
    assert p.heads.main_size == 50 and p.heads.cluster_size == 3
    assert p.heads.n_outputs == 250 + 15 and p.heads.n_cluster_outputs == 15
    # None asked for micro-clusters, "auto" n_clusters and a module instance get no cluster heads.
    assert plan(n_clusters=3, n_microclusters=50).heads.cluster_size == 0
    assert plan(n_clusters="auto").heads.cluster_size == 0
    assert plan(n_clusters=3, network=torch.nn.Linear(4, 250)).heads.cluster_size == 0
    # About 800 optimiser steps: 4 batches of 256 per epoch.
    assert p.n_epochs == 200 // 1 // 2 and p.batch_size == 256
    assert p.joint_passes == joint_passes(1000, 50) == 50
    assert p.seed == plan(n_clusters=3, random_state=0).seed
    assert p.device == torch.device("cuda" if torch.cuda.is_available() else "cpu")


def test_auto_settings_for_images():
    p = plan(n_clusters=10, input_shape=(1, 8, 8))
    assert kind_of_shape(p.input_shape) == "image" and not p.whiten
    assert p.heads.main_size == 10
    assert isinstance(p.perturbation, Compose)
    assert isinstance(p.perturbation.perturbations[0], RandomAffine)
    # Only images start on the mutual information alone (InformedStart).
    assert p.informed_start and p.lamb == 1.5
    assert not plan(n_clusters=3).informed_start
    assert not plan(n_clusters=4, input_shape=(2, 100), n_samples=200).informed_start


def test_auto_settings_for_series():
    p = plan(n_clusters=4, input_shape=(2, 100), n_samples=200)
    assert kind_of_shape(p.input_shape) == "series"
    assert p.standardize and not p.whiten and p.perturb_x
    assert p.heads.main_size == 4
    assert p.perturbation == default_perturbation(kind="series")
    with pytest.raises(ValueError, match="whiten=True applies to feature vectors, not series"):
        plan(input_shape=(2, 100), whiten=True)


@pytest.mark.parametrize(
    "n_samples, expected",
    [(100, 100), (2_000, 100), (5_000, 40), (20_000, 11), (50_000, 10), (10**6, 10)],
)
def test_auto_epochs(n_samples, expected):
    assert plan(n_samples=n_samples).n_epochs == expected


@pytest.mark.parametrize(
    "input_shape, n_samples, expected",
    # Digits' 8x8 images get 440 steps (8 batches an epoch); MNIST-5k's 28x28
    # 311 (1.8e10 multiply-adds over steps of 256 x 784 x 288); a 64x64 image 59.
    [((1, 8, 8), 1797, 55), ((1, 28, 28), 5000, 16), ((1, 64, 64), 400, 30),
     ((1, 28, 28), 60_000, 10)],
)
def test_auto_epochs_of_images_within_a_work_budget(input_shape, n_samples, expected):
    assert plan(n_samples=n_samples, input_shape=input_shape).n_epochs == expected
    # Feature vectors of as many values keep the step count.
    flat = plan(n_samples=n_samples, input_shape=int(np.prod(input_shape)))
    assert flat.n_epochs == plan(n_samples=n_samples).n_epochs
    assert plan(n_samples=n_samples, input_shape=input_shape, n_epochs=7).n_epochs == 7


@pytest.mark.parametrize(
    "max_samples, n_samples, expected",
    [("auto", 1000, 1000), ("auto", 10**6, 50_000), (None, 10**6, 10**6),
     (300, 1000, 300), (5000, 1000, 1000), (0.25, 1000, 250), (1.0, 1000, 1000)],
)
def test_rows_trained_on(max_samples, n_samples, expected):
    p = plan(n_samples=n_samples, max_samples=max_samples)
    assert p.n_train_samples == expected
    # Every setting is planned for the rows trained on.
    assert p.n_epochs == plan(n_samples=expected).n_epochs
    assert p.joint_passes == joint_passes(expected, 50)


@pytest.mark.parametrize(
    "max_samples, error, match",
    [(True, TypeError, "max_samples must be an int, got True"),
     (2, ValueError, "max_samples=2 should be >= n_clusters=3"),
     (0.001, ValueError, "max_samples=0.001 of n_samples=1000 is 1 rows, fewer than n_clusters=3"),
     ],
)
def test_too_few_rows_trained_on(max_samples, error, match):
    with pytest.raises(error, match=match):
        plan(n_clusters=3, max_samples=max_samples)


def test_small_data_caps():
    p = plan(n_samples=30, n_clusters=3, n_neighbors=50)
    assert p.heads.main_size == 30 and p.batch_size == 30 and p.n_neighbors == 29
    assert p.eval_batch_size == 256


def test_joint_passes():
    assert joint_passes(10**6, 50) == 1
    assert joint_passes(5_000, 50) == 10
    assert joint_passes(100, 50) == 50  # capped


@pytest.mark.parametrize(
    "params, error, match",
    [
        (dict(n_clusters=True), TypeError, "n_clusters must be an int, got True"),
        (dict(n_subheads=False), TypeError, "n_subheads must be an int"),
        (dict(n_clusters=3, n_microclusters=2), ValueError, "must be at least n_clusters=3"),
        (dict(n_microclusters=100_000), ValueError, "exceeds the 1000 samples trained on"),
        (dict(overclustering=1e9), ValueError, "more than the 1000 samples trained on"),
        (dict(perturbation=[1, 2]), TypeError, "sequence of callables"),
        (dict(perturbation=None, pairs="perturbation"), ValueError, "nothing to pair"),
        (dict(whiten=True), ValueError, "whiten=True applies to feature vectors"),
        (dict(device="cuda:7" if not torch.cuda.is_available() else "gpu"), ValueError, "device"),
    ],
)
def test_bad_settings_fail_in_the_plan(params, error, match):
    shape = (1, 2, 2) if "whiten" in params else 4
    with pytest.raises(error, match=match):
        plan(input_shape=shape, **params)


def test_joint_memory_is_bounded_before_anything_runs():
    with pytest.raises(ValueError, match="pair joint"):
        plan(n_samples=10**6, n_microclusters=20_000)


def test_neighbour_pairs_need_no_perturbation():
    assert plan(pairs="neighbors").perturbation is None
    assert plan(pairs="both", perturbation=None).perturbation is None


def test_bad_perturbation_fails_fast_on_large_data():
    X = np.random.default_rng(0).normal(size=(200_000, 50)).astype(np.float32)
    import time

    start = time.perf_counter()
    with pytest.raises(TypeError, match="sequence of callables"):
        IICClustering(perturbation=[1, 2]).fit(X)
    # Validation and planning only: no whitening, no neighbour search.
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize(
    "n_samples, n_epochs, expected",
    # Steps per epoch: 1 (200 samples), 4 (1,000), 20 (5,000): the patience
    # covers at least 100 steps, at most half the budget, at least 20 epochs.
    [(200, "auto", 50), (200, 300, 100), (1_000, "auto", 25), (5_000, "auto", 20), (5_000, 10, 5)],
)
def test_patience_covers_enough_steps(n_samples, n_epochs, expected):
    assert plan(n_samples=n_samples, n_epochs=n_epochs).n_iter_no_change == expected


def test_aligned_series_are_clustered_as_feature_vectors():
    aligned = plan(n_clusters=2, input_shape=(1, 24), shift_distance=10.9)
    assert aligned.input_shape == 24 and aligned.whiten and aligned.pairs == "both"
    assert not aligned.perturb_x and aligned.heads.main_size == 50
    shifted = plan(n_clusters=2, input_shape=(1, 24), shift_distance=1.2)
    assert shifted.input_shape == (1, 24) and shifted.pairs == "perturbation"
    # A network or perturbation of the user's keeps the series as they are.
    own = plan(n_clusters=2, input_shape=(1, 24), shift_distance=10.9,
               perturbation=GaussianNoise(0.1))
    assert own.input_shape == (1, 24)


def test_series_are_z_normalised_one_by_one_unless_global():
    calls = []

    def measured(znormalize):
        calls.append(znormalize)
        return 10.9

    params = IICClustering(n_clusters=2).get_params()
    aligned = make_plan(params, (1, 24), 100, measured)
    # Flattened aligned series keep the scaling of series.
    assert aligned.znormalize and aligned.input_shape == 24 and calls == [True]
    assert not make_plan({**params, "series_scaling": "global"}, (1, 24), 100, measured).znormalize
    assert calls == [True, False]
    assert not plan(input_shape=4).znormalize and not plan(input_shape=(1, 8, 8)).znormalize


def test_the_shift_test_runs_only_when_the_rule_needs_it():
    def not_needed(znormalize):
        raise AssertionError("shift_distance measured for nothing")

    params = IICClustering(n_clusters=2, perturbation=GaussianNoise(0.1)).get_params()
    make_plan(params, (1, 24), 100, not_needed)
    make_plan(IICClustering(n_clusters=2).get_params(), 24, 100, not_needed)


def test_shift_distance_tells_shifted_from_aligned_series():
    from sklearn_iic.datasets import make_shifted_waveforms

    X, _ = make_shifted_waveforms(300, random_state=0)
    # The same waveforms, always at the same place: shifting them leaves the data.
    aligned = np.stack([np.roll(x, -int(np.argmax(x[0]))) for x in X])
    assert shift_distance(X.reshape(300, -1), (1, 64)) < 1.5  # measured 0.99
    assert shift_distance(aligned.reshape(300, -1), (1, 64)) > 3  # measured 3.64


def test_shift_distance_counts_repeated_series_once():
    from sklearn_iic.datasets import make_shifted_waveforms

    X, _ = make_shifted_waveforms(300, random_state=0)
    flat = X.reshape(300, -1)
    # Oversampled by repetition: each series' nearest other series was its
    # copy, at distance 0, which made the ratio infinite (aligned).
    assert shift_distance(np.concatenate([flat, flat]), (1, 64)) == shift_distance(flat, (1, 64))
    assert shift_distance(np.repeat(flat[:1], 5, axis=0), (1, 64)) == np.inf
