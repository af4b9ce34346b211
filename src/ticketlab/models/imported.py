"""Your own model: `--model package.module:factory` imports a function that returns an `nn.Module`
(issue 15, piece 6; docs/architecture/byo.md).

The factory gets its keyword arguments from `model_args` (`--model-args '{"hidden": 64}'`), plus
`input_shape` and `num_classes` when its signature names them (or takes ``**kwargs``), so it can size
its input and output layers from the dataset. Its output layer is the one the model declares
(`self.output_layer = "<weight name>"`), else found like timm / Hugging Face / the last Linear
(`ticketlab.core.targets.output_layer`): IMP prunes it at its own rate.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Callable

from torch import nn

from ticketlab.core import targets
from ticketlab.core.errors import ConfigError


def is_imported(name: str) -> bool:
    """Whether the model `name` is a ``package.module:factory`` reference rather than a registered name."""
    return isinstance(name, str) and ":" in name


def import_factory(name: str) -> Callable[..., nn.Module]:
    """The callable that ``package.module:factory`` names; ConfigError naming it if it cannot be imported."""
    module_name, _, attr = name.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"model: got {name!r}, expected package.module:factory")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # ImportError, or anything the module raises while importing
        raise ConfigError(f"model {name!r}: cannot import {module_name!r} ({type(e).__name__}: {e})") from None
    factory = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)
    if not callable(factory):
        raise ConfigError(f"model {name!r}: {module_name} has no callable {attr!r}")
    return factory


def build(name: str, factory: Callable[..., nn.Module], input_shape: tuple[int, ...], num_classes: int,
          kwargs: dict) -> nn.Module:
    """Call the imported `factory` and check that it gave an `nn.Module` with an output layer."""
    params = inspect.signature(factory).parameters
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    given = {k: v for k, v in (("input_shape", input_shape), ("num_classes", num_classes))
             if (var_kw or k in params) and k not in kwargs}
    try:
        model = factory(**given, **kwargs)
    except Exception as e:
        raise ConfigError(f"model {name!r}: the factory failed ({type(e).__name__}: {e})") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model {name!r}: the factory returned {type(model).__name__}, expected an nn.Module")
    if not isinstance(getattr(model, "output_layer", None), str):
        found = targets.output_layer(model)
        if found is None:
            raise ConfigError(f"model {name!r}: no output layer found; set self.output_layer = '<weight name>'")
        model.output_layer = found
    return model
