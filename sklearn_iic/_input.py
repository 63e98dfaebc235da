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


# A 3-D array given without input_kind is read as greyscale images
# (n, height, width); one whose "height" is at most a quarter of its "width"
# is more likely aeon's (n_cases, n_channels, n_timepoints), hence a warning.
_SERIES_LIKE_ASPECT = 4


def requested_kind(input_kind, image_shape, series_shape):
    """The kind of input the parameters ask for, and the sample shape they declare.

    Returns ``(kind, declared_shape)``: ``kind`` is ``"auto"`` when neither
    ``input_kind`` nor a declared shape says; ``declared_shape`` is
    ``image_shape`` or ``series_shape`` (or None). Contradictions raise.
    """
    if image_shape is not None and series_shape is not None:
        raise ValueError("Give image_shape or series_shape, not both.")
    if image_shape is not None:
        declared, name, shape = "image", "image_shape", image_shape
    elif series_shape is not None:
        declared, name, shape = "series", "series_shape", series_shape
    else:
        return input_kind, None
    if input_kind not in ("auto", declared):
        raise ValueError(f"{name} is given, but input_kind={input_kind!r}.")
    return declared, shape


def validate_input(estimator, X, *, reset, kind="auto"):
    """Validate ``X`` as scikit-learn does; return it as 2-D rows and the array's shape per sample.

    Arrays of 3 or 4 dimensions are unflattened samples, read according to
    ``kind``: images ``(n, height, width)`` or ``(n, channels, height,
    width)``, whose shape per sample is then ``(channels, height, width)``;
    or series ``(n, channels, length)``, whose shape per sample is
    ``(channels, length)``. ``"auto"`` reads 3-D arrays as images, warning
    when they look like series. For 2-D rows the shape returned is ``None``.
    """
    array_shape = None
    # scikit-learn's message for a DataFrame without columns names no shape;
    # a Series (1-D) is left to its "Expected a 2-dimensional container".
    if hasattr(X, "iloc") and X.ndim == 2 and X.shape[1] == 0:
        raise ValueError(f"Found a DataFrame with 0 columns (shape={X.shape}); IIC needs features.")
    if not sp.issparse(X) and not hasattr(X, "iloc"):
        X = np.asarray(X)
        if X.ndim in (3, 4) and X.size == 0:
            raise ValueError(f"Found an empty array of shape {X.shape}; IIC needs samples.")
        if X.ndim in (3, 4):
            array_shape = _sample_shape(X.shape, kind)
            X = X.reshape(X.shape[0], -1)
        elif X.ndim > 4:
            raise ValueError(
                "Expected 2-D features, images of shape (n, height, width) or "
                "(n, channels, height, width), or series of shape (n, channels, length); "
                f"got an array with {X.ndim} dimensions."
            )
    X = validate_data(estimator, X, reset=reset, dtype=[np.float32, np.float64])
    return X, array_shape


def _sample_shape(shape, kind):
    """Shape of one sample of an array of shape ``shape`` (3-D or 4-D), read as ``kind``."""
    if kind == "table":
        raise ValueError(
            f"X has {len(shape)} dimensions (shape {shape}), but the estimator takes "
            "feature vectors here (2-D X): input_kind='table', or fitted on features."
        )
    if kind == "series":
        if len(shape) == 4:
            raise ValueError(
                f"Series are (n_cases, n_channels, n_timepoints) arrays; got shape {shape}."
            )
        return shape[1:]
    if len(shape) == 4:
        return shape[1:]
    if kind == "auto" and shape[1] * _SERIES_LIKE_ASPECT <= shape[2]:
        warnings.warn(
            f"X of shape {shape} is read as greyscale images of height {shape[1]} and "
            f"width {shape[2]}. If it holds series in the (n_cases, n_channels, "
            "n_timepoints) layout of aeon, sktime and tslearn, pass input_kind='series'; "
            "pass input_kind='image' to silence this warning.",
            UserWarning,
            stacklevel=5,  # the caller of fit
        )
    return (1,) + shape[1:]


