"""The IICClustering estimator: validate, plan, build, train, merge and choose a head, label."""

import contextlib
import copy
import dataclasses
import functools
import time
import warnings
from collections import OrderedDict
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    ClusterMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.callback import CallbackSupportMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, RealNotInt, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn
from torch.profiler import record_function

from ._callbacks import EpochTasks, FitTasks
from ._checks import check_perturbation
from ._distributed import data_parallel
from ._inference import (
    merged_probabilities,
    pair_joints,
    pair_label_counts,
    prediction_batch_size,
)
from ._input import (
    as_tensor,
    check_input_shape,
    feature_scaling,
    kind_of_shape,
    requested_kind,
    resolve_input_shape,
    validate_input,
    znormalise_series,
)
from ._kmeans_start import start_cluster_heads
from ._loss import normalized_mutual_information
from ._merge import (
    choose_cluster_head,
    choose_head,
    cluster_head_labels,
    cut_tree,
    merge_matrix,
    merged_joint,
    normalized_cut,
    rank_by_size,
)
from ._networks import build_network, run_in_training_mode
from ._pairs import PairSampler, nearest_neighbors, neighbors_among, random_rows
from ._plan import make_plan, shift_distance, step_work
from ._runtime import GlobalStream, inference_device, inference_threads, runtime, thread_limit
from ._size_prior import SizePrior
from ._training import Convergence, InformedStart, ProgressReport, TrainingLoop
from ._whitening import local_whitening

# Rows on which the network and the perturbation are tried before training:
# three, so that a network that only works on pairs of rows is caught.
_PROBE_ROWS = 3
# Training rows kept to pair the samples that ``score`` is given with (their
# neighbours are sought among them): at most this many rows, and at most this
# many values unless that leaves fewer than 10 rows per neighbour.
_REFERENCE_ROWS = 10_000
_REFERENCE_VALUES = 2**22
# Attributes that scikit-learn's callback support sets in a fit and deletes after it.
_CALLBACK_STATE = ("_callback_fit_ctx", "_skl_callbacks_to_teardown")


def _phase(name):
    """A region named for profilers (free when none runs): benchmarks time fits by these names."""
    return record_function(f"sklearn_iic.{name}")


@contextlib.contextmanager
def _unchanged_on_failure(estimator):
    """Restore every attribute of ``estimator`` if the block raises or is interrupted.

    A failed fit then leaves a fitted model exactly as it was, and an unfitted
    one unfitted. What scikit-learn's callback support set meanwhile stays,
    for ``_fit_context`` to tear the callbacks down and delete it.
    """
    saved = dict(vars(estimator))
    try:
        yield
    except BaseException:
        kept = {name: vars(estimator)[name] for name in _CALLBACK_STATE if name in vars(estimator)}
        vars(estimator).clear()
        vars(estimator).update(saved, **kept)
        raise


