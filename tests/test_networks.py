import pytest
import torch
from torch import nn

from sklearn_iic import MLP, ConvNet, ConvNet1d
from sklearn_iic._networks import build_network, convnet_memory_format, default_network


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 96, 96), (1, 20, 12)])
def test_default_convnet_is_sized_from_the_image(shape):
    net = ConvNet(shape, 7).eval()
    assert net(torch.zeros(2, *shape)).shape == (2, 7)


def test_convnet_convolutions_feed_batch_norm_without_bias():
    net = ConvNet((1, 28, 28), 5)
    convs = [m for m in net if isinstance(m, nn.Conv2d)]
    assert len(convs) == 4 and all(c.bias is None for c in convs)
    assert net[-1].bias is not None  # the logits keep theirs


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


def test_image_networks_take_the_channels_last_layout_on_the_cpu():
    images = torch.rand(5, 3, 12, 12)
    net = build_network(None, (3, 12, 12), 4, images)
    conv = net[4].weight  # 32 -> 64 channels
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    # Only the layout changes: the same weights in torch's default layout agree.
    plain = ConvNet((3, 12, 12), 4).eval()
    plain.load_state_dict(net.state_dict())
    assert plain[4].weight.is_contiguous()
    with torch.no_grad():
        torch.testing.assert_close(net(images), plain(images), rtol=1e-4, atol=1e-5)
    # However the ConvNet is given.
    for given in (ConvNet, ConvNet((3, 12, 12), 4)):
        assert build_network(given, (3, 12, 12), 4, images)[4].weight.is_contiguous(
            memory_format=torch.channels_last
        )


def test_channels_last_only_for_our_convnets_on_the_cpu():
    images, series = torch.empty(2, 3, 8, 8), torch.empty(2, 3, 40)
    image_net, series_net = ConvNet((3, 8, 8), 4), ConvNet1d((3, 40), 4)
    assert convnet_memory_format(image_net, images) is torch.channels_last
    assert convnet_memory_format(series_net, series) is torch.channels_last
    # Another device (meta stands in for a GPU), tables and other modules keep torch's layout.
    meta = torch.empty(2, 3, 8, 8, device="meta")
    assert convnet_memory_format(image_net, meta) is torch.preserve_format
    assert convnet_memory_format(MLP(6, 4), torch.empty(2, 6)) is torch.preserve_format
    assert convnet_memory_format(ViewFlatten((3, 8, 8), 4), images) is torch.preserve_format


def test_series_convnet_computes_1d_convolutions():
    # Its 1 x k convolutions, channels-last on the CPU, are the 1-D
    # convolutions of the same weights.
    series = torch.randn(5, 2, 30, generator=torch.Generator().manual_seed(0))
    net = build_network(ConvNet1d, (2, 30), 4, series)
    conv, bn = net[1], net[2]
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = torch.nn.functional.conv1d(series, conv.weight.squeeze(2), conv.bias,
                                              padding=2)
        torch.testing.assert_close(conv(net[0](series)).squeeze(2), expected,
                                   rtol=1e-4, atol=1e-5)
    assert net(series).shape == (5, 4) and bn.num_features == 32


class ViewFlatten(nn.Module):
    """A user's convnet whose forward assumes torch's default layout (``view``)."""

    def __init__(self, input_shape, n_outputs):
        super().__init__()
        self.conv = nn.Conv2d(input_shape[0], 8, 3, padding=1)
        self.linear = nn.Linear(8 * input_shape[1] * input_shape[2], n_outputs)

    def forward(self, x):
        h = self.conv(x)
        return self.linear(h.view(h.shape[0], -1))


def test_user_networks_keep_their_layout():
    images = torch.rand(5, 3, 12, 12)
    for given in (ViewFlatten, ViewFlatten((3, 12, 12), 4)):
        net = build_network(given, (3, 12, 12), 4, images)
        assert net.conv.weight.is_contiguous()
        assert net(images).shape == (5, 4)


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
