"""LeNet-300-100 and LeNet-5, the MNIST networks of the lottery-ticket and sparse-training papers.

- LeNet-300-100: the fully connected network of LeCun et al. 1998 as used by Frankle & Carbin 2019
  (Fig. 2): 784-300-100-10, ReLU, Gaussian Glorot init.
- LeNet-5: the convolutional network of LeCun et al. 1998, in the Caffe layout that the sparse-training
  literature (and the ERK table of ``docs/sparse_training.md`` §8) uses: conv 20 -> conv 50 -> fc 500 -> out.
  The original LeCun shapes (6 and 16 channels, padded first conv, fc 120 and 84) are one set of
  options away: ``channels=(6, 16), fc_widths=(120, 84), conv1_padding=2``.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from ticketlab.core.errors import ConfigError
from ticketlab.models import _checks
from ticketlab.models._registry import register_model
from ticketlab.models.init import init_weights
from ticketlab.models.mlp import MLP


class LeNet5(nn.Sequential):
    """LeNet-5. Default layout (Caffe LeNet; 430,500 weights on (1, 28, 28) with 10 classes)::

        conv1  Conv2d(C, 20, 5x5, padding 0) -> ReLU -> MaxPool 2x2
        conv2  Conv2d(20, 50, 5x5)           -> ReLU -> MaxPool 2x2
        fc1    Linear(50*h*w, 500)           -> ReLU       (h*w = 4*4 on 28x28, 5*5 on 32x32)
        fc2    Linear(500, num_classes)                    (output layer)

    These are exactly the shapes of the LeNet-5 ERK worked table in ``docs/sparse_training.md`` §8
    (conv1 500, conv2 25,000, fc1 400,000, fc2 5,000 weights), so ERK tests can use this model as is.
    `channels`, `fc_widths` (hidden FC widths; layers ``fc1`` .. ``fc{len+1}``) and `conv1_padding`
    change the layout; the flatten size is computed from `input_shape`. Default init: Gaussian Glorot.
    """

    default_init = "glorot_normal"
    norm_init = "ones"

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        channels: tuple[int, ...] = (20, 50),
        fc_widths: tuple[int, ...] = (500,),
        conv1_padding: int = 0,
    ) -> None:
        c, h, w = _checks.image_shape(input_shape, "lenet5")
        num_classes = _checks.positive_int(num_classes, "num_classes")
        channels = _checks.int_tuple(channels, "channels")
        if len(channels) != 2:
            raise ConfigError(f"lenet5 channels must be two integers, got {channels!r}")
        fc_widths = _checks.int_tuple(fc_widths, "fc_widths")
        padding = _checks.as_int(conv1_padding)
        if padding is None or padding < 0:
            raise ConfigError(f"conv1_padding must be a non-negative integer, got {conv1_padding!r}")
        conv1_padding = padding

        # Spatial size through conv(5) -> pool(2) -> conv(5) -> pool(2).
        hw = [h, w]
        for pad in (conv1_padding, 0):
            hw = [_checks.conv_out(s, 5, pad) for s in hw]
            if min(hw) < 2:
                raise ConfigError(
                    f"input_shape {(c, h, w)!r} is too small for lenet5 "
                    f"(conv1_padding={conv1_padding}): height and width must be at least "
                    f"{16 - 2 * conv1_padding}"
                )
            hw = [s // 2 for s in hw]

        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["conv1"] = nn.Conv2d(c, channels[0], 5, padding=conv1_padding)
        layers["relu1"] = nn.ReLU()
        layers["pool1"] = nn.MaxPool2d(2)
        layers["conv2"] = nn.Conv2d(channels[0], channels[1], 5)
        layers["relu2"] = nn.ReLU()
        layers["pool2"] = nn.MaxPool2d(2)
        layers["flatten"] = nn.Flatten(1)
        sizes = [channels[1] * hw[0] * hw[1], *fc_widths, num_classes]
        for i in range(1, len(sizes)):
            layers[f"fc{i}"] = nn.Linear(sizes[i - 1], sizes[i])
            if i < len(sizes) - 1:
                layers[f"relu{i + 2}"] = nn.ReLU()
        super().__init__(layers)
        self.input_shape = (c, h, w)
        self.num_classes = num_classes
        self.output_layer = f"fc{len(sizes) - 1}.weight"
        init_weights(self, self.default_init)


@register_model
def lenet300_100(*, input_shape: tuple[int, ...], num_classes: int) -> MLP:
    """LeNet-300-100 (Frankle & Carbin 2019, Fig. 2): flatten -> fc1 300 -> fc2 100 -> fc3, ReLU.

    ``in_features = prod(input_shape)``; on (1, 28, 28) with 10 classes it has 266,200 weights and 410
    biases. Default init: Gaussian Glorot, biases zero. Output layer ``fc3.weight``.
    """
    return MLP(input_shape, num_classes, widths=(300, 100), activation="relu")


@register_model
def lenet5(
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    channels: tuple[int, ...] = (20, 50),
    fc_widths: tuple[int, ...] = (500,),
    conv1_padding: int = 0,
) -> LeNet5:
    """LeNet-5, Caffe layout by default (conv1 20 ch 5x5, conv2 50 ch 5x5, fc1 500, fc2 out).

    Matches the LeNet-5 of the ERK table in ``docs/sparse_training.md`` §8 (430,500 weights on MNIST).
    LeCun et al. 1998's original shapes: ``channels=(6, 16), fc_widths=(120, 84), conv1_padding=2``
    (61,470 weights). Needs input of at least 16x16 (12x12 with ``conv1_padding=2``). Default init:
    Gaussian Glorot. Output layer ``fc{len(fc_widths)+1}.weight`` (``fc2.weight`` by default).
    """
    return LeNet5(
        input_shape, num_classes, channels=channels, fc_widths=fc_widths, conv1_padding=conv1_padding
    )