class IICClustering(
    CallbackSupportMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, ClusterMixin,
    BaseEstimator,
):
    """Invariant Information Clustering (IIC).

    Trains a neural network whose soft cluster assignments of a sample ``x``
    and of its pair ``x'`` (a perturbed copy, a nearest neighbour, or a
    perturbed neighbour) share as much information as possible. Maximising the
    mutual information ``I(z; z') = H(z) - H(z | z')`` rewards assignments that
    agree across the pair and clusters of equal size, so it does not collapse
    onto a single cluster.

    On feature vectors the network by default clusters the data into many
    small micro-clusters, which are then merged two at a time into
    ``n_clusters``, always the two groups whose samples are paired together
    most often relative to chance: micro-clusters that share pairs end up
    together, whatever the shape of their union (rings, moons, curved
    manifolds) and whatever its size. A second network trained beside it
    clusters the data into ``n_clusters`` directly, starting from k-means
    partitions of its hidden features; its clusters replace the
    merged ones when clearly fewer pairs cross them (separated blobs that
    the merge joins through a few ambiguous micro-clusters). Labels are the
    argmax of the (merged) soft assignments.
    Feature vectors are first mapped to coordinates in which neighbours
    differ equally in every direction (``whiten``), so that clusters
    stretched along some directions do not reach into each other.

    Training runs on the GPU when one is available (``device="auto"``); the
    fitted network is kept on the CPU, so fitted estimators pickle and load
    anywhere.

    Parameters
    ----------
    n_clusters : int or "auto", default=8
        Number of clusters. ``"auto"`` chooses it, from 2 to 10 (at most the
        samples trained on, or ``n_microclusters``), from the tree of merges
        of micro-clusters (on every kind of data: images and series then
        merge micro-clusters too): the tree is cut where the next merge
        would join groups far less paired than the merges before it (see
        the user guide's section on the number of clusters). The network is
        trained as for 10 clusters; ``n_clusters_`` holds the number chosen,
        and :meth:`predict_at` labels at any other number from the same tree
        without retraining.

    network : nn.Module, callable or None, default=None
        The network mapping a batch to logits. ``None`` uses
        :class:`~sklearn_iic.MLP` for feature vectors,
        :class:`~sklearn_iic.ConvNet1d` for series and
        :class:`~sklearn_iic.ConvNet` for images. A class or factory is
        called as ``network(input_shape, n_outputs)``, where ``input_shape``
        is ``n_features``, ``(channels, length)`` or ``(channels, height,
        width)``. An
        :class:`~torch.nn.Module` instance is deep-copied before training,
        never trained in place; its output width must be ``n_outputs`` (see
        the error message). ``n_outputs`` is ``n_clusters`` times
        ``n_subheads`` (``n_microclusters_`` per head when micro-clusters
        are merged; twice ``n_subheads`` heads with the size prior, on
        images by default), plus the overclustering heads: the output is
        split into the heads, so the last linear layer acts as independent
        heads. With
        cluster heads (``n_microclusters="auto"`` on feature vectors), a
        class or factory is called twice: for the micro-cluster heads, then
        for ``n_clusters`` times ``n_subheads`` outputs of the cluster heads,
        and the two networks train side by side; a module instance gets no
        cluster heads.

    perturbation : "auto", callable, sequence of callables or None, default="auto"
        The random map ``g`` applied to the pair side, called as
        ``g(x, generator)`` on a batch tensor on the training device with a
        :class:`torch.Generator` that must provide all its randomness. A
        sequence is applied in order. ``"auto"`` uses
        :class:`~sklearn_iic.perturbations.GaussianNoise` for feature vectors,
        random affine maps, intensity jitter and noise for images, and
        circular shifts, time warps, amplitude scaling, a trend and noise for
        series (see :func:`~sklearn_iic.perturbations.default_perturbation`).
        On series it is applied to both members of a pair (independent
        draws), so that no head can learn to tell perturbed series from
        unperturbed ones. ``None`` applies none, which only makes sense with
        neighbour pairs.

    pairs : {"auto", "perturbation", "neighbors", "both"}, default="auto"
        How the pair ``x'`` of a sample ``x`` is made: ``"perturbation"``,
        ``x' = g(x)``; ``"neighbors"``, one of the ``n_neighbors`` nearest
        neighbours of ``x`` drawn afresh each epoch (the perturbation is not
        applied); ``"both"``, ``g`` applied to such a neighbour. ``"auto"`` is
        ``"both"``, which measured best on both feature vectors and images,
        and ``"perturbation"`` for series.

    n_neighbors : int, default=10
        Neighbours per sample for neighbour pairs.

    whiten : bool or "auto", default="auto"
        Train in the metric of the data's neighbourhoods: before training, an
        affine map is fitted under which the differences between samples and
        their 30 nearest neighbours have identity covariance (Ledoit-Wolf
        estimate from a random subset of at most 10,000 samples, fewer for
        wide data). Neighbour pairs are sought, and the network is fed, in
        those coordinates; the features are standardised first, and the
        perturbation acts on the standardised features, so the labels do
        not depend on the units of the features. Directions along which
        clusters are stretched then stop dominating the neighbourhoods (see
        the user guide). ``"auto"`` whitens feature vectors and leaves images
        as they are, for the convnet; ``True`` on images or series raises an
        error. Series are scaled as ``series_scaling`` says whatever
        ``whiten``.

        Wide tables are whitened in fewer directions: when the rows of the
        estimate number fewer than 5 per feature, or fewer than 20 per
        effective dimension of the standardised data (about the number of
        features when they are independent noise), the map is fitted in,
        and keeps, only the leading ``max(5, rows // 40)`` principal
        components of the standardised features. Whitened in every
        direction, such tables got uninformative clusters, at times a single
        one; projected they are clustered (see the user guide's section on
        wide tables, and docs/benchmarks/wide.md).

    input_kind : {"auto", "table", "image", "series"}, default="auto"
        What a sample is. ``"auto"``: 2-D ``X`` holds feature vectors (or
        flattened images or series, with ``image_shape`` or
        ``series_shape``), 3-D and 4-D arrays hold images ``(n, height,
        width)`` and ``(n, channels, height, width)``; a 3-D array whose
        second axis is at most a quarter of its third, such as ``(n, 1,
        150)``, warns that it may hold series. ``"series"``: 3-D arrays are
        series in the ``(n_cases, n_channels, n_timepoints)`` layout of aeon,
        sktime and tslearn, and 2-D rows are univariate series (or
        ``series_shape``). ``"image"`` and ``"table"`` say so explicitly.
        With the default ``network`` and ``perturbation``, series that
        circular shifts carry far from every other series (aligned series,
        such as daily profiles) are clustered as feature vectors, time point
        by time point; the others with :class:`~sklearn_iic.ConvNet1d` and
        shift-tolerant perturbations (see the user guide).

    series_scaling : {"series", "global"}, default="series"
        How series are scaled before anything else. ``"series"``: each
        channel of each series is z-normalised over its time points (mean 0,
        standard deviation 1; constant channels are only centred), as the UCR
        literature does, so that the level and amplitude of a series do not
        count, only its shape; then each channel is standardised over all
        series and time points. ``"global"``: only the latter, which keeps
        differences in level and amplitude between series; use it when they
        tell clusters apart. Series clustered as feature vectors (aligned
        series, see ``input_kind``) are scaled alike first. Ignored for
        feature vectors and images. On mnist1d as its package generates it
        (series of varying offset and scale), ``"series"`` measured far
        better than ``"global"`` (see the user guide, and
        docs/benchmarks/series_raw.md).

    image_shape : tuple of int or None, default=None
        ``(height, width)`` or ``(channels, height, width)`` of images given
        as flattened rows. Images may also be passed unflattened as arrays of
        shape ``(n, height, width)`` or ``(n, channels, height, width)``.

    series_shape : tuple of int, int or None, default=None
        ``(n_channels, n_timepoints)`` (or ``n_timepoints``) of series given
        as flattened rows, channel after channel; implies
        ``input_kind="series"``.

    n_microclusters : int, "auto" or None, default="auto"
        Clusters of the network's main head, merged into ``n_clusters``
        after training, two groups at a time (see ``linkage``). ``"auto"``
        is ``max(50, 5 * n_clusters)`` (at most ``n_samples``) for feature
        vectors and ``None`` for images and series; ``None`` (or
        ``n_clusters``) trains a head of ``n_clusters`` directly, as in the
        IIC paper. Merging finds clusters of any shape that gradient descent
        on an ``n_clusters`` head misses (it settles on a split by a line on
        concentric circles); on mnist1d series it measured no better, and on
        images worse on balanced digits and better on long-tailed ones (see
        the user guide's section on cluster sizes, and
        docs/benchmarks/imbalance_variants.md). On feature vectors with an
        int ``n_clusters``, ``"auto"`` also trains heads of ``n_clusters``
        beside the micro-clusters, on a network of their own, and they
        label instead of the merge when they cut clearly fewer pairs
        (``cluster_head_``): the merge keeps clusters of unequal sizes apart,
        the heads find many separated blobs that the merge joins. An int
        merges micro-clusters only.

    linkage : {"cosine", "information"}, default="cosine"
        Which two groups of micro-clusters each merge joins. ``"cosine"``:
        the largest cosine ``P(G, H) / sqrt(P(G, G) P(H, H))`` of the joint
        distribution of paired samples, the pairs between two groups
        relative to the pairs within each, which favours neither equal nor
        small clusters. ``"information"``: the merge that loses the least
        mutual information between paired samples, which favours clusters of
        equal size, as the IIC objective does; it is better when the
        clusters are known to be about equally large (digits as features)
        and worse when they are not, and it is much slower for hundreds of
        micro-clusters. See the user guide's section on cluster sizes,
        docs/benchmarks/tabular.md and imbalance_variants.md, and the
        benchmarks page's section on micro-clusters for the cost.

    size_prior : {"auto", "learned", "equal"}, default="auto"
        What the sizes of the heads of ``n_clusters`` are pulled towards.
        ``"equal"``: equal sizes, as IIC's objective does. ``"learned"``:
        besides the ``n_subheads`` heads pulled towards equal sizes,
        ``n_subheads`` *prior heads* are pulled towards the sizes of the
        groups that the micro-clusters of the overclustering heads merge
        into, and the head that labels is the one whose pairs explain the
        largest share of its clusters' entropy, ``I(z; z') / H(z)``, which
        prefers neither equal nor unequal sizes (see the user guide's
        section on cluster sizes). It applies where the main heads are heads
        of ``n_clusters`` (images, series, ``n_microclusters=None``); where
        micro-clusters are merged, the merge decides the sizes. ``"auto"``:
        ``"learned"`` on images (unless ``network`` is a module, which
        outputs the logits it was built for, or ``n_clusters="auto"``),
        ``"equal"`` otherwise.

    overclustering : float, default=0
        If positive, an auxiliary head with ``round(overclustering *
        n_clusters)`` clusters is trained alongside the main one; it shapes the
        shared network and is not used for labels. The size prior reads the
        sizes from it; with ``overclustering=0`` prior heads get overclustering
        heads of as many micro-clusters as ``n_microclusters="auto"`` has.

    n_subheads : int, default=5
        Independent copies of each head. After training (and merging), the
        main sub-head with the lowest loss on the training pairs gives the
        labels (no labels needed); with a size prior, the sub-head of the
        largest ``I(z; z') / H(z)``.

    n_repeats : int, default=1
        Times each sample appears in a batch, each against an independent
        draw of its pair.

    lamb : float, default=1.5
        Weight of the marginal entropies in the IIC loss (see
        :func:`~sklearn_iic.iic_loss`); above 1 favours balanced clusters.
        On images, training uses ``lamb=1`` (the mutual information alone)
        until the pairs of an epoch share information, and ``lamb`` from
        the next epoch: above 1, the marginal entropies are largest when
        every assignment is uniform, where training could otherwise stay.

    batch_size : int, default=256
        Samples per training batch (before repeats). The joint distribution
        is a batch statistic, so keep it well above ``n_clusters``.

    n_epochs : int or "auto", default="auto"
        Most passes over the data. ``"auto"`` gives about 800 optimiser
        steps, within 10 to 100 epochs: 100 epochs for up to about 2,000
        samples, 40 for 5,000, 10 from about 20,250 on (with
        ``batch_size=256`` and ``n_repeats=1``). Images take at most 440
        steps (55 epochs for 1,797 images of 8x8), and those of more than
        about 550 values (23x23 grey pixels) fewer, costlier steps, within a
        budget of multiply-adds that more repeats also spend: 16 epochs for
        5,000 images of 28x28. The minimum of 10 epochs applies to images
        too.
        Training stops earlier once converged (``tol``). The automatic
        budget is the plan of the fit: running it out is no sign of a
        problem, and raises no warning (``converged_`` tells).

    max_samples : "auto", int, float or None, default="auto"
        Rows the network is trained on. When ``X`` has more, a random subset
        of this many rows (of ``max_samples * n_samples`` for a float) is
        drawn with ``random_state``, and the neighbour search, training and
        the choice of the head see only it; every row of ``X`` is labelled.
        ``"auto"`` trains on at most 50,000 rows, which bounds the time of a
        fit on any amount of data: the neighbour search costs the rows
        searched times the (up to 50,000) rows searched among, while 10
        epochs of 50,000 rows already give each row many draws (see
        docs/benchmarks/large.md). ``None`` trains on every row.

    tol : float or None, default=1e-3
        Tolerance of the convergence test: training stops once the epoch's
        mean loss has not fallen below its best by at least ``tol`` for
        ``n_iter_no_change`` epochs in a row; epochs whose paired samples
        share almost no information, the uninformative start IIC can rest on,
        are not counted. ``None`` always runs
        ``n_epochs``. When ``n_epochs`` is an integer, a
        :class:`~sklearn.exceptions.ConvergenceWarning` says when the epochs
        ran out first; the automatic budget of ``n_epochs="auto"`` ends
        without one. ``converged_`` says which happened.

    n_iter_no_change : int, default=20
        Epochs without improvement by ``tol`` after which training stops:
        at least as many epochs as make 100 optimiser steps (on small data an
        epoch is a single step, and IIC can rest on uninformative
        assignments for tens of steps before it finds structure), and at
        most half of ``n_epochs``, so that short budgets can converge. With
        10, an iris seed stopped early on a worse clustering (see the
        benchmarks page, "Patience").

    learning_rate : float, default=1e-3
        Adam's learning rate.

    device : str or torch.device, default="auto"
        ``"auto"`` uses CUDA when available and the CPU otherwise; ``"cpu"``,
        ``"cuda"`` and ``"cuda:N"`` (N below the number of GPUs) are
        accepted. A resource setting, like ``n_jobs`` elsewhere: ``predict``,
        ``transform`` and ``score`` run where its current value says (the
        CPU, for a model fitted on a GPU, on a machine without one). On a
        GPU, cuDNN uses its deterministic algorithms during the fit.

    compile : bool or dict, default=False
        Train through :func:`torch.compile` of the network (a dict is passed
        to it as keyword arguments, e.g. ``{"mode": "max-autotune"}``). The
        first steps pay the compilation (it needs a C++ compiler on the CPU
        and Triton on GPUs), so it pays off only on long fits; see
        docs/benchmarks/speed.md ("torch.compile"). ``network_`` stays the
        plain module.

    distributed : bool, default=False
        Fit data-parallel with the ranks of torch.distributed's default
        process group, which must be initialised (a script launched by
        ``torchrun`` that calls :func:`torch.distributed.init_process_group`).
        Every rank calls ``fit`` with the same ``X`` and parameters; each
        computes the network on its share of every training batch, the
        joints of the loss and BatchNorm's statistics are summed over ranks
        and the gradients averaged, so that every rank ends with the same
        fitted estimator, equal to a single-process fit up to float
        rounding. Ranks that differ in ``X`` or parameters, or a rank that
        fails, make every rank raise. ``False`` fits in this process alone,
        also inside a process group. See the user guide's scaling page.
        The callbacks of :meth:`set_callbacks` run on rank 0 alone; one that
        stops training there stops every rank.

    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, batches, pairs and perturbations. Fitting
        never reads or changes the global numpy or torch random state.

    verbose : int, default=0
        When positive, print the progress of training: the loss, the mutual
        information of the epoch's pairs and the cluster sizes (explained in
        a first line) of the first and last epochs and of every
        ``ceil(n_epochs / 20)``-th epoch (at most 22 such lines); then a
        closing line with how training ended, the sizes of the final
        clusters and the time of the fit. On terminals a progress bar (tqdm) shows every
        epoch. scikit-learn's :class:`~sklearn.callback.ProgressBar`, set with
        :meth:`set_callbacks`, draws bars instead, nested in those of a
        pipeline or a grid search (see Notes).

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
        Cluster of each training sample. Clusters are numbered by decreasing
        size on the training data, clusters of equal size in the order of
        their first sample.

    network_ : torch.nn.Module
        The trained network, on the CPU, in eval mode. When whitened, a
        :class:`torch.nn.Sequential` of the fixed map (``network_.whitening``,
        a :class:`~sklearn_iic.Whitening`) and the trained network
        (``network_.network``); it then takes standardised rows,
        ``(X - feature_mean_) / feature_scale_``.

    feature_mean_, feature_scale_ : ndarray of shape (`n_features_in_`,) or None
        Mean and standard deviation (1 for constant features) of each feature
        of the training data, by which feature vectors are standardised in
        float64 before anything else when whitened (``None`` otherwise). With
        them, and the whitening, the labels do not depend on the units of the
        features. For series, those of each channel over all its time points,
        repeated along time, after the series are z-normalised one by one
        (``series_scaling="series"``).

    best_head_ : int
        Index of the main sub-head whose micro-clusters are merged (the one
        that labels unless ``cluster_head_`` is set). With a size prior, the
        heads from ``n_subheads`` on are the prior heads.

    cluster_head_ : int or None
        Index of the cluster sub-head that labels, when the cluster heads
        trained beside the micro-clusters (``n_microclusters="auto"`` on
        feature vectors) cut clearly fewer pairs than the merged
        micro-clusters (see ``normalized_cuts_``); None when the merged
        micro-clusters label, and when there are no cluster heads.

    normalized_cuts_ : ndarray of shape (2,) or None
        Normalised cut of the pairs of the training data by the merged
        micro-clusters and by the best cluster sub-head, in that order: for
        each cluster, the share of its pairs that join another cluster,
        summed over clusters (an empty cluster counts 1). The cluster head
        labels when its cut is below 0.4 times the merge's. None without
        cluster heads.

    head_losses_ : ndarray of shape (n_subheads,) or (2 * n_subheads,)
        IIC loss (``lamb=1``, so minus the mutual information) of each main
        sub-head's ``n_clusters`` clusters on the training pairs, after
        merging; with a size prior, of the prior heads too, after the others.

    n_microclusters_ : int
        Clusters of each main sub-head; ``n_clusters`` when none are merged.

    max_samples_ : int
        Rows the network was trained on (see ``max_samples``); every row of
        the training data is labelled in ``labels_``.

    merge_map_ : ndarray of shape (`n_microclusters_`,) or (`n_clusters_`,)
        Cluster (as numbered in ``labels_``) of each cluster of the head
        that labels: of each micro-cluster of the best sub-head, or, when
        ``cluster_head_`` is set, of each cluster of that cluster sub-head.

    n_clusters_ : int
        Number of clusters: ``n_clusters``, or the number chosen when
        ``n_clusters="auto"``.

    children_ : ndarray of shape (`n_microclusters_` - 1, 2)
        The merge tree of the best sub-head's micro-clusters, as in
        :class:`~sklearn.cluster.AgglomerativeClustering`: row ``i`` holds the
        two nodes merged at step ``i``, where a node below
        ``n_microclusters_`` is that micro-cluster and node
        ``n_microclusters_ + j`` the group made at step ``j``. The tree runs
        up to a single group; ``labels_`` cut it into ``n_clusters_``.

    distances_ : ndarray of shape (`n_microclusters_` - 1,)
        Height of each merge of ``children_``: how rarely pairs join the two
        groups relative to chance, minus the logarithm of the lift
        ``P(G, H) / (P(G) P(H))`` of the joint distribution of paired
        samples (minus their pointwise mutual information), raised where
        needed to the height of the merges below it, so non-decreasing;
        ``-log(eps)`` (about 36) for groups that were never paired.
        ``n_clusters="auto"`` reads the number of clusters from it.

    loss_curve_ : list of float
        Mean main-head loss of each epoch.

    n_iter_ : int
        Number of epochs run (fewer than ``n_epochs`` when converged).

    converged_ : bool
        Whether training stopped because the loss stopped improving by
        ``tol``, rather than at the end of ``n_epochs``.

    n_features_in_ : int
        Number of features seen during fit (pixels times channels for images).

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when X has string column names.

    input_shape_ : int or tuple of int
        ``n_features_in_`` for feature vectors, ``(channels, length)`` for
        series, ``(channels, height, width)`` for images.

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

    ``fit`` takes no ``sample_weight``: batches, pairs and perturbations are
    drawn at random, so a weight could be honoured only in expectation, never
    exactly (a weight of 2 fitting as a repeated row does, as scikit-learn's
    sample-weight checks require).

    :meth:`set_callbacks` takes the callbacks of scikit-learn
    (:mod:`sklearn.callback`), such as :class:`~sklearn.callback.ProgressBar`
    (which needs rich: the ``progress`` extra) and
    :class:`~sklearn.callback.ScoringMonitor`. A fit is their task
    ``"fit"``, whose subtasks are the epochs (``"epoch"``; ``n_epochs`` of
    them at most, the automatic number resolved before the first), then
    ``"merge"``: the merge of the micro-clusters and the labels. At an
    epoch's end, the ``fitted_estimator`` a callback receives predicts as a
    fit stopped after that epoch would; it is made only for callbacks that
    ask for it, and costs a merge, whose passes of pairs over the data take
    about eight epochs' time on the digits. A callback that returns True
    there stops training after that epoch, and the fit ends as usual, with
    ``converged_`` false unless the convergence test stopped the same epoch.
    The callbacks receive ``X`` and ``y`` as given to ``fit``; scikit-learn's
    ``ScoringMonitor`` scores only tasks that have a ``y``: give ``fit`` the
    labels to score against (training does not use them). Trained
    data-parallel, only rank 0 calls the callbacks.

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
        "n_clusters": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "network": [None, callable],
        "perturbation": [StrOptions({"auto"}), None, callable, list, tuple],
        "pairs": [StrOptions({"auto", "perturbation", "neighbors", "both"})],
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "whiten": ["boolean", StrOptions({"auto"})],
        "input_kind": [StrOptions({"auto", "table", "image", "series"})],
        "series_scaling": [StrOptions({"series", "global"})],
        "image_shape": [None, tuple],
        "series_shape": [None, tuple, Interval(Integral, 1, None, closed="left")],
        "n_microclusters": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"}), None],
        "linkage": [StrOptions({"cosine", "information"})],
        "size_prior": [StrOptions({"auto", "learned", "equal"})],
        "overclustering": [Interval(Real, 0, None, closed="left")],
        "n_subheads": [Interval(Integral, 1, None, closed="left")],
        "n_repeats": [Interval(Integral, 1, None, closed="left")],
        "lamb": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "n_epochs": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "max_samples": [
            Interval(Integral, 1, None, closed="left"),
            Interval(RealNotInt, 0, 1, closed="right"),
            StrOptions({"auto"}),
            None,
        ],
        "tol": [Interval(Real, 0, None, closed="left"), None],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "device": [str, torch.device],
        "compile": ["boolean", dict],
        "distributed": ["boolean"],
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
        input_kind="auto",
        series_scaling="series",
        image_shape=None,
        series_shape=None,
        n_microclusters="auto",
        linkage="cosine",
        size_prior="auto",
        overclustering=0,
        n_subheads=5,
        n_repeats=1,
        lamb=1.5,
        batch_size=256,
        n_epochs="auto",
        max_samples="auto",
        tol=1e-3,
        n_iter_no_change=20,
        learning_rate=1e-3,
        device="auto",
        compile=False,
        distributed=False,
        random_state=None,
        verbose=0,
    ):
        self.n_clusters = n_clusters
        self.network = network
        self.perturbation = perturbation
        self.pairs = pairs
        self.n_neighbors = n_neighbors
        self.whiten = whiten
        self.input_kind = input_kind
        self.series_scaling = series_scaling
        self.image_shape = image_shape
        self.series_shape = series_shape
        self.n_microclusters = n_microclusters
        self.linkage = linkage
        self.size_prior = size_prior
        self.overclustering = overclustering
        self.n_subheads = n_subheads
        self.n_repeats = n_repeats
        self.lamb = lamb
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.max_samples = max_samples
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.learning_rate = learning_rate
        self.device = device
        self.compile = compile
        self.distributed = distributed
        self.random_state = random_state
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Train the network on X and label its samples.

        When the features are standardised (``feature_mean_``), any finite
        values are accepted, as each feature's scale is its own spread; values
        that float32 cannot hold otherwise raise a ValueError, as infinite
        values do.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), images of shape \
                (n_samples, height, width) or (n_samples, channels, height, width), \
                or series of shape (n_samples, n_channels, n_timepoints)
            Training data (see ``input_kind``).
        y : Ignored
            Not used in training; passed, with X, to the callbacks of
            :meth:`set_callbacks` (scikit-learn's ``ScoringMonitor`` scores
            against it).

        Returns
        -------
        self : IICClustering
            The fitted estimator.
        """
        start = time.perf_counter()
        data = X  # scikit-learn's callbacks receive X as given
        with _unchanged_on_failure(self), data_parallel(self.distributed) as group:
            X, input_shape = self._validated_training_input(X)
            plan = group.agree_on_plan(self._make_plan(X, input_shape), X)
            tasks = FitTasks(self, data, y, plan.n_epochs, group.rank)
            X, scaling = _scaled(X, input_shape, plan)
            with runtime(plan.n_threads, plan.device):
                X_tensor = as_tensor(X, plan.input_shape, plan.device, scaling)
                generator = torch.Generator(device=plan.device).manual_seed(plan.seed)
                stream = GlobalStream(plan.seed, plan.device)
                network, sampler, draws = self._network_and_pairs(X_tensor, plan, generator, stream)
                plan = dataclasses.replace(plan, global_draws=draws)
                # Every rank follows the epochs if rank 0, which calls the callbacks, does.
                observed = group.checkpoint(
                    value=tasks.observed, network=network.state_dict(), neighbors=sampler.neighbors
                )
                with _global_draws(plan, stream):
                    with _phase("fit.train"):
                        training = self._training_loop(network, sampler, plan, generator, group)
                        if observed:
                            # Copied before data-parallel training replaces its BatchNorm layers.
                            at_epoch = functools.partial(
                                _attributes_at_epoch, copy.deepcopy(network), sampler, X_tensor,
                                plan, scaling, input_shape,
                            )
                            training.callbacks.append(EpochTasks(tasks, at_epoch))
                        training.fit()
                    merge = tasks.begin("merge")
                    attributes = _fitted_attributes(
                        network, sampler, X_tensor, plan, scaling, input_shape, training
                    )
                tasks.end(merge, attributes)
            labels, n_clusters = attributes["labels_"], attributes["n_clusters_"]
            # Inside the transaction: warnings turned into errors fail the fit whole.
            _warn_if_unfinished(plan, training.stop_training, labels, n_clusters)
            group.finish(network=network.state_dict(), labels=labels,
                         groups=attributes["merge_map_"])
            vars(self).update(attributes)
            if plan.verbose and group.rank == 0:
                print(_summary(self, start), flush=True)
            tasks.end(tasks.fit, {})
        return self

    def _validated_training_input(self, X):
        """``X`` validated for ``fit``, and the shape of one of its samples."""
        with _phase("fit.validate"):
            kind, declared_shape = requested_kind(
                self.input_kind, self.image_shape, self.series_shape
            )
            X, array_shape = validate_input(self, X, reset=True, kind=kind)
            return X, resolve_input_shape(kind, declared_shape, array_shape, X.shape[1])

    def _make_plan(self, X, input_shape):
        """The plan of a fit on ``X``: every parameter checked and every "auto" resolved."""
        with _phase("fit.plan"):
            return make_plan(
                self.get_params(deep=False), input_shape, X.shape[0],
                lambda znormalize: shift_distance(
                    znormalise_series(X, input_shape) if znormalize else X, input_shape
                ),
            )

    def _network_and_pairs(self, X, plan, generator, stream):
        """The network to train, the sampler of the pairs it trains on, and whether they draw.

        The network is built from ``stream`` (its weights initialised from
        torch's global generators, as torch's layers do), then it and the
        perturbation are tried on a few rows; the third value tells whether
        either draws from torch's global generators while training. Then
        ``generator`` draws the rows trained on (``max_samples``), the
        whitening, which then feeds the network, and the neighbours. The
        default network's cluster heads then start from k-means partitions
        (:func:`~sklearn_iic._kmeans_start.start_cluster_heads`).
        """
        with _phase("fit.network"):
            probe = X[:_PROBE_ROWS]
            with stream.section():
                network = build_network(
                    self.network, plan.input_shape, plan.heads.n_outputs, probe,
                    plan.heads.n_cluster_outputs,
                )
            draws = stream.draws(lambda: run_in_training_mode(network, probe))
            if plan.perturbation is not None:
                draws = check_perturbation(plan.perturbation, probe) or draws
        if plan.n_train_samples < X.shape[0]:
            X = X[random_rows(X.shape[0], plan.n_train_samples, generator)]
        trunks, whitening, neighbors = network, None, None
        if plan.whiten:
            with _phase("fit.whitening"):
                whitening = local_whitening(X, generator)
            network = nn.Sequential(OrderedDict(whitening=whitening, network=network))
        if plan.uses_neighbors:
            with _phase("fit.neighbors"):
                neighbors = nearest_neighbors(X, plan.n_neighbors, generator, whitening)
        if plan.heads.n_cluster_heads and self.network is None:
            with _phase("fit.kmeans"):
                # A generator of its own: the other heads train on the draws
                # they would without cluster heads.
                start_cluster_heads(
                    trunks.second, X, plan.heads.n_cluster_heads, plan.heads.cluster_size,
                    torch.Generator(device=plan.device).manual_seed(plan.seed), whitening,
                )
        sampler = PairSampler(
            X, perturbation=plan.perturbation, neighbors=neighbors, n_repeats=plan.n_repeats,
            generator=generator, perturb_x=plan.perturb_x,
        )
        return network, sampler, draws

    def _training_loop(self, network, sampler, plan, generator, group):
        """The loop that ``fit`` trains the network with: the override point of training.

        A subclass overrides this method to train with another
        :class:`~sklearn_iic._training.TrainingLoop` (a subclass with other
        steps, another optimiser) or with more callbacks, as the user guide's
        section on observing and extending training shows. The loop's
        ``loss_curve`` and ``converged`` become ``loss_curve_`` and
        ``converged_``.
        """
        callbacks = [ProgressReport()] if plan.verbose else []
        callbacks.append(Convergence(plan.tol, plan.n_iter_no_change))
        if plan.informed_start:
            callbacks.append(InformedStart())
        if plan.heads.prior_heads:
            # No prior share below one training sample's.
            callbacks.append(SizePrior(min_share=1 / plan.n_train_samples))
        return TrainingLoop(
            network, sampler, plan.heads, batch_size=plan.batch_size, n_epochs=plan.n_epochs,
            lamb=plan.lamb, generator=generator, learning_rate=plan.learning_rate,
            compile=plan.compile, callbacks=callbacks, group=group,
        )

    def predict_proba(self, X):
        """Soft cluster assignments of X.

        Samples whose values overflow float32, in which the network computes,
        raise a ValueError, as infinite values do, rather than get NaN
        probabilities: values beyond float32's range (about 3.4e38) once
        standardised by ``feature_mean_`` and ``feature_scale_`` (such as
        1e300 in a feature of the wine data), or as they are when not
        standardised, and values that overflow inside the network. Such
        samples lie far outside the training data. The same holds for
        :meth:`predict` and :meth:`score`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), images or series
            New data, shaped as in :meth:`fit`.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_clusters)
            Rows sum to one; their argmax is :meth:`predict`.
        """
        check_is_fitted(self)
        return self._merged_proba(X, self.merge_map_, self.n_clusters_, self._labelling_head())

    def _labelling_head(self):
        """The head whose clusters ``merge_map_`` merges, as ``Heads`` numbers it."""
        return self._plan.heads.labelling_index(self.best_head_, self.cluster_head_)

    def _merged_proba(self, X, groups, n_clusters, index):
        """Probabilities of head ``index``'s clusters summed into ``n_clusters`` by ``groups``."""
        X = self._validate_fitted_input(X)
        plan = self._plan
        device = inference_device(self.device)
        # Convert X batch by batch: predicting never holds a full copy of it.
        rows = prediction_batch_size(plan.n_features)
        batches = (
            as_tensor(self._znormalised(X[start : start + rows]), plan.input_shape, device,
                      self._scaling())
            for start in range(0, X.shape[0], rows)
        )
        merge = merge_matrix(groups, n_clusters, device)
        work = step_work(plan.input_shape, X.shape[0], plan.heads.n_outputs)
        n_threads = inference_threads(work) if device.type == "cpu" else 1
        with runtime(n_threads, device), _phase("predict"):
            proba = merged_probabilities(
                self._network_on(device), batches, plan.heads, index, merge
            )
        return proba.double().numpy()

    def transform(self, X):
        """Soft cluster assignments of X, as features: :meth:`predict_proba`.

        A clusterer's transform maps samples into cluster space (KMeans's
        gives the distances to its centroids); IIC has no centroids, and its
        soft assignments are what its clusters are made of. As features they
        sum to one in every row, and ``fit_transform`` equals ``fit`` then
        ``transform``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), images or series
            New data, shaped as in :meth:`fit`.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_clusters)
            Probability of each cluster for each sample.
        """
        return self.predict_proba(X)

    def predict(self, X):
        """Cluster of each sample of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), images or series
            New data, shaped as in :meth:`fit`.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        return self.predict_proba(X).argmax(axis=1)

    def predict_at(self, X, n_clusters):
        """Cluster of each sample of X with the fitted merge tree cut into ``n_clusters``.

        Cuts ``children_`` into ``n_clusters`` groups of micro-clusters, as
        :meth:`sklearn.cluster.HDBSCAN.dbscan_clustering` cuts its fitted
        tree: no retraining. ``predict_at(X, n_clusters_)`` equals
        ``predict(X)``; at another number, clusters are numbered by
        decreasing size on X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), images or series
            New data, shaped as in :meth:`fit`.
        n_clusters : int
            From 1 to ``n_microclusters_``.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        n_micro = self.n_microclusters_
        if (isinstance(n_clusters, (bool, np.bool_)) or not isinstance(n_clusters, Integral)
                or not 1 <= n_clusters <= n_micro):
            raise ValueError(
                f"n_clusters must be an int from 1 to n_microclusters_={n_micro}, the leaves "
                f"of the fitted merge tree; got {n_clusters!r}."
            )
        if n_clusters == self.n_clusters_:
            return self.predict(X)
        groups = cut_tree(self.children_, n_clusters)
        labels = self._merged_proba(X, groups, n_clusters, self.best_head_).argmax(axis=1)
        return rank_by_size(labels, n_clusters)[labels]

    def score(self, X, y=None):
        """Normalised mutual information between the clusters of X and of its pairs.

        Pairs every sample of X as training did, with what the fit kept:
        the same perturbation, and neighbours sought among (up to 10,000 of)
        the training samples, with a seed fixed at fit time. So each sample is
        paired independently of the others, and the score of a model does not
        depend on how many samples are scored beyond sampling noise. Returns
        ``I(z; z') / H(z)``, computed from the soft assignments: the share of
        the information in the clustering of X that survives the pairing. It
        lies in [0, 1]; 0 for uninformative or collapsed clusterings, 1 when
        every pair lands in the same cluster. Higher is better, so it serves
        ``GridSearchCV`` without labels. Comparisons across ``n_clusters`` are
        biased towards fewer clusters (agreeing on few clusters is easier),
        whereas the raw mutual information, bounded by ``ln(n_clusters)``,
        would favour more: to choose the number of clusters, use
        ``n_clusters="auto"`` instead.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), images or series
            Data to score (at least 2 samples).
        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        score : float
        """
        X = self._validate_fitted_input(X)
        if X.shape[0] < 2:
            raise ValueError(f"score needs at least 2 samples to pair; got n_samples={X.shape[0]}.")
        plan = self._plan
        device = inference_device(self.device)
        network = self._network_on(device)
        n_threads = min(plan.n_threads, thread_limit())
        with runtime(n_threads, device), _phase("score"):
            X_tensor = as_tensor(self._znormalised(X), plan.input_shape, device, self._scaling())
            generator = torch.Generator(device=device).manual_seed(plan.seed)
            neighbors = pool = None
            if plan.uses_neighbors:
                pool = self._score_pool.to(device)
                whitening = network.whitening if plan.whiten else None
                neighbors = neighbors_among(X_tensor, pool, plan.n_neighbors, whitening)
            sampler = PairSampler(
                X_tensor, perturbation=plan.perturbation, neighbors=neighbors,
                n_repeats=plan.n_repeats, generator=generator, pool=pool,
                perturb_x=plan.perturb_x,
            )
            with _global_draws(plan, GlobalStream(plan.seed, device)):
                (joint,) = pair_joints(
                    network, sampler, plan.heads, plan.eval_batch_size,
                    plan.passes_for(X.shape[0]), indices=[self._labelling_head()],
                )
        return normalized_mutual_information(
            merged_joint(joint, self.merge_map_, self.n_clusters_)
        )

    @property
    def _n_features_out(self):
        """Columns of :meth:`transform`, for ``get_feature_names_out``."""
        return self.n_clusters_

    def _validate_fitted_input(self, X):
        check_is_fitted(self)
        X, array_shape = validate_input(
            self, X, reset=False, kind=kind_of_shape(self.input_shape_)
        )
        check_input_shape(array_shape, self.input_shape_, type(self).__name__)
        return X

    def _znormalised(self, X):
        """X as fit scaled its series one by one (``series_scaling``), or as it is."""
        return znormalise_series(X, self.input_shape_) if self._plan.znormalize else X

    def _scaling(self):
        if self.feature_mean_ is None:
            return None
        return self.feature_mean_, self.feature_scale_

    def _network_on(self, device):
        # A copy for other devices: network_ itself stays on the CPU.
        return self.network_ if device.type == "cpu" else copy.deepcopy(self.network_).to(device)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


