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
  by the same `StateInOptimizer` that carries `enforce`'s masks and `sparsify`'s state, and attaches
  the Updater when a checkpoint is loaded, so a resumed run never draws fresh masks over restored
  weights. `SparseCheckpoint.for_run` is what both frameworks' sparse-training callbacks attach.
"""

from __future__ import annotations

import logging
from typing import Mapping

import torch

from torch import nn

from ticketlab.core.optimizers import StateInOptimizer, unwrap_optimizer
from ticketlab.methods.sparse import Method, Updater, updater_for
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
        # torch passes the step's own arguments with the optimizer first: (opt, closure?) and kwargs
        kwargs, rest = dict(kwargs), list(args[1:])
        closure = kwargs.pop("closure", None)
        if closure is None and rest:
            closure = rest.pop(0)
        if closure is None:  # step() without a closure: a GradScaler's step, the closure ran already
            return None
        with torch.enable_grad():
            closure()
        return (args[0], *rest), kwargs
    return optimizer.register_step_pre_hook(pre)


class SparseCheckpoint:
    """Keeps `updater` (not attached yet) in `optimizer.state_dict()` under `STATE_KEY`, the key and
    format of `sparsify`'s own (`ticketlab.core.optimizers.StateInOptimizer`), so either loads the other's.

    `attach_now()` attaches it for a fresh run; on a resumed run the framework's
    `optimizer.load_state_dict(...)` attaches it with the checkpoint's masks instead."""

    def __init__(self, updater: Updater, optimizer: torch.optim.Optimizer, params: Mapping[str, torch.Tensor]):
        self.updater, self.optimizer, self.params = updater, optimizer, dict(params)
        self.attached = False
        self._carry = StateInOptimizer(optimizer, STATE_KEY, self._save, self._restore)

    @classmethod
    def for_run(cls, model: nn.Module, optimizer: torch.optim.Optimizer, method: Method, sparsity: float,
                total_steps: int, *, resuming: bool, previous: dict | None = None,
                **sparsify_kwargs) -> "SparseCheckpoint":
        """What a framework's sparse-training callback attaches when its run has built `optimizer`
        (the innermost one): `method`'s fractions of training (`RigL(end_fraction=0.75)`) resolved
        against the run's `total_steps` optimizer steps, an Updater as `ticketlab.sparsify` makes it
        (`sparsify_kwargs`), carried in the optimizer's state dict. Attached now unless `resuming`
        (the checkpoint's optimizer state, loaded next, attaches it with its masks); `previous`, an
        Updater state, continues an earlier run's masks and step."""
        method = method.resolve(total_steps) if hasattr(method, "resolve") else method
        updater, params = updater_for(model, method, sparsity, **sparsify_kwargs)
        carry = cls(updater, optimizer, params)
        if not resuming:
            if previous is not None:
                updater.load_state_dict(previous)
            carry.attach_now()
        return carry

    def attach_now(self) -> None:
        """Attach: with the masks of the state the updater was given (`load_state_dict`), else fresh ones."""
        self.updater.attach(self.optimizer, self.params)
        self.attached = True

    def _save(self) -> dict | None:
        return self.updater.state_dict() if self.attached else None

    def _restore(self, state: dict) -> None:
        self.updater.load_state_dict(state)  # attached: reinstalls from the state
        if not self.attached:
            self.attach_now()  # attaches with the loaded state
        logger.info("sparse state restored from the optimizer's checkpoint (step %d)", self.updater.step)

    def remove(self) -> None:
        """Take the hooks off and detach the updater."""
        self._carry.remove()
        self.updater.detach()
        self.attached = False
