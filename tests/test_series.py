"""Building blocks for series: perturbations on (n, channels, length) and ConvNet1d."""

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from torch import nn

from sklearn_iic import MLP, ConvNet, ConvNet1d, IICClustering, _iic
from sklearn_iic._input import feature_scaling, znormalise_series
from sklearn_iic._networks import default_network
from sklearn_iic.datasets import make_shifted_waveforms
from sklearn_iic.perturbations import (
    AmplitudeScale,
    Compose,
    GaussianNoise,
    LinearTrend,
    RandomShift,
    TimeWarp,
    WindowSlice,
)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


SERIES_PERTURBATIONS = [
    RandomShift(0.2),
    RandomShift(0.2, mode="circular"),
    WindowSlice((0.6, 0.9)),
    AmplitudeScale((0.5, 1.5)),
    AmplitudeScale((0.5, 1.5), per_channel=True),
    TimeWarp(0.4, n_knots=3),
    TimeWarp(0.4, interpolation="nearest"),
    WindowSlice((0.6, 0.9), interpolation="nearest"),
    GaussianNoise(0.1),
    LinearTrend(0.5),
    Compose([RandomShift(0.1), TimeWarp(0.2), AmplitudeScale(), GaussianNoise(0.05)]),
]


@pytest.fixture
def series():
    return torch.randn(16, 3, 30, generator=gen(1)).cumsum(dim=2)


@pytest.mark.parametrize("g", SERIES_PERTURBATIONS, ids=repr)
def test_series_perturbations_shape_seed_and_per_sample_draws(series, g):
    out = g(series, gen(0))
    assert out.shape == series.shape and out.dtype == series.dtype
    assert torch.isfinite(out).all()
    assert torch.equal(out, g(series, gen(0)))
    assert not torch.equal(out, g(series, gen(1)))
    # The same series repeated gets its own draw in each row.
    same = series[:1].repeat(4, 1, 1)
    perturbed = g(same, gen(0))
    assert not torch.allclose(perturbed[0], perturbed[1])


@pytest.mark.parametrize("g", SERIES_PERTURBATIONS, ids=repr)
def test_series_perturbations_work_in_float64_and_on_one_sample_series(g):
    x = torch.randn(5, 2, 17, generator=gen(2), dtype=torch.float64)
    assert g(x, gen()).dtype == torch.float64
    short = torch.randn(3, 1, 2, generator=gen(3))
    assert g(short, gen()).shape == short.shape


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a GPU"))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("g", SERIES_PERTURBATIONS, ids=repr)
def test_series_perturbations_keep_the_device(series, g, device):
    x = series.to(device)
    out = g(x, torch.Generator(device=device).manual_seed(0))
    assert out.device == x.device and out.shape == x.shape
    # CPU and CUDA generators draw different numbers; each is reproducible.
    assert torch.equal(out, g(x, torch.Generator(device=device).manual_seed(0)))


def test_channels_of_a_series_move_together():
    # Two identical channels stay identical under every geometric perturbation.
    x = torch.randn(8, 1, 25, generator=gen(4)).repeat(1, 2, 1)
    for g in (RandomShift(0.3), WindowSlice((0.5, 0.9)), TimeWarp(0.5), AmplitudeScale()):
        out = g(x, gen())
        assert torch.equal(out[:, 0], out[:, 1]), g


def test_identity_settings_leave_series_unchanged(series):
    close = {"atol": 1e-5, "rtol": 1e-5}
    torch.testing.assert_close(RandomShift(0)(series, gen()), series, **close)
    torch.testing.assert_close(WindowSlice((1, 1))(series, gen()), series, **close)
    torch.testing.assert_close(TimeWarp(0)(series, gen()), series, **close)
    torch.testing.assert_close(AmplitudeScale((1, 1))(series, gen()), series)


