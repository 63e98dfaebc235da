import pytest
import torch

from sklearn_iic._checks import check_perturbation, check_tensor
from sklearn_iic.perturbations import GaussianNoise, Transform


def test_check_tensor_accepts_the_expected_tensor():
    check_tensor(torch.zeros(2, 3), who="g", shape=(2, 3), dtype=torch.float32,
                 device=torch.device("cpu"))


@pytest.mark.parametrize(
    "perturbation, error, match",
    [
        (lambda x, g: x.numpy(), TypeError, "returned ndarray"),
        (lambda x, g: None, TypeError, "returned NoneType"),
        (lambda x, g: x.tolist(), TypeError, "returned list"),
        (lambda x, g: x.double(), ValueError, "dtype float64"),
        (lambda x, g: x[:, :2], ValueError, r"shape \(3, 2\)"),
        (lambda x, g: x[:, None], ValueError, r"shape \(3, 1, 4\)"),
        (lambda x, g: x / 0, ValueError, "NaN or infinite"),
        (lambda x, g: x @ torch.ones(3), ValueError, "failed on a batch of shape"),
        (lambda x: x, TypeError, "must accept \\(x, generator\\).*perturbations.Transform"),
    ],
)
def test_malformed_perturbations_are_named(perturbation, error, match):
    with pytest.raises(error, match=match) as info:
        check_perturbation(perturbation, torch.randn(3, 4))
    assert "perturbation" in str(info.value)


def test_checking_changes_no_random_state():
    probe = torch.randn(3, 4)
    before = torch.get_rng_state()
    check_perturbation(Transform(lambda x: x + torch.randn(x.shape)), probe)
    check_perturbation(GaussianNoise(), probe)
    assert torch.equal(before, torch.get_rng_state())
