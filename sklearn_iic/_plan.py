"""The plan of a fit: every parameter checked against the data and every "auto" resolved, once.

:func:`make_plan` runs right after the input is validated and before any
expensive work, so a bad setting fails in milliseconds whatever the size of
the data. The :class:`Plan` it returns is kept on the fitted estimator; the
constants behind each "auto" live here, beside the rule that uses them, each
with the reason for its value and the table or section of the benchmarks
(docs/benchmarks/*.md, docs/benchmarks.rst) where it was measured.
"""

import dataclasses

import numpy as np
import torch
from sklearn.neighbors import NearestNeighbors
from torch import nn

from ._heads import Heads
from ._input import kind_of_shape
from ._runtime import resolve_device, seed_from, training_threads
from ._training import batches_per_epoch
from .perturbations import Compose, default_perturbation

# n_clusters="auto": the number of clusters is chosen from the merge tree,
# from 2 to this many (at most the rows trained on); the heads are sized as
# for this many clusters, so an "auto" fit trains as a fit of up to 10 does.
_AUTO_MAX_CLUSTERS = 10

# n_microclusters="auto": at least this many micro-clusters, and at least
# _MICRO_PER_CLUSTER per cluster. Fewer left the circles split into wedges
# spanning both rings (docs/benchmarks.rst, "Micro-clusters and the pair joint").
_MIN_MICROCLUSTERS = 50
_MICRO_PER_CLUSTER = 5

# The joint that merges micro-clusters, selects the sub-head and scores is
# summed over at least _PAIRS_PER_CELL pairs per entry, in at most
# _MAX_JOINT_PASSES passes over the data: fewer pairs lost the moons on some
# seeds (docs/benchmarks.rst, "Micro-clusters and the pair joint"). The cap
# binds only on small data (below 1,000 samples for 50 micro-clusters),
# where passes are cheap.
_PAIRS_PER_CELL = 20
_MAX_JOINT_PASSES = 50

# The overclustering head made only to read the size prior from weighs
# this much in the loss: its own clusters train as fast (Adam scales each
# weight's steps), but it hardly reshapes the network that the heads of
# equal sizes label with; at full weight balanced digits lost accuracy on
# some seeds (docs/benchmarks.rst, "Cluster sizes on images").
_PRIOR_SOURCE_WEIGHT = 0.1

# Optimiser steps of n_epochs="auto": enough for digits as features (100
# epochs); see docs/benchmarks/speed_features.md.
_AUTO_STEPS = 800
# Images train for fewer steps, and for at most _AUTO_IMAGE_WORK
# multiply-adds (step_work's estimate) in all, so that larger images take
# fewer, costlier steps (but at least _MIN_AUTO_EPOCHS epochs; MNIST-5k's
# 28x28 images get 16 epochs). Longer training let some seeds drift to a
# clustering that merges two classes and splits another, and took longer;
# see docs/benchmarks/images_10_seeds.md and docs/benchmarks/images.md, and
# the runs of other budgets in docs/benchmarks.rst, "Images". Unmeasured on
# larger images, which get fewer steps still.
_AUTO_IMAGE_STEPS = 440
_AUTO_IMAGE_WORK = 1.8e10
_MIN_AUTO_EPOCHS, _MAX_AUTO_EPOCHS = 10, 100

# pairs="auto": a perturbed nearest neighbour measured best on feature
# vectors and images. On series the perturbation alone: Euclidean neighbours
# of series are rarely their shifted look-alikes, and adding them measured no
# better (docs/benchmarks.rst, "Series: pairs and perturbations").
_AUTO_PAIRS = {"table": "both", "image": "both", "series": "perturbation"}

# n_iter_no_change counts epochs, but on small data an epoch is one step, and
# IIC can sit on the uniform, uninformative assignment for tens of steps
# before it finds structure (ArrowHead: docs/benchmarks.rst, "Patience").
# Patience is therefore at least this many optimiser steps (within half the
# epoch budget).
_MIN_PATIENCE_STEPS = 100

# Series are aligned when shifting them by 20-40% of their length takes them
# this many times farther from the data than their nearest neighbours are:
# then the time of events, not only their shape, may tell clusters apart, and
# the shift-invariant defaults of series would erase it. The threshold lies
# between the ratios measured on the sets that the convnet clusters better
# (shifted copies of their series occur in the data) and on those that rows
# cluster better; see docs/benchmarks.rst, "Time series", and
# docs/benchmarks/series.md.
_ALIGNED_SHIFT_DISTANCE = 3.0
# shift_distance: at most this many series are shifted and sought among at
# most _SHIFT_REFERENCE others (a fixed seed: a property of the data, not of
# the fit's random state).
_SHIFT_QUERIES = 1_000
_SHIFT_REFERENCE = 10_000

