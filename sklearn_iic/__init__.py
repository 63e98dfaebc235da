"""Invariant Information Clustering (IIC) as a scikit-learn estimator."""

from . import datasets, perturbations
from ._iic import IICClustering
from ._loss import iic_loss
from ._networks import MLP, ConvNet, ConvNet1d
from ._whitening import Whitening

__all__ = [
    "ConvNet", "ConvNet1d", "IICClustering", "MLP", "Whitening", "datasets", "iic_loss",
    "perturbations",
]
__version__ = "0.1.0"
