import pytest
import torch

from sklearn_iic.perturbations import (
    Compose,
    FeatureCorruption,
    GaussianNoise,
    IntensityJitter,
    RandomAffine,
    RandomResizedCrop,
)

IMAGE_PERTURBATIONS = [
    RandomAffine(rotation=20, scale=(0.8, 1.2), translation=0.1, shear=10),
    RandomResizedCrop(scale=(0.5, 0.9)),
    IntensityJitter(0.4, 0.4),
    GaussianNoise(0.1),
]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def images():
    return torch.rand(16, 1, 12, 12, generator=gen(1))


@pytest.mark.parametrize("g", IMAGE_PERTURBATIONS, ids=repr)
def test_image_perturbations_shape_seed_and_per_sample_draws(images, g):
    out = g(images, gen(0))
    assert out.shape == images.shape and out.dtype == images.dtype
    assert torch.equal(out, g(images, gen(0)))
    assert not torch.equal(out, g(images, gen(1)))
    # The same image repeated gets a different draw in each row.
    same = images[:1].repeat(4, 1, 1, 1)
    perturbed = g(same, gen(0))
    assert not torch.allclose(perturbed[0], perturbed[1])


def test_identity_settings_leave_images_unchanged(images):
    still = RandomAffine(rotation=0, scale=(1, 1), translation=0, shear=0)
    torch.testing.assert_close(still(images, gen()), images, atol=1e-5, rtol=0)
    torch.testing.assert_close(RandomResizedCrop((1, 1))(images, gen()), images, atol=1e-5, rtol=0)
    torch.testing.assert_close(IntensityJitter(0, 0)(images, gen()), images)


def test_gaussian_noise_scales_with_the_data():
    x = torch.randn(2000, 3, generator=gen(2)) * torch.tensor([1.0, 10.0, 100.0])
    noise = GaussianNoise(0.1)(x, gen()) - x
    ratio = noise.std(0) / x.std(0)
    torch.testing.assert_close(ratio, torch.full((3,), 0.1), atol=0.01, rtol=0)


def test_feature_corruption_draws_from_the_column():
    x = torch.arange(40.0).view(10, 4)  # column j holds values = j mod 4
    out = FeatureCorruption(rate=1.0)(x, gen())
    assert torch.equal(out % 4, x % 4)
    assert not torch.equal(out, x)
    assert torch.equal(FeatureCorruption(rate=0.0)(x, gen()), x)
    corrupted = (FeatureCorruption(rate=0.3)(torch.randn(500, 20, generator=gen(3)), gen()) != 0)
    assert corrupted.all()


def test_compose_reprs_and_equality():
    g = Compose([RandomAffine(rotation=10), GaussianNoise(0.05)])
    assert repr(g).startswith("Compose(perturbations=(RandomAffine(rotation=10")
    assert g == Compose([RandomAffine(rotation=10), GaussianNoise(0.05)])
    assert g != Compose([RandomAffine(rotation=11), GaussianNoise(0.05)])
    x = torch.rand(4, 1, 8, 8)
    generator = gen()
    expected = GaussianNoise(0.05)(RandomAffine(rotation=10)(x, generator), generator)
    assert torch.equal(g(x, gen()), expected)


def test_transform_wraps_one_argument_callables_reproducibly():
    import numpy as np
    from sklearn.datasets import make_blobs

    from sklearn_iic import IICClustering
    from sklearn_iic.perturbations import Transform

    X, _ = make_blobs(60, n_features=4, centers=3, random_state=0)
    noise = Transform(lambda x: x + 0.1 * torch.randn_like(x))  # global torch RNG
    fits = [
        IICClustering(3, perturbation=noise, n_epochs=5, random_state=0).fit(X)
        for _ in range(2)
    ]
    np.testing.assert_array_equal(fits[0].labels_, fits[1].labels_)
    assert fits[0].loss_curve_ == fits[1].loss_curve_
