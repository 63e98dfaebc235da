"""Random perturbations ``g`` that turn a batch ``x`` into its pair ``g(x)``.

A perturbation is any callable ``g(x, generator)`` that takes a batch tensor
on the training device and a :class:`torch.Generator` on that device, and
returns a perturbed batch of the same shape. Drawing all randomness from
``generator`` keeps fits reproducible. Every perturbation here draws its
parameters independently for each sample, in one batched operation on the
device.

Tabular batches have shape ``(n, n_features)``; series batches have shape
``(n, channels, length)``; image batches have shape
``(n, channels, height, width)``.
"""

import inspect
import math

import torch
import torch.nn.functional as F

__all__ = [
    "AmplitudeScale",
    "Compose",
    "FeatureCorruption",
    "GaussianNoise",
    "IntensityJitter",
    "LinearTrend",
    "Perturbation",
    "RandomAffine",
    "RandomResizedCrop",
    "RandomShift",
    "TimeWarp",
    "Transform",
    "WindowSlice",
    "default_perturbation",
]


def _uniform(n, low, high, generator, device):
    return low + (high - low) * torch.rand(n, generator=generator, device=device)


def _warp(x, theta):
    """Resample images ``x`` with per-sample affine maps ``theta`` (n, 2, 3)."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="zeros", align_corners=False)


class Perturbation:
    """Base class: a reproducible random map ``g(x, generator)``.

    Subclasses store their constructor arguments as attributes of the same
    name, which gives them a readable ``repr`` and lets them be compared.
    """

    def __call__(self, x, generator):  # pragma: no cover - interface
        raise NotImplementedError

    def _params(self):
        names = inspect.signature(type(self).__init__).parameters
        return {name: getattr(self, name) for name in names if name != "self"}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and self._params() == other._params()

    def __hash__(self):
        return hash((type(self).__name__, repr(self)))


class Compose(Perturbation):
    """Apply several perturbations in sequence.

    Parameters
    ----------
    perturbations : sequence of callable
        Each is called as ``g(x, generator)``; any callable with that
        signature (a user function, a wrapped kornia transform) fits.

    Examples
    --------
    >>> from sklearn_iic.perturbations import Compose, GaussianNoise, RandomAffine
    >>> g = Compose([RandomAffine(rotation=10), GaussianNoise(0.05)])
    >>> g.perturbations[1]
    GaussianNoise(scale=0.05)
    """

    def __init__(self, perturbations):
        self.perturbations = tuple(perturbations)

    def __call__(self, x, generator):
        for perturbation in self.perturbations:
            x = perturbation(x, generator)
        return x


class GaussianNoise(Perturbation):
    """Additive Gaussian noise scaled to the data.

    The noise standard deviation is ``scale`` times the standard deviation
    of each feature across the batch (tabular input), of each channel across
    the batch and time (series of shape ``(n, channels, length)``), or of all
    pixel values of the batch (image input), so the same ``scale`` fits data
    of any unit, and channels of a series measured in different units.

    Parameters
    ----------
    scale : float, default=0.1
        Noise level relative to the spread of the data.

    Examples
    --------
    >>> import torch
    >>> from sklearn_iic.perturbations import GaussianNoise
    >>> x = torch.randn(100, 2, 50) * torch.tensor([1.0, 100.0]).view(1, 2, 1)
    >>> noise = GaussianNoise(0.1)(x, torch.Generator().manual_seed(0)) - x
    >>> [round(float(r), 2) for r in noise.std(dim=(0, 2)) / x.std(dim=(0, 2))]
    [0.1, 0.1]
    """

    def __init__(self, scale=0.1):
        self.scale = scale

    def __call__(self, x, generator):
        if x.ndim == 2:
            spread = x.std(dim=0, unbiased=False, keepdim=True)
        elif x.ndim == 3:
            spread = x.std(dim=(0, 2), unbiased=False, keepdim=True)
        else:
            spread = x.std(unbiased=False)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return x + self.scale * spread * noise


class FeatureCorruption(Perturbation):
    """Replace a random subset of features by draws from their marginals.

    Each entry is replaced, with probability ``rate``, by the same feature
    of a random sample of the batch (SCARF, Bahri et al. 2022). Works on
    tabular batches of shape ``(n, n_features)``.

    Parameters
    ----------
    rate : float, default=0.3
        Probability that an entry is corrupted.
    """

    def __init__(self, rate=0.3):
        self.rate = rate

    def __call__(self, x, generator):
        n = x.shape[0]
        donors = torch.randint(n, x.shape, generator=generator, device=x.device)
        mask = torch.rand(x.shape, generator=generator, device=x.device) < self.rate
        return torch.where(mask, x.gather(0, donors), x)


class RandomAffine(Perturbation):
    """Random rotation, scaling, translation and shear of images.

    Parameters
    ----------
    rotation : float, default=15
        Maximum rotation in degrees; angles are uniform in ``[-rotation, rotation]``.
    scale : tuple of float, default=(0.9, 1.1)
        Range of the zoom factor.
    translation : float, default=0.1
        Maximum shift as a fraction of the image size, in each direction.
    shear : float, default=0
        Maximum shear angle in degrees.
    """

    def __init__(self, rotation=15, scale=(0.9, 1.1), translation=0.1, shear=0):
        self.rotation = rotation
        self.scale = scale
        self.translation = translation
        self.shear = shear

    def __call__(self, x, generator):
        n, device = x.shape[0], x.device
        angle = _uniform(n, -1, 1, generator, device) * math.radians(self.rotation)
        shear = _uniform(n, -1, 1, generator, device) * math.radians(self.shear)
        # theta maps output to input coordinates: dividing by the zoom enlarges.
        zoom = 1 / _uniform(n, self.scale[0], self.scale[1], generator, device)
        shift = _uniform(2 * n, -2, 2, generator, device).view(n, 2) * self.translation
        cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(shear)
        theta = torch.stack(
            [
                torch.stack([cos * zoom, (cos * tan - sin) * zoom, shift[:, 0]], 1),
                torch.stack([sin * zoom, (sin * tan + cos) * zoom, shift[:, 1]], 1),
            ],
            1,
        )
        return _warp(x, theta)


class RandomResizedCrop(Perturbation):
    """Crop a random square region and resize it back to the full image.

    Parameters
    ----------
    scale : tuple of float, default=(0.6, 1.0)
        Range of the crop's side length as a fraction of the image side.
    """

    def __init__(self, scale=(0.6, 1.0)):
        self.scale = scale

    def __call__(self, x, generator):
        n, device = x.shape[0], x.device
        side = _uniform(n, self.scale[0], self.scale[1], generator, device)
        # The crop centre may move as far as keeps the crop inside the image.
        centre = _uniform(2 * n, -1, 1, generator, device).view(n, 2) * (1 - side)[:, None]
        zero = torch.zeros_like(side)
        theta = torch.stack(
            [
                torch.stack([side, zero, centre[:, 0]], 1),
                torch.stack([zero, side, centre[:, 1]], 1),
            ],
            1,
        )
        return _warp(x, theta)


class IntensityJitter(Perturbation):
    """Random brightness and contrast changes, per image.

    Brightness multiplies all pixels by a factor in ``[1 - brightness,
    1 + brightness]``; contrast scales deviations from the image mean by a
    factor in ``[1 - contrast, 1 + contrast]``.

    Parameters
    ----------
    brightness : float, default=0.4
    contrast : float, default=0.4
    """

    def __init__(self, brightness=0.4, contrast=0.4):
        self.brightness = brightness
        self.contrast = contrast

    def __call__(self, x, generator):
        n, device = x.shape[0], x.device
        shape = (n,) + (1,) * (x.ndim - 1)
        gain = _uniform(n, 1 - self.brightness, 1 + self.brightness, generator, device)
        contrast = _uniform(n, 1 - self.contrast, 1 + self.contrast, generator, device)
        mean = x.mean(dim=tuple(range(1, x.ndim)), keepdim=True)
        x = (x - mean) * contrast.view(shape).to(x.dtype) + mean
        return x * gain.view(shape).to(x.dtype)


class Transform(Perturbation):
    """Use a one-argument batch transform as a perturbation.

    For transforms that take only the batch and draw their randomness from
    torch's global random number generator, such as kornia augmentations or
    a user's ``lambda x: ...``. :class:`~sklearn_iic.IICClustering` seeds
    torch's generator from ``random_state`` while it fits (and restores the
    caller's state afterwards), so such fits stay reproducible.

    Parameters
    ----------
    transform : callable
        Called as ``transform(x)`` on a batch on the training device; must
        return a tensor of the same shape.

    Examples
    --------
    >>> import torch
    >>> from sklearn_iic.perturbations import Transform
    >>> flip = Transform(lambda x: torch.flip(x, dims=[-1]))
    >>> flip(torch.arange(3.0).view(1, 1, 1, 3), None).tolist()
    [[[[2.0, 1.0, 0.0]]]]
    """

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, x, generator):
        return self.transform(x)


# -- series ----------------------------------------------------------------


def _resample(x, positions, interpolation="linear"):
    """Sample series ``x`` (n, c, length) at ``positions`` (n, m).

    Positions are in samples (0 is the first value, ``length - 1`` the last);
    the same positions serve every channel of a sample. Positions outside the
    series take the value at the nearest end. ``interpolation`` is "linear"
    or "nearest" (the value of the nearest sample: no blur).
    """
    if interpolation not in ("linear", "nearest"):
        raise ValueError(f"interpolation must be 'linear' or 'nearest'; got {interpolation!r}.")
    n, channels, length = x.shape
    positions = positions.to(x.dtype).clamp(0, length - 1)
    if interpolation == "nearest":
        positions = positions.round()
    low = positions.floor()
    frac = (positions - low).unsqueeze(1)
    low = low.long()
    high = (low + 1).clamp(max=length - 1)
    index = (n, channels, positions.shape[1])
    left = x.gather(2, low.unsqueeze(1).expand(index))
    right = x.gather(2, high.unsqueeze(1).expand(index))
    return left + frac * (right - left)


class RandomShift(Perturbation):
    """Shift each series in time by a random fraction of its length.

    Each series is moved by ``s * length`` samples, rounded to whole
    samples, with ``s`` uniform in ``[-max_shift, max_shift]``; all channels
    of a series move together. Whole-sample shifts keep every value as it
    is: sub-sample shifts interpolate, which blurs the series, and a network
    trained to ignore that blur ignores fine detail (whole-sample shifts
    measured better on mnist1d: the benchmarks page, "Series: pairs and
    perturbations").

    With ``mode="edge"`` the values shifted in repeat the first or last
    value, so the part of the series that stays in view keeps its shape and
    no new feature appears: the default, for series that do not wrap
    around. ``mode="circular"`` wraps the end around to the start, which
    keeps every value but joins the two ends with a jump unless the series
    is periodic; it suits series translated circularly, such as mnist1d's,
    on which it measured better than edge shifts (same section).

    Parameters
    ----------
    max_shift : float, default=0.1
        Largest shift, as a fraction of the length, in either direction.
    mode : {"edge", "circular"}, default="edge"
        How the samples shifted into view are filled.

    Examples
    --------
    >>> import torch
    >>> from sklearn_iic.perturbations import RandomShift
    >>> spikes = torch.zeros(8, 1, 20)
    >>> spikes[:, 0, 10] = 1.0  # the same spike in 8 series
    >>> moved = RandomShift(max_shift=0.25)(spikes, torch.Generator().manual_seed(0))
    >>> moved.shape
    torch.Size([8, 1, 20])
    >>> peaks = moved.argmax(dim=2).flatten()  # each series moved by its own shift
    >>> bool(((peaks - 10).abs() <= 5).all()), len(set(peaks.tolist())) > 1
    (True, True)
    """

    def __init__(self, max_shift=0.1, mode="edge"):
        self.max_shift = max_shift
        self.mode = mode

    def __call__(self, x, generator):
        if self.mode not in ("edge", "circular"):
            raise ValueError(f"mode must be 'edge' or 'circular'; got {self.mode!r}.")
        n, _, length = x.shape
        shift = _uniform(n, -self.max_shift, self.max_shift, generator, x.device) * length
        source = torch.arange(length, device=x.device) - shift.round().long()[:, None]
        if self.mode == "circular":
            source = torch.remainder(source, length)
        else:
            source = source.clamp(0, length - 1)
        return x.gather(2, source.unsqueeze(1).expand(x.shape))


class WindowSlice(Perturbation):
    """Crop a random window of each series and stretch it back to full length.

    The series counterpart of :class:`RandomResizedCrop` ("window slicing",
    Le Guennec et al. 2016): a window of ``w * length`` samples, with ``w``
    uniform in ``scale``, at a uniformly random place inside the series, is
    resampled to the original length. It both shifts and slightly slows
    down the series.

    Parameters
    ----------
    scale : tuple of float, default=(0.8, 1.0)
        Range of the window's length as a fraction of the series length.
    interpolation : {"linear", "nearest"}, default="linear"
        How the series is resampled: linear interpolation between samples,
        which slightly blurs it, or the nearest sample, which keeps every
        value (some samples are repeated, others dropped).

    Examples
    --------
    >>> import torch
    >>> from sklearn_iic.perturbations import WindowSlice
    >>> ramp = torch.linspace(0, 1, 11).view(1, 1, 11)
    >>> half = WindowSlice(scale=(0.5, 0.5))(ramp, torch.Generator().manual_seed(0))
    >>> half.shape, round(float(half[0, 0, -1] - half[0, 0, 0]), 3)
    (torch.Size([1, 1, 11]), 0.5)
    """

    def __init__(self, scale=(0.8, 1.0), interpolation="linear"):
        self.scale = scale
        self.interpolation = interpolation

    def __call__(self, x, generator):
        n, _, length = x.shape
        width = _uniform(n, self.scale[0], self.scale[1], generator, x.device).to(x.dtype)
        start = _uniform(n, 0, 1, generator, x.device).to(x.dtype) * (1 - width)
        # The window [start, start + width] of [0, 1], in samples.
        step = torch.linspace(0, 1, length, device=x.device, dtype=x.dtype)
        positions = (start[:, None] + width[:, None] * step) * (length - 1)
        return _resample(x, positions, self.interpolation)


class AmplitudeScale(Perturbation):
    """Multiply each series by a random gain.

    Parameters
    ----------
    scale : tuple of float, default=(0.8, 1.2)
        Range of the gain, drawn uniformly for each series.
    per_channel : bool, default=False
        Draw one gain for each channel of each series instead of one gain
        for all channels of a series. Works on any batch whose second axis
        holds channels.

    Examples
    --------
    >>> import torch
    >>> from sklearn_iic.perturbations import AmplitudeScale
    >>> x = torch.ones(3, 2, 5)
    >>> gain = AmplitudeScale((0.5, 2.0))(x, torch.Generator().manual_seed(0))
    >>> bool(((gain >= 0.5) & (gain <= 2.0)).all())
    True
    >>> bool((gain == gain[:, :1, :1]).all())  # one gain for the whole series
    True
    """

    def __init__(self, scale=(0.8, 1.2), per_channel=False):
        self.scale = scale
        self.per_channel = per_channel

    def __call__(self, x, generator):
        n = x.shape[0]
        channels = x.shape[1] if self.per_channel else 1
        gain = _uniform(n * channels, self.scale[0], self.scale[1], generator, x.device)
        shape = (n, channels) + (1,) * (x.ndim - 2)
        return x * gain.view(shape).to(x.dtype)


class TimeWarp(Perturbation):
    """Random monotone warping of the time axis.

    The series is cut into ``n_knots + 1`` equal segments; each is played at
    a random speed uniform in ``[1 - strength, 1 + strength]``. The warped
    time is the cumulative sum of these speeds, rescaled so that the first
    and last samples stay in place, and interpolated linearly between the
    knots; the series is then resampled at the warped times. Time never
    runs backwards, so the order of events is kept while their spacing
    changes (dynamic time warping's invariance). All channels of a series
    share the warp. On short series whose detail lies in single samples,
    prefer ``interpolation="nearest"``: on mnist1d (length 40) linear
    resampling cut IIC's accuracy, nearest did not (the benchmarks page,
    "Series: pairs and perturbations").

    Parameters
    ----------
    strength : float, default=0.2
        Largest relative change of the local speed, in ``[0, 1)``.
    n_knots : int, default=4
        Inner knots of the warp: more knots, more wiggly warps.
    interpolation : {"linear", "nearest"}, default="linear"
        How the series is resampled: linear interpolation between samples,
        which slightly blurs it, or the nearest sample, which keeps every
        value (some samples are repeated, others dropped).

    Examples
    --------
    >>> import torch
    >>> from sklearn_iic.perturbations import TimeWarp
    >>> ramp = torch.linspace(0, 1, 50).view(1, 1, 50)
    >>> warped = TimeWarp(strength=0.5)(ramp, torch.Generator().manual_seed(0))
    >>> bool((warped.diff() >= 0).all()), float(warped[0, 0, 0]), float(warped[0, 0, -1])
    (True, 0.0, 1.0)
    """

    def __init__(self, strength=0.2, n_knots=4, interpolation="linear"):
        self.strength = strength
        self.n_knots = n_knots
        self.interpolation = interpolation

    def __call__(self, x, generator):
        if not 0 <= self.strength < 1:
            raise ValueError(f"strength must lie in [0, 1); got {self.strength}.")
        n, _, length = x.shape
        segments = self.n_knots + 1
        speed = _uniform(
            n * segments, 1 - self.strength, 1 + self.strength, generator, x.device
        ).view(n, segments).to(x.dtype)
        knots = torch.cat([speed.new_zeros(n, 1), speed.cumsum(1)], dim=1)
        knots = knots / knots[:, -1:] * (length - 1)
        # Piecewise-linear warp through the knots, evaluated at every sample.
        positions = F.interpolate(knots[:, None], size=length, mode="linear", align_corners=True)
        return _resample(x, positions[:, 0], self.interpolation)


class LinearTrend(Perturbation):
    """Add a random straight line to each series (baseline drift).

    Each channel of each series gets the line ``a * (t - 1/2)``, ``t`` going
    from 0 to 1 over the series, with a slope ``a`` uniform in
    ``[-scale, scale]`` times the standard deviation of that channel across
    the batch and time, so the same ``scale`` fits series of any unit. All
    channels of a series share the draw of ``a / scale``.

    Parameters
    ----------
    scale : float, default=0.5
        Largest rise from start to end, relative to the spread of the data.

    Examples
    --------
    >>> import torch
    >>> from sklearn_iic.perturbations import LinearTrend
    >>> x = torch.randn(4, 1, 30)
    >>> drift = LinearTrend(0.5)(x, torch.Generator().manual_seed(0)) - x
    >>> bool((drift.diff(dim=2).std(dim=2) < 1e-5).all())  # straight lines
    True
    """

    def __init__(self, scale=0.5):
        self.scale = scale

    def __call__(self, x, generator):
        n, _, length = x.shape
        spread = x.std(dim=(0, 2), unbiased=False, keepdim=True)
        slope = _uniform(n, -self.scale, self.scale, generator, x.device).to(x.dtype)
        line = torch.linspace(-0.5, 0.5, length, device=x.device, dtype=x.dtype)
        return x + slope.view(n, 1, 1) * spread * line


def default_perturbation(*, kind="table"):
    """The perturbation that :class:`~sklearn_iic.IICClustering` uses with ``perturbation="auto"``.

    Parameters
    ----------
    kind : {"table", "image", "series"}, default="table"
        The kind of data: feature vectors get :class:`GaussianNoise` of a tenth
        of each feature's spread; images get a random affine map (rotation up
        to 15 degrees, zoom 0.9-1.1, shift up to a tenth of the side, shear up
        to 10 degrees), then brightness and contrast jitter and a little noise;
        series (standardised) get a circular shift by up to 40% of their
        length, a local time warp, amplitude scaling by 0.8-1.2, a linear trend
        and a little noise.

    Returns
    -------
    perturbation : Perturbation

    Examples
    --------
    >>> from sklearn_iic.perturbations import default_perturbation
    >>> default_perturbation(kind="table")
    GaussianNoise(scale=0.1)
    """
    if kind == "image":
        return Compose([
            RandomAffine(rotation=15, scale=(0.9, 1.1), translation=0.1, shear=10),
            IntensityJitter(brightness=0.3, contrast=0.3),
            GaussianNoise(0.05),
        ])
    if kind == "series":
        # Measured on mnist1d (docs/benchmarks.rst, "Series: pairs and
        # perturbations"): whole-sample circular shifts and nearest-sample
        # warps, which do not blur short series, beat interpolated ones; the
        # trend stands for mnist1d's shear.
        return Compose([
            RandomShift(0.4, mode="circular"),
            TimeWarp(0.2, interpolation="nearest"),
            AmplitudeScale((0.8, 1.2)),
            LinearTrend(2.0),
            GaussianNoise(0.1),
        ])
    if kind == "table":
        return GaussianNoise(0.1)
    raise ValueError(f"kind must be 'table', 'image' or 'series'; got {kind!r}.")
