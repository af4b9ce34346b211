"""What hooks on a training loop's optimizer need to know about it: the real optimizer inside a
framework's wrapper, whether a `GradScaler` skipped its step, and how state rides in its state dict.

- accelerate's `AcceleratedOptimizer` and Lightning's `LightningOptimizer` hold the torch optimizer in
  `.optimizer`; step and state-dict hooks registered on the wrapper would never run (or the wrapper has
  no such methods): `unwrap_optimizer`.
- A `GradScaler` that finds inf/NaN gradients skips the step: it does not call `step()` at all, or, for
  an optimizer that scales itself (fused Adam/SGD, `_step_supports_amp_scaling`), sets `found_inf`
  and calls it, and the optimizer leaves its parameters alone. Step hooks run in the second case, so
  they ask `scaler_skipped` before they count or change anything.
- Frameworks save and load `optimizer.state_dict()` in their checkpoints; `StateInOptimizer` carries
  ticketlab's state (`enforce`'s masks, the sparse `Updater`'s state) there, under its own key, and
  gives it back once the optimizer's own state is loaded.
Used by `ticketlab.core.masks.enforce`, `ticketlab.methods.imp.IMP` and the sparse-training updater
(`ticketlab.methods.sparse.updater`); docs/architecture/byo.md.
"""

from __future__ import annotations

from typing import Any, Callable

import torch


def unwrap_optimizer(optimizer):
    """The torch optimizer inside wrappers that keep it as `.optimizer` (accelerate) or `._optimizer`
    (Lightning), however deeply nested."""
    while True:
        inner = getattr(optimizer, "optimizer", None) or getattr(optimizer, "_optimizer", None)
        if not isinstance(inner, torch.optim.Optimizer) or inner is optimizer:
            return optimizer
        optimizer = inner


def scaler_skipped(optimizer: torch.optim.Optimizer) -> bool:
    """Whether a `GradScaler` told this (self-scaling) optimizer to skip the step it is taking: true
    from its step pre-hooks to its post-hooks. A non-fused optimizer whose step the scaler skips is
    not stepped at all, so its hooks never ask."""
    found_inf = getattr(optimizer, "found_inf", None)
    return found_inf is not None and bool(found_inf > 0)


class StateInOptimizer:
    """Carries `save()` inside `optimizer.state_dict()` under `key`, so that any checkpoint of the
    optimizer holds it; `optimizer.load_state_dict(sd)` takes `sd[key]` out before the optimizer reads
    its own state and calls `restore(value)` after (so state installed then, such as masks that zero
    the optimizer's moments at pruned positions, acts on the loaded state). A state dict without `key`
    (a checkpoint saved without ticketlab) restores nothing. `save()` returning None adds nothing.
    `remove()` takes the hooks off."""

    def __init__(self, optimizer: torch.optim.Optimizer, key: str, save: Callable[[], Any],
                 restore: Callable[[Any], None]):
        self.key, self.save, self.restore = key, save, restore
        self._loaded = None
        self._hooks = [optimizer.register_state_dict_post_hook(self._save),
                       optimizer.register_load_state_dict_pre_hook(self._take),
                       optimizer.register_load_state_dict_post_hook(self._give_back)]

    def _save(self, optimizer, state_dict: dict) -> dict:
        value = self.save()
        if value is not None:
            state_dict[self.key] = value
        return state_dict

    def _take(self, optimizer, state_dict: dict) -> dict:
        self._loaded = state_dict.pop(self.key, None)
        return state_dict

    def _give_back(self, optimizer) -> None:
        value, self._loaded = self._loaded, None
        if value is not None:
            self.restore(value)

    def remove(self) -> None:
        """Take the state-dict hooks off."""
        for h in self._hooks:
            h.remove()
        self._hooks = []


__all__ = ["unwrap_optimizer", "scaler_skipped", "StateInOptimizer"]
