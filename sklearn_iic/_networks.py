"""Default networks: an MLP for feature vectors, convnets for series and images.

A network maps a batch to ``n_outputs`` logits. The estimator builds one with
``factory(input_shape, n_outputs)``, where ``input_shape`` is the number of
features for tabular data, ``(channels, length)`` for series or
``(channels, height, width)`` for images, and
splits the logits into its cluster heads, so the last layer acts as a set of
linear heads on a shared trunk.
"""

import copy

import torch
from torch import nn

from ._checks import check_tensor


class MLP(nn.Sequential):
    """Multi-layer perceptron with BatchNorm and ReLU.

    Each hidden layer is normalised, so a common rescaling of all features
    does not change the output. :class:`~sklearn_iic.IICClustering` feeds it
    standardised, whitened features by default; with ``whiten=False``,
    features of very different scales should be standardised first.

    Parameters
    ----------
    n_features : int
        Width of the input.
    n_outputs : int
        Number of output logits.
    hidden_layer_sizes : tuple of int, default=(256, 256)
        Width of each hidden layer.
    """

    def __init__(self, n_features, n_outputs, hidden_layer_sizes=(256, 256)):
        layers = []
        width = n_features
        for size in hidden_layer_sizes:
            layers += [nn.Linear(width, size), nn.BatchNorm1d(size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, n_outputs))
        super().__init__(*layers)

    def hidden_features(self, x):
        """The last hidden layer's output for the batch ``x``, as a training step computes it.

        Each BatchNorm normalises by the batch's own statistics, as in
        training mode, but its running statistics are left as they are.
        """
        for layer in list(self)[:-1]:
            if isinstance(layer, nn.BatchNorm1d):
                x = nn.functional.batch_norm(x, None, None, layer.weight, layer.bias,
                                             training=True, eps=layer.eps)
            else:
                x = layer(x)
        return x


