"""Configurable multilayer perceptron for MNIST-1D, digits, MNIST and tabular data.

The lottery-ticket LeNet-300-100 (Frankle & Carbin 2019, Fig. 2; after LeCun et al. 1998) is this
network with ``widths=(300, 100)`` and ReLU; `ticketlab.models.lenet.lenet300_100` builds it from here.
The input is flattened, so any ``input_shape`` works (``(40,)`` for MNIST-1D, ``(1, 28, 28)`` for MNIST).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from ticketlab.core.errors import ConfigError
from ticketlab.models import _checks
from ticketlab.models._registry import register_model
from ticketlab.models.init import init_weights

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh,
}


class MLP(nn.Sequential):
    """flatten -> fc1 -> act -> [dropout] -> ... -> fcN (logits); layers named ``fc1`` .. ``fcN``.

    ``N = len(widths) + 1``; ``widths=()`` gives a linear (softmax-regression) model. Dropout, if
    ``dropout > 0``, follows each hidden activation. Default init: Gaussian Glorot, biases zero.
    """

    default_init = "glorot_normal"
    norm_init = "ones"

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        widths: tuple[int, ...] = (300, 100),
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        shape = _checks.input_shape(input_shape)
        num_classes = _checks.positive_int(num_classes, "num_classes")
        widths = _checks.int_tuple(widths, "widths")
        if activation not in ACTIVATIONS:
            raise ConfigError(
                f"unknown activation {activation!r}; known: {', '.join(ACTIVATIONS)}"
            )
        dropout = _checks.probability(dropout, "dropout")

        sizes = [_checks.num_features(shape), *widths, num_classes]
        layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten(1))
        for i in range(1, len(sizes)):
            layers[f"fc{i}"] = nn.Linear(sizes[i - 1], sizes[i])
            if i < len(sizes) - 1:
                layers[f"act{i}"] = ACTIVATIONS[activation]()
                if dropout > 0:
                    layers[f"drop{i}"] = nn.Dropout(dropout)
        super().__init__(layers)
        self.input_shape = shape
        self.num_classes = num_classes
        self.output_layer = f"fc{len(sizes) - 1}.weight"
        init_weights(self, self.default_init)


@register_model
def mlp(
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    widths: tuple[int, ...] = (300, 100),
    activation: str = "relu",
    dropout: float = 0.0,
) -> MLP:
    """MLP with hidden `widths`, `activation` ("relu" | "leaky_relu" | "tanh") and `dropout`.

    Layers ``fc1`` .. ``fc{len(widths)+1}``; default init Gaussian Glorot.
    """
    return MLP(input_shape, num_classes, widths=widths, activation=activation, dropout=dropout)