def _scaled(X, input_shape, plan):
    """``X`` as the network sees it (before whitening), and its standardisation or None.

    Series are z-normalised one by one when planned (a copy: ``X`` is the
    caller's). Whitened features, and series, are standardised first, in
    float64: the network, the pairs and the perturbation then see the same
    numbers whatever the units of the data.
    """
    if plan.znormalize:
        X = znormalise_series(X, input_shape)
    return X, feature_scaling(X, plan.input_shape) if plan.standardize else None


def _global_draws(plan, stream):
    """A section of ``stream`` if the fit draws from torch's global generators, else nothing.

    Such a fit holds their lock (:class:`~sklearn_iic._runtime.GlobalStream`)
    while it trains and pairs; the default networks and perturbations draw
    only from the fit's own generators, and fits of them run side by side.
    """
    return stream.section() if plan.global_draws else contextlib.nullcontext()


@dataclasses.dataclass
class _Merged:
    """The merge of a fit: the chosen sub-head, its merge tree and its micro-clusters' groups.

    ``cluster_head``: the cluster sub-head that labels, when its clusters
    cut fewer pairs than the merged micro-clusters (``cuts``: the normalised
    cuts of the two), its clusters then numbered by ``groups``; None when
    the merged micro-clusters label.
    """

    children: np.ndarray
    distances: np.ndarray
    head_losses: np.ndarray
    best_head: int
    n_clusters: int
    groups: np.ndarray
    cluster_head: int | None = None
    cuts: np.ndarray | None = None

    def labelling(self, heads, device):
        """The head that labels, as ``heads`` numbers it, and the matrix merging its clusters."""
        return (heads.labelling_index(self.best_head, self.cluster_head),
                merge_matrix(self.groups, self.n_clusters, device))


