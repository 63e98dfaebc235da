import pytest
import torch
from torch import nn

from sklearn_iic import MLP, ConvNet
from sklearn_iic._networks import build_network, default_network


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 96, 96), (1, 20, 12)])
def test_default_convnet_is_sized_from_the_image(shape):
    net = ConvNet(shape, 7).eval()
    assert net(torch.zeros(2, *shape)).shape == (2, 7)


def test_default_network_by_input_shape():
    assert isinstance(default_network(5, 3), MLP)
    assert isinstance(default_network((1, 8, 8), 3), ConvNet)


def test_build_network_from_class_factory_and_instance():
    probe = torch.randn(3, 4)
    assert isinstance(build_network(None, 4, 6, probe), MLP)
    built = build_network(lambda d, k: nn.Linear(d, k), 4, 6, probe)
    assert isinstance(built, nn.Linear) and not built.training
    instance = nn.Linear(4, 6)
    copy = build_network(instance, 4, 6, probe)
    assert copy is not instance and torch.equal(copy.weight, instance.weight)


class Returns(nn.Module):
    """A network whose output is ``make(x)``: the malformed outputs users write."""

    def __init__(self, make):
        super().__init__()
        self.layer = nn.Linear(4, 6)
        self.make = make

    def forward(self, x):
        return self.make(self.layer(x))


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda out: (out, out), TypeError, "returned tuple; expected a float32 tensor of shape"),
        (lambda out: out.detach().numpy(), TypeError, "returned ndarray"),
        (lambda out: out.double(), ValueError, "dtype float64; expected a float32"),
        (lambda out: out.long(), ValueError, "dtype int64"),
        (lambda out: out[:2], ValueError, r"shape \(2, 6\); expected .* shape \(3, 6\)"),
        (lambda out: out.reshape(2, -1), ValueError, r"must output 6 logits.*shape \(2, 9\)"),
        (lambda out: out.view(3, 2, 3)[:, 0, 5], ValueError, "network failed on a batch of shape"),
        (lambda out: out * float("inf"), ValueError, "NaN or infinite"),
        (lambda out: out[:, :5], ValueError, "must output 6 logits"),
    ],
)
def test_build_network_checks_the_output(make, error, match):
    with pytest.raises(error, match=match):
        build_network(Returns(make), 4, 6, torch.randn(3, 4))


def test_build_network_needs_trainable_parameters():
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_network(nn.Identity(), 4, 4, torch.randn(3, 4))
    with pytest.raises(TypeError, match="must build a torch.nn.Module"):
        build_network(lambda d, k: "nope", 4, 6, torch.randn(3, 4))