def test_random_shift_moves_a_spike_by_at_most_the_fraction():
    spikes = torch.zeros(200, 1, 50)
    spikes[:, 0, 25] = 1.0
    for mode in ("edge", "circular"):
        moved = RandomShift(0.2, mode=mode)(spikes, gen())
        peaks = moved.argmax(dim=2).flatten()
        assert (peaks - 25).abs().max() <= 10
        assert len(set(peaks.tolist())) > 10  # per-sample shifts
        # Whole-sample shifts: the spike is moved, not blurred.
        assert torch.equal(moved.sort(dim=2).values, spikes.sort(dim=2).values)


def test_random_shift_modes_fill_differently():
    ramp = torch.arange(10.0).view(1, 1, 10).repeat(50, 1, 1)
    edge = RandomShift(0.3)(ramp, gen())
    circular = RandomShift(0.3, mode="circular")(ramp, gen())
    # Edge padding repeats the end values: the ramp stays non-decreasing.
    assert (edge.diff(dim=2) >= -1e-6).all()
    assert edge.min() >= 0 and edge.max() <= 9
    # Circular shifts wrap the end around: a jump down appears.
    assert (circular.diff(dim=2) < -1).any()
    with pytest.raises(ValueError, match="mode"):
        RandomShift(0.1, mode="reflect")(ramp, gen())


def test_window_slice_stays_inside_the_series():
    ramp = torch.linspace(0, 1, 40).view(1, 1, 40).repeat(100, 1, 1)
    out = WindowSlice((0.5, 0.8))(ramp, gen())
    span = out[:, 0, -1] - out[:, 0, 0]
    assert ((span >= 0.5 - 1e-5) & (span <= 0.8 + 1e-5)).all()
    assert (out >= 0).all() and (out <= 1).all()
    assert (out.diff(dim=2) >= 0).all()


def test_time_warp_is_monotone_and_keeps_the_ends():
    ramp = torch.linspace(-1, 1, 60).view(1, 1, 60).repeat(100, 2, 1)
    warped = TimeWarp(0.8, n_knots=6)(ramp, gen())
    assert (warped.diff(dim=2) >= 0).all()
    torch.testing.assert_close(warped[..., 0], ramp[..., 0])
    torch.testing.assert_close(warped[..., -1], ramp[..., -1])
    assert not torch.allclose(warped, ramp, atol=1e-2)
    with pytest.raises(ValueError, match="strength"):
        TimeWarp(1.0)(ramp, gen())


def test_nearest_interpolation_keeps_the_values():
    x = torch.randn(20, 2, 30, generator=gen(7))
    for g in (TimeWarp(0.6, interpolation="nearest"), WindowSlice((0.5, 0.9), "nearest")):
        out = g(x, gen())
        # Every output value is one of the series' own values, channel by channel.
        assert (out.unsqueeze(-1) == x.unsqueeze(-2)).any(dim=-1).all()
    with pytest.raises(ValueError, match="interpolation"):
        TimeWarp(0.2, interpolation="cubic")(x, gen())


def test_amplitude_scale_ranges():
    x = torch.ones(500, 3, 7)
    out = AmplitudeScale((0.5, 2.0))(x, gen())
    assert (out >= 0.5).all() and (out <= 2.0).all()
    assert torch.equal(out, out[:, :1, :1].expand_as(out))  # one gain per series
    assert out[:, 0, 0].min() < 0.6 and out[:, 0, 0].max() > 1.9
    per_channel = AmplitudeScale((0.5, 2.0), per_channel=True)(x, gen())
    assert torch.equal(per_channel, per_channel[:, :, :1].expand_as(per_channel))
    assert not torch.equal(per_channel[:, 0], per_channel[:, 1])


def test_gaussian_noise_scales_with_each_channel_of_series():
    x = torch.randn(200, 2, 50, generator=gen(5)) * torch.tensor([1.0, 1000.0]).view(1, 2, 1)
    noise = GaussianNoise(0.1)(x, gen()) - x
    ratio = noise.std(dim=(0, 2)) / x.std(dim=(0, 2))
    torch.testing.assert_close(ratio, torch.full((2,), 0.1), atol=0.01, rtol=0)