class ConvNet(nn.Sequential):
    """VGG-style convolutional network sized from the image.

    Blocks of 3x3 convolution, BatchNorm and ReLU, each followed by 2x2
    max-pooling until the feature map is at most 4 pixels wide; the channel
    count doubles after each pooling up to ``max_channels``. A linear layer
    maps the flattened features to the logits. Every convolution is followed
    by BatchNorm, so pixel values in [0, 1] or [0, 255] work alike, and has
    no bias, which BatchNorm would cancel. It flattens with
    :class:`torch.nn.Flatten`, so it runs in any memory layout; fitted on
    the CPU it keeps its weights channels-last.

    Parameters
    ----------
    input_shape : tuple of int
        ``(channels, height, width)`` of the images.
    n_outputs : int
        Number of output logits.
    channels : int, default=32
        Channels of the first convolution.
    max_channels : int, default=128
        Upper bound on the channels of later convolutions.
    """

    def __init__(self, input_shape, n_outputs, channels=32, max_channels=128):
        in_channels, height, width = input_shape
        layers = []
        size = min(height, width)
        while True:
            # No bias: BatchNorm subtracts it, so its gradient is rounding
            # noise, in which Adam still steps by up to a learning rate. On
            # channels-last weights that noise differed between one process
            # and two ranks, and so did the probabilities (docs/scaling.rst,
            # data-parallel training). The MLP and ConvNet1d keep theirs:
            # dropping them would change every table and series result,
            # which were not rerun.
            layers += [
                nn.Conv2d(in_channels, channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(),
            ]
            in_channels = channels
            if size <= 4:
                break
            layers.append(nn.MaxPool2d(2))
            height, width, size = height // 2, width // 2, size // 2
            channels = min(2 * channels, max_channels)
        layers += [nn.Flatten(), nn.Linear(in_channels * height * width, n_outputs)]
        super().__init__(*layers)


class GlobalPool1d(nn.Module):
    """Pool a batch of shape ``(n, channels, length)`` over time to ``(n, k * channels)``.

    Any trailing dimensions are pooled together: ``(n, channels, 1, length)`` as well.

    Parameters
    ----------
    mode : {"max", "avg", "maxavg"}, default="maxavg"
        The maximum over time, the mean, or both concatenated (``k = 2``).
    """

    def __init__(self, mode="maxavg"):
        super().__init__()
        if mode not in ("max", "avg", "maxavg"):
            raise ValueError(f"mode must be 'max', 'avg' or 'maxavg'; got {mode!r}.")
        self.mode = mode

    def forward(self, x):
        x = x.flatten(2)
        pooled = []
        if "max" in self.mode:
            pooled.append(x.amax(dim=2))
        if "avg" in self.mode:
            pooled.append(x.mean(dim=2))
        return torch.cat(pooled, dim=1)

    def extra_repr(self):
        return f"mode={self.mode!r}"


class ConvNet1d(nn.Sequential):
    """Convolutional network for series, sized from their length.

    Blocks of 1-D convolution (``kernel_size`` wide, zero-padded to keep the
    length), BatchNorm and ReLU, each followed by max-pooling by 2 until the
    series is at most ``min_length`` samples long (or ``n_blocks`` blocks
    are built); the channel count doubles after each pooling up to
    ``max_channels``. The features are then pooled over the whole remaining
    time axis (``global_pool``), so a pattern is recognised wherever it
    occurs: the output changes little when the series is shifted. A linear
    layer maps them to the logits. Series longer than ``max_length`` are
    first averaged over windows of ``ceil(length / max_length)`` samples, so
    that no series costs more than one of about ``max_length`` samples: a
    length of 16 gets 2 blocks, 40 gets 4, 128 gets 5, and 427 is averaged
    down to 106, which gets 5. Every convolution is followed by BatchNorm,
    so any scale of the input works, though z-normalised series are usual.

    The series run as images one sample high: each convolution is a 2-D one
    of a ``1 x kernel_size`` window, which oneDNN trains faster than a 1-D
    convolution once the weights are channels-last, as the estimator keeps
    them on the CPU (docs/benchmarks.rst, "Cheaper steps: design and cost").
    What it computes is a 1-D convolution.

    Parameters
    ----------
    input_shape : tuple of int
        ``(channels, length)`` of the series.
    n_outputs : int
        Number of output logits.
    channels : int, default=32
        Channels of the first convolution.
    max_channels : int, default=128
        Upper bound on the channels of later convolutions.
    kernel_size : int, default=5
        Width of the convolutions (odd widths keep the series centred).
    min_length : int, default=8
        Pooling stops once the series is this short.
    n_blocks : int or None, default=None
        Number of convolution blocks; ``None`` pools down to ``min_length``.
    max_length : int or None, default=128
        Longer series are averaged over windows down to at most this many
        samples before the first convolution; ``None`` keeps every sample.
        OSULeaf's 427 samples averaged by 4 trained several times faster and
        clustered no worse (docs/benchmarks.rst, "Cheaper steps: design and cost").
    global_pool : {"max", "avg", "maxavg"}, default="maxavg"
        Pooling over time before the linear layer: maximum, mean, or both.
    padding_mode : {"zeros", "circular", "replicate", "reflect"}, default="zeros"
        How the convolutions pad the ends of the series; ``"circular"``
        suits series whose end wraps around to their start.

    Examples
    --------
    >>> import torch
    >>> from sklearn_iic import ConvNet1d
    >>> net = ConvNet1d((3, 100), n_outputs=10).eval()
    >>> net(torch.randn(4, 3, 100)).shape
    torch.Size([4, 10])
    """

    def __init__(
        self,
        input_shape,
        n_outputs,
        channels=32,
        max_channels=128,
        kernel_size=5,
        min_length=8,
        n_blocks=None,
        global_pool="maxavg",
        padding_mode="zeros",
        max_length=128,
    ):
        in_channels, length = input_shape
        layers = [nn.Unflatten(1, (in_channels, 1))]
        if max_length is not None and length > max_length:
            window = -(-length // max_length)
            layers.append(nn.AvgPool2d((1, window)))
            length //= window
        blocks = 0
        while True:
            layers += [
                nn.Conv2d(
                    in_channels, channels, (1, kernel_size),
                    padding=(0, kernel_size // 2), padding_mode=padding_mode,
                ),
                nn.BatchNorm2d(channels),
                nn.ReLU(),
            ]
            in_channels = channels
            blocks += 1
            done = length <= min_length if n_blocks is None else blocks >= n_blocks
            if done or length < 2:
                break
            layers.append(nn.MaxPool2d((1, 2)))
            length //= 2
            channels = min(2 * channels, max_channels)
        pool = GlobalPool1d(global_pool)
        width = in_channels * (2 if global_pool == "maxavg" else 1)
        layers += [pool, nn.Linear(width, n_outputs)]
        super().__init__(*layers)


def default_network(input_shape, n_outputs):
    """Build the default network.

    :class:`MLP` for feature vectors (``input_shape`` an int),
    :class:`ConvNet1d` for series (``(channels, length)``) and
    :class:`ConvNet` for images (``(channels, height, width)``).
    """
    if isinstance(input_shape, int):
        return MLP(input_shape, n_outputs)
    if len(input_shape) == 2:
        return ConvNet1d(tuple(input_shape), n_outputs)
    return ConvNet(input_shape, n_outputs)


class Branches(nn.Module):
    """Two networks side by side on the same input; their logits are concatenated.

    Each head is a linear map of one trunk only, so a loss on the second
    network's logits trains the second network alone.
    """

    def __init__(self, first, second):
        super().__init__()
        self.first, self.second = first, second

    def forward(self, x):
        return torch.cat([self.first(x), self.second(x)], dim=1)


def _default_cluster_network(n_features, n_outputs):
    # One hidden layer: cheaper than the default two, and better on separated
    # blobs in 50 dimensions (docs/benchmarks.rst, "Cluster heads: design and cost").
    return MLP(n_features, n_outputs, hidden_layer_sizes=(256,))


def convnet_memory_format(network, batch):
    """Layout of ``network``'s weights when fed ``batch``: channels-last for our CPU convnets.

    oneDNN's convolutions train faster on channels-last weights: images no
    slower on small ones (docs/benchmarks/speed.md, "Images rerun";
    docs/benchmarks.rst, "Threads, layout and the neighbour search"), and
    :class:`ConvNet1d`'s one-sample-high images faster (docs/benchmarks.rst,
    "Cheaper steps: design and cost"). Only the layout changes, not what the
    network computes. Only :class:`ConvNet` and :class:`ConvNet1d` themselves,
    however given: other modules are trained in the layout they come in, as
    their forward may assume it (``x.view(n, -1)`` fails on channels-last
    activations). GPUs keep torch's default layout: unmeasured there.
    """
    if type(network) in (ConvNet, ConvNet1d) and batch.device.type == "cpu":
        return torch.channels_last
    return torch.preserve_format


def build_network(network, input_shape, n_outputs, probe, n_cluster_outputs=0):
    """The network to train, on ``probe``'s device in eval mode, checked on the ``probe`` rows.

    ``network`` is the estimator's parameter: ``None`` (the default network),
    a class or factory called as ``network(input_shape, n_outputs)``, or a
    module instance, which is deep-copied and never trained in place. With
    ``n_cluster_outputs``, the factory builds two networks, the first for
    the other heads and then one for the last ``n_cluster_outputs`` logits
    (the cluster heads), run side by side as :class:`Branches`: each head
    trains its own trunk. The default network's cluster heads get an MLP of
    one hidden layer.
    """
    if n_cluster_outputs:
        first = n_outputs - n_cluster_outputs
        second = _default_cluster_network if network is None else network
        return Branches(build_network(network, input_shape, first, probe),
                        build_network(second, input_shape, n_cluster_outputs, probe)).eval()
    if isinstance(network, nn.Module):
        network = copy.deepcopy(network)
    else:
        factory = default_network if network is None else network
        network = factory(input_shape, n_outputs)
        if not isinstance(network, nn.Module):
            raise TypeError(
                f"network must build a torch.nn.Module; {factory!r} returned "
                f"{type(network).__name__}."
            )
    if not any(p.requires_grad for p in network.parameters()):
        raise ValueError(f"The network {type(network).__name__} has no trainable parameters.")
    layout = convnet_memory_format(network, probe)
    network = network.to(probe.device, memory_format=layout).eval()
    try:
        with torch.no_grad():
            out = network(probe)
    except Exception as exc:
        raise ValueError(
            f"The network failed on a batch of shape {tuple(probe.shape)}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if isinstance(out, torch.Tensor) and out.ndim == 2 and out.shape[1] != n_outputs:
        raise ValueError(
            f"The network must output {n_outputs} logits per sample; it returned "
            f"shape {tuple(out.shape)}. The logits hold n_subheads heads of "
            "n_microclusters_ clusters (n_clusters when none are merged; twice as many "
            "with size_prior='learned'), then the overclustering heads: a network with "
            "n_clusters outputs needs n_microclusters=None, n_subheads=1, "
            "overclustering=0 and size_prior='equal' or 'auto'."
        )
    check_tensor(out, who="The network", shape=(probe.shape[0], n_outputs),
                 dtype=probe.dtype, device=probe.device)
    return network


def run_in_training_mode(network, probe):
    """Run ``network`` on ``probe`` in training mode, leaving its buffers and mode as they were.

    Tells whether training draws random numbers (dropout), which a forward
    pass in eval mode does not.
    """
    buffers = [buffer.clone() for buffer in network.buffers()]
    network.train()
    try:
        with torch.no_grad():
            network(probe)
    except Exception as exc:
        raise ValueError(
            f"The network failed in training mode on a batch of shape {tuple(probe.shape)}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    finally:
        network.eval()
        with torch.no_grad():
            for buffer, saved in zip(network.buffers(), buffers):
                buffer.copy_(saved)
