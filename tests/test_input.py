import warnings

import numpy as np
import pytest
import torch

from sklearn_iic import IICClustering
from sklearn_iic._input import (
    as_tensor,
    feature_scaling,
    requested_kind,
    resolve_input_shape,
    validate_input,
    znormalise_series,
)


def test_images_are_flattened_with_their_shape():
    est = IICClustering()
    X, shape = validate_input(est, np.zeros((5, 8, 8)), reset=True)
    assert X.shape == (5, 64) and shape == (1, 8, 8)
    X, shape = validate_input(est, np.zeros((5, 3, 4, 4)), reset=True)
    assert X.shape == (5, 48) and shape == (3, 4, 4)
    X, shape = validate_input(est, np.zeros((5, 7)), reset=True)
    assert shape is None and est.n_features_in_ == 7
    with pytest.raises(ValueError, match="5 dimensions"):
        validate_input(est, np.zeros((2, 1, 1, 1, 1)), reset=True)


def test_resolve_input_shape():
    assert resolve_input_shape("auto", None, None, 7) == 7
    assert resolve_input_shape("auto", None, (1, 8, 8), 64) == (1, 8, 8)
    assert resolve_input_shape("image", (8, 8), None, 64) == (1, 8, 8)
    with pytest.raises(ValueError, match="image_shape=\\(8, 8\\) does not match the 63 features"):
        resolve_input_shape("image", (8, 8), None, 63)
    with pytest.raises(ValueError, match="does not match images of shape"):
        resolve_input_shape("image", (4, 16), (1, 8, 8), 64)
    with pytest.raises(ValueError, match="needs image arrays .* or image_shape"):
        resolve_input_shape("image", None, None, 64)


def test_series_shapes():
    # Flat rows are univariate series unless a shape is declared.
    assert resolve_input_shape("series", None, None, 40) == (1, 40)
    assert resolve_input_shape("series", (2, 20), None, 40) == (2, 20)
    assert resolve_input_shape("series", (40,), None, 40) == (1, 40)
    assert resolve_input_shape("series", 40, None, 40) == (1, 40)
    assert resolve_input_shape("series", None, (3, 10), 30) == (3, 10)
    with pytest.raises(ValueError, match="series_shape=\\(3, 20\\) does not match the 40"):
        resolve_input_shape("series", (3, 20), None, 40)
    with pytest.raises(ValueError, match="does not match series of shape"):
        resolve_input_shape("series", (10, 3), (3, 10), 30)
    est = IICClustering()
    X, shape = validate_input(est, np.zeros((5, 3, 10)), reset=True, kind="series")
    assert X.shape == (5, 30) and shape == (3, 10)
    with pytest.raises(ValueError, match="Series are \\(n_cases, n_channels, n_timepoints\\)"):
        validate_input(est, np.zeros((5, 1, 3, 10)), reset=True, kind="series")
    with pytest.raises(ValueError, match="X has 3 dimensions .* feature vectors"):
        validate_input(est, np.zeros((5, 3, 10)), reset=True, kind="table")


def test_requested_kind_from_parameters():
    assert requested_kind("auto", None, None) == ("auto", None)
    assert requested_kind("auto", (8, 8), None) == ("image", (8, 8))
    assert requested_kind("series", None, (2, 5)) == ("series", (2, 5))
    with pytest.raises(ValueError, match="image_shape or series_shape, not both"):
        requested_kind("auto", (8, 8), (2, 32))
    with pytest.raises(ValueError, match="series_shape is given, but input_kind='image'"):
        requested_kind("image", None, (2, 32))


def test_series_like_3d_arrays_warn_unless_the_kind_is_given():
    est = IICClustering()
    with pytest.warns(UserWarning, match="input_kind='series'"):
        _, shape = validate_input(est, np.zeros((5, 1, 100)), reset=True)
    assert shape == (1, 1, 100)  # still images, as documented
    with pytest.warns(UserWarning, match="read as greyscale images of height 6"):
        validate_input(est, np.zeros((5, 6, 100)), reset=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validate_input(est, np.zeros((5, 8, 8)), reset=True)  # square: images
        validate_input(est, np.zeros((5, 1, 100)), reset=True, kind="image")


def test_series_are_standardised_per_channel():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3, 20)) * np.array([1, 10, 1e5])[:, None] + [[0], [3], [-7]]
    mean, scale = feature_scaling(X.reshape(50, -1), (3, 20))
    np.testing.assert_allclose(mean.reshape(3, 20), np.repeat(X.mean(axis=(0, 2))[:, None], 20, 1))
    np.testing.assert_allclose(scale.reshape(3, 20), np.repeat(X.std(axis=(0, 2))[:, None], 20, 1))