def _check_float32_range(X):
    """The network computes in float32: refuse values it would turn into inf or zero."""
    if X.dtype == np.float32:
        return
    for block in _blocks(X):
        magnitude = np.abs(X[block])
        _check_float32_max(magnitude, "X has", "rescale X, for instance with StandardScaler")
        tiny = (magnitude > 0) & (magnitude < _FLOAT32.tiny)
        if tiny.any():
            raise ValueError(
                f"X has nonzero values as small as {magnitude[tiny].min():.3g}, below "
                f"float32's smallest normal number ({_FLOAT32.tiny:.3g}), in which the "
                "network computes; rescale X, for instance with StandardScaler."
            )


def _check_float32_max(magnitude, subject, remedy):
    """Refuse magnitudes beyond float32's range, which the network would see as inf."""
    peak = magnitude.max(initial=0.0)
    if peak > _FLOAT32.max:
        raise ValueError(
            f"{subject} values of magnitude up to {peak:.3g}, beyond float32's range "
            f"({_FLOAT32.max:.3g}), in which the network computes; {remedy}."
        )


def resolve_input_shape(kind, declared_shape, array_shape, n_features):
    """Shape of one sample: ``n_features``, ``(channels, length)`` or ``(channels, height, width)``.

    ``kind`` and ``declared_shape`` come from :func:`requested_kind`,
    ``array_shape`` from :func:`validate_input`.
    """
    if kind in ("auto", "table"):  # a declared shape makes the kind "image" or "series"
        return array_shape if array_shape is not None else n_features
    name, dims, plural = ("image_shape", 3, "images") if kind == "image" else (
        "series_shape", 2, "series"
    )
    if declared_shape is None:
        if array_shape is not None:
            return array_shape
        if kind == "series":  # flat rows: univariate series
            return (1, n_features)
        raise ValueError(
            "input_kind='image' needs image arrays of shape (n, height, width) or "
            "(n, channels, height, width), or image_shape for flattened rows."
        )
    shape = (declared_shape,) if isinstance(declared_shape, (int, np.integer)) else declared_shape
    shape = tuple(int(d) for d in shape)
    shape = (1,) * (dims - len(shape)) + shape
    if len(shape) != dims or int(np.prod(shape)) != n_features:
        raise ValueError(
            f"{name}={declared_shape} does not match the {n_features} features of X."
        )
    if array_shape is not None and array_shape != shape:
        raise ValueError(
            f"{name}={declared_shape} does not match {plural} of shape {array_shape}."
        )
    return shape


def check_input_shape(array_shape, fitted_shape, name):
    """Images or series given to a fitted model must have the shape it was fitted on."""
    if array_shape is not None and array_shape != fitted_shape:
        raise ValueError(
            f"X holds samples of shape {array_shape}, but {name} was fitted on input "
            f"of shape {fitted_shape}."
        )


def feature_scaling(X, input_shape=None):
    """Mean and standard deviation of each feature, in float64 (1 for constant features).

    Computed relative to each feature's largest magnitude, so that values up
    to float64's range neither overflow nor lose their spread; a feature
    whose spread is within rounding of its mean (as scikit-learn's
    StandardScaler decides) counts as constant. For series (``input_shape``
    ``(channels, length)``) the statistics are those of each channel over
    all its time points, repeated along time: every time point of a channel
    is then scaled alike, and the series keep their shape.
    """
    # Values as (rows, groups, length): a group is a feature (length 1) or a channel.
    series = isinstance(input_shape, tuple) and kind_of_shape(input_shape) == "series"
    groups = input_shape if series else (X.shape[1], 1)
    count = X.shape[0] * groups[1]

    def values(block):
        return X[block].reshape(-1, *groups)

    peak = np.zeros(groups[0])
    for block in _blocks(X):
        peak = np.maximum(peak, np.abs(values(block)).max(axis=(0, 2)))
    peak[peak == 0] = 1.0
    total = np.zeros(groups[0])
    for block in _blocks(X):
        total += (values(block) / peak[:, None]).sum(axis=(0, 2))
    mean = total / count
    squares = np.zeros(groups[0])
    for block in _blocks(X):
        centred = values(block) / peak[:, None] - mean[:, None]
        squares += (centred * centred).sum(axis=(0, 2))
    variance = squares / count
    scale = np.where(_constant(mean, variance, count), 1.0, np.sqrt(variance) * peak)
    return np.repeat(mean * peak, groups[1]), np.repeat(scale, groups[1])


