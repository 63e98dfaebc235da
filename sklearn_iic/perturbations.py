"""Random perturbations ``g`` that turn a batch ``x`` into its pair ``g(x)``.

A perturbation is any callable ``g(x, generator)`` that takes a batch tensor
on the training device and a :class:`torch.Generator` on that device, and
returns a perturbed batch of the same shape. Drawing all randomness from
``generator`` keeps fits reproducible. Every perturbation here draws its
parameters independently for each sample, in one batched operation on the
device.

Tabular batches have shape ``(n, n_features)``; image batches have shape
``(n, channels, height, width)``.
"""

import inspect
import math

import torch
import torch.nn.functional as F

__all__ = [
    "Compose",
    "FeatureCorruption",
    "GaussianNoise",
    "IntensityJitter",
    "Perturbation",
    "RandomAffine",
    "RandomResizedCrop",
    "Transform",
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
    of each feature across the batch (tabular input), or of all pixel values
    of the batch (image input), so the same ``scale`` fits data of any unit.

    Parameters
    ----------
    scale : float, default=0.1
        Noise level relative to the spread of the data.
    """

    def __init__(self, scale=0.1):
        self.scale = scale

    def __call__(self, x, generator):
        if x.ndim == 2:
            spread = x.std(dim=0, unbiased=False, keepdim=True)
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


def default_perturbation(*, kind="table"):
    """The perturbation that :class:`~sklearn_iic.IICClustering` uses with ``perturbation="auto"``.

    Parameters
    ----------
    kind : {"table", "image"}, default="table"
        The kind of data: feature vectors get :class:`GaussianNoise` of a tenth
        of each feature's spread; images get a random affine map (rotation up
        to 15 degrees, zoom 0.9-1.1, shift up to a tenth of the side, shear up
        to 10 degrees), then brightness and contrast jitter and a little noise.

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
    if kind == "table":
        return GaussianNoise(0.1)
    raise ValueError(f"kind must be 'table' or 'image'; got {kind!r}.")
