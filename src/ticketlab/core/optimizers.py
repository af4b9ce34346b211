"""The real optimizer inside a framework's wrapper, so that hooks land on the optimizer that steps.

accelerate's `AcceleratedOptimizer` and Lightning's `LightningOptimizer` hold the torch optimizer in
`.optimizer`; step and state-dict hooks registered on the wrapper would never run (or the wrapper has
no such methods). Used by `ticketlab.core.masks.enforce` and the sparse-training updater
(`ticketlab.methods.sparse.updater`); docs/architecture/byo.md.
"""

from __future__ import annotations

import torch


def unwrap_optimizer(optimizer):
    """The torch optimizer inside wrappers that keep it as `.optimizer` (accelerate) or `._optimizer`
    (Lightning), however deeply nested."""
    while True:
        inner = getattr(optimizer, "optimizer", None) or getattr(optimizer, "_optimizer", None)
        if not isinstance(inner, torch.optim.Optimizer) or inner is optimizer:
            return optimizer
        optimizer = inner


__all__ = ["unwrap_optimizer"]