# max_samples="auto": the network is trained on a random subset of at most
# this many rows; every row is labelled. The neighbour search, the largest
# cost of a fit beyond it, costs the rows searched times the (up to 50,000)
# rows searched among, while the automatic epochs already give each row many
# draws at this size (10 epochs, 1,960 steps of 256); see
# docs/benchmarks/large.md.
_AUTO_MAX_SAMPLES = 50_000

# Entries of one head's pair joint (float32): beyond this a head cannot be
# held, merged or scored in reasonable memory (2**26 entries: 256 MiB).
_MAX_JOINT_ENTRIES = 2**26

# Parameters that take integers, where a bool (an int to Python) is a mistake.
_INTEGER_PARAMETERS = (
    "n_clusters", "n_neighbors", "n_microclusters", "n_subheads", "n_repeats",
    "batch_size", "n_epochs", "n_iter_no_change", "max_samples",
)


@dataclasses.dataclass(frozen=True)
class Plan:
    """Every setting of one fit, resolved: what ``fit`` runs, ``predict`` and ``score`` read.

    ``n_clusters`` is the number of clusters asked for or, when
    ``choose_n_clusters`` (``n_clusters="auto"``), the most that the fit
    chooses among; the fitted ``n_clusters_`` holds the number found.
    ``input_shape`` is ``n_features`` (an int) for feature vectors,
    ``(channels, length)`` for series and ``(channels, height, width)`` for
    images. ``pairs`` is ``"perturbation"``, ``"neighbors"`` or ``"both"``;
    ``perturbation`` the callable applied to the pair side (``None`` for
    neighbour pairs alone), and to the sample side too when ``perturb_x``.
    ``n_train_samples``: the rows trained on, a random subset when fewer than
    the data's. ``znormalize``: series are z-normalised one by one (each
    channel over its time points) before anything else, also when then
    clustered as feature vectors. ``standardize``: features (tables) or
    channels (series) are then standardised. ``batch_size`` is the
    training batch (at most ``n_samples``); ``eval_batch_size`` the pairs per
    forward pass when joints are summed over several passes of the data.
    ``linkage``: the merge of micro-clusters. ``automatic_epochs``:
    ``n_epochs`` was ``"auto"``, so running out of epochs is the plan, not a
    sign of unfinished training. ``global_draws``: the network or the
    perturbation draws from torch's global generators while training, found
    when the network is built (``False`` until then).
    """

    n_clusters: int
    choose_n_clusters: bool
    input_shape: object
    device: torch.device
    seed: int
    n_train_samples: int
    pairs: str
    perturbation: object
    perturb_x: bool
    n_neighbors: int
    znormalize: bool
    standardize: bool
    whiten: bool
    heads: Heads
    linkage: str
    n_repeats: int
    lamb: float
    informed_start: bool
    batch_size: int
    eval_batch_size: int
    n_epochs: int
    automatic_epochs: bool
    learning_rate: float
    n_threads: int
    tol: object
    n_iter_no_change: int
    joint_passes: int
    compile: object
    verbose: int
    global_draws: bool = False

    @property
    def uses_neighbors(self):
        return self.pairs in ("neighbors", "both")

    @property
    def n_features(self):
        return int(np.prod(self.input_shape))

    def passes_for(self, n_samples):
        """Passes over ``n_samples`` that give each entry of a main head's joint enough pairs."""
        return joint_passes(n_samples, self.heads.main_size)


