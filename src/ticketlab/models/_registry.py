"""The model registry (timm style) and the model-level queries every other module relies on.

A model is a plain function decorated with `register_model` and named exactly as users type it
(``lenet300_100``, ``resnet20``); it takes keyword arguments ``input_shape`` and ``num_classes`` plus its
own options and returns an ``nn.Module`` whose ``output_layer`` attribute names the output layer's
weight. `create_model` is the one way in: it checks the name and every option up front (ConfigError,
never a TypeError traceback), seeds the initialisation without touching the global RNG, and can
override the model's default init.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable
from typing import TypeVar

from torch import nn

from ticketlab.core.errors import ConfigError
from ticketlab.core.seeds import seeded
from ticketlab.core.targets import PRUNABLE_TYPES, layer_weights
from ticketlab.models import _checks, imported
from ticketlab.models.init import check_scheme, init_weights

F = TypeVar("F", bound=Callable[..., nn.Module])

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_REQUIRED = ("input_shape", "num_classes")
_PRUNABLE_TYPES = PRUNABLE_TYPES  # the default prunable layers (`ticketlab.core.targets`)
_SEED_RANGE = (-(2**63), 2**64 - 1)  # what torch.manual_seed accepts


def register_model(fn: F) -> F:
    """Register `fn` as a model factory under ``fn.__name__`` and return it unchanged.

    `fn` must accept the keyword arguments ``input_shape`` and ``num_classes``. Registering a different
    function under a name already taken raises ValueError; re-registering the same function (a module
    reload) replaces it.
    """
    if not callable(fn) or not hasattr(fn, "__name__"):
        raise TypeError(f"register_model expects a named function, got {fn!r}")
    params = inspect.signature(fn).parameters
    has_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for required in _REQUIRED:
        if required not in params and not has_var_kw:
            raise TypeError(f"model factory {fn.__name__!r} must accept the keyword {required!r}")
    name = fn.__name__
    old = _MODELS.get(name)
    if old is not None and (old.__module__, old.__qualname__) != (fn.__module__, fn.__qualname__):
        raise ValueError(f"model {name!r} is already registered by {old.__module__}.{old.__qualname__}")
    _MODELS[name] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of the registered models matching the fnmatch `pattern` (e.g. ``"vgg*"``)."""
    return sorted(name for name in _MODELS if fnmatch.fnmatchcase(name, pattern))


def create_model(
    name: str,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    seed: int | None = None,
    init: str | None = None,
    **kwargs: object,
) -> nn.Module:
    """Build the registered model `name` for inputs of `input_shape` (one example, no batch dim).

    ``model(x)`` maps x of shape ``[B, *input_shape]`` to logits ``[B, num_classes]``.

    - `seed`: if given, the model is initialised under ``torch.manual_seed(seed)`` inside
      `ticketlab.core.seeds.seeded`: the same seed gives bit-identical weights and the global RNG states
      (the CPU's and, once CUDA is initialised, the GPUs') are left untouched. If None, the global RNG is used (and advanced).
    - `init`: override the model's default init: ``"glorot_normal"``, ``"kaiming_normal"`` or ``"torch"``
      (see `ticketlab.models.init`).
    - `kwargs`: the model's own options (e.g. ``width=`` for ``resnet20``).

    `name` may also be ``package.module:factory``, your own model (`ticketlab.models.imported`).

    Raises ConfigError for an unknown name (listing the known models), an option the model does not
    take (naming it and the model), or an invalid value.
    """
    factory = _MODELS.get(name) if isinstance(name, str) else None
    if factory is None and imported.is_imported(name):  # package.module:factory, your own model
        factory = imported.import_factory(name)
    if factory is None:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    shape = _checks.input_shape(input_shape)
    num_classes = _checks.positive_int(num_classes, "num_classes")
    if init is not None:
        check_scheme(init)
    if seed is not None:
        seed_int = _checks.as_int(seed)
        if seed_int is None or not _SEED_RANGE[0] <= seed_int <= _SEED_RANGE[1]:
            raise ConfigError(f"seed must be an integer (or None), got {seed!r}")
        seed = seed_int
    _check_options(name, factory, kwargs)

    def build() -> nn.Module:
        if imported.is_imported(name) and name not in _MODELS:
            model = imported.build(name, factory, shape, num_classes, kwargs)
        else:
            model = factory(input_shape=shape, num_classes=num_classes, **kwargs)
        if init is not None:
            init_weights(model, init)
        return model

    if seed is None:
        model = build()
    else:
        with seeded(seed):
            model = build()
    output_layer_name(model)  # every registered model must declare a valid output layer
    return model


def prunable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The parameters a pruner may mask, by name, in ``model.named_parameters()`` order.

    Default: the ``.weight`` of every ``nn.Linear``, ``nn.Conv1d`` and ``nn.Conv2d`` (first layer, 1x1
    shortcut convs and output layer included; never biases or norm parameters). A model narrows the
    set with a class attribute ``prunable: tuple[str, ...]`` of parameter names, each of which must be
    in the default set (ConfigError otherwise).
    """
    found = layer_weights(model)
    narrowed = getattr(model, "prunable", None)
    if narrowed is None:
        return found
    if isinstance(narrowed, str):
        raise ConfigError(f"{type(model).__name__}.prunable must be a tuple of names, not a str")
    narrowed = set(narrowed)
    unknown = sorted(narrowed - found.keys())
    if unknown:
        raise ConfigError(
            f"{type(model).__name__}.prunable names {', '.join(map(repr, unknown))}, which "
            f"{'is' if len(unknown) == 1 else 'are'} not Linear/Conv weights of the model"
        )
    return {name: p for name, p in found.items() if name in narrowed}


def output_layer_name(model: nn.Module) -> str:
    """The name of the output layer's weight (``model.output_layer``), a key of `prunable_parameters`.

    Raises ConfigError if the model does not declare it or declares a name that is not prunable.
    """
    name = getattr(model, "output_layer", None)
    if not isinstance(name, str):
        raise ConfigError(
            f"{type(model).__name__} does not declare its output layer: "
            f"set `self.output_layer = '<weight parameter name>'`"
        )
    if name not in prunable_parameters(model):
        raise ConfigError(
            f"{type(model).__name__}.output_layer = {name!r} is not one of its prunable parameters"
        )
    return name


def _check_options(name: str, factory: Callable[..., nn.Module], kwargs: dict[str, object]) -> None:
    params = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    options = [n for n, p in params.items() if p.kind in keyword and n not in _REQUIRED]
    unknown = [k for k in kwargs if k not in options]
    if unknown:
        accepted = ", ".join(options) if options else "none"
        raise ConfigError(
            f"model {name!r} has no option {', '.join(map(repr, unknown))}; its options: {accepted}"
        )
    missing = [n for n in options if params[n].default is inspect.Parameter.empty and n not in kwargs]
    if missing:
        raise ConfigError(f"model {name!r} needs the option(s) {', '.join(map(repr, missing))}")
