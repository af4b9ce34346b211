"""Conv-2, Conv-4 and Conv-6: the small VGG-like CIFAR-10 networks of Frankle & Carbin 2019 (Fig. 2).

3x3 convolutions with padding 1 and ReLU, 2x2 max-pooling after each pair, then fully connected layers
256, 256 and the output (ReLU between). Gaussian Glorot init, biases zero.

=======  ===========================================  ==========================
model    convolutions                                 weights on (3, 32, 32), 10
=======  ===========================================  ==========================
conv2    64, 64, pool                                 4,300,992
conv4    64, 64, pool, 128, 128, pool                 2,425,024
conv6    64, 64, pool, 128, 128, pool, 256, 256, pool 2,261,184
=======  ===========================================  ==========================

Small inputs: a pool is skipped when the feature map is already smaller than 2 in height or width, so
(1, 8, 8), (1, 28, 28) or even (1, 1, 1) work; the flatten size follows from `input_shape`.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from ticketlab.models import _checks
from ticketlab.models._registry import register_model
from ticketlab.models.init import init_weights

POOL = "M"
PLANS: dict[str, tuple[int | str, ...]] = {
    "conv2": (64, 64, POOL),
    "conv4": (64, 64, POOL, 128, 128, POOL),
    "conv6": (64, 64, POOL, 128, 128, POOL, 256, 256, POOL),
}


def conv_stack(plan, channels: int, size: list[int], *, width: int = 64, batchnorm: bool = False):
    """The 3x3 conv part of Conv-N and VGG: ``conv{i}`` [-> ``bn{i}``] -> ReLU per width in `plan`,
    a 2x2 max-pool at each "M" (skipped once the map is below 2x2, so small inputs work).
    Widths scale by `width` / 64. Returns (layers, out_channels, out_size, n_conv)."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    n_conv = n_pool = 0
    for spec in plan:
        if spec == POOL:
            n_pool += 1
            if min(size) >= 2:
                layers[f"pool{n_pool}"] = nn.MaxPool2d(2)
                size = [s // 2 for s in size]
            continue
        n_conv += 1
        out = max(1, int(spec) * width // 64)
        layers[f"conv{n_conv}"] = nn.Conv2d(channels, out, 3, padding=1)
        if batchnorm:
            layers[f"bn{n_conv}"] = nn.BatchNorm2d(out)
        layers[f"relu{n_conv}"] = nn.ReLU()
        channels = out
    return layers, channels, size, n_conv


class ConvNet(nn.Sequential):
    """Conv-N: layers ``conv1`` .. ``convN``, then ``fc1`` 256, ``fc2`` 256, ``fc3`` (output).

    `plan` lists conv widths and "M" for a 2x2 max-pool. `dropout` (default 0) is applied after the
    two hidden FC activations (the LTH dropout experiments, §4 of the paper).
    """

    default_init = "glorot_normal"
    norm_init = "ones"

    def __init__(
        self,
        plan: tuple[int | str, ...],
        input_shape: tuple[int, ...],
        num_classes: int,
        dropout: float = 0.0,
        name: str = "convnet",
    ) -> None:
        c, h, w = _checks.image_shape(input_shape, name)
        num_classes = _checks.positive_int(num_classes, "num_classes")
        dropout = _checks.probability(dropout, "dropout")

        layers, channels, size, n_conv = conv_stack(plan, c, [h, w])
        layers["flatten"] = nn.Flatten(1)
        sizes = [channels * size[0] * size[1], 256, 256, num_classes]
        for i in range(1, len(sizes)):
            layers[f"fc{i}"] = nn.Linear(sizes[i - 1], sizes[i])
            if i < len(sizes) - 1:
                layers[f"relu{n_conv + i}"] = nn.ReLU()
                if dropout > 0:
                    layers[f"drop{i}"] = nn.Dropout(dropout)
        super().__init__(layers)
        self.input_shape = (c, h, w)
        self.num_classes = num_classes
        self.output_layer = "fc3.weight"
        init_weights(self, self.default_init)


@register_model
def conv2(*, input_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0) -> ConvNet:
    """Conv-2 (LTH Fig. 2): conv 64, 64, pool; fc 256, 256, out. 4,300,992 weights on CIFAR-10."""
    return ConvNet(PLANS["conv2"], input_shape, num_classes, dropout=dropout, name="conv2")


@register_model
def conv4(*, input_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0) -> ConvNet:
    """Conv-4 (LTH Fig. 2): conv 64, 64, pool, 128, 128, pool; fc 256, 256, out."""
    return ConvNet(PLANS["conv4"], input_shape, num_classes, dropout=dropout, name="conv4")


@register_model
def conv6(*, input_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0) -> ConvNet:
    """Conv-6 (LTH Fig. 2): conv 64, 64, pool, 128, 128, pool, 256, 256, pool; fc 256, 256, out."""
    return ConvNet(PLANS["conv6"], input_shape, num_classes, dropout=dropout, name="conv6")
