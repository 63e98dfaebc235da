import numpy as np
import pytest

from sklearn_iic.metrics import clustering_accuracy


def test_accuracy_under_the_best_matching():
    # Cluster 1 is class 0 and cluster 0 is class 1: a perfect relabelling.
    assert clustering_accuracy([0, 0, 1, 1], [1, 1, 0, 0]) == 1.0
    # One class split over two clusters: only one of them can be matched.
    assert clustering_accuracy([0, 0, 0, 0], [0, 0, 1, 1]) == 0.5


def test_more_clusters_than_classes_count_unmatched_samples_as_errors():
    y = np.repeat([0, 1], 50)
    labels = np.concatenate([np.zeros(50), np.ones(25), np.full(25, 2)])
    assert clustering_accuracy(y, labels) == pytest.approx(0.75)
