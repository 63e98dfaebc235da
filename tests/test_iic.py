import pickle
import warnings

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.base import clone
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.exceptions import NotFittedError
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks
from torch import nn

from sklearn_iic import MLP, IICClustering, Whitening
from sklearn_iic._networks import Branches
from sklearn_iic.metrics import clustering_accuracy
from sklearn_iic.perturbations import GaussianNoise

FAST = dict(n_epochs=20, random_state=0)


@parametrize_with_checks([IICClustering()])
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_fit_predict_attributes(blobs):
    X, y = blobs
    model = IICClustering(n_clusters=3, **FAST).fit(X)
    assert model.labels_.shape == (120,)
    assert adjusted_rand_score(y, model.labels_) > 0.9
    assert model.n_iter_ == 20 == len(model.loss_curve_)
    assert model.n_features_in_ == 4 and model.input_shape_ == 4
    assert next(model.network_.parameters()).device.type == "cpu"
    assert not model.network_.training
    proba = model.predict_proba(X)
    assert proba.shape == (120, 3)
    np.testing.assert_allclose(proba.sum(1), 1, atol=1e-6)
    np.testing.assert_array_equal(proba.argmax(1), model.predict(X))
    np.testing.assert_array_equal(model.labels_, model.predict(X))
    # Clusters are numbered by decreasing size.
    counts = np.bincount(model.labels_)
    assert (np.diff(counts) <= 0).all()


def test_loss_decreases(blobs):
    X, _ = blobs
    curve = IICClustering(n_clusters=3, lamb=1.0, **FAST).fit(X).loss_curve_
    assert curve[-1] < curve[0]
    assert -np.log(3) - 1e-6 <= curve[-1] <= 0


def test_same_seed_same_result_and_no_global_rng(blobs):
    X, _ = blobs
    np.random.seed(123)
    torch.manual_seed(123)
    np_state, torch_state = np.random.get_state(), torch.get_rng_state()
    a = IICClustering(n_clusters=3, **FAST).fit(X)
    b = IICClustering(n_clusters=3, **FAST).fit(X)
    IICClustering(n_clusters=3, n_epochs=2).fit(X)  # random_state=None too
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert a.loss_curve_ == b.loss_curve_
    new_np_state = np.random.get_state()
    assert all(np.array_equal(x, y) for x, y in zip(np_state, new_np_state))
    assert torch.equal(torch_state, torch.get_rng_state())


def test_different_seeds_give_different_training(blobs):
    X, _ = blobs
    a = IICClustering(n_clusters=3, n_epochs=3, random_state=0).fit(X)
    b = IICClustering(n_clusters=3, n_epochs=3, random_state=1).fit(X)
    assert a.loss_curve_ != b.loss_curve_


def test_beats_kmeans_on_digits(digits):
    """With defaults only, IIC clusters digits clearly better than KMeans (median of 3 seeds)."""
    X, y = digits
    kmeans = KMeans(10, n_init=10, random_state=0).fit(X).labels_
    runs = [IICClustering(n_clusters=10, random_state=seed).fit(X).labels_ for seed in range(3)]
    iic_acc = [clustering_accuracy(y, labels) for labels in runs]
    iic_ari = [adjusted_rand_score(y, labels) for labels in runs]
    kmeans_acc, kmeans_ari = clustering_accuracy(y, kmeans), adjusted_rand_score(y, kmeans)
    # Floors below the digits rows of docs/benchmarks/tabular.md (seeds 0-2)
    # and tabular_10_seeds.md, whose worst seeds come closer to KMeans.
    assert np.median(iic_acc) > kmeans_acc + 0.06, (iic_acc, kmeans_acc)
    assert np.median(iic_ari) > kmeans_ari + 0.09, (iic_ari, kmeans_ari)
    assert min(iic_ari) > kmeans_ari + 0.03, (iic_ari, kmeans_ari)


# -- networks and perturbations ---------------------------------------------


class TinyNet(nn.Module):
    def __init__(self, n_features, n_outputs):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(n_features, 16), nn.ReLU(), nn.Linear(16, n_outputs))

    def forward(self, x):
        return self.layers(x)


def test_network_class_factory_and_instance(blobs):
    X, _ = blobs
    by_class = IICClustering(n_clusters=3, network=TinyNet, whiten=False, **FAST).fit(X)
    # A class builds the micro-cluster heads' network, then the cluster heads'.
    assert isinstance(by_class.network_, Branches)
    assert isinstance(by_class.network_.first, TinyNet)
    assert by_class.network_.second.layers[-1].out_features == 3 * by_class.n_subheads
    by_factory = IICClustering(
        n_clusters=3, network=lambda d, k: MLP(d, k, hidden_layer_sizes=(32,)),
        n_microclusters=None, **FAST
    ).fit(X)
    # Whitened (the default on feature vectors): the fixed map, then the network.
    assert isinstance(by_factory.network_.whitening, Whitening)
    assert isinstance(by_factory.network_.network, MLP)

    instance = TinyNet(4, 3)
    before = {k: v.clone() for k, v in instance.state_dict().items()}
    model = IICClustering(
        n_clusters=3, network=instance, n_microclusters=None, n_subheads=1, **FAST
    ).fit(X)
    assert model.network_.network is not instance
    for key, value in instance.state_dict().items():
        assert torch.equal(value, before[key]), "the user's module was trained in place"
    assert not all(
        torch.equal(v, before[k]) for k, v in model.network_.network.state_dict().items()
    )


def test_network_errors(blobs):
    X, _ = blobs
    with pytest.raises(ValueError, match="must output 6 logits.*needs n_microclusters=None"):
        IICClustering(
            n_clusters=3, n_microclusters=None, n_subheads=2, network=TinyNet(4, 3), **FAST
        ).fit(X)
    with pytest.raises(ValueError, match="must output 250 logits"):
        IICClustering(n_clusters=3, network=TinyNet(4, 3), **FAST).fit(X)
    with pytest.raises(TypeError, match="must build a torch.nn.Module"):
        IICClustering(n_clusters=3, network=lambda d, k: "nope", **FAST).fit(X)
    with pytest.raises(ValueError, match="network failed on a batch of shape"):
        IICClustering(n_clusters=3, network=TinyNet(5, 3), **FAST).fit(X)


def test_user_perturbation_gets_the_generator(blobs):
    X, _ = blobs
    seen = []

    def jitter(x, generator):
        seen.append((x.device, generator.device))
        return x + 0.1 * torch.randn(x.shape, generator=generator, device=x.device)

    a = IICClustering(n_clusters=3, perturbation=jitter, pairs="perturbation", **FAST).fit(X)
    b = IICClustering(n_clusters=3, perturbation=[jitter], pairs="perturbation", **FAST).fit(X)
    assert seen and all(d == g for d, g in seen)
    np.testing.assert_array_equal(a.labels_, b.labels_)


@pytest.mark.parametrize("pairs", ["perturbation", "neighbors", "both"])
def test_pair_sources(blobs, pairs):
    X, y = blobs
    model = IICClustering(n_clusters=3, pairs=pairs, **FAST).fit(X)
    assert adjusted_rand_score(y, model.labels_) > 0.9
    assert 0 <= model.score(X) <= 1


def test_heads_and_repeats(blobs):
    X, y = blobs
    model = IICClustering(
        n_clusters=3, n_microclusters=None, overclustering=3, n_subheads=3, n_repeats=2, **FAST
    ).fit(X)
    assert model.head_losses_.shape == (3,)
    assert model.best_head_ == int(np.argmin(model.head_losses_))
    assert model.network_(torch.zeros(2, 4)).shape == (2, 3 * 3 + 9 * 3)
    np.testing.assert_array_equal(np.sort(model.merge_map_), [0, 1, 2])
    assert model.predict_proba(X).shape == (120, 3)
    assert adjusted_rand_score(y, model.labels_) > 0.9


def test_microclusters_merged_into_clusters(blobs):
    X, y = blobs
    model = IICClustering(n_clusters=3, n_subheads=2, **FAST).fit(X)
    # "auto": max(50, 5 * n_clusters) micro-clusters, at most n_samples.
    assert model.n_microclusters_ == 50
    assert model.merge_map_.shape == (50,)
    assert set(model.merge_map_) == {0, 1, 2}
    standard = (X - model.feature_mean_) / model.feature_scale_
    micro = model.network_(torch.tensor(standard, dtype=torch.float32))
    micro = micro[:, 50 * model.best_head_ : 50 * (model.best_head_ + 1)].softmax(dim=1)
    # predict_proba sums the probabilities of each cluster's micro-clusters.
    expected = np.stack(
        [micro[:, model.merge_map_ == c].sum(dim=1).detach().numpy() for c in range(3)], axis=1
    )
    np.testing.assert_allclose(model.predict_proba(X), expected, atol=1e-5)
    assert adjusted_rand_score(y, model.labels_) > 0.9
    assert IICClustering(n_clusters=3, **FAST).fit(X[:30]).n_microclusters_ == 30
    # Images: "auto" trains the n_clusters head directly.
    images = IICClustering(n_clusters=3, image_shape=(2, 2), **FAST).fit(X)
    assert images.n_microclusters_ == 3
    np.testing.assert_array_equal(np.sort(images.merge_map_), [0, 1, 2])
    with pytest.raises(ValueError, match="n_microclusters=2 must be at least n_clusters=3"):
        IICClustering(n_clusters=3, n_microclusters=2, **FAST).fit(X)


def test_circles_found_where_kmeans_fails():
    # Concentric rings: no split by a line (KMeans, or an n_clusters head
    # trained directly) separates them; merging micro-clusters along pairs does.
    from sklearn.datasets import make_circles

    X, y = make_circles(1000, noise=0.05, factor=0.5, random_state=0)
    X = StandardScaler().fit_transform(X)
    kmeans = adjusted_rand_score(y, KMeans(2, n_init=10, random_state=0).fit_predict(X))
    iic = adjusted_rand_score(y, IICClustering(2, random_state=0).fit_predict(X))
    assert kmeans < 0.05
    assert iic > 0.95


def test_whitening_matches_the_gaussian_mixture_on_iris():
    # Iris's two overlapping species are stretched along a shared direction;
    # in the metric of neighbour differences they separate (3 seeds).
    from sklearn.datasets import load_iris
    from sklearn.mixture import GaussianMixture

    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    kmeans = adjusted_rand_score(y, KMeans(3, n_init=10, random_state=0).fit_predict(X))
    gmm = adjusted_rand_score(y, GaussianMixture(3, n_init=3, random_state=0).fit_predict(X))
    whitened, raw = (
        [adjusted_rand_score(y, IICClustering(3, whiten=w, random_state=s).fit_predict(X))
         for s in range(3)]
        for w in ("auto", False)
    )
    # Measured: 0.922, 0.941, 0.922 whitened; 0.577 raw; KMeans 0.620, GMM 0.904.
    assert np.median(whitened) > gmm - 0.02
    assert min(whitened) > kmeans + 0.2
    assert np.median(whitened) > np.median(raw) + 0.2


def test_a_wide_table_does_not_collapse():
    # 120 samples of 300 features (10 informative, 4 classes). Whitened in
    # all 300 directions, the fit used 1 or 2 clusters (ARI 0.00, seeds 0-2,
    # 60 epochs); in the 5 leading principal components it uses all 4, ARI
    # 0.189, 0.190, 0.265, where KMeans reaches 0.067 to 0.079.
    from sklearn.datasets import make_classification

    X, y = make_classification(
        120, 300, n_informative=10, n_redundant=0, n_classes=4, n_clusters_per_class=1,
        class_sep=4.0, random_state=0,
    )
    X = StandardScaler().fit_transform(X)
    model = IICClustering(4, n_epochs=60, random_state=0).fit(X)
    assert (model.network_.whitening.matrix != 0).any(dim=0).sum() == 5
    assert len(np.unique(model.labels_)) == 4
    kmeans = adjusted_rand_score(y, KMeans(4, n_init=10, random_state=0).fit_predict(X))
    assert adjusted_rand_score(y, model.labels_) > max(0.12, kmeans)


def test_whiten_on_images(digits):
    X, _ = digits
    images = X[:200].reshape(-1, 8, 8)
    model = IICClustering(n_clusters=3, n_epochs=2, random_state=0).fit(images)
    assert not hasattr(model.network_, "whitening")  # "auto": images as they are
    with pytest.raises(ValueError, match="whiten=True applies to feature vectors"):
        IICClustering(n_clusters=3, whiten=True, **FAST).fit(images)


def test_compile_trains_through_torch_compile(blobs):
    X, _ = blobs
    plain = IICClustering(n_clusters=3, **FAST).fit(X)
    # The eager backend runs the captured graph as is: same numbers, no compiler.
    compiled = IICClustering(n_clusters=3, compile={"backend": "eager"}, **FAST).fit(X)
    np.testing.assert_allclose(compiled.loss_curve_, plain.loss_curve_, rtol=1e-5)
    np.testing.assert_array_equal(compiled.labels_, plain.labels_)
    assert type(compiled.network_.network.first) is MLP
    pickle.loads(pickle.dumps(compiled))


def test_non_finite_loss_stops_at_once_with_advice(blobs):
    X, _ = blobs
    calls = []

    def breaks_at_third_step(x, generator):
        calls.append(len(x))
        # The first call is the check on a few rows before training.
        return x * float("nan") if len(calls) == 4 else x

    with pytest.raises(FloatingPointError, match="non-finite at epoch 3.*learning_rate"):
        IICClustering(
            n_clusters=3, perturbation=breaks_at_third_step, pairs="perturbation", **FAST
        ).fit(X)
    # One batch per epoch: the fit stopped at the step that failed.
    assert calls == [3, 120, 120, 120]


# -- images --------------------------------------------------------------------


def test_image_input_shapes(digits):
    X, _ = digits
    X, images = X[:200], X[:200].reshape(-1, 8, 8)
    a = IICClustering(n_clusters=10, n_epochs=2, random_state=0).fit(images)
    assert a.input_shape_ == (1, 8, 8)
    b = IICClustering(n_clusters=10, n_epochs=2, random_state=0, image_shape=(8, 8)).fit(X)
    c = IICClustering(n_clusters=10, n_epochs=2, random_state=0).fit(images[:, None])
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_array_equal(a.labels_, c.labels_)
    # Flattened rows and images predict alike.
    np.testing.assert_array_equal(a.predict(images), a.predict(X))
    with pytest.raises(ValueError, match="holds samples of shape \\(1, 4, 16\\), but"):
        a.predict(X.reshape(-1, 4, 16))
    with pytest.raises(ValueError, match="image_shape=\\(7, 7\\) does not match"):
        IICClustering(image_shape=(7, 7), n_epochs=1).fit(X)
    with pytest.raises(ValueError, match="does not match images"):
        IICClustering(image_shape=(1, 4, 16), n_epochs=1).fit(images)


# -- bad input -------------------------------------------------------------------


@pytest.mark.parametrize(
    "X, error, match",
    [
        (np.array([[1.0, np.nan], [2.0, 3.0], [1.0, 1.0]]), ValueError, "NaN"),
        (np.array([[1.0, np.inf], [2.0, 3.0], [1.0, 1.0]]), ValueError, "infinity"),
        (np.empty((0, 3)), ValueError, "0 sample"),
        (np.ones((4, 2)) + 1j, ValueError, "[Cc]omplex"),
        (np.array([["a", "b"], ["c", "d"], ["e", "f"]]), ValueError, "could not convert|string"),
        (np.array([[object(), 1]] * 3), TypeError, "float"),
        (sp.random(10, 3, density=0.5, format="csr", random_state=0), TypeError, "[Ss]parse"),
        (np.ones((3, 2, 2, 2, 2)), ValueError, "5 dimensions"),
        (np.ones(5), ValueError, "2D array"),
    ],
)
def test_bad_input(X, error, match):
    with pytest.raises(error, match=match):
        IICClustering(n_clusters=2, n_epochs=1).fit(X)


def test_fewer_samples_than_clusters():
    with pytest.raises(ValueError, match="n_samples=5 should be >= n_clusters=8"):
        IICClustering().fit(np.random.RandomState(0).rand(5, 3))


def test_predict_checks(blobs):
    X, _ = blobs
    with pytest.raises(NotFittedError):
        IICClustering().predict(X)
    model = IICClustering(n_clusters=3, n_epochs=1).fit(X)
    with pytest.raises(ValueError, match="X has 3 features, but IICClustering is expecting 4"):
        model.predict(X[:, :3])
    with pytest.raises(ValueError, match="NaN"):
        model.predict(np.full((2, 4), np.nan))


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(n_clusters=0), "n_clusters"),
        (dict(pairs="knn"), "pairs"),
        (dict(whiten="yes"), "whiten"),
        (dict(learning_rate=0), "learning_rate"),
        (dict(batch_size=1), "batch_size"),
        (dict(perturbation="strong"), "perturbation"),
        (dict(network="resnet"), "network"),
        (dict(overclustering=-1), "overclustering"),
        (dict(n_microclusters=0), "n_microclusters"),
        (dict(n_microclusters="many"), "n_microclusters"),
        (dict(n_epochs="many"), "n_epochs"),
        (dict(max_samples=0), "max_samples"),
        (dict(max_samples=1.5), "max_samples"),
        (dict(max_samples="half"), "max_samples"),
    ],
)
def test_invalid_parameters(blobs, params, match):
    with pytest.raises(InvalidParameterError, match=match):
        IICClustering(**params).fit(blobs[0])


def test_bad_device(blobs):
    with pytest.raises(ValueError, match="not a valid torch device"):
        IICClustering(n_clusters=3, device="quantum", n_epochs=1).fit(blobs[0])


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda(blobs):
    with pytest.raises(ValueError, match="CUDA is not available"):
        IICClustering(n_clusters=3, device="cuda", n_epochs=1).fit(blobs[0])


def test_predict_runs_where_the_device_parameter_now_says(blobs):
    X, _ = blobs
    model = IICClustering(n_clusters=3, device="cpu", **FAST).fit(X)
    proba, score = model.predict_proba(X), model.score(X)
    # A GPU requested where there is none (a GPU model in a CPU process): the CPU.
    other = "cpu" if torch.cuda.is_available() else "cuda"
    model.set_params(device=other)
    np.testing.assert_allclose(model.predict_proba(X), proba, atol=1e-5)
    assert model.score(X) == pytest.approx(score, abs=1e-5)
    with pytest.raises(ValueError, match="not a valid torch device"):
        model.set_params(device="quantum").predict(X)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_predict_follows_the_device_parameter(blobs):
    X, _ = blobs
    model = IICClustering(n_clusters=3, device="cuda", **FAST).fit(X)
    on_gpu = model.predict_proba(X)
    allocated = torch.cuda.memory_allocated()
    on_cpu = model.set_params(device="cpu").predict_proba(X)
    # Nothing was put on the GPU to predict on the CPU.
    assert torch.cuda.memory_allocated() == allocated
    np.testing.assert_allclose(on_cpu, on_gpu, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fits_of_images_give_the_same_labels_twice(digits):
    X, _ = digits
    images = X[:600].reshape(-1, 8, 8)
    first, second = (
        IICClustering(n_clusters=10, device="cuda", n_epochs=5, random_state=0).fit(images)
        for _ in range(2)
    )
    np.testing.assert_array_equal(first.labels_, second.labels_)
    assert first.loss_curve_ == second.loss_curve_


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fit_keeps_network_on_cpu(blobs):
    X, y = blobs
    model = IICClustering(n_clusters=3, device="cuda", **FAST).fit(X)
    assert next(model.network_.parameters()).device.type == "cpu"
    assert adjusted_rand_score(y, model.labels_) > 0.9
    again = IICClustering(n_clusters=3, device="cuda", **FAST).fit(X)
    np.testing.assert_array_equal(model.labels_, again.labels_)
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.set_params(device="cpu").predict(X), model.labels_)


# -- scikit-learn workflows ------------------------------------------------------


def test_pipeline_and_dataframe(blobs):
    pd = pytest.importorskip("pandas")
    X, y = blobs
    frame = pd.DataFrame(X * 100, columns=list("abcd"))
    pipe = make_pipeline(StandardScaler(), IICClustering(n_clusters=3, **FAST))
    labels = pipe.fit_predict(frame)
    assert adjusted_rand_score(y, labels) > 0.9
    model = IICClustering(n_clusters=3, **FAST).fit(frame)
    np.testing.assert_array_equal(model.feature_names_in_, list("abcd"))


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_grid_search_with_and_without_labels(blobs, n_jobs):
    X, y = blobs
    grid = {"lamb": [1.0, 1.5]}
    unsupervised = GridSearchCV(IICClustering(n_clusters=3, **FAST), grid, cv=2, n_jobs=n_jobs)
    unsupervised.fit(X)
    assert np.isfinite(unsupervised.cv_results_["mean_test_score"]).all()
    assert 0 <= unsupervised.best_score_ <= 1
    supervised = GridSearchCV(
        IICClustering(n_clusters=3, **FAST), grid, cv=2, n_jobs=n_jobs,
        scoring="adjusted_rand_score",
    )
    supervised.fit(X, y)
    assert supervised.best_score_ > 0.8


def test_score_is_deterministic_and_higher_for_a_trained_model(blobs):
    X, _ = blobs
    trained = IICClustering(n_clusters=3, **FAST).fit(X)
    untrained = IICClustering(n_clusters=3, n_epochs=1, learning_rate=1e-6, random_state=0).fit(X)
    assert trained.score(X) == trained.score(X)
    assert trained.score(X) > untrained.score(X)
    with pytest.raises(ValueError, match="at least 2 samples"):
        trained.score(X[:1])


def test_clone_pickle_joblib(blobs, tmp_path):
    X, _ = blobs
    model = IICClustering(n_clusters=3, perturbation=GaussianNoise(0.2), **FAST).fit(X)
    unfitted = clone(model)
    assert not hasattr(unfitted, "labels_")
    assert unfitted.get_params()["perturbation"] == GaussianNoise(0.2)
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict_proba(X), model.predict_proba(X))
    joblib.dump(model, tmp_path / "model.joblib")
    loaded = joblib.load(tmp_path / "model.joblib")
    np.testing.assert_array_equal(loaded.predict(X), model.labels_)
    assert loaded.score(X) == model.score(X)


