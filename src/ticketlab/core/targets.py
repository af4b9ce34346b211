"""Which tensors a pruner masks, on any model: name patterns, a list of names, and the output layer.

LTH §2 prunes the weights of the fully-connected and convolutional layers, never biases or
normalisation parameters, and prunes the output layer at half the rate of the others (App. G);
docs/lottery.md §1. On a model ticketlab did not build, the prunable set is chosen by name:
shell-style `include`/`exclude` patterns (`ticketlab.core.pruning.select`), or an explicit list of
tensor names as `torch.ao.pruning` sparsifiers take them. The output layer is named, or found the way
the common model zoos expose it (timm's `get_classifier()`, Hugging Face's `get_output_embeddings()`
or `lm_head`), else it is the last `nn.Linear`.
"""

from __future__ import annotations

from typing import Sequence

from torch import nn

from ticketlab.core.errors import ConfigError
from ticketlab.core.pruning import PruningError, select

PRUNABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d)  # whose `.weight` is prunable by default


def layer_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """The `.weight` of every Linear, Conv1d and Conv2d, by name, in `named_parameters()` order."""
    ids = {id(m.weight) for m in model.modules()
           if isinstance(m, PRUNABLE_TYPES) and isinstance(m.weight, nn.Parameter)}
    return {n: p for n, p in model.named_parameters() if id(p) in ids}


def prunable(model: nn.Module, include: str | Sequence[str] = ("*",), exclude: str | Sequence[str] = (),
             names: Sequence[str] | None = None) -> dict[str, nn.Parameter]:
    """The tensors to mask, by name: `names` exactly (any parameter, e.g. an embedding), else the
    Linear/Conv weights (narrowed by a model's `prunable` names, as ticketlab's models declare them)
    that match `include` and not `exclude` (ConfigError naming the bad name)."""
    params = dict(model.named_parameters())
    if names is not None:
        if isinstance(names, str):
            raise ConfigError(f"names: expected a list of parameter names, got the string {names!r}")
        unknown = [n for n in names if n not in params]
        if unknown:
            raise ConfigError(f"names: {unknown[0]!r} is not a parameter of {type(model).__name__}")
        return {n: params[n] for n in names}
    candidates = layer_weights(model)
    declared = getattr(model, "prunable", None)  # ticketlab's models narrow the set by a class attribute
    if isinstance(declared, (tuple, list)):
        candidates = {n: p for n, p in candidates.items() if n in declared}
    try:
        return {n: candidates[n] for n in select(candidates, include, exclude)}
    except PruningError as e:
        raise ConfigError(f"include/exclude: {e}") from None


def _weight_name(model: nn.Module, module: object) -> str | None:
    weight = getattr(module, "weight", None)
    return next((n for n, p in model.named_parameters() if p is weight), None) if weight is not None else None


def output_layer(model: nn.Module, name: str | None = None) -> str | None:
    """The name of the output layer's weight: `name` if given, else the model's own declaration
    (`model.output_layer`, ticketlab's models), timm's `get_classifier()`, Hugging Face's
    `get_output_embeddings()` or `lm_head`, else the last `nn.Linear`; None if there is none."""
    params = dict(model.named_parameters())
    if name is not None:
        if name not in params:
            raise ConfigError(f"output: {name!r} is not a parameter of {type(model).__name__}")
        return name
    declared = getattr(model, "output_layer", None)
    if isinstance(declared, str) and declared in params:
        return declared
    for getter in ("get_classifier", "get_output_embeddings"):
        if callable(getattr(model, getter, None)):
            found = _weight_name(model, getattr(model, getter)())
            if found is not None:
                return found
    if isinstance(getattr(model, "lm_head", None), nn.Module):
        found = _weight_name(model, model.lm_head)
        if found is not None:
            return found
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return _weight_name(model, linears[-1]) if linears else None


__all__ = ["PRUNABLE_TYPES", "layer_weights", "prunable", "output_layer"]