def _merge(network, sampler, plan):
    """Merge every main sub-head's micro-clusters by the joints of their pairs; choose one.

    With cluster heads, the best of them (the least IIC loss) competes with
    the merged micro-clusters: the head labels when its clusters hold
    clearly more of their pairs (a clearly lower normalised cut).
    """
    heads = plan.heads
    main = list(range(heads.n_main))
    clusters = [heads.cluster_index(h) for h in range(heads.n_cluster_heads)]
    with _phase("fit.joints"):
        joints = pair_joints(network, sampler, heads, plan.eval_batch_size, plan.joint_passes,
                             indices=main + clusters)
    with _phase("fit.merge"):
        (children, distances), head_losses, best_head, n_clusters = choose_head(
            joints[: len(main)], plan.n_clusters, plan.choose_n_clusters, plan.linkage,
            prior_heads=heads.prior_heads, min_share=1 / plan.n_train_samples,
        )
        groups = cut_tree(children, n_clusters)
    merged = _Merged(children, distances, head_losses, best_head, n_clusters, groups)
    if not clusters:
        return merged
    with _phase("fit.partition"):
        head = dataclasses.replace(merged, cluster_head=choose_cluster_head(joints[len(main) :]),
                                   groups=np.arange(n_clusters))
        counts = pair_label_counts(
            network, sampler, heads, plan.eval_batch_size, plan.joint_passes,
            [candidate.labelling(heads, plan.device) for candidate in (merged, head)],
        )
        cuts = np.array([normalized_cut(c.cpu().numpy()) for c in counts])
    return dataclasses.replace(head if cluster_head_labels(cuts) else merged, cuts=cuts)


