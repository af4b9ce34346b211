"""Weight initialisers for the ticketlab models.

Three schemes, chosen by name (`create_model(..., init=...)` or a model's `default_init`):

- ``"glorot_normal"``: Gaussian Glorot (Glorot & Bengio 2010), ``nn.init.xavier_normal_``, std
  sqrt(2 / (fan_in + fan_out)). The init of every network in the lottery-ticket paper (Frankle &
  Carbin 2019, Fig. 2 caption).
- ``"kaiming_normal"``: He et al. 2015, ``nn.init.kaiming_normal_`` with its defaults (mode fan_in,
  gain sqrt(2)), std sqrt(2 / fan_in). open_lth's ``kaiming_normal`` initializer, the default of its
  CIFAR ResNet and VGG.
- ``"torch"``: PyTorch's own default of every layer (``reset_parameters()``), e.g. Kaiming-uniform
  weights with a=sqrt(5) and uniform biases for Linear/Conv, gamma = 1 and beta = 0 for norms.

For the first two, Linear / Conv weights follow the scheme and their biases are set to zero (open_lth
leaves biases at PyTorch's default; the difference is one tiny uniform vector per layer). Norm layers
(BatchNorm, GroupNorm, LayerNorm) get beta = 0 and gamma ~ U[0, 1] when the model's ``norm_init`` is
``"uniform"`` (open_lth's ``batchnorm_init='uniform'``, used by its CIFAR models) or gamma = 1 when it is
``"ones"``; BatchNorm running statistics are reset.
"""

from __future__ import annotations

import torch
from torch import nn

from ticketlab.core.errors import ConfigError

INIT_SCHEMES: tuple[str, ...] = ("glorot_normal", "kaiming_normal", "torch")
NORM_INITS: tuple[str, ...] = ("uniform", "ones")

_WEIGHTED = (nn.Linear, nn.modules.conv._ConvNd)
_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def check_scheme(scheme: object) -> str:
    """Return `scheme` if it names a known init scheme, else raise ConfigError."""
    if scheme not in INIT_SCHEMES:
        raise ConfigError(f"unknown init {scheme!r}; known: {', '.join(INIT_SCHEMES)}")
    return scheme  # type: ignore[return-value]


def init_weights(model: nn.Module, scheme: str, *, norm_init: str | None = None) -> nn.Module:
    """Re-initialise every parameter of `model` in place with `scheme`; return `model`.

    `norm_init` ("uniform" | "ones") overrides the model's ``norm_init`` attribute (default "ones");
    it is ignored by the "torch" scheme. Raises ConfigError for an unknown scheme or for a module
    holding parameters that no rule covers, so no parameter is silently left as it was.
    """
    check_scheme(scheme)
    norm_init = norm_init if norm_init is not None else getattr(model, "norm_init", "ones")
    if norm_init not in NORM_INITS:
        raise ConfigError(f"unknown norm_init {norm_init!r}; known: {', '.join(NORM_INITS)}")

    for module_name, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        if not own:
            continue
        if scheme == "torch":
            if not hasattr(module, "reset_parameters"):
                _uncovered(module_name, module)
            module.reset_parameters()
        elif isinstance(module, _WEIGHTED):
            _init_weighted(module, scheme)
        elif isinstance(module, _NORMS):
            _init_norm(module, norm_init)
        else:
            _uncovered(module_name, module)
    return model


def _init_weighted(module: nn.Module, scheme: str) -> None:
    if scheme == "glorot_normal":
        nn.init.xavier_normal_(module.weight)
    else:
        nn.init.kaiming_normal_(module.weight)
    if module.bias is not None:
        nn.init.zeros_(module.bias)


def _init_norm(module: nn.Module, norm_init: str) -> None:
    if isinstance(module, nn.modules.batchnorm._NormBase):
        module.reset_running_stats()
    with torch.no_grad():
        if module.weight is not None:
            if norm_init == "uniform":
                module.weight.uniform_(0.0, 1.0)
            else:
                module.weight.fill_(1.0)
        if module.bias is not None:
            module.bias.zero_()


def _uncovered(module_name: str, module: nn.Module) -> None:
    raise ConfigError(
        f"cannot initialise {type(module).__name__} {module_name or '<root>'!r}: "
        f"no rule for its parameters"
    )
