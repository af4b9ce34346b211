"""CIFAR VGG-11/16/19 (Simonyan & Zisserman 2015, configurations A, D, E) in open_lth's ``cifar_vgg``
form, as used for VGG-19 by Frankle & Carbin 2019 (Fig. 2, §4).

Every 3x3 conv (padding 1, with bias) is followed by BatchNorm and ReLU; 2x2 max-pools sit between the
stages; the head is a global average pool and one linear layer ``fc`` (no 4096-wide FC layers). On
(3, 32, 32) the four pools leave 2x2, which open_lth averages with ``AvgPool2d(2)``; the global average
pool used here is identical there and also works for other input sizes. VGG-19 has 20,024,000 weights on
CIFAR-10 (LTH Fig. 2: "20.0M").

Small inputs: a pool is skipped when the feature map is already smaller than 2 in height or width, so
inputs below 32x32 (down to 1x1) work. ``width`` (default 64) scales every conv width by ``width/64``
for fast test variants. Default init (open_lth): Kaiming normal (fan_in) conv/linear weights, biases
zero, BatchNorm gamma ~ U[0, 1] and beta = 0.
"""

from __future__ import annotations

from torch import nn

from ticketlab.models import _checks
from ticketlab.models._registry import register_model
from ticketlab.models.conv import POOL, conv_stack
from ticketlab.models.init import init_weights
PLANS: dict[str, tuple[int | str, ...]] = {
    "vgg11": (64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512),
    "vgg16": (64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512),
    "vgg19": (
        64, 64, POOL, 128, 128, POOL, 256, 256, 256, 256, POOL,
        512, 512, 512, 512, POOL, 512, 512, 512, 512,
    ),
}


class VGG(nn.Sequential):
    """CIFAR VGG: ``conv{i}`` -> ``bn{i}`` -> ReLU per entry of `plan`, pools at "M", then
    global average pool -> ``fc`` (output layer)."""

    default_init = "kaiming_normal"
    norm_init = "uniform"

    def __init__(
        self,
        plan: tuple[int | str, ...],
        input_shape: tuple[int, ...],
        num_classes: int,
        width: int = 64,
        name: str = "vgg",
    ) -> None:
        c, h, w = _checks.image_shape(input_shape, name)
        num_classes = _checks.positive_int(num_classes, "num_classes")
        width = _checks.positive_int(width, "width")

        layers, channels, _, _ = conv_stack(plan, c, [h, w], width=width, batchnorm=True)
        layers["avgpool"] = nn.AdaptiveAvgPool2d(1)
        layers["flatten"] = nn.Flatten(1)
        layers["fc"] = nn.Linear(channels, num_classes)
        super().__init__(layers)
        self.input_shape = (c, h, w)
        self.num_classes = num_classes
        self.output_layer = "fc.weight"
        init_weights(self, self.default_init)


@register_model
def vgg11(*, input_shape: tuple[int, ...], num_classes: int, width: int = 64) -> VGG:
    """VGG-11 (config A), CIFAR form: 8 conv+BN layers, global average pool, ``fc``."""
    return VGG(PLANS["vgg11"], input_shape, num_classes, width=width, name="vgg11")


@register_model
def vgg16(*, input_shape: tuple[int, ...], num_classes: int, width: int = 64) -> VGG:
    """VGG-16 (config D), CIFAR form: 13 conv+BN layers, global average pool, ``fc``."""
    return VGG(PLANS["vgg16"], input_shape, num_classes, width=width, name="vgg16")


@register_model
def vgg19(*, input_shape: tuple[int, ...], num_classes: int, width: int = 64) -> VGG:
    """VGG-19 (config E), CIFAR form: 16 conv+BN layers, global average pool, ``fc``.

    20,024,000 prunable weights on (3, 32, 32) with 10 classes.
    """
    return VGG(PLANS["vgg19"], input_shape, num_classes, width=width, name="vgg19")