def _label(network, X, plan, merged):
    """The cluster of every row of ``X``: the argmax of the labelling head's merged clusters."""
    with _phase("fit.label"):
        batches = X.split(prediction_batch_size(plan.n_features))
        proba = merged_probabilities(network, batches, plan.heads,
                                     *merged.labelling(plan.heads, plan.device))
        return proba.argmax(dim=1).numpy()


def _fitted_attributes(network, sampler, X, plan, scaling, input_shape, training):
    """The fitted attributes of a model of ``network``, trained by the loop ``training``.

    Merges the micro-clusters of the pairs that ``sampler`` draws and labels
    ``X``; ``network`` moves to the CPU, in eval mode.
    """
    merged = _merge(network, sampler, plan)
    labels = _label(network, X, plan, merged)
    rank = rank_by_size(labels, merged.n_clusters)
    feature_mean, feature_scale = scaling or (None, None)
    return dict(
        _plan=plan,
        feature_mean_=feature_mean,
        feature_scale_=feature_scale,
        _score_pool=_draw_score_pool(sampler.X, plan) if plan.uses_neighbors else None,
        input_shape_=input_shape,
        network_=network.cpu().eval(),
        loss_curve_=list(training.loss_curve),
        n_iter_=len(training.loss_curve),
        converged_=training.converged,
        head_losses_=merged.head_losses,
        best_head_=merged.best_head,
        cluster_head_=merged.cluster_head,
        normalized_cuts_=merged.cuts,
        n_microclusters_=plan.heads.main_size,
        max_samples_=plan.n_train_samples,
        n_clusters_=merged.n_clusters,
        children_=merged.children,
        distances_=merged.distances,
        merge_map_=rank[merged.groups],
        labels_=rank[labels],
    )


