import numpy as np
import pytest
import torch

from sklearn_iic import IICClustering
from sklearn_iic._input import as_tensor, resolve_input_shape, validate_input


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
def test_values_float32_cannot_hold_are_refused(value, match):
    X = np.ones((10, 3))
    X[4, 1] = value
    with pytest.raises(ValueError, match=match):
        validate_input(IICClustering(), X, reset=True)


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
