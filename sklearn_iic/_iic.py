"""The IICClustering estimator."""

import copy
import warnings
from collections import OrderedDict
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
import torch
from torch.profiler import record_function
from sklearn.base import BaseEstimator, ClusterMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from ._loss import loss_from_joint, normalized_mutual_information
from ._merge import merge_clusters
from ._metric import Whitening, local_whitening
from ._networks import default_network
from ._pairs import PairSampler, nearest_neighbors
from ._training import (
    Heads,
    local_torch_rng,
    pair_joints,
    prediction_batch_size,
    predict_proba,
    resolve_device,
    torch_threads,
    train,
)
from .perturbations import (
    Compose,
    GaussianNoise,
    IntensityJitter,
    RandomAffine,
    RandomResizedCrop,
)

# Work per training step that pays for one torch thread. Small steps lose more
# to thread synchronisation than they gain (2-core machine: a 50-sample fit is
# 20x slower with 2 threads than with 1), and far more when other processes
# compete for the cores; digits (1797 x 64) stays on one thread.
_WORK_PER_THREAD = 1e7


# n_microclusters="auto": at least this many micro-clusters, and at least
# _MICRO_PER_CLUSTER per cluster. Fewer (20, 30) left circles split into wedges
# spanning both rings on most seeds; 50 solved all 8 seeds tried.
_MIN_MICROCLUSTERS = 50
_MICRO_PER_CLUSTER = 5

# The joint that merges micro-clusters, selects the sub-head and scores is
# summed over at least _PAIRS_PER_CELL pairs per entry, in at most
# _MAX_JOINT_PASSES passes over the data. With 50 micro-clusters on the
# 1,000 samples of the moons, one pass failed on a seed in three and five
# passes on one seed in ten; 50 passes (50,000 pairs) found the moons on all
# ten. The cap binds only on small data (below 1,000 samples for 50
# micro-clusters), where passes are cheap.
_PAIRS_PER_CELL = 20
_MAX_JOINT_PASSES = 50

# Optimiser steps of n_epochs="auto": enough for digits (100 epochs) and
# MNIST-5k (40 epochs) to converge in the benchmarks.
_AUTO_STEPS = 800