def _attributes_at_epoch(template, sampler, X, plan, scaling, input_shape, loop):
    """The fitted attributes of a fit stopped after the ``loop``'s current epoch.

    ``template`` is a copy of the network made before training, into a copy
    of which the trained weights are loaded. The merge draws its pairs from a
    copy of the training generator, so that training goes on as if nothing
    had been drawn, and the model equals that of a fit of as many epochs.
    """
    network = copy.deepcopy(template)
    network.load_state_dict(loop.network.state_dict())
    generator = torch.Generator(device=loop.generator.device)
    generator.set_state(loop.generator.get_state())
    pairs = copy.copy(sampler)
    pairs.generator = generator
    return _fitted_attributes(network, pairs, X, plan, scaling, input_shape, loop)


def _warn_if_unfinished(plan, stopped, labels, n_clusters):
    """Warn when chosen epochs ran out before convergence, or when clusters were left empty.

    ``stopped``: whether a callback (the convergence test, or another)
    stopped training before the epochs ran out. The budget of
    ``n_epochs="auto"`` (``plan.automatic_epochs``) is the plan of the fit,
    not a limit it hit: running it out is no sign of a problem.
    """
    if not stopped and plan.tol is not None and not plan.automatic_epochs:
        warnings.warn(
            f"IICClustering stopped after n_epochs={plan.n_epochs} epochs before the loss "
            f"stopped improving by tol={plan.tol}; raise n_epochs, or tol (None never "
            "checks).",
            ConvergenceWarning,
            stacklevel=4,
        )
    used = len(np.unique(labels))
    if used < n_clusters:
        warnings.warn(
            f"IICClustering labelled the data with {used} of n_clusters={n_clusters} "
            "clusters. Try more epochs (n_epochs), a lower learning_rate, fewer clusters, "
            "or check that the samples differ in more than the perturbation changes.",
            UserWarning,
            stacklevel=4,
        )


