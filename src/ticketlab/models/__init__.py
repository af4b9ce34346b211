"""Models for lottery-ticket and sparse-training experiments, built by name (timm-style registry).

>>> from ticketlab.models import create_model, list_models, prunable_parameters, output_layer_name
>>> model = create_model("lenet300_100", input_shape=(1, 28, 28), num_classes=10, seed=0)
>>> sum(p.numel() for p in prunable_parameters(model).values())
266200
>>> output_layer_name(model)
'fc3.weight'

Registered models (see each module for the paper it follows):

- ``lenet300_100``, ``lenet5`` (`ticketlab.models.lenet`): LeCun et al. 1998; Frankle & Carbin 2019.
- ``conv2``, ``conv4``, ``conv6`` (`ticketlab.models.conv`): Frankle & Carbin 2019, Fig. 2.
- ``resnet20`` (`ticketlab.models.resnet`): He et al. 2016, open_lth form.
- ``vgg11``, ``vgg16``, ``vgg19`` (`ticketlab.models.vgg`): Simonyan & Zisserman 2015, open_lth form.
- ``mlp`` (`ticketlab.models.mlp`): configurable MLP for MNIST-1D and tabular data.

Initialisers: `ticketlab.models.init`.
"""

from ticketlab.models._registry import (
    create_model,
    list_models,
    output_layer_name,
    prunable_parameters,
    register_model,
)

# Importing the model modules registers their models.
from ticketlab.models import conv, lenet, mlp, resnet, vgg  # noqa: E402,F401  isort: skip

__all__ = [
    "register_model",
    "list_models",
    "create_model",
    "prunable_parameters",
    "output_layer_name",
]