def _joint_passes(n_samples, n_columns):
    pairs = _PAIRS_PER_CELL * n_columns**2
    return int(np.clip(-(-pairs // n_samples), 1, _MAX_JOINT_PASSES))


def default_perturbation(image):
    """The perturbation used with ``perturbation="auto"``."""
    if image:
        return Compose([
            RandomAffine(rotation=15, scale=(0.9, 1.1), translation=0.1, shear=10),
            IntensityJitter(brightness=0.3, contrast=0.3),
            GaussianNoise(0.05),
        ])
    return GaussianNoise(0.1)


class IICClustering(ClusterMixin, BaseEstimator):
    """Invariant Information Clustering (IIC).

    Trains a neural network whose soft cluster assignments of a sample ``x``
    and of its pair ``x'`` (a perturbed copy, a nearest neighbour, or a
    perturbed neighbour) share as much information as possible. Maximising the
    mutual information ``I(z; z') = H(z) - H(z | z')`` rewards assignments that
    agree across the pair and clusters of equal size, so it does not collapse
    onto a single cluster.

    On feature vectors the network by default clusters the data into many
    small micro-clusters, which are then merged into ``n_clusters`` by keeping
    as much of that mutual information as possible: micro-clusters that share
    pairs end up together, whatever the shape of their union (rings, moons,
    curved manifolds). Labels are the argmax of the (merged) soft assignments.
    Feature vectors are first mapped to coordinates in which neighbours
    differ equally in every direction (``whiten``), so that clusters
    stretched along some directions do not reach into each other.

    Training runs on the GPU when one is available (``device="auto"``); the
    fitted network is kept on the CPU, so fitted estimators pickle and load
    anywhere.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters.

    network : nn.Module, callable or None, default=None
        The network mapping a batch to logits. ``None`` uses
        :class:`~sklearn_iic.MLP` for feature vectors and
        :class:`~sklearn_iic.ConvNet` for images. A class or factory is
        called as ``network(input_shape, n_outputs)``, where ``input_shape``
        is ``n_features`` or ``(channels, height, width)``. An
        :class:`~torch.nn.Module` instance is deep-copied before training,
        never trained in place; its output width must be ``n_outputs`` (see
        the error message). ``n_outputs`` is ``n_clusters`` times
        ``n_subheads`` (``n_microclusters_`` per head when micro-clusters
        are merged), plus the overclustering heads: the output is split into
        the heads, so the last linear layer acts as independent heads.

    perturbation : "auto", callable, sequence of callables or None, default="auto"
        The random map ``g`` applied to the pair side, called as
        ``g(x, generator)`` on a batch tensor on the training device with a
        :class:`torch.Generator` that must provide all its randomness. A
        sequence is applied in order. ``"auto"`` uses
        :class:`~sklearn_iic.perturbations.GaussianNoise` for feature vectors
        and random affine maps, intensity jitter and noise for images (see
        :mod:`sklearn_iic.perturbations`). ``None`` applies none, which only
        makes sense with neighbour pairs.

    pairs : {"auto", "perturbation", "neighbors", "both"}, default="auto"
        How the pair ``x'`` of a sample ``x`` is made: ``"perturbation"``,
        ``x' = g(x)``; ``"neighbors"``, one of the ``n_neighbors`` nearest
        neighbours of ``x`` drawn afresh each epoch (the perturbation is not
        applied); ``"both"``, ``g`` applied to such a neighbour. ``"auto"`` is
        ``"both"``, which measured best on both feature vectors and images.

    n_neighbors : int, default=10
        Neighbours per sample for neighbour pairs.

    whiten : bool or "auto", default="auto"
        Train in the metric of the data's neighbourhoods: before training, an
        affine map is fitted under which the differences between samples and
        their 30 nearest neighbours have identity covariance (Ledoit-Wolf
        estimate from a random subset of at most 10,000 samples, fewer for
        wide data). Neighbour pairs are sought, and the network is fed, in
        those coordinates; the perturbation still acts on the data as given.
        Directions along which clusters are stretched then stop dominating
        the neighbourhoods (see the user guide). ``"auto"`` whitens feature vectors and leaves images
        as they are, for the convnet; ``True`` on images raises an error.

    image_shape : tuple of int or None, default=None
        ``(height, width)`` or ``(channels, height, width)`` of images given
        as flattened rows. Images may also be passed unflattened as arrays of
        shape ``(n, height, width)`` or ``(n, channels, height, width)``.

    n_microclusters : int, "auto" or None, default="auto"
        Clusters of the network's main head, merged greedily into
        ``n_clusters`` after training: at each step the two groups whose union
        loses the least mutual information between paired samples. ``"auto"``
        is ``max(50, 5 * n_clusters)`` (at most ``n_samples``) for feature
        vectors and ``None`` for images; ``None`` (or ``n_clusters``) trains a
        head of ``n_clusters`` directly, as in the IIC paper. Merging finds
        clusters of any shape that gradient descent on an ``n_clusters`` head
        misses (it settles on a split by a line on concentric circles); on
        images it measured no better.

    overclustering : float, default=0
        If positive, an auxiliary head with ``round(overclustering *
        n_clusters)`` clusters is trained alongside the main one; it shapes the
        shared network and is not used for labels.

    n_subheads : int, default=5
        Independent copies of each head. After training (and merging), the
        main sub-head with the lowest loss on the training pairs gives the
        labels (no labels needed).

    n_repeats : int, default=1
        Times each sample appears in a batch, each against an independent
        draw of its pair.

    lamb : float, default=1.5
        Weight of the marginal entropies in the IIC loss (see
        :func:`~sklearn_iic.iic_loss`); above 1 favours balanced clusters.

    batch_size : int, default=256
        Samples per training batch (before repeats). The joint distribution
        is a batch statistic, so keep it well above ``n_clusters``.

    n_epochs : int or "auto", default="auto"
        Passes over the data. ``"auto"`` gives about 800 optimiser steps,
        within 10 to 100 epochs: 100 epochs for up to about 2,000 samples,
        40 for 5,000, 10 from 20,000 on (with ``batch_size=256``).

    learning_rate : float, default=1e-3
        Adam's learning rate.

    device : str or torch.device, default="auto"
        ``"auto"`` uses CUDA when available and the CPU otherwise; any torch
        device string is accepted.

    compile : bool or dict, default=False
        Train through :func:`torch.compile` of the network (a dict is passed
        to it as keyword arguments, e.g. ``{"mode": "max-autotune"}``). The
        first steps pay the compilation (tens of seconds; it needs a C++
        compiler on the CPU and Triton on GPUs), so it pays off only on long
        fits; see the speed benchmark. ``network_`` stays the plain module.

    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, batches, pairs and perturbations. Fitting
        never reads or changes the global numpy or torch random state.

    verbose : int, default=0
        Print the loss after each epoch when positive.

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
        Cluster of each training sample. Clusters are numbered by decreasing
        size on the training data.

    network_ : torch.nn.Module
        The trained network, on the CPU, in eval mode. When whitened, a
        :class:`torch.nn.Sequential` of the fixed map (``network_.whitening``)
        and the trained network (``network_.network``).

    best_head_ : int
        Index of the main sub-head used for labels.

    head_losses_ : ndarray of shape (n_subheads,)
        IIC loss (``lamb=1``, so minus the mutual information) of each main
        sub-head's ``n_clusters`` clusters on the training pairs, after merging.

    n_microclusters_ : int
        Clusters of each main sub-head; ``n_clusters`` when none are merged.

    merge_map_ : ndarray of shape (`n_microclusters_`,)
        Cluster (as numbered in ``labels_``) of each micro-cluster of the best
        sub-head.

    loss_curve_ : list of float
        Mean main-head loss of each epoch.

    n_iter_ : int
        Number of epochs run.

    n_features_in_ : int
        Number of features seen during fit (pixels times channels for images).

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when X has string column names.

    input_shape_ : int or tuple of int
        ``n_features_in_`` for feature vectors, ``(channels, height, width)``
        for images.

    See Also
    --------
    sklearn.cluster.KMeans : Centroid-based clustering; fast, and the better
        tool when clusters are compact blobs in the input space.
    sklearn.mixture.GaussianMixture : Soft clustering with Gaussian components.
    iic_loss : The loss minimised during training.

    Notes
    -----
    Ji, Henriques and Vedaldi, "Invariant Information Clustering for
    Unsupervised Image Classification and Segmentation", ICCV 2019.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn_iic import IICClustering
    >>> X, _ = load_digits(return_X_y=True)
    >>> iic = IICClustering(n_clusters=10, n_epochs=5, random_state=0).fit(X / 16)
    >>> iic.labels_.shape
    (1797,)
    >>> iic.predict_proba(X[:2] / 16).shape
    (2, 10)
    """

    _parameter_constraints = {
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "network": [None, callable],
        "perturbation": [StrOptions({"auto"}), None, callable, list, tuple],
        "pairs": [StrOptions({"auto", "perturbation", "neighbors", "both"})],
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "whiten": ["boolean", StrOptions({"auto"})],
        "image_shape": [None, tuple],
        "n_microclusters": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"}), None],
        "overclustering": [Interval(Real, 0, None, closed="left")],
        "n_subheads": [Interval(Integral, 1, None, closed="left")],
        "n_repeats": [Interval(Integral, 1, None, closed="left")],
        "lamb": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "n_epochs": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "device": [str, torch.device],
        "compile": ["boolean", dict],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_clusters=8,
        *,
        network=None,
        perturbation="auto",
        pairs="auto",
        n_neighbors=10,
        whiten="auto",
        image_shape=None,
        n_microclusters="auto",
        overclustering=0,
        n_subheads=5,
        n_repeats=1,
        lamb=1.5,
        batch_size=256,
        n_epochs="auto",
        learning_rate=1e-3,
        device="auto",
        compile=False,
        random_state=None,
        verbose=0,
    ):
        self.n_clusters = n_clusters
        self.network = network
        self.perturbation = perturbation
        self.pairs = pairs
        self.n_neighbors = n_neighbors
        self.whiten = whiten
        self.image_shape = image_shape
        self.n_microclusters = n_microclusters
        self.overclustering = overclustering
        self.n_subheads = n_subheads
        self.n_repeats = n_repeats
        self.lamb = lamb
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.learning_rate = learning_rate
        self.device = device
        self.compile = compile
        self.random_state = random_state
        self.verbose = verbose

    # -- input -------------------------------------------------------------

    def _validate_input(self, X, reset):
        """Validate X; return it as a 2-D float array and the input shape per sample."""
        shape = None
        if not sp.issparse(X) and not hasattr(X, "iloc"):
            X = np.asarray(X)
            if X.ndim in (3, 4):
                shape = X.shape[1:] if X.ndim == 4 else (1,) + X.shape[1:]
                X = X.reshape(X.shape[0], -1)
            elif X.ndim > 4:
                raise ValueError(
                    f"Expected 2-D features or images of shape (n, height, width) or "
                    f"(n, channels, height, width); got an array with {X.ndim} dimensions."
                )
        X = validate_data(self, X, reset=reset, dtype=[np.float32, np.float64])
        if reset:
            self.input_shape_ = self._resolve_input_shape(shape, X.shape[1])
        elif shape is not None and shape != self.input_shape_:
            raise ValueError(
                f"X holds images of shape {shape}, but {type(self).__name__} was "
                f"fitted on input of shape {self.input_shape_}."
            )
        return X

    def _resolve_input_shape(self, array_shape, n_features):
        if self.image_shape is None:
            return array_shape if array_shape is not None else n_features
        shape = tuple(self.image_shape)
        if len(shape) == 2:
            shape = (1,) + shape
        if len(shape) != 3 or int(np.prod(shape)) != n_features:
            raise ValueError(
                f"image_shape={self.image_shape} does not match the "
                f"{n_features} features of X."
            )
        if array_shape is not None and array_shape != shape:
            raise ValueError(
                f"image_shape={self.image_shape} does not match images of shape {array_shape}."
            )
        return shape

    def _as_tensor(self, X, device):
        shape = self.input_shape_
        shape = (shape,) if isinstance(shape, int) else shape
        # Shares memory with float32 data on the CPU: fitting does not copy X
        # (it is only read). Read-only arrays, such as joblib's memmaps, are
        # shared too, hence torch's warning about them is silenced.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "The given NumPy array is not writable")
            tensor = torch.as_tensor(X, dtype=torch.float32, device=device)
        return tensor.reshape(-1, *shape)

    # -- building blocks ----------------------------------------------------

    @property
    def _is_image(self):
        return not isinstance(self.input_shape_, int)

    def _seed(self):
        if self.random_state is None:
            # Fresh entropy from the OS: never touches numpy's global RNG.
            return int(np.random.SeedSequence().generate_state(1)[0] >> 1)
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def _n_microclusters(self, n_samples):
        # "auto" merges for feature vectors only: on images a head trained on
        # n_clusters directly measured as well on digits (ACC 0.950 both) and
        # better on MNIST-5k (0.967 against 0.955 with merging).
        if self.n_microclusters is None or (self.n_microclusters == "auto" and self._is_image):
            return self.n_clusters
        if self.n_microclusters == "auto":
            wanted = max(_MIN_MICROCLUSTERS, _MICRO_PER_CLUSTER * self.n_clusters)
            return max(self.n_clusters, min(wanted, n_samples))
        if self.n_microclusters < self.n_clusters:
            raise ValueError(
                f"n_microclusters={self.n_microclusters} must be at least "
                f"n_clusters={self.n_clusters}."
            )
        return self.n_microclusters

    def _heads(self, n_samples):
        n_over = round(self.overclustering * self.n_clusters) if self.overclustering else 0
        return Heads(self._n_microclusters(n_samples), n_over, self.n_subheads)

    def _build_network(self, n_outputs, X):
        if isinstance(self.network, nn.Module):
            network = copy.deepcopy(self.network)
        else:
            factory = default_network if self.network is None else self.network
            network = factory(self.input_shape_, n_outputs)
            if not isinstance(network, nn.Module):
                raise TypeError(
                    f"network must build a torch.nn.Module; {factory!r} returned "
                    f"{type(network).__name__}."
                )
        network = network.to(X.device).eval()
        try:
            with torch.no_grad():
                out = network(X[:2])
        except Exception as exc:
            raise ValueError(
                f"The network failed on a batch of shape {tuple(X[:2].shape)}: {exc}"
            ) from exc
        if tuple(out.shape) != (2, n_outputs):
            raise ValueError(
                f"The network must output {n_outputs} logits per sample "
                f"(n_clusters={self.n_clusters}, n_microclusters={self.n_microclusters!r}, "
                f"n_subheads={self.n_subheads}, overclustering={self.overclustering}); "
                f"it returned shape {tuple(out.shape)} for a batch of 2. A network "
                "with n_clusters outputs needs n_microclusters=None, n_subheads=1 "
                "and overclustering=0."
            )
        return network

    def _perturbation(self):
        pairs = self._pair_source()
        if pairs == "neighbors":
            return None
        if isinstance(self.perturbation, str):
            return default_perturbation(self._is_image)
        if isinstance(self.perturbation, (list, tuple)):
            if not all(callable(g) for g in self.perturbation):
                raise TypeError("perturbation must be a callable or a sequence of callables.")
            return Compose(self.perturbation)
        if self.perturbation is None and pairs != "both":
            raise ValueError(
                "perturbation=None leaves nothing to pair a sample with; use "
                "pairs='neighbors' or give a perturbation."
            )
        return self.perturbation

    def _pair_source(self):
        return "both" if self.pairs == "auto" else self.pairs

    def _whitening(self, X_tensor, generator):
        if not self.whiten:
            return None
        if self._is_image:
            if self.whiten == "auto":
                return None
            raise ValueError(
                "whiten=True applies to feature vectors; images are fed to the "
                "network as they are. Use whiten='auto' or False."
            )
        return local_whitening(X_tensor, generator)

    def _pair_sampler(self, X_tensor, generator, whitening):
        neighbors = None
        if self._pair_source() in ("neighbors", "both"):
            neighbors = nearest_neighbors(X_tensor, self.n_neighbors, generator, whitening)
        return PairSampler(
            X_tensor,
            perturbation=self._perturbation(),
            neighbors=neighbors,
            n_repeats=self.n_repeats,
            generator=generator,
        )

    def _n_epochs(self, n_samples):
        if self.n_epochs != "auto":
            return self.n_epochs
        n_batches = -(-n_samples // self.batch_size)
        return int(np.clip(-(-_AUTO_STEPS // n_batches), 10, 100))

    def _n_threads(self, n_samples, n_outputs):
        # Rough multiply-adds of a step's first layers: an MLP's 256-wide
        # layer, or a convnet's 32-channel 3x3 convolution per pixel.
        rows = min(self.batch_size, n_samples) * self.n_repeats
        if self._is_image:
            work = rows * self.n_features_in_ * 32 * 9
        else:
            work = rows * (self.n_features_in_ + n_outputs) * 256
        return int(np.clip(work // _WORK_PER_THREAD, 1, torch.get_num_threads()))

    # -- the algorithm ------------------------------------------------------

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Train the network on X and label its samples.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or images of shape \
                (n_samples, height, width) or (n_samples, channels, height, width)
            Training data.
        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        self : IICClustering
            The fitted estimator.
        """
        with record_function("sklearn_iic.fit.validate"):
            X = self._validate_input(X, reset=True)
        n_samples = X.shape[0]
        if n_samples < max(2, self.n_clusters):
            raise ValueError(
                f"n_samples={n_samples} should be >= n_clusters={self.n_clusters} "
                "(and IIC needs at least 2 samples)."
            )
        device = resolve_device(self.device)
        seed = self._seed()
        heads = self._heads(n_samples)
        with torch_threads(self._n_threads(n_samples, heads.n_outputs)), local_torch_rng(seed, device):
            X_tensor = self._as_tensor(X, device)
            with record_function("sklearn_iic.fit.network"):
                network = self._build_network(heads.n_outputs, X_tensor)
            generator = torch.Generator(device=device).manual_seed(seed)
            with record_function("sklearn_iic.fit.whitening"):
                whitening = self._whitening(X_tensor, generator)
            if whitening is not None:
                network = nn.Sequential(OrderedDict(whitening=whitening, network=network))
            with record_function("sklearn_iic.fit.neighbors"):
                sampler = self._pair_sampler(X_tensor, generator, whitening)
            with record_function("sklearn_iic.fit.train"):
                self.loss_curve_ = train(
                    network, sampler, heads,
                    batch_size=min(self.batch_size, n_samples),
                    n_epochs=self._n_epochs(n_samples),
                    learning_rate=self.learning_rate,
                    lamb=self.lamb,
                    generator=sampler.generator,
                    verbose=self.verbose,
                    compile=self.compile,
                )
            self.n_iter_ = len(self.loss_curve_)
            # Merge each main sub-head's micro-clusters; label-free head
            # selection keeps the one whose clusters have the lowest loss.
            passes = _joint_passes(n_samples, heads.sizes[0])
            with record_function("sklearn_iic.fit.joints"):
                joints = pair_joints(network, sampler, heads, self.batch_size, passes)
            with record_function("sklearn_iic.fit.merge"):
                groups = [self._merge_groups(joint) for joint in joints]
                self.head_losses_ = np.array([
                    float(loss_from_joint(self._merged_joint(joint, g)))
                    for joint, g in zip(joints, groups)
                ])
            self.best_head_ = int(np.argmin(self.head_losses_))
            self._heads_ = heads
            self.n_microclusters_ = heads.sizes[0]
            groups = groups[self.best_head_]
            # Label the training data already on the device, in bounded batches.
            with record_function("sklearn_iic.fit.label"):
                batches = X_tensor.split(prediction_batch_size(self.n_features_in_))
                merge = self._merge_matrix(groups, device)
                labels = predict_proba(network, batches, heads, self.best_head_, merge)
                labels = labels.argmax(dim=1).numpy()
            self.network_ = network.cpu().eval()
        self._score_seed = seed
        # Number clusters by decreasing size so that used labels are 0, 1, ...
        order = np.argsort(-np.bincount(labels, minlength=self.n_clusters), kind="stable")
        rank = np.argsort(order)
        self.merge_map_ = rank[groups]
        self.labels_ = rank[labels]
        return self

    def _merge_groups(self, joint):
        """Cluster of each of a sub-head's micro-clusters (itself when none are merged)."""
        if joint.shape[0] == self.n_clusters:
            return np.arange(self.n_clusters)
        return merge_clusters(joint.cpu().numpy(), self.n_clusters)

    def _merge_matrix(self, groups, device):
        """One-hot (n_microclusters, n_clusters) matrix that sums micro-clusters into clusters."""
        groups = torch.as_tensor(groups, device=device)
        return nn.functional.one_hot(groups, self.n_clusters).float()

    def _merged_joint(self, joint, groups):
        merge = self._merge_matrix(groups, joint.device)
        return merge.T @ joint @ merge

    def _network_on(self, device):
        # A copy for other devices: network_ itself stays on the CPU.
        return self.network_ if device.type == "cpu" else copy.deepcopy(self.network_).to(device)

    def predict_proba(self, X):
        """Soft cluster assignments of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or images
            New data, shaped as in :meth:`fit`.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_clusters)
            Rows sum to one; their argmax is :meth:`predict`.
        """
        check_is_fitted(self)
        X = self._validate_input(X, reset=False)
        device = resolve_device(self.device)
        # Convert X batch by batch: predicting never holds a full copy of it.
        rows = prediction_batch_size(self.n_features_in_)
        batches = (
            self._as_tensor(X[start : start + rows], device)
            for start in range(0, X.shape[0], rows)
        )
        network = self._network_on(device)
        merge = self._merge_matrix(self.merge_map_, device)
        with record_function("sklearn_iic.predict"):
            proba = predict_proba(network, batches, self._heads_, self.best_head_, merge)
        return proba.double().numpy()

    def predict(self, X):
        """Cluster of each sample of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or images
            New data, shaped as in :meth:`fit`.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        return self.predict_proba(X).argmax(axis=1)

    def score(self, X, y=None):
        """Normalised mutual information between the clusters of X and of its pairs.

        Builds pairs from X exactly as in training (perturbations and/or
        neighbours, with a seed fixed at fit time) and returns
        ``I(z; z') / H(z)``, computed from the soft assignments: the share of
        the information in the clustering of X that survives the pairing. It
        lies in [0, 1]; 0 for uninformative or collapsed clusterings, 1 when
        every pair lands in the same cluster. Higher is better, so it serves
        ``GridSearchCV`` without labels. Comparisons across ``n_clusters`` are
        biased towards fewer clusters (agreeing on few clusters is easier),
        whereas the raw mutual information, bounded by ``ln(n_clusters)``,
        would favour more; compare ``n_clusters`` with care.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or images
            Data to score (at least 2 samples).
        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        score : float
        """
        check_is_fitted(self)
        X = self._validate_input(X, reset=False)
        if X.shape[0] < 2:
            raise ValueError(f"score needs at least 2 samples to pair; got n_samples={X.shape[0]}.")
        device = resolve_device(self.device)
        network = self._network_on(device)
        whitening = getattr(network, "whitening", None)
        if not isinstance(whitening, Whitening):  # an attribute of the user's network
            whitening = None
        with local_torch_rng(self._score_seed, device):
            generator = torch.Generator(device=device).manual_seed(self._score_seed)
            sampler = self._pair_sampler(self._as_tensor(X, device), generator, whitening)
            passes = _joint_passes(X.shape[0], self.n_microclusters_)
            joints = pair_joints(network, sampler, self._heads_, self.batch_size, passes)
        return normalized_mutual_information(
            self._merged_joint(joints[self.best_head_], self.merge_map_)
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags
