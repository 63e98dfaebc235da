"""Input data: validation, the shape of one sample, and conversion to tensors on a device."""

import warnings

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.utils.validation import validate_data

_FLOAT32 = np.finfo(np.float32)
# Values of X handled at a time by the range check, the feature statistics
# and standardisation: bounds their float64 temporaries at 32 MiB each.
_BLOCK_VALUES = 2**22


def _blocks(X):
    """Row slices of X holding at most _BLOCK_VALUES values each."""
    rows = max(1, _BLOCK_VALUES // max(1, X.shape[1]))
    return (slice(start, start + rows) for start in range(0, X.shape[0], rows))


def validate_input(estimator, X, *, reset):
    """Validate ``X`` as scikit-learn does; return it as 2-D rows and the array's shape per sample.

    Arrays of 3 or 4 dimensions are images ``(n, height, width)`` or
    ``(n, channels, height, width)``; the returned shape per sample is then
    ``(channels, height, width)``, else ``None``.
    """
    array_shape = None
    if hasattr(X, "iloc") and X.shape[1] == 0:  # scikit-learn's message for it names no shape
        raise ValueError(f"Found a DataFrame with 0 columns (shape={X.shape}); IIC needs features.")
    if not sp.issparse(X) and not hasattr(X, "iloc"):
        X = np.asarray(X)
        if X.ndim in (3, 4) and X.size == 0:
            raise ValueError(f"Found an empty array of shape {X.shape}; IIC needs samples.")
        if X.ndim in (3, 4):
            array_shape = X.shape[1:] if X.ndim == 4 else (1,) + X.shape[1:]
            X = X.reshape(X.shape[0], -1)
        elif X.ndim > 4:
            raise ValueError(
                "Expected 2-D features or images of shape (n, height, width) or "
                f"(n, channels, height, width); got an array with {X.ndim} dimensions."
            )
    X = validate_data(estimator, X, reset=reset, dtype=[np.float32, np.float64])
    return X, array_shape


def _check_float32_range(X):
    """The network computes in float32: refuse values it would turn into inf or zero."""
    if X.dtype == np.float32:
        return
    for block in _blocks(X):
        magnitude = np.abs(X[block])
        if magnitude.size and magnitude.max() > _FLOAT32.max:
            raise ValueError(
                f"X has values of magnitude up to {magnitude.max():.3g}, beyond float32's "
                f"range ({_FLOAT32.max:.3g}), in which the network computes; rescale X, "
                "for instance with StandardScaler."
            )
        tiny = (magnitude > 0) & (magnitude < _FLOAT32.tiny)
        if tiny.any():
            raise ValueError(
                f"X has nonzero values as small as {magnitude[tiny].min():.3g}, below "
                f"float32's smallest normal number ({_FLOAT32.tiny:.3g}), in which the "
                "network computes; rescale X, for instance with StandardScaler."
            )


def resolve_input_shape(image_shape, array_shape, n_features):
    """Shape of one sample: ``n_features``, or ``(channels, height, width)`` for images."""
    if image_shape is None:
        return array_shape if array_shape is not None else n_features
    shape = tuple(image_shape)
    if len(shape) == 2:
        shape = (1,) + shape
    if len(shape) != 3 or int(np.prod(shape)) != n_features:
        raise ValueError(
            f"image_shape={image_shape} does not match the {n_features} features of X."
        )
    if array_shape is not None and array_shape != shape:
        raise ValueError(f"image_shape={image_shape} does not match images of shape {array_shape}.")
    return shape


def check_input_shape(array_shape, fitted_shape, name):
    """Images given to a fitted model must have the shape it was fitted on."""
    if array_shape is not None and array_shape != fitted_shape:
        raise ValueError(
            f"X holds images of shape {array_shape}, but {name} was fitted on input "
            f"of shape {fitted_shape}."
        )


def feature_scaling(X):
    """Mean and standard deviation of each feature, in float64 (1 for constant features).

    Computed relative to each feature's largest magnitude, so that values up
    to float64's range neither overflow nor lose their spread; a feature
    whose spread is within rounding of its mean (as scikit-learn's
    StandardScaler decides) counts as constant.
    """
    n_samples = X.shape[0]
    peak = np.zeros(X.shape[1])
    for block in _blocks(X):
        peak = np.maximum(peak, np.abs(X[block]).max(axis=0))
    peak[peak == 0] = 1.0
    total = np.zeros(X.shape[1])
    for block in _blocks(X):
        total += (X[block] / peak).sum(axis=0)
    mean = total / n_samples
    squares = np.zeros(X.shape[1])
    for block in _blocks(X):
        centred = X[block] / peak - mean
        squares += (centred * centred).sum(axis=0)
    variance = squares / n_samples
    eps = np.finfo(np.float64).eps
    constant = variance <= n_samples * eps * variance + (n_samples * mean * eps) ** 2
    scale = np.where(constant, 1.0, np.sqrt(variance) * peak)
    return mean * peak, scale


def as_tensor(X, input_shape, device, scaling=None):
    """Rows of ``X`` as a float32 tensor of samples shaped ``input_shape``, on ``device``.

    With ``scaling`` (a feature mean and scale from :func:`feature_scaling`)
    the features are standardised in float64 before the cast, block by block:
    the tensor is then the same, bit for bit, whatever the units of X, and
    no float64 copy of X is made. Without, values that float32 cannot hold
    raise a ValueError, and float32 data on the CPU is shared,
    not copied (fitting only reads it); read-only arrays, such as joblib's
    memmaps, are shared too, hence torch's warning about them is silenced.
    Arrays with negative strides (``X[::-1]``) are copied, as torch cannot
    view them.
    """
    shape = (input_shape,) if isinstance(input_shape, int) else input_shape
    if scaling is not None:
        # Standardised values fit float32 whatever the units of X.
        mean, scale = scaling
        out = torch.empty(X.shape, dtype=torch.float32)
        for block in _blocks(X):
            out[block] = torch.from_numpy(((X[block] - mean) / scale).astype(np.float32))
        return out.to(device).reshape(-1, *shape)
    _check_float32_range(X)
    if any(stride < 0 for stride in X.strides):
        X = np.ascontiguousarray(X)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        tensor = torch.as_tensor(X, dtype=torch.float32, device=device)
    return tensor.reshape(-1, *shape)