def test_verbose_output_in_a_log(blobs, capsys):
    X, _ = blobs
    IICClustering(n_clusters=3, n_epochs=2, verbose=0).fit(X)
    assert capsys.readouterr().out == ""
    IICClustering(n_clusters=3, n_epochs=2, verbose=1).fit(X)
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    # A first line explains the figures; then one whole line per epoch and a verdict.
    assert "MI: mutual information" in lines[0] and "ln 50" in lines[0]
    assert "epoch    1/2" in lines[1] and "epoch    2/2" in lines[2]
    assert "loss" in lines[2] and "MI" in lines[2] and "sizes [" in lines[2]
    assert "stopped after 2 epochs, not converged; 3 clusters of sizes [" in lines[3]
    assert len(lines) == 4
    # Not a terminal: no progress bar, whose carriage returns would garble a log.
    assert "\r" not in captured.out + captured.err


def test_verbose_prints_about_20_epochs_and_the_final_clusters(blobs, capsys):
    import re

    from sklearn.datasets import load_wine

    X, _ = load_wine(return_X_y=True)
    model = IICClustering(n_clusters=3, random_state=0, verbose=1).fit(X)
    lines = capsys.readouterr().out.splitlines()
    epochs = [int(re.search(r"epoch +(\d+)/100", line)[1]) for line in lines[1:-1]]
    assert epochs == [1, *range(5, 101, 5)]
    sizes = " ".join(str(n) for n in np.bincount(model.labels_))
    assert re.fullmatch(
        rf"\[IICClustering\] ran the 100 epochs of n_epochs='auto'; 3 clusters of sizes "
        rf"\[{sizes}\] \(merged from 50 micro-clusters\); fit in \d+\.\ds",
        lines[-1],
    )
    # Converged between two printed epochs: the last epoch run is printed too.
    X, _ = blobs
    model = IICClustering(n_clusters=3, n_epochs=500, n_iter_no_change=5, random_state=0,
                          n_microclusters=None, verbose=1).fit(X)
    lines = capsys.readouterr().out.splitlines()
    assert model.converged_ and model.n_iter_ % 25 != 0
    assert f"epoch {model.n_iter_:4d}/500" in lines[-2]
    assert re.match(rf"\[IICClustering\] converged after {model.n_iter_} epochs; 3 clusters "
                    r"of sizes \[\d+ \d+ \d+\]; fit in", lines[-1])


def test_verbose_progress_bar_on_a_terminal(blobs, capsys, monkeypatch):
    pytest.importorskip("tqdm")
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    IICClustering(n_clusters=3, n_epochs=2, verbose=1).fit(blobs[0])
    assert "IICClustering" in terminal.getvalue() and "epoch" in terminal.getvalue()


def test_transform_gives_the_soft_assignments(blobs):
    pd = pytest.importorskip("pandas")
    X, _ = blobs
    model = IICClustering(n_clusters=3, **FAST)
    proba = model.fit_transform(X)
    assert proba.shape == (120, 3)
    np.testing.assert_array_equal(proba, model.transform(X))
    np.testing.assert_array_equal(proba, model.predict_proba(X))
    np.testing.assert_array_equal(proba.argmax(axis=1), model.labels_)
    names = ["iicclustering0", "iicclustering1", "iicclustering2"]
    assert list(model.get_feature_names_out()) == names
    frame = model.set_output(transform="pandas").transform(X)
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == names


