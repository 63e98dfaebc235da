"""Small synthetic data sets that show what IIC's invariances buy."""

import numpy as np
from sklearn.utils import check_random_state


def make_shifted_waveforms(n_samples=300, length=64, *, noise=0.2, random_state=None):
    """Series of three waveforms, each at a random circular shift and scale.

    The classes are a Gaussian bump, a rectangular pulse and a ramp that ends
    in a drop, each rolled circularly by a uniformly random number of time
    points, scaled by a random amplitude in [0.7, 1.3] and noised. Two series
    of one class rarely line up, so Euclidean distances between them are
    large: a clusterer must be tolerant to shifts to find the classes.

    Parameters
    ----------
    n_samples : int, default=300
        Number of series, split as evenly as possible among the 3 classes.
    length : int, default=64
        Time points per series (at least 16).
    noise : float, default=0.2
        Standard deviation of the Gaussian noise added to every value.
    random_state : int, RandomState instance or None, default=None
        Seeds the shifts, amplitudes and noise.

    Returns
    -------
    X : ndarray of shape (n_samples, 1, length)
        Univariate series in aeon's ``(n_cases, n_channels, n_timepoints)``
        layout.
    y : ndarray of shape (n_samples,)
        The waveform of each series: 0 bump, 1 pulse, 2 ramp.

    Examples
    --------
    >>> from sklearn_iic.datasets import make_shifted_waveforms
    >>> X, y = make_shifted_waveforms(n_samples=6, random_state=0)
    >>> X.shape, y.tolist()
    ((6, 1, 64), [0, 0, 1, 1, 2, 2])
    """
    if length < 16:
        raise ValueError(f"length must be at least 16; got {length}.")
    rng = check_random_state(random_state)
    t = np.arange(length)
    centre, width = length / 2, length / 8
    templates = np.stack([
        3 * np.exp(-0.5 * ((t - centre) / (width / 2)) ** 2),
        np.where(np.abs(t - centre) < width, 1.5, -0.5),
        np.where(np.abs(t - centre) < 2 * width, (t - centre + 2 * width) / (2 * width), 0.0),
    ])
    y = np.arange(n_samples) * 3 // n_samples
    shifts = rng.randint(length, size=n_samples)
    rows = (t[None, :] - shifts[:, None]) % length
    X = templates[y[:, None], rows] * rng.uniform(0.7, 1.3, size=(n_samples, 1))
    X += rng.normal(scale=noise, size=X.shape)
    return X[:, None, :], y