def test_linear_trend_adds_a_line_scaled_to_each_channel():
    x = torch.randn(300, 2, 40, generator=gen(6)) * torch.tensor([1.0, 100.0]).view(1, 2, 1)
    drift = LinearTrend(0.8)(x, gen()) - x
    rise = drift[..., -1] - drift[..., 0]
    spread = x.std(dim=(0, 2))
    assert (rise.abs() <= 0.8 * spread + 1e-3).all()
    assert (rise.abs().amax(dim=0) > 0.7 * spread).all()
    torch.testing.assert_close(rise[:, 0] / spread[0], rise[:, 1] / spread[1], atol=1e-4, rtol=0)
    torch.testing.assert_close(drift.diff(dim=2).std(dim=2), torch.zeros(300, 2), atol=1e-3, rtol=0)


def test_series_perturbations_repr_and_equality():
    assert repr(TimeWarp(0.3)) == "TimeWarp(strength=0.3, n_knots=4, interpolation='linear')"
    assert RandomShift(0.1) == RandomShift(0.1, "edge") != RandomShift(0.1, "circular")


@pytest.mark.parametrize(
    "shape", [(1, 16), (1, 24), (1, 40), (3, 100), (6, 100), (1, 251), (2, 1000), (1, 5)]
)
def test_convnet1d_output_shape(shape):
    net = ConvNet1d(shape, 7)
    x = torch.randn(4, *shape, generator=gen())
    assert net(x).shape == (4, 7)  # training mode
    assert net.eval()(x).shape == (4, 7)


def test_convnet1d_depth_follows_the_length():
    def n_convs(net):
        return sum(isinstance(m, nn.Conv2d) for m in net)

    assert [n_convs(ConvNet1d((1, n), 3)) for n in (16, 40, 150, 1000)] == [2, 4, 5, 5]
    # Longer than max_length: averaged down first (1000 by 8 to 125 samples).
    assert isinstance(ConvNet1d((1, 1000), 3)[1], nn.AvgPool2d)
    assert ConvNet1d((1, 1000), 3)[1].kernel_size == (1, 8)
    assert [n_convs(ConvNet1d((1, n), 3, max_length=None)) for n in (150, 1000)] == [6, 8]
    assert n_convs(ConvNet1d((1, 1000), 3, n_blocks=3)) == 3
    net = ConvNet1d((2, 64), 3, channels=8, max_channels=16, kernel_size=3, global_pool="max")
    widths = [m.out_channels for m in net if isinstance(m, nn.Conv2d)]
    assert widths == [8, 16, 16, 16] and net[-1].in_features == 16
    with pytest.raises(ValueError, match="mode"):
        ConvNet1d((1, 20), 3, global_pool="sum")