def test_prediction_in_batches_matches_row_subsets(blobs):
    from sklearn_iic._inference import prediction_batch_size

    X, _ = blobs
    model = IICClustering(n_clusters=3, **FAST).fit(X)
    big = np.random.RandomState(0).normal(size=(prediction_batch_size(X.shape[1]) + 500, 4)) * 5
    proba = model.predict_proba(big)
    np.testing.assert_allclose(proba[-500:], model.predict_proba(big[-500:]), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(model.predict(big), proba.argmax(1))


def test_trains_on_a_subset_and_labels_every_row():
    X, y = make_blobs(n_samples=600, centers=3, n_features=4, random_state=1)
    params = dict(n_clusters=3, **FAST)
    subset = IICClustering(max_samples=200, **params).fit(X)
    assert subset.labels_.shape == (600,) and subset.max_samples_ == 200
    np.testing.assert_array_equal(subset.labels_, subset.predict(X))
    assert adjusted_rand_score(y, subset.labels_) > 0.95
    # The subset is drawn from random_state: a fraction naming the same rows
    # trains the same model, and so does a refit.
    np.testing.assert_array_equal(
        IICClustering(max_samples=1 / 3, **params).fit(X).labels_, subset.labels_
    )
    np.testing.assert_array_equal(clone(subset).fit(X).labels_, subset.labels_)
    assert not np.array_equal(
        IICClustering(max_samples=300, **params).fit(X).predict_proba(X),
        subset.predict_proba(X),
    )
    # All rows, however asked for, draw nothing: the same model as before.
    full = IICClustering(**params).fit(X).labels_
    for max_samples in (None, 600, 10**6, 1.0):
        model = IICClustering(max_samples=max_samples, **params).fit(X)
        np.testing.assert_array_equal(model.labels_, full)
        assert model.max_samples_ == 600


# -- fitted state --------------------------------------------------------------


def test_fitted_state_alone_drives_predict_and_score(blobs):
    X, _ = blobs
    model = IICClustering(n_clusters=3, **FAST).fit(X)
    proba, labels, score = model.predict_proba(X), model.predict(X), model.score(X)
    model.set_params(
        n_clusters=4, network=TinyNet, perturbation=None, pairs="perturbation", n_neighbors=2,
        whiten=False, image_shape=(2, 2), n_microclusters=None, overclustering=2,
        n_subheads=1, n_repeats=3, lamb=1.0, batch_size=7, n_epochs=1, device="cpu",
        random_state=5,
    )
    np.testing.assert_array_equal(model.predict_proba(X), proba)
    np.testing.assert_array_equal(model.predict(X), labels)
    assert model.score(X) == score


def test_score_does_not_depend_on_how_many_samples_are_scored():
    from sklearn.datasets import load_wine

    X = StandardScaler().fit_transform(load_wine(return_X_y=True)[0])
    model = IICClustering(n_clusters=3, random_state=0).fit(X)
    full = model.score(X)
    rng = np.random.default_rng(0)
    for n, band in [(30, 0.12), (59, 0.07), (120, 0.06)]:
        scores = np.array([model.score(X[rng.choice(len(X), n, replace=False)]) for _ in range(5)])
        # Subsets scatter around the score of all rows; they are not biased low.
        assert np.abs(scores - full).max() < band, (n, scores, full)
        assert abs(scores.mean() - full) < 0.05, (n, scores, full)


# -- runtime: threads, determinism, convergence ----------------------------------


@pytest.mark.parametrize("pairs", ["both", "perturbation"])
@pytest.mark.parametrize("shape", [(64,), (8, 8)], ids=["features", "images"])
def test_same_labels_on_any_number_of_threads(digits, pairs, shape):
    # Images: the default convnet, channels-last on the CPU.
    X = digits[0][:400].reshape(-1, *shape)
    results = []
    for n_threads in (1, 2, 4):
        torch.set_num_threads(n_threads)
        try:
            model = IICClustering(n_clusters=10, pairs=pairs, n_epochs=5, random_state=0).fit(X)
            results.append((model.labels_, model.predict_proba(X), model.loss_curve_))
        finally:
            torch.set_num_threads(1)
    for labels, proba, curve in results[1:]:
        np.testing.assert_array_equal(labels, results[0][0])
        np.testing.assert_array_equal(proba, results[0][1])
        assert curve == results[0][2]


@pytest.mark.parametrize("shape", [(64,), (8, 8)], ids=["features", "images"])
def test_predictions_do_not_depend_on_threads_or_batches(digits, shape):
    X = digits[0].reshape(-1, *shape)
    model = IICClustering(n_clusters=10, n_epochs=3, random_state=0).fit(X[:300])
    big = np.tile(X, (12,) + (1,) * len(shape))  # several prediction batches
    torch.set_num_threads(2)
    try:
        two = model.predict_proba(big)
    finally:
        torch.set_num_threads(1)
    one = model.predict_proba(big)
    # The same labels; the probabilities to float32 rounding. Measured on an
    # Intel Xeon with AVX-512 (lscpu): equal to the last bit with the 50 logits
    # of size_prior="equal", within 3e-8 with the 150 of the images' prior
    # heads, whose wider last layer a two-thread GEMM splits differently.
    np.testing.assert_array_equal(one.argmax(axis=1), two.argmax(axis=1))
    np.testing.assert_allclose(one, two, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(one[: len(X)], model.predict_proba(X))


def test_fit_restores_the_callers_threads_and_denormal_mode(blobs):
    X, _ = blobs
    torch.set_num_threads(2)
    try:
        IICClustering(n_clusters=3, n_epochs=2, random_state=0).fit(X)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    assert (torch.tensor([1e-39]) * 1.0).item() != 0.0


def test_convergence_stops_early_and_warns_when_epochs_run_out(blobs):
    from sklearn.exceptions import ConvergenceWarning

    X, _ = blobs
    with pytest.warns(ConvergenceWarning, match="stopped after n_epochs=3"):
        model = IICClustering(n_clusters=3, n_epochs=3, random_state=0).fit(X)
    assert model.n_iter_ == 3
    assert not model.converged_
    model = IICClustering(n_clusters=3, n_epochs=500, n_iter_no_change=5, random_state=0).fit(X)
    assert model.n_iter_ < 500 and len(model.loss_curve_) == model.n_iter_
    assert model.converged_
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        IICClustering(n_clusters=3, n_epochs=3, tol=None, random_state=0).fit(X)


def test_the_automatic_epoch_budget_runs_out_without_a_warning():
    from sklearn.datasets import load_wine
    from sklearn.exceptions import ConvergenceWarning

    X, _ = load_wine(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = IICClustering(n_clusters=3, random_state=0).fit(X)
    assert model.n_iter_ == 100 and not model.converged_
    with pytest.warns(ConvergenceWarning, match="stopped after n_epochs=5"):
        IICClustering(n_clusters=3, n_epochs=5, random_state=0).fit(X)


def test_warns_when_clusters_are_left_empty():
    X = np.random.default_rng(0).normal(size=(5, 2))
    with pytest.warns(UserWarning, match=r"with \d of n_clusters=5 clusters.*Try more epochs"):
        IICClustering(n_clusters=5, n_epochs=1, random_state=0).fit(X)


# -- units and layouts ------------------------------------------------------------


def test_labels_do_not_depend_on_the_units_of_the_features(digits):
    from sklearn.datasets import load_wine

    wine, _ = load_wine(return_X_y=True)
    blobs, _ = make_blobs(600, centers=4, n_features=3, random_state=0)
    stretched = blobs * [1e4, 1.0, 1.0] + [0.0, -50.0, 3.0]
    cases = [
        (wine, StandardScaler().fit_transform(wine), 3),
        (digits[0][:500], digits[0][:500] * 1e6, 10),
        (blobs, stretched, 4),
    ]
    for a, b, k in cases:
        fit = IICClustering(n_clusters=k, n_epochs=15, random_state=0).fit
        # Measured: identical labels on all three (ARI 1.0).
        assert adjusted_rand_score(fit(a).labels_, fit(b).labels_) >= 0.99


@pytest.mark.parametrize(
    "view",
    [lambda X: X[::-1], lambda X: X[:, ::-1], np.flip, lambda X: np.asfortranarray(X),
     lambda X: X[::2], lambda X: np.repeat(X, 2, axis=1)[:, ::2]],
)
def test_any_memory_layout(blobs, view):
    X = blobs[0]
    model = IICClustering(n_clusters=3, n_epochs=3, random_state=0).fit(view(X))
    copy = IICClustering(n_clusters=3, n_epochs=3, random_state=0).fit(np.array(view(X)))
    np.testing.assert_array_equal(model.labels_, copy.labels_)
    np.testing.assert_array_equal(model.predict(view(X)), model.predict(np.array(view(X))))


def test_reordered_and_reversed_dataframes(blobs):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(blobs[0], columns=list("abcd"))
    model = IICClustering(n_clusters=3, n_epochs=3, random_state=0).fit(df.iloc[::-1])
    np.testing.assert_array_equal(model.predict(df), model.predict(df.to_numpy()))
    with pytest.raises(ValueError, match="feature names"):
        model.predict(df[list("dcba")])


# -- failures leave the model as it was ---------------------------------------------


def test_a_failed_refit_leaves_the_fitted_model_unchanged(blobs):
    X, _ = blobs
    model = IICClustering(n_clusters=3, **FAST).fit(X)
    state = {k: v for k, v in vars(model).items()}
    proba = model.predict_proba(X)
    wide = np.hstack([X, X[:, :2]])
    failures = [
        (dict(), wide[:1]),  # one sample
        (dict(device="cuda:7"), wide),
        (dict(network=TinyNet(5, 3)), wide),
        (dict(whiten=True), wide.reshape(-1, 2, 3)),
        (dict(perturbation=lambda x, g: x[:, :2]), wide),
    ]
    for params, data in failures:
        with pytest.raises((ValueError, TypeError)):
            model.set_params(**params).fit(data)
        model.set_params(**IICClustering(n_clusters=3, **FAST).get_params())
        assert vars(model).keys() == state.keys()
        assert all(vars(model)[k] is v for k, v in state.items())
        np.testing.assert_array_equal(model.predict_proba(X), proba)


def test_an_interrupted_fit_leaves_an_unfitted_model_unfitted(blobs):
    X, _ = blobs

    def interrupt(x, generator):
        if len(x) > 3:  # after the check on the probe rows: during training
            raise KeyboardInterrupt
        return x

    model = IICClustering(n_clusters=3, perturbation=interrupt, pairs="perturbation", **FAST)
    with pytest.raises(KeyboardInterrupt):
        model.fit(X)
    with pytest.raises(NotFittedError):
        model.predict(X)
    assert not hasattr(model, "n_features_in_")


def test_a_constant_feature_does_not_make_predictions_fragile(blobs):
    X, _ = blobs
    X = np.hstack([X, np.full((len(X), 1), 0.1)])
    model = IICClustering(n_clusters=3, **FAST).fit(X)
    nudged = X.copy()
    nudged[:, -1] += 1e-6
    np.testing.assert_array_equal(model.predict(nudged), model.labels_)


def test_features_beyond_float32_are_standardised_in_float64(blobs):
    X, y = blobs
    extreme = X * [1e-40, 1e39, 1.0, 1e300]
    model = IICClustering(n_clusters=3, **FAST).fit(extreme)
    assert adjusted_rand_score(y, model.labels_) > 0.9
    with pytest.raises(ValueError, match="beyond float32's range"):
        IICClustering(n_clusters=3, whiten=False, **FAST).fit(extreme)


@pytest.mark.parametrize("value", [1e300, 3.4e38, -1e300])
def test_huge_finite_values_are_standardised_in_fit_and_refused_beyond_float32(value):
    from sklearn.datasets import load_wine

    X, _ = load_wine(return_X_y=True)
    huge = X.copy()
    huge[0, 0] = value
    # In fit the value sets its feature's scale, so standardised it fits float32.
    model = IICClustering(n_clusters=3, **FAST).fit(huge)
    assert np.isfinite(model.predict_proba(huge)).all()
    # Against the scale of ordinary data it would overflow float32: refused, as inf is.
    model = IICClustering(n_clusters=3, **FAST).fit(X)
    for method in (model.predict, model.predict_proba, model.score):
        with pytest.raises(ValueError, match="Standardised .* beyond float32's range"):
            method(huge[:5])


def test_a_network_output_that_overflows_is_refused(blobs):
    X, _ = blobs
    model = IICClustering(n_clusters=3, whiten=False, **FAST).fit(X)
    # Within float32's range, but far outside the data: the network's logits overflow.
    huge = np.vstack([X[:4], np.full((1, 4), 3e38)])
    for method in (model.predict, model.predict_proba, model.score):
        with pytest.raises(ValueError, match="network's output is not finite"):
            method(huge)


def test_unequal_clusters_keep_their_sizes():
    # 70/20/10% blobs: the mutual-information merge returned three clusters
    # of about a third each (ARI 0.45 with these defaults); average linkage
    # of the lift keeps the small blobs apart.
    X, y = make_blobs([700, 200, 100], n_features=5, cluster_std=[2.0, 1.0, 0.5],
                      random_state=0)
    model = IICClustering(3, random_state=0).fit(X)
    assert adjusted_rand_score(y, model.labels_) > 0.99
    np.testing.assert_array_equal(np.bincount(model.labels_), [700, 200, 100])


def test_auto_n_clusters_cuts_the_merge_tree(blobs):
    X, y = blobs  # three blobs
    auto = IICClustering("auto", n_subheads=2, **FAST).fit(X)
    assert auto.n_clusters_ == 3
    assert adjusted_rand_score(y, auto.labels_) > 0.9
    # Trained as a fit of up to 10 clusters: the same network and tree as n_clusters=3.
    fixed = IICClustering(3, n_subheads=2, **FAST).fit(X)
    assert fixed.n_clusters_ == 3
    np.testing.assert_array_equal(auto.labels_, fixed.labels_)
    np.testing.assert_array_equal(auto.children_, fixed.children_)
    # A full tree over the 50 micro-clusters, merges never falling in distance.
    assert auto.children_.shape == (49, 2) and auto.distances_.shape == (49,)
    assert np.all(np.diff(auto.distances_) >= 0)
    assert sorted(auto.children_.ravel()) == list(range(2 * 50 - 2))
    assert auto.predict_proba(X).shape == auto.transform(X).shape == (120, 3)


def test_predict_at_cuts_the_fitted_tree(blobs):
    X, _ = blobs
    model = IICClustering(3, n_subheads=2, **FAST).fit(X)
    np.testing.assert_array_equal(model.predict_at(X, 3), model.predict(X))
    for n_clusters in (1, 2, 5):
        labels = model.predict_at(X, n_clusters)
        assert set(labels) <= set(range(n_clusters))
        # Numbered by decreasing size.
        assert np.all(np.diff(np.bincount(labels, minlength=n_clusters)) <= 0)
    # A cut into two merges two of the three clusters: it only coarsens them.
    two = model.predict_at(X, 2)
    assert all(len(set(two[model.labels_ == c])) == 1 for c in range(3))
    for bad in (0, 51, 2.0, True):
        with pytest.raises(ValueError, match="n_clusters must be an int from 1 to"):
            model.predict_at(X, bad)


def test_linkage_changes_the_merge_not_the_training(blobs):
    X, _ = blobs
    cosine = IICClustering(3, **FAST).fit(X)
    information = IICClustering(3, linkage="information", **FAST).fit(X)
    for a, b in zip(cosine.network_.state_dict().values(),
                    information.network_.state_dict().values()):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(cosine.loss_curve_, information.loss_curve_)
    assert not np.array_equal(cosine.children_, information.children_)
    np.testing.assert_array_equal(information.predict_at(X, 3), information.labels_)
    assert np.all(np.diff(information.distances_) >= 0)


def test_auto_n_clusters_on_images_merges_micro_clusters():
    X, _ = make_blobs(60, n_features=16, centers=2, random_state=0)
    model = IICClustering("auto", image_shape=(4, 4), n_subheads=1, n_epochs=2,
                          random_state=0).fit(X)
    assert model.n_microclusters_ == 50
    assert 2 <= model.n_clusters_ <= 10
    # At most the samples trained on.
    tiny = IICClustering("auto", n_subheads=1, n_epochs=2, random_state=0).fit(X[:6])
    assert tiny.n_microclusters_ == 6 and 2 <= tiny.n_clusters_ <= 5


def test_cluster_heads_label_separated_blobs_that_the_merge_joins():
    # Ten separated blobs of 60 points in 50-D: the merged micro-clusters
    # joined blobs (ARI 0.669, 7 of 10 clusters used, seed 0); the cluster
    # heads trained beside them cut no pair and label (ARI 1.000, seeds 0-2).
    X, y = make_blobs(600, n_features=50, centers=10, cluster_std=3.0, random_state=0)
    model = IICClustering(10, random_state=0).fit(X)
    merged_cut, head_cut = model.normalized_cuts_
    assert model.cluster_head_ is not None and head_cut < 0.4 * merged_cut
    assert adjusted_rand_score(y, model.labels_) > 0.98
    assert len(np.unique(model.labels_)) == 10
    assert model.merge_map_.shape == (10,)
    np.testing.assert_array_equal(model.predict(X), model.labels_)
    np.testing.assert_array_equal(model.predict_at(X, 10), model.labels_)
    # Other cuts come from the merge tree of the micro-clusters, as before.
    assert model.children_.shape == (model.n_microclusters_ - 1, 2)
    assert set(np.unique(model.predict_at(X, 4))) <= set(range(4))
    assert 0.9 < model.score(X) <= 1


def test_merged_micro_clusters_keep_unequal_blobs_apart():
    # Blobs of 700, 200 and 100 points: the cluster heads, pulled to equal
    # sizes, split the large blob (ARI about 0.4) and cut many
    # times more pairs; the merged micro-clusters label (ARI 1.000, seeds 0-2).
    X, y = make_blobs([700, 200, 100], n_features=5, cluster_std=[2.0, 1.0, 0.5], random_state=0)
    model = IICClustering(3, random_state=0).fit(X)
    assert model.cluster_head_ is None
    assert model.normalized_cuts_[1] > 10 * model.normalized_cuts_[0]
    assert adjusted_rand_score(y, model.labels_) == 1.0
    assert model.merge_map_.shape == (model.n_microclusters_,)
    np.testing.assert_array_equal(model.predict(X), model.labels_)


def test_no_cluster_heads_without_automatic_micro_clusters(blobs):
    X, _ = blobs
    for params in ({"n_microclusters": 50}, {"n_microclusters": None}, {"n_clusters": "auto"}):
        model = IICClustering(**{"n_clusters": 3, **params, **FAST}).fit(X)
        assert model.cluster_head_ is None and model.normalized_cuts_ is None