def test_znormalise_series_scales_each_channel_of_each_series():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5, 2, 30)) * rng.uniform(0.1, 1e3, (5, 2, 1))
    X += rng.normal(0, 1e3, (5, 2, 1))  # offsets and scales vary from series to series
    X[0, 1] = 7.0  # a constant channel
    X[1] *= 1e300  # huge values neither overflow nor lose their spread
    flat = X.reshape(5, -1)
    before = flat.copy()
    out = znormalise_series(flat, (2, 30)).reshape(5, 2, 30)
    np.testing.assert_array_equal(flat, before)  # a new array
    np.testing.assert_array_equal(out[0, 1], 0.0)  # centred, not divided by zero
    varying = np.ones((5, 2), dtype=bool)
    varying[0, 1] = False
    np.testing.assert_allclose(out.mean(axis=2), 0.0, atol=1e-12)
    np.testing.assert_allclose(out.std(axis=2)[varying], 1.0)
    # Idempotent up to rounding, and float32 stays float32.
    np.testing.assert_allclose(znormalise_series(out.reshape(5, -1), (2, 30)), out.reshape(5, -1),
                               atol=1e-12)
    assert znormalise_series(flat.astype(np.float32), (2, 30)).dtype == np.float32


@pytest.mark.parametrize("value, match", [(1e39, "beyond float32's range"),
                                          (1e-300, "below float32's smallest normal")])
def test_values_float32_cannot_hold_are_refused_unless_standardised(value, match):
    X = np.ones((10, 3))
    X[4, 1] = value
    with pytest.raises(ValueError, match=match):
        as_tensor(X, 3, torch.device("cpu"))
    # Standardised first, the same values fit float32.
    scaled = as_tensor(X, 3, torch.device("cpu"), feature_scaling(X))
    assert torch.isfinite(scaled).all()


def test_feature_scaling_of_extreme_and_constant_features():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 4)) * [1e-40, 1e300, 1.0, 0.0] + [0.0, 0.0, 5.0, 0.1]
    mean, scale = feature_scaling(X)
    # numpy's own std overflows for the 1e300 feature; ours does not.
    unit = np.array([1e-40, 1e300, 1.0])
    np.testing.assert_allclose(scale[:3], (X[:, :3] / unit).std(axis=0) * unit, rtol=1e-10)
    np.testing.assert_allclose(mean[:3] / unit, (X[:, :3] / unit).mean(axis=0), atol=1e-12)
    # A constant 0.1 column: rounding leaves a spread of ~1e-17, taken as none.
    assert scale[3] == 1.0


def test_as_tensor_shares_float32_memory_and_copies_negative_strides():
    X = np.arange(12, dtype=np.float32).reshape(4, 3)
    shared = as_tensor(X, 3, torch.device("cpu"))
    assert shared.data_ptr() == X.__array_interface__["data"][0]
    reversed_rows = as_tensor(X[::-1], 3, torch.device("cpu"))
    np.testing.assert_array_equal(reversed_rows.numpy(), X[::-1])
    both = as_tensor(X[::-1, ::-1], 3, torch.device("cpu"))
    np.testing.assert_array_equal(both.numpy(), X[::-1, ::-1])
    read_only = X.copy()
    read_only.flags.writeable = False
    assert as_tensor(read_only, 3, torch.device("cpu")).shape == (4, 3)
    images = as_tensor(np.zeros((2, 64)), (1, 8, 8), torch.device("cpu"))
    assert images.shape == (2, 1, 8, 8) and images.dtype == torch.float32


def test_a_dataframe_without_columns_is_named():
    pd = pytest.importorskip("pandas")
    with pytest.raises(ValueError, match="DataFrame with 0 columns"):
        validate_input(IICClustering(), pd.DataFrame(np.zeros((5, 0))), reset=True)


def test_one_dimensional_input_gets_scikit_learns_message():
    pd = pytest.importorskip("pandas")
    from sklearn.cluster import KMeans

    column = np.arange(10.0)
    for X in (pd.Series(column), column):
        with pytest.raises(ValueError) as expected:
            KMeans(n_clusters=2).fit(X)
        with pytest.raises(ValueError, match="Expected 2D array|Expected a 2-dimensional") as got:
            IICClustering(n_clusters=2).fit(X)
        assert str(got.value) == str(expected.value)
