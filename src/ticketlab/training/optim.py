"""The optimizers of every training loop of ticketlab: SGD, and Adam and AdamW fused.

Why fused (measured here, `benchmarks/speed`): the single-tensor and foreach Adam paths call a
vectorised sqrt that is ~6x slower on zeros, and a pruned network's second moments are zero at
every pruned position, so a 21 %-dense LeNet-300-100 step cost 7x its dense step. The fused kernel
costs the same at any density (and 2.7x less than the single-tensor path when dense). It is
elementwise, so one model and the batched runner (`ticketlab.training.stacked`) compute identical updates.
`make_optimizer` is the one factory of the vision loop (`ticketlab.training.loop`) and the language loops
(`ticketlab.domains.nlp`); the RL agents get the fused kernel through stable-baselines3's `optimizer_kwargs`
(`ticketlab.domains.rl.agent`).
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


def make_optimizer(name: str, params: Iterable[torch.nn.Parameter], *, lr: float, momentum: float = 0.0,
                   nesterov: bool = False, weight_decay: float = 0.0,
                   betas: Sequence[float] = (0.9, 0.999)) -> torch.optim.Optimizer:
    """The optimizer `name` of every gradient-descent loop: "sgd" (momentum, Nesterov, L2 weight decay;
    plain SGD as Zaremba et al. 2014 at the defaults), "adam" (L2) or "adamw" (decoupled weight decay;
    Vaswani et al. 2017 use Adam with β = (0.9, 0.98)), the Adams fused."""
    params = list(params)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    return adam(params, lr=lr, betas=betas, weight_decay=weight_decay, decoupled=name == "adamw")


__all__ = ["adam", "make_optimizer", "FUSED"]
