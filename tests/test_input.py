import numpy as np
import pytest
import torch

from sklearn_iic import IICClustering
from sklearn_iic._input import as_tensor, feature_scaling, resolve_input_shape, validate_input


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
    assert resolve_input_shape(None, None, 7) == 7
    assert resolve_input_shape(None, (1, 8, 8), 64) == (1, 8, 8)
    assert resolve_input_shape((8, 8), None, 64) == (1, 8, 8)
    with pytest.raises(ValueError, match="does not match the 63 features"):
        resolve_input_shape((8, 8), None, 63)
    with pytest.raises(ValueError, match="does not match images of shape"):
        resolve_input_shape((4, 16), (1, 8, 8), 64)


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