def test_convnet1d_with_circular_padding_ignores_circular_shifts():
    torch.manual_seed(0)
    net = ConvNet1d((2, 64), 4, padding_mode="circular").eval()
    x = torch.randn(1, 2, 64, generator=gen())
    shifted = torch.roll(x, 24, dims=2)  # a multiple of the pooling factor (8)
    with torch.no_grad():
        torch.testing.assert_close(net(x), net(shifted), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pool", ["max", "avg", "maxavg"])
def test_convnet1d_is_shift_tolerant(pool):
    torch.manual_seed(0)
    # 3 blocks: 2 poolings by 2, a receptive field of 29 samples.
    net = ConvNet1d((1, 128), 5, n_blocks=3, global_pool=pool).eval()
    pattern = torch.randn(9, generator=gen())
    x = torch.zeros(3, 1, 128)
    x[0, 0, 36:45] = pattern
    x[1, 0, 76:85] = pattern  # the same pattern 40 samples later
    x[2, 0, 79:88] = pattern  # 43 samples later: not a multiple of the pooling
    with torch.no_grad():
        out = net(x)
        other = net(torch.randn(1, 1, 128, generator=gen(1)))
    # Away from the borders, global pooling makes the output invariant to
    # shifts by multiples of the total pooling factor (4 here)...
    torch.testing.assert_close(out[0], out[1], atol=1e-5, rtol=1e-5)
    # ...and other shifts change it far less than another series does.
    assert (out[0] - out[2]).abs().max() < 0.5 * (out[0] - other[0]).abs().max()


def test_default_network_dispatches_on_the_input_shape():
    assert isinstance(default_network(10, 3), MLP)
    assert isinstance(default_network((2, 50), 3), ConvNet1d)
    assert isinstance(default_network([2, 50], 3), ConvNet1d)
    assert isinstance(default_network((1, 8, 8), 3), ConvNet)
    assert default_network((2, 50), 3).eval()(torch.randn(2, 2, 50)).shape == (2, 3)


# -- IICClustering on series ------------------------------------------------


def test_series_clustering_beats_kmeans_on_shifted_shapes():
    X, y = make_shifted_waveforms(180, random_state=0)
    iic = IICClustering(n_clusters=3, input_kind="series", n_epochs=60, random_state=0).fit(X)
    kmeans = KMeans(3, n_init=10, random_state=0).fit(X.reshape(len(X), -1))
    iic_ari = adjusted_rand_score(y, iic.labels_)
    kmeans_ari = adjusted_rand_score(y, kmeans.labels_)
    assert isinstance(iic.network_, ConvNet1d)
    assert iic.input_shape_ == (1, 64)
    assert iic.n_iter_ == 60
    # Measured: IIC 1.000, KMeans 0.005. 40 epochs are too few to rely on
    # (seeds 0-3: ARI 0.39 to 0.97 with each series z-normalised, 0.52 to
    # 0.98 without); 60 epochs gave seed 0 an ARI of 1.0 either way.
    assert iic_ari > 0.9 and kmeans_ari < 0.1, (iic_ari, kmeans_ari)


def test_series_from_arrays_flat_rows_and_any_units_agree():
    X, _ = make_shifted_waveforms(60, random_state=0)
    X = np.concatenate([X, X[::-1] * 2], axis=1)  # two channels
    params = dict(n_clusters=3, n_epochs=3, random_state=0)
    model = IICClustering(input_kind="series", **params).fit(X)
    flat = IICClustering(series_shape=(2, 64), **params).fit(X.reshape(len(X), -1))
    scaled = IICClustering(input_kind="series", **params).fit(X.astype(np.float64) * 1e6 + 3)
    assert model.input_shape_ == flat.input_shape_ == (2, 64)
    np.testing.assert_array_equal(model.labels_, flat.labels_)
    np.testing.assert_array_equal(model.labels_, scaled.labels_)
    np.testing.assert_array_equal(model.predict(X), model.predict(X.reshape(len(X), -1)))
    # Standardised per channel: every time point of a channel alike.
    assert np.ptp(model.feature_scale_.reshape(2, 64), axis=1).max() == 0
    with pytest.raises(ValueError, match="fitted on input of shape \\(2, 64\\)"):
        model.predict(X.reshape(len(X), 4, 32))
    with pytest.raises(ValueError, match="Series are \\(n_cases, n_channels, n_timepoints\\)"):
        model.predict(X[:, None])


def test_offsets_and_scales_of_each_series_do_not_count_by_default():
    X, _ = make_shifted_waveforms(60, random_state=0)
    X = np.concatenate([X, X[::-1] * 2], axis=1)  # two channels
    rng = np.random.default_rng(0)
    moved = X * rng.uniform(0.1, 10, (60, 2, 1)) + rng.normal(0, 100, (60, 2, 1))
    unchanged = moved.copy()
    params = dict(n_clusters=3, input_kind="series", n_epochs=3, random_state=0)
    model = IICClustering(**params).fit(X)
    other = IICClustering(**params).fit(moved)
    np.testing.assert_array_equal(moved, unchanged)  # fit scales a copy
    np.testing.assert_array_equal(model.labels_, other.labels_)
    np.testing.assert_allclose(model.predict_proba(moved), model.predict_proba(X), atol=1e-6)
    assert model.score(moved) == pytest.approx(model.score(X), abs=1e-6)
    # "global" scales each channel over all series alone, as before.
    kept = IICClustering(series_scaling="global", **params).fit(moved)
    assert not kept._plan.znormalize and model._plan.znormalize
    raw_mean, _ = feature_scaling(moved.reshape(60, -1), (2, 64))
    np.testing.assert_allclose(kept.feature_mean_, raw_mean)


def test_the_shift_test_sees_z_normalised_series(monkeypatch):
    X, _ = make_shifted_waveforms(60, random_state=0)
    X = X * np.arange(1, 61)[:, None, None] + 50
    seen = []

    def measured(series, input_shape):
        seen.append(series.reshape(-1, *input_shape))
        return 1.0

    monkeypatch.setattr(_iic, "shift_distance", measured)
    params = dict(n_clusters=3, input_kind="series", n_epochs=1, random_state=0)
    IICClustering(**params).fit(X)
    IICClustering(series_scaling="global", **params).fit(X)
    np.testing.assert_allclose(seen[0].std(axis=2), 1.0)
    np.testing.assert_array_equal(seen[1], X)


def test_aligned_series_are_z_normalised_before_they_are_flattened():
    X, _ = make_shifted_waveforms(150, random_state=0)
    X = np.stack([np.roll(x, -int(np.argmax(x[0]))) for x in X])
    rng = np.random.default_rng(0)
    moved = X * rng.uniform(0.1, 10, (150, 1, 1)) + rng.normal(0, 100, (150, 1, 1))
    params = dict(n_clusters=3, input_kind="series", n_epochs=5, random_state=0)
    model = IICClustering(**params).fit(X)
    other = IICClustering(**params).fit(moved)
    assert other._plan.input_shape == 64 and isinstance(other.network_.network.first, MLP)
    np.testing.assert_array_equal(model.labels_, other.labels_)
    np.testing.assert_array_equal(other.predict(moved), other.labels_)


def test_univariate_series_as_flat_rows():
    X, _ = make_shifted_waveforms(30, random_state=0)
    model = IICClustering(n_clusters=3, input_kind="series", n_epochs=2, random_state=0)
    model.fit(X[:, 0])
    assert model.input_shape_ == (1, 64) and isinstance(model.network_, ConvNet1d)


def test_repeated_series_keep_the_series_network():
    X, _ = make_shifted_waveforms(60, random_state=0)
    model = IICClustering(n_clusters=3, input_kind="series", n_epochs=1, random_state=0)
    # Oversampled by repetition, shifted shapes are still shifted shapes.
    model.fit(np.concatenate([X, X]))
    assert model._plan.input_shape == (1, 64) and isinstance(model.network_, ConvNet1d)


def test_series_like_arrays_without_input_kind_warn():
    X, _ = make_shifted_waveforms(30, random_state=0)
    with pytest.warns(UserWarning, match="pass input_kind='series'"):
        model = IICClustering(n_clusters=3, n_epochs=1, random_state=0).fit(X)
    assert model.input_shape_ == (1, 1, 64)  # images, as 3-D arrays always were


def test_aligned_series_are_clustered_time_point_by_time_point():
    X, _ = make_shifted_waveforms(150, random_state=0)
    # Every waveform at the same place: shifts would carry series off the data.
    X = np.stack([np.roll(x, -int(np.argmax(x[0]))) for x in X])
    model = IICClustering(n_clusters=3, input_kind="series", n_epochs=20, random_state=0).fit(X)
    assert model.input_shape_ == (1, 64) and model._plan.input_shape == 64
    assert isinstance(model.network_.network.first, MLP) and model._plan.whiten
    np.testing.assert_array_equal(model.predict(X), model.labels_)
    # The same fit as the flattened, z-normalised series given as feature vectors.
    rows = znormalise_series(X.reshape(len(X), -1), (1, 64))
    flat = IICClustering(n_clusters=3, n_epochs=20, random_state=0).fit(rows)
    np.testing.assert_array_equal(model.labels_, flat.labels_)