def _constant(mean, variance, count):
    """Whether a spread is within rounding of its mean, as scikit-learn's StandardScaler decides.

    ``mean`` and ``variance`` are those of ``count`` values scaled by their
    largest magnitude.
    """
    eps = np.finfo(np.float64).eps
    return variance <= count * eps * variance + (count * mean * eps) ** 2


def znormalise_series(X, input_shape):
    """Each channel of each series to mean 0 and standard deviation 1 over its time points.

    The UCR literature's normalisation: it removes the level and the
    amplitude of every series. Constant channels (as :func:`feature_scaling`
    decides) are only centred. Computed in float64, relative to
    each channel's largest magnitude so that any finite values work, block by
    block; returns a new array of X's dtype and leaves X as it is. Applying
    it twice changes nothing beyond float rounding.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_channels * length)
        Flattened series, channel after channel.
    input_shape : tuple of int
        ``(n_channels, length)``.

    Returns
    -------
    X_normalised : ndarray of shape (n_samples, n_channels * length)
    """
    out = np.empty_like(X)
    for block in _blocks(X):
        values = X[block].reshape(-1, *input_shape).astype(np.float64)
        peak = np.abs(values).max(axis=2, keepdims=True)
        values /= np.where(peak == 0, 1.0, peak)
        mean = values.mean(axis=2, keepdims=True)
        values -= mean
        variance = (values * values).mean(axis=2, keepdims=True)
        constant = _constant(mean, variance, input_shape[1])
        values /= np.where(constant, 1.0, np.sqrt(variance))
        out[block] = values.reshape(len(values), -1)
    return out


def kind_of_shape(input_shape):
    """``"table"`` for an int shape, ``"series"`` for a 2-tuple, ``"image"`` for a 3-tuple."""
    if isinstance(input_shape, int):
        return "table"
    return "series" if len(input_shape) == 2 else "image"


def as_tensor(X, input_shape, device, scaling=None):
    """Rows of ``X`` as a float32 tensor of samples shaped ``input_shape``, on ``device``.

    With ``scaling`` (a feature mean and scale from :func:`feature_scaling`)
    the features are standardised in float64 before the cast, block by block:
    the tensor is then the same, bit for bit, whatever the units of X, and
    no float64 copy of X is made; standardised values beyond float32's range
    (a sample far outside the data the scaling was computed on, such as 1e300
    in a feature of spread 1) raise a ValueError, as they would otherwise
    become inf. Without, values that float32 cannot hold raise a ValueError,
    and float32 data on the CPU is shared, not copied (fitting only reads
    it); read-only arrays, such as joblib's
    memmaps, are shared too, hence torch's warning about them is silenced.
    Arrays with negative strides (``X[::-1]``) are copied, as torch cannot
    view them.
    """
    shape = (input_shape,) if isinstance(input_shape, int) else input_shape
    if scaling is not None:
        # Standardised values fit float32 whatever the units of X, unless
        # they lie far outside the data of the scaling: checked before the cast.
        mean, scale = scaling
        out = torch.empty(X.shape, dtype=torch.float32)
        for block in _blocks(X):
            with np.errstate(over="ignore"):  # an inf here is refused just below
                standardised = (X[block] - mean) / scale
            _check_float32_max(
                np.abs(standardised),
                "Standardised by the mean and scale of the training data, X has",
                "such samples lie far outside the training data",
            )
            out[block] = torch.from_numpy(standardised.astype(np.float32))
        return out.to(device).reshape(-1, *shape)
    _check_float32_range(X)
    if any(stride < 0 for stride in X.strides):
        X = np.ascontiguousarray(X)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        tensor = torch.as_tensor(X, dtype=torch.float32, device=device)
    return tensor.reshape(-1, *shape)