def joint_passes(n_samples, n_columns):
    pairs = _PAIRS_PER_CELL * n_columns**2
    return int(np.clip(-(-pairs // n_samples), 1, _MAX_JOINT_PASSES))


def make_plan(params, input_shape, n_samples, measure_shift_distance=None):
    """Check ``params`` (an estimator's ``get_params()``) against the data and resolve them.

    Parameters
    ----------
    params : dict
        The estimator's hyper-parameters, already validated one by one by
        scikit-learn's parameter constraints.
    input_shape : int or tuple of int
        Shape of one sample: ``n_features``, ``(channels, length)`` or
        ``(channels, height, width)``.
    n_samples : int
        Rows of the data; the plan is made for the rows trained on
        (``max_samples`` of them).
    measure_shift_distance : callable or None, default=None
        For series, called only when the rule needs it (default network and
        perturbation), as ``measure_shift_distance(znormalize)`` with whether
        the series are z-normalised one by one (``Plan.znormalize``), which
        the series it measures must be: how far circular shifts move the
        series from the data (:func:`shift_distance` of the series, a
        nearest-neighbour search). Series that shifts
        carry far from every other series are aligned: with the default
        network and perturbation they are then clustered as feature vectors
        (``input_shape`` becomes ``n_features``).

    Returns
    -------
    plan : Plan
    """
    for name in _INTEGER_PARAMETERS:
        if isinstance(params[name], (bool, np.bool_)):
            raise TypeError(f"{name} must be an int, got {params[name]!r}.")
    choose_n_clusters = params["n_clusters"] == "auto"
    n_clusters = 2 if choose_n_clusters else params["n_clusters"]  # the fewest it needs
    if n_samples < max(2, n_clusters):
        raise ValueError(
            f"n_samples={n_samples} should be >= n_clusters={n_clusters} "
            "(and IIC needs at least 2 samples)."
        )
    n_samples = _max_samples(params["max_samples"], n_samples, n_clusters)  # rows trained on
    if choose_n_clusters:
        micro = params["n_microclusters"]
        n_clusters = min(_AUTO_MAX_CLUSTERS, n_samples)
        if isinstance(micro, int):
            n_clusters = min(n_clusters, micro)
    kind = kind_of_shape(input_shape)
    znormalize = kind == "series" and params["series_scaling"] == "series"
    if _aligned_series(params, kind, measure_shift_distance, znormalize):
        input_shape, kind = int(np.prod(input_shape)), "table"
    pairs = _AUTO_PAIRS[kind] if params["pairs"] == "auto" else params["pairs"]
    whiten = _whiten(params["whiten"], kind)
    # Choosing n_clusters needs a tree of micro-clusters, on every kind of data.
    heads = _heads(
        params, n_clusters, kind == "table" or choose_n_clusters, n_samples, choose_n_clusters,
        kind,
    )
    batch_size = min(params["batch_size"], n_samples)
    work = step_work(input_shape, batch_size * params["n_repeats"], heads.n_outputs)
    n_epochs = _n_epochs(params["n_epochs"], n_samples, params["batch_size"], work, kind)
    return Plan(
        n_clusters=n_clusters,
        choose_n_clusters=choose_n_clusters,
        input_shape=input_shape,
        device=resolve_device(params["device"]),
        seed=seed_from(params["random_state"]),
        n_train_samples=n_samples,
        pairs=pairs,
        perturbation=_perturbation(params["perturbation"], pairs, kind),
        perturb_x=kind == "series",
        n_neighbors=min(params["n_neighbors"], n_samples - 1),
        znormalize=znormalize,
        standardize=whiten or kind == "series",
        whiten=whiten,
        heads=heads,
        linkage=params["linkage"],
        n_repeats=params["n_repeats"],
        lamb=params["lamb"],
        # Measured on images only (docs/benchmarks.rst, "Cluster sizes on images").
        informed_start=kind == "image",
        batch_size=batch_size,
        eval_batch_size=params["batch_size"],
        n_epochs=n_epochs,
        automatic_epochs=params["n_epochs"] == "auto",
        learning_rate=params["learning_rate"],
        n_threads=training_threads(work),
        tol=params["tol"],
        n_iter_no_change=_patience(params["n_iter_no_change"], n_epochs, n_samples, batch_size),
        joint_passes=joint_passes(n_samples, heads.main_size),
        compile=params["compile"],
        verbose=params["verbose"],
    )


def _max_samples(max_samples, n_samples, n_clusters):
    if max_samples is None:
        return n_samples
    if max_samples == "auto":
        return min(n_samples, _AUTO_MAX_SAMPLES)
    if isinstance(max_samples, float):
        # A fraction, as IsolationForest's max_samples.
        rows = int(max_samples * n_samples)
        if rows < max(2, n_clusters):
            raise ValueError(
                f"max_samples={max_samples} of n_samples={n_samples} is {rows} rows, "
                f"fewer than n_clusters={n_clusters} (and IIC needs at least 2)."
            )
        return rows
    if max_samples < max(2, n_clusters):
        raise ValueError(
            f"max_samples={max_samples} should be >= n_clusters={n_clusters} "
            "(and IIC needs at least 2 samples)."
        )
    return min(max_samples, n_samples)


def _aligned_series(params, kind, measure_shift_distance, znormalize):
    """Whether series are aligned, so that the default series rule clusters them as rows."""
    return (
        kind == "series" and params["network"] is None
        and isinstance(params["perturbation"], str) and measure_shift_distance is not None
        and measure_shift_distance(znormalize) > _ALIGNED_SHIFT_DISTANCE
    )


def shift_distance(X, input_shape):
    """How far from the data circular shifts move series, relative to neighbour distances.

    Shifts a random subset of the series circularly by 20% to 40% of their
    length (the larger draws of the default series perturbation) and returns
    the median distance from a shifted series to its nearest series in the
    data, over the median distance from a series to its nearest other
    series (repeated series count once). Near 1 when the data hold shifted
    versions of their series, so that shifts are an invariance of the data;
    several times 1 when the series are aligned, so that a shift makes a
    series unlike any other.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_channels * length)
        Flattened series.
    input_shape : tuple of int
        ``(n_channels, length)``.

    Returns
    -------
    ratio : float
    """
    rng = np.random.default_rng(0)
    n_samples, length = X.shape[0], input_shape[1]
    reference = X
    if n_samples > _SHIFT_REFERENCE:
        reference = X[np.sort(rng.choice(n_samples, _SHIFT_REFERENCE, replace=False))]
    # Distinct series only: in data repeated to oversample them, a series'
    # nearest other series was its own copy, at distance 0, and every such
    # data set looked aligned (an infinite ratio).
    reference = np.unique(reference, axis=0)
    if len(reference) < 2:
        return float("inf")
    search = NearestNeighbors(n_neighbors=2).fit(reference)
    queries = reference[rng.choice(len(reference), min(len(reference), _SHIFT_QUERIES),
                                   replace=False)]
    own = np.median(search.kneighbors(queries)[0][:, 1])
    shifts = rng.integers(int(0.2 * length), int(0.4 * length) + 1, size=len(queries))
    shifts *= rng.choice([-1, 1], size=len(queries))
    series = queries.reshape(len(queries), *input_shape)
    shifted = np.stack([np.roll(one, k, axis=-1) for one, k in zip(series, shifts)])
    moved = np.median(search.kneighbors(shifted.reshape(len(queries), -1), 1)[0][:, 0])
    return float(moved / own) if own > 0 else float("inf")


def _perturbation(perturbation, pairs, kind):
    if pairs == "neighbors":
        return None
    if isinstance(perturbation, str):
        return default_perturbation(kind=kind)
    if isinstance(perturbation, (list, tuple)):
        if not all(callable(g) for g in perturbation):
            raise TypeError("perturbation must be a callable or a sequence of callables.")
        return Compose(perturbation)
    if perturbation is None and pairs != "both":
        raise ValueError(
            "perturbation=None leaves nothing to pair a sample with; use "
            "pairs='neighbors' or give a perturbation."
        )
    return perturbation


def _whiten(whiten, kind):
    if whiten == "auto":
        return kind == "table"
    if whiten and kind != "table":
        raise ValueError(
            f"whiten=True applies to feature vectors, not {kind}s, which the convnet "
            "takes as they are. Use whiten='auto' or False."
        )
    return bool(whiten)


def _n_microclusters(params, n_clusters, merge, n_samples):
    """Micro-clusters of the main head; ``merge``: whether "auto" merges micro-clusters."""
    n_micro = params["n_microclusters"]
    # "auto" merges for feature vectors, and on any data when n_clusters is
    # chosen from the tree. On images a head of n_clusters measured better on
    # balanced digits than merging micro-clusters, worse on long-tailed ones
    # (docs/benchmarks/imbalance_variants.md); on mnist1d series no better.
    if n_micro is None or (n_micro == "auto" and not merge):
        return n_clusters
    if n_micro == "auto":
        return _micro_count(n_clusters, n_samples)
    if n_micro < n_clusters:
        raise ValueError(
            f"n_microclusters={n_micro} must be at least n_clusters={n_clusters}."
        )
    if n_micro > n_samples:
        raise ValueError(
            f"n_microclusters={n_micro} exceeds the {n_samples} samples trained on: micro-clusters "
            "would be left empty."
        )
    return n_micro


def _size_prior(params, n_clusters, n_micro, kind, choose_n_clusters):
    """Whether the fit trains prior heads (``size_prior``), given the main heads' size."""
    size_prior = params["size_prior"]
    if size_prior == "auto":
        # Images: on long-tailed digits and MNIST the prior heads labelled
        # far better, on balanced ones the equal-size heads still won
        # (docs/benchmarks.rst, "Cluster sizes on images"). A module given
        # as the network outputs the logits it was built for.
        return (kind == "image" and n_micro == n_clusters and not choose_n_clusters
                and not isinstance(params["network"], nn.Module))
    if size_prior == "learned" and n_micro != n_clusters:
        raise ValueError(
            f"size_prior='learned' trains heads of n_clusters={n_clusters}, but the main heads "
            f"hold {n_micro} micro-clusters, merged afterwards: the merge decides the cluster "
            "sizes. Use n_microclusters=None, or size_prior='auto' or 'equal'."
        )
    return size_prior == "learned"


def _micro_count(n_clusters, n_samples):
    """Micro-clusters of n_microclusters="auto"."""
    wanted = max(_MIN_MICROCLUSTERS, _MICRO_PER_CLUSTER * n_clusters)
    return max(n_clusters, min(wanted, n_samples))


def _heads(params, n_clusters, merge, n_samples, choose_n_clusters, kind):
    n_micro = _n_microclusters(params, n_clusters, merge, n_samples)
    prior_heads = _size_prior(params, n_clusters, n_micro, kind, choose_n_clusters)
    overclustering = params["overclustering"]
    n_over = round(overclustering * n_clusters) if overclustering else 0
    source = {}
    if prior_heads and not n_over:
        # The prior is read from the micro-clusters of one overclustering
        # head, as many as a merge would have.
        n_over = _micro_count(n_clusters, n_samples)
        source = dict(n_overclustering_heads=1, overclustering_weight=_PRIOR_SOURCE_WEIGHT)
    if n_over > n_samples:
        raise ValueError(
            f"overclustering={overclustering} asks for {n_over} clusters in the "
            f"overclustering head, more than the {n_samples} samples trained on."
        )
    largest = max(n_micro, n_over)
    if largest**2 > _MAX_JOINT_ENTRIES:
        raise ValueError(
            f"A head of {largest} clusters needs a {largest} x {largest} pair joint, "
            f"more than the {_MAX_JOINT_ENTRIES} entries that fit in memory; lower "
            "n_microclusters or overclustering."
        )
    # n_microclusters="auto" merges micro-clusters and trains cluster heads
    # beside them, on a trunk of their own, which label when they cut far
    # fewer pairs: merging finds clusters of unequal sizes that a head
    # of n_clusters splits, the head finds separated blobs that the merge
    # joins (docs/benchmarks/real_tables.md, blob_grid.md). A network given
    # as a module is one trunk, so it gets no cluster heads.
    cluster_heads = (
        params["n_microclusters"] == "auto" and n_clusters < n_micro and not choose_n_clusters
        and not isinstance(params["network"], nn.Module)
    )
    return Heads(n_micro, n_over, params["n_subheads"], n_clusters if cluster_heads else 0,
                 prior_heads=prior_heads, **source)


def _patience(n_iter_no_change, n_epochs, n_samples, batch_size):
    n_batches = batches_per_epoch(n_samples, batch_size)
    patience = max(n_iter_no_change, -(-_MIN_PATIENCE_STEPS // n_batches))
    # A budget shorter than the patience could never converge: the
    # automatic 10 epochs of large data would warn on every fit.
    return min(patience, max(1, n_epochs // 2))


def _n_epochs(n_epochs, n_samples, batch_size, work, kind):
    """``n_epochs``, or the epochs of the automatic steps for steps of ``work`` multiply-adds."""
    if n_epochs != "auto":
        return n_epochs
    steps = _AUTO_STEPS
    if kind == "image":
        steps = min(_AUTO_IMAGE_STEPS, int(_AUTO_IMAGE_WORK // work))
    n_batches = batches_per_epoch(n_samples, batch_size)
    return int(np.clip(-(-steps // n_batches), _MIN_AUTO_EPOCHS, _MAX_AUTO_EPOCHS))


def step_work(input_shape, rows, n_outputs):
    """Rough multiply-adds of a forward pass of ``rows`` samples through the first layers.

    An MLP's 256-wide layers, a convnet's 32-channel 3x3 convolution per
    pixel, or a 1-D convnet's 5-wide one per time point: a measure of the
    work of a step, to choose threads by.
    """
    n_features = int(np.prod(input_shape))
    if kind_of_shape(input_shape) == "table":
        return rows * (n_features + n_outputs) * 256
    return rows * n_features * 32 * 9

