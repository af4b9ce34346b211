"""Boolean masks, one per prunable parameter, and their enforcement during training.

A ticket is a mask m and a starting point θ (LTH §1). Masks are `dict[str, BoolTensor]`
keyed by parameter name, saved with every checkpoint.

Enforcement (see docs/performance.md §3): masking in place around the
optimizer step costs ≈3–8 % over dense, against 10–40 % for reparametrised or
functional forwards (`torch.nn.utils.prune`, parametrize, `functional_call`). So:
- gradients are multiplied by the mask after backward, so pruned weights get no update
  and no momentum / Adam moment ever builds up for them;
- weights are re-zeroed after each optimizer step (decoupled weight decay, or any optimizer
  that moves a weight with zero gradient, cannot revive them); ticketlab's own loop skips this
  pass for SGD, Adam and AdamW, whose step keeps a zero weight with zero gradient and state
  exactly zero (`step_keeps_zeros`; mask cost 1.09 -> 1.03 of a dense LeNet-300-100 step);
- the optimizer state at pruned positions is zeroed once when a mask is installed; the
  masked gradient keeps it at zero from then on.
On a model and a training loop that are not ticketlab's, `enforce(model, optimizer, masks)` does the
same through hooks, so the loop is left as it is: a gradient hook on each pruned tensor masks its
gradient as backward computes it (before any gradient clipping or `GradScaler.unscale_` reads it),
optimizer step hooks mask the gradients again and re-zero the weights (a step that a `GradScaler`
skips runs neither), and optimizer state-dict hooks carry the masks inside `optimizer.state_dict()`,
so a checkpoint of the optimizer restores them on load
(`ticketlab.core.optimizers.StateInOptimizer`).
Float copies of the masks are cached: `w.mul_(float_mask)` is the fastest in-place mask
(≈8 ms against 29–61 ms for `masked_fill_`/`where`/bool `mul_` on a 4096² tensor).
"""

from __future__ import annotations

import functools
from typing import Mapping

import torch
from torch import nn

from ticketlab.core.optimizers import StateInOptimizer, unwrap_optimizer

Masks = dict[str, torch.Tensor]


def ones_masks(params: Mapping[str, torch.Tensor]) -> Masks:
    """All-true masks (a dense network) for the given parameters."""
    return {n: torch.ones_like(p, dtype=torch.bool) for n, p in params.items()}


def count(masks: Mapping[str, torch.Tensor]) -> tuple[int, int]:
    """(kept, total) over all masks."""
    kept = sum(int(m.sum()) for m in masks.values())
    return kept, sum(m.numel() for m in masks.values())


def density(masks: Mapping[str, torch.Tensor]) -> float:
    """Fraction of prunable weights kept (LTH's Pm / 100)."""
    kept, total = count(masks)
    return kept / total if total else 1.0


