"""Adam and AdamW as every training loop of ticketlab builds them: fused.

Why fused (measured here, `benchmarks/speed`): the single-tensor and foreach Adam paths call a
vectorised sqrt that is ~6x slower on zeros, and a pruned network's second moments are zero at
every pruned position, so a 21 %-dense LeNet-300-100 step cost 7x its dense step. The fused kernel
costs the same at any density (and 2.7x less than the single-tensor path when dense). It is
elementwise, so one model and the batched runner (`ticketlab.training.stacked`) compute identical updates.
Used by the vision loop (`ticketlab.training.loop`), the language loops (`ticketlab.domains.nlp.loop`) and, through
stable-baselines3's `optimizer_kwargs`, the RL agents (`ticketlab.domains.rl.agent`).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch

FUSED = {"fused": True}  # the keyword arguments that select the fused kernel


def adam(params: Iterable[torch.nn.Parameter], *, lr: float, betas: Sequence[float] = (0.9, 0.999),
         weight_decay: float = 0.0, decoupled: bool = False) -> torch.optim.Optimizer:
    """Fused Adam (L2 weight decay added to the gradient), or AdamW with `decoupled` weight decay."""
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    return cls(list(params), lr=lr, betas=tuple(betas), weight_decay=weight_decay, **FUSED)


__all__ = ["adam", "FUSED"]
