"""What a training framework's optimizer needs so that ticketlab's masks survive it.

Frameworks wrap the torch optimizer (accelerate's `AcceleratedOptimizer`, Lightning's
`LightningOptimizer`), call `step(closure)` with the forward and backward inside the closure
(Lightning), and save and load `optimizer.state_dict()` in their checkpoints. The hooks of
`ticketlab.core.masks.enforce` and of the sparse `Updater` sit on the innermost torch optimizer, so:

- `innermost` finds it under any wrapper;
- `run_closure_first` makes `step(closure)` run its closure before the step hooks, as a plain loop runs
  backward (and clipping) before `optimizer.step()`: the Updater's pre-step hook then masks, and RigL
  captures, this step's gradient rather than the last one (docs/architecture/integrations.md);
- `SparseCheckpoint` carries an `Updater`'s state (masks, step, buffers) inside `optimizer.state_dict()`,
  as `enforce` carries its masks, and attaches the Updater when a checkpoint is loaded, so a resumed
  run never draws fresh masks over restored weights.
"""

from __future__ import annotations

import logging
from typing import Mapping

import torch

from ticketlab.core.optimizers import unwrap_optimizer
from ticketlab.methods.sparse import Updater
from ticketlab.methods.sparse.updater import STATE_KEY  # where an Updater's state rides in `optimizer.state_dict()`

logger = logging.getLogger(__name__)

innermost = unwrap_optimizer  # the one unwrapping rule (`ticketlab.core.optimizers`)


def run_closure_first(optimizer: torch.optim.Optimizer):
    """Run a `step(closure)`'s closure, then step without it: register this before the hooks that must
    see the closure's gradients (step pre-hooks run in registration order). Returns the hook handle.
    (An optimizer that calls its closure several times, like LBFGS, is left alone.)"""
    def pre(opt, args, kwargs):
        if isinstance(opt, torch.optim.LBFGS):
            return None
        kwargs = dict(kwargs)
        closure = kwargs.pop("closure", None)
        if closure is None and args:
            closure, args = args[0], args[1:]
        if closure is None:
            return None
        with torch.enable_grad():
            closure()
        return tuple(args), kwargs
    return optimizer.register_step_pre_hook(pre)


class SparseCheckpoint:
    """Keeps `updater` (not attached yet) in `optimizer.state_dict()` under `STATE_KEY`.

    `attach_now()` attaches it for a fresh run; on a resumed run the framework's
    `optimizer.load_state_dict(...)` attaches it with the checkpoint's masks instead."""

    def __init__(self, updater: Updater, optimizer: torch.optim.Optimizer, params: Mapping[str, torch.Tensor]):
        self.updater, self.optimizer, self.params = updater, optimizer, dict(params)
        self._loaded, self.attached = None, False
        self._hooks = [optimizer.register_state_dict_post_hook(self._save),
                       optimizer.register_load_state_dict_pre_hook(self._take),
                       optimizer.register_load_state_dict_post_hook(self._restore)]

    def attach_now(self) -> None:
        """Attach: with the masks of the state the updater was given (`load_state_dict`), else fresh ones."""
        self.updater.attach(self.optimizer, self.params)
        self.attached = True

    def _save(self, optimizer, state_dict: dict) -> dict:
        if self.attached:
            state_dict[STATE_KEY] = self.updater.state_dict()
        return state_dict

    def _take(self, optimizer, state_dict: dict) -> dict:
        # attach after the optimizer state is loaded, so that it is zeroed at the inactive positions too
        self._loaded = state_dict.pop(STATE_KEY, None)
        return state_dict

    def _restore(self, optimizer) -> None:
        if self._loaded is None:
            return
        state, self._loaded = self._loaded, None
        self.updater.load_state_dict(state)  # attached: reinstalls from the state
        if not self.attached:
            self.attach_now()  # attaches with the loaded state
        logger.info("sparse state restored from the optimizer's checkpoint (step %d)", self.updater.step)

    def remove(self) -> None:
        """Take the hooks off and detach the updater."""
        for h in self._hooks:
            h.remove()
        self._hooks = []
        self.updater.detach()
        self.attached = False
