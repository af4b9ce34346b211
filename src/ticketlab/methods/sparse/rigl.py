"""RigL: drop by |w|, grow by the |dense gradient| (Evci et al. 2020, "Rigging the Lottery", arXiv 1911.11134).

RigL is SET with a different grow score (jaxpruner ``RigL(SET)``; google-research/rigl
``SparseRigLOptimizerBase``): the connections grown are those with the largest |dL/d(w·m)| on the
current batch, over inactive and just-dropped positions. The dense gradient is captured **only on
update steps** (the official code computes it every step and consumes it only there), and, as in the
official code, the optimizer step is **skipped** on update steps (`skip_step=True`): that batch's
gradient only chooses the grown connections (docs/sparse_training.md §4). `skip_step=False` gives the
variant that steps and then updates (Cerebras, rigl-torch when the caller ignores its return value).

Paper defaults: ΔT = 100, α = 0.3, cosine decay, end at 75 % of training (`end_step`). Grown weights
start at 0 (``grow_init='zeros'``) with their optimizer state zeroed (``rigl_acc_scale=0``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ticketlab.core.config import param
from ticketlab.methods.sparse.set import SET
from ticketlab.methods.sparse.updater import LayerContext


@dataclass(frozen=True)
class RigL(SET):
    """Rigged Lottery: magnitude drop, gradient growth, optimizer step skipped on update steps."""

    name = "rigl"
    skip_step: bool = param(True, "skip the optimizer step on update steps (official RigL: yes)")

    def needs_grad(self, step: int) -> bool:
        return self.is_update(step)

    def grow_scores(self, ctx: LayerContext) -> torch.Tensor:
        if ctx.grad is None:  # the parameter took no part in the loss
            return torch.zeros_like(ctx.weight)
        return ctx.grad.abs_()  # the captured gradient belongs to this update