def _summary(estimator, start):
    """The closing line of a verbose fit: how training ended, the final clusters, the time."""
    plan = estimator._plan
    if estimator.converged_:
        ending = f"converged after {estimator.n_iter_} epochs"
    elif estimator.n_iter_ < plan.n_epochs:
        ending = f"stopped by a callback after {estimator.n_iter_} epochs"
    elif plan.automatic_epochs:
        ending = f"ran the {plan.n_epochs} epochs of n_epochs='auto'"
    else:
        ending = f"stopped after {plan.n_epochs} epochs, not converged"
    n_clusters = estimator.n_clusters_
    sizes = " ".join(str(n) for n in np.bincount(estimator.labels_, minlength=n_clusters))
    merged = ""
    if estimator.n_microclusters_ != n_clusters:
        merged = f" (merged from {estimator.n_microclusters_} micro-clusters)"
    return (
        f"[IICClustering] {ending}; {n_clusters} clusters of sizes [{sizes}]{merged}; "
        f"fit in {time.perf_counter() - start:.1f}s"
    )


def _draw_score_pool(X, plan):
    """Draw ``_score_pool``: a CPU copy of the training rows among which ``score`` seeks neighbours.

    Every row up to the cap, else a random subset (seeded from the fit's
    seed, apart from the training streams).
    """
    rows = max(10 * (plan.n_neighbors + 1), _REFERENCE_VALUES // plan.n_features)
    rows = min(_REFERENCE_ROWS, rows)
    if X.shape[0] <= rows:
        return X.cpu().clone()
    chosen = random_rows(X.shape[0], rows, torch.Generator().manual_seed(plan.seed))
    return X[chosen.to(X.device)].cpu()
