"""SNFS: grow by the momentum of the dense gradients (Dettmers & Zettlemoyer 2019, arXiv 1907.04840).

Implemented: the grow criterion of Sparse Networks From Scratch on the shared drop-and-grow schedule.
Every step, before the gradients are masked, the dense gradient (dL/d(w·m), since inactive weights are
zero in place) is folded into a per-layer momentum buffer m ← μ·m + g (the form of SGD's momentum
buffer, which sparse_learning reads); an update grows the inactive (or just-dropped) connections with
the largest |m|. Drop is by |w|, counts and schedule as in SET/RigL; the optimizer steps on update
steps too (official: step, then mask update).

Not implemented: SNFS's **momentum-based redistribution** of the pruned weights across layers
(sparse_learning ``Masking.at_end_of_epoch``, docs/sparse_training.md §6). Here every layer regrows
exactly what it dropped, so per-layer densities stay as the distribution set them. This is the rigl
code's ``momentum`` method ("simplified SNFS"); the class is named after the paper, its docstring
says which. Also unlike sparse_learning: our own buffer whatever the optimizer (sparse_learning uses
Adam's exp_avg/√exp_avg_sq under Adam), gradients are masked before the optimizer (so inactive
weights get no momentum in the *optimizer*), and grown weights start with zeroed optimizer state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ticketlab.core.config import param
from ticketlab.methods.sparse.set import SET
from ticketlab.methods.sparse.updater import LayerContext


@dataclass(frozen=True)
class SNFS(SET):
    """Sparse momentum, simplified (no redistribution): grow by |momentum of the dense gradient|."""

    name = "snfs"
    observes = True
    momentum: float = param(0.9, "μ: momentum of the dense-gradient buffer", min=0.0, max=0.999)

    def new_buffer(self, weight: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(weight)

    def observe(self, buffer: torch.Tensor, grad: torch.Tensor) -> None:
        buffer.mul_(self.momentum).add_(grad)

    def grow_scores(self, ctx: LayerContext) -> torch.Tensor:
        return ctx.buffer.abs()