def layer_density(masks: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Per-parameter fraction kept."""
    return {n: float(m.float().mean()) for n, m in masks.items()}


def check_masks(masks: Mapping[str, torch.Tensor], params: Mapping[str, torch.Tensor]) -> None:
    """Raise ValueError unless `masks` are boolean and match `params` by name and shape."""
    for n, m in masks.items():
        if n not in params:
            raise ValueError(f"mask for {n!r} matches no prunable parameter")
        if m.dtype != torch.bool or m.shape != params[n].shape:
            raise ValueError(f"mask {n!r} must be bool of shape {tuple(params[n].shape)}, "
                             f"got {m.dtype} {tuple(m.shape)}")


@torch.no_grad()
def apply_masks(params: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]) -> None:
    """Zero the pruned entries of each parameter in place."""
    for n, m in masks.items():
        params[n].mul_(m)


# Optimizers whose step leaves a weight at exactly zero when its gradient and its state are zero
# (SGD with momentum and L2 decay, Adam, AdamW: every term of the update is a multiple of them, and
# decoupled decay multiplies the weight). `type(...) is`, not isinstance: a subclass may step otherwise.
STEP_KEEPS_ZEROS = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW)


def step_keeps_zeros(optimizer: torch.optim.Optimizer) -> bool:
    """Whether `optimizer`'s step provably keeps pruned weights at zero once their gradients and
    optimizer state are masked (its type is one of STEP_KEEPS_ZEROS)."""
    return type(optimizer) in STEP_KEEPS_ZEROS


class MaskEnforcer:
    """Keeps pruned weights exactly zero through training (hooks for the training loop)."""

    def __init__(self, params: Mapping[str, torch.nn.Parameter], masks: Mapping[str, torch.Tensor]):
        check_masks(masks, params)
        self.masks = {n: m.clone() for n, m in masks.items()}
        # Only masks that prune something cost work in the hot loop.
        # (on the parameter's device: masks are made and saved on the CPU, weights may live elsewhere)
        self._active = [(params[n], m.to(params[n].device, params[n].dtype)) for n, m in self.masks.items()
                        if not bool(m.all())]
        self._params = [p for p, _ in self._active]
        self._floats = [fm for _, fm in self._active]
        self.rezero = True  # re-zero the weights after each step (see `install`)

    @torch.no_grad()
    def install(self, optimizer: torch.optim.Optimizer | None = None, *, trust_step: bool = False) -> None:
        """Zero pruned weights and, if given, the optimizer state at pruned positions.

        `trust_step`: the caller guarantees that nothing but `after_backward` touches the gradients
        between backward and the step. Then, for an optimizer whose step keeps zeros
        (`step_keeps_zeros`), the weights are not re-zeroed after each step: the pass would
        multiply exact zeros by zero (the same bits), and it is a third of the mask cost (issue #16).
        """
        for p, fm in self._active:
            p.mul_(fm)
            if optimizer is not None:
                for v in optimizer.state.get(p, {}).values():
                    if torch.is_tensor(v) and v.shape == p.shape:
                        v.mul_(fm)
        self.rezero = not (trust_step and optimizer is not None and step_keeps_zeros(optimizer))

    @torch.no_grad()
    def after_backward(self, it: int) -> None:
        """Mask gradients, so pruned weights get no update and no optimizer state."""
        have = [(p.grad, fm) for p, fm in self._active if p.grad is not None]
        if have:  # one foreach call over every masked gradient: fewer dispatches than a loop
            torch._foreach_mul_([g for g, _ in have], [fm for _, fm in have])

    @torch.no_grad()
    def after_step(self, it: int) -> None:
        """Re-zero pruned weights after the optimizer step (unless `install` found it needless)."""
        if self.rezero and self._params:
            torch._foreach_mul_(self._params, self._floats)


def _mask_grad(p: torch.Tensor, fm: torch.Tensor) -> None:
    p.grad.mul_(fm)


STATE_KEY = "ticketlab_masks"  # where the masks ride in `optimizer.state_dict()`


class Enforcement:
    """The handle `enforce` returns: keeps a model's pruned weights exactly zero through any loop.

    `masks` is the current name → bool tensor dict; `set_masks` installs new ones (a pruning step),
    `remove()` takes every hook off."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, masks: Mapping[str, torch.Tensor]):
        optimizer = unwrap_optimizer(optimizer)  # accelerate/Lightning: hook the optimizer that steps
        self.optimizer = optimizer
        self._params = dict(model.named_parameters())
        self._grad_hooks: list = []
        self._hooks = [optimizer.register_step_post_hook(lambda opt, args, kw: self.enforcer.after_step(0))]
        # a checkpoint's masks are installed after its optimizer state is loaded, so that it is zeroed too
        self._carry = StateInOptimizer(optimizer, STATE_KEY, lambda: {n: m.clone() for n, m in self.masks.items()},
                                       self.set_masks)
        self.set_masks(masks)

    @property
    def masks(self) -> Masks:
        return self.enforcer.masks

    def set_masks(self, masks: Mapping[str, torch.Tensor]) -> None:
        """Enforce `masks` from now on: zero the pruned weights and their optimizer state, and hook
        the gradients of the tensors they prune."""
        for h in self._grad_hooks:
            h.remove()
        self.enforcer = MaskEnforcer(self._params, masks)
        self.enforcer.install(self.optimizer)
        # in place, once the gradient is accumulated into p.grad: no new tensor per step (benchmarks/byo)
        self._grad_hooks = [p.register_post_accumulate_grad_hook(functools.partial(_mask_grad, fm=fm))
                            for p, fm in self.enforcer._active]

    def remove(self) -> None:
        """Take every hook off (the weights keep their zeros; nothing enforces them any more)."""
        for h in self._grad_hooks + self._hooks:
            h.remove()
        self._grad_hooks, self._hooks = [], []
        self._carry.remove()


def enforce(model: nn.Module, optimizer: torch.optim.Optimizer,
            masks: Mapping[str, torch.Tensor] | None = None) -> Enforcement:
    """Keep `model`'s pruned weights exactly zero while `optimizer` trains it, in any training loop.

    `masks` maps parameter names (`model.named_parameters()`) to bool tensors; None enforces no mask
    until `optimizer.load_state_dict` brings the masks of a checkpoint. A wrapped optimizer
    (accelerate, Lightning: the real one in `.optimizer`) is unwrapped. Returns the handle, with
    `.masks`, `.set_masks(masks)` and `.remove()`.

        handle = enforce(model, optimizer, masks)
        ... loss.backward(); clip_grad_norm_(...); optimizer.step() ...   # the loop, unchanged
    """
    return Enforcement(model, optimizer, masks or {})
