"""SET: drop the weakest connections by magnitude, regrow at random (Mocanu et al. 2018).

As in google-research/rigl's ``SparseSETOptimizer`` (docs/sparse_training.md §1–3): every `update_interval`
steps from `begin_step` to `end_step` (inclusive), each masked layer drops ⌊nnz · f(t)⌋ active weights
of smallest |w| and regrows as many uniformly at random among the inactive and just-dropped ones,
grown weights at zero. f(t) is `drop_fraction` decayed by `ticketlab.core.schedules.drop_fraction`
(cosine or constant). The official SET runs the optimizer step and then the mask update
(`skip_step=False`); jaxpruner's SET skips the step, which `skip_step=True` reproduces.

Differences from SET as published (unverified there; docs/sparse_training.md §5): it removes the smallest positive and the
largest negative weights per epoch and regrows with random values; here, as in the RigL comparisons,
|w| and zero-initialised growth.

Random draws are stateless: the grow scores of layer `name` at step t come from a generator seeded
with ``name_seed(seed, f"{name}/set-grow/{t}")``, so a resumed run draws the same connections.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ticketlab.core.config import param
from ticketlab.core.errors import ConfigError
from ticketlab.core.schedules import drop_fraction
from ticketlab.core.scores import name_seed
from ticketlab.methods.sparse.updater import LayerContext, Method, training_fraction

DECAYS = ("cosine", "constant")


@dataclass(frozen=True)
class SET(Method):
    """Sparse Evolutionary Training: magnitude drop, random growth."""

    name = "set"
    updates = True
    update_interval: int = param(100, "ΔT: steps between mask updates", min=1)
    drop_fraction: float = param(0.3, "α: fraction of a layer's active weights replaced at the first update",
                                 min=0.0, max=1.0)
    drop_fraction_decay: str = param("cosine", "decay of the drop fraction: cosine (to 0 at the last update) "
                                     "or constant", choices=DECAYS)
    begin_step: int = param(0, "first update step (the official default 0: step 0 is an update step)", min=0)
    end_step: int | None = param(None, "last update step (None: never stop; needs a constant decay)", min=0)
    skip_step: bool = param(False, "skip the optimizer step on update steps (official SET: no)")
    end_fraction: float | None = training_fraction("end_step", "last update step")

    def check(self):
        super().check()
        if self.end_step is None and self.end_fraction is None and self.drop_fraction_decay == "cosine":
            raise ConfigError("end_step: got None, a cosine drop_fraction_decay needs an end_step or end_fraction")
        if self.end_step is not None and self.end_step < self.begin_step:
            raise ConfigError(f"end_step: got {self.end_step}, expected >= begin_step ({self.begin_step})")

    def is_update(self, step: int) -> bool:
        """rigl ``is_mask_update_iter``: begin ≤ t ≤ end and t − begin a multiple of ΔT."""
        if step < self.begin_step or (self.end_step is not None and step > self.end_step):
            return False
        return (step - self.begin_step) % self.update_interval == 0

    def drop_fraction_at(self, step: int) -> float:
        return drop_fraction(step, initial=self.drop_fraction, decay=self.drop_fraction_decay,
                             begin_step=self.begin_step, end_step=self.end_step)

    def n_drop(self, step: int, nnz: int, numel: int, sparsity: float) -> int:
        """⌊nnz · f(t)⌋ (official). Growth can always match it: the dropped entries are candidates."""
        return min(math.floor(nnz * self.drop_fraction_at(step)), nnz)

    def grow_scores(self, ctx: LayerContext) -> torch.Tensor:
        R, n = ctx.weight.shape
        out = torch.empty(R, n)
        for r, seed in enumerate(ctx.seeds):  # float32: ties are rare and broken by position anyway
            g = torch.Generator().manual_seed(name_seed(seed, f"{ctx.name}/set-grow/{ctx.step}"))
            out[r] = torch.rand(n, generator=g)
        return out.to(ctx.weight.device)  # drawn on the CPU: the same draws on every device
