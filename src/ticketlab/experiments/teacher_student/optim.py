"""SGD (with momentum) and Adam on stacked parameters, with per-network checkpoint slices.

The update rules are `torch.optim.SGD` and `torch.optim.Adam`'s (PyTorch's momentum form
buf ← μ·buf + g; Adam with bias correction, eps added after the square root). They act
elementwise, so on [S, ...] stacked parameters they are S independent optimizers. Written out
because `state(s)` / `load(states)` then slice and stack per network directly, and because
constructing a `torch.optim` optimizer imports torch._dynamo, ≈2 s per process here.
"""

from __future__ import annotations

import torch


class StackedOptimizer:
    """`kind` "sgd" (lr, momentum) or "adam" (lr, betas, eps) over tensors updated in place."""

    def __init__(self, params: list[torch.Tensor], kind: str = "sgd", lr: float = 0.01, momentum: float = 0.0,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params, self.kind, self.lr = params, kind, lr
        self.momentum, self.betas, self.eps = momentum, betas, eps
        self.t = 0
        self.buf: list[torch.Tensor] | None = None  # SGD momentum buffers
        self.m: list[torch.Tensor] | None = None  # Adam first / second moments
        self.v: list[torch.Tensor] | None = None

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor]) -> None:
        """One update of every parameter from its gradient."""
        self.t += 1
        if self.kind == "sgd":
            if self.momentum:
                if self.buf is None:
                    self.buf = [g.clone() for g in grads]
                else:
                    for b, g in zip(self.buf, grads):
                        b.mul_(self.momentum).add_(g)
                grads = self.buf
            for p, g in zip(self.params, grads):
                p.sub_(g, alpha=self.lr)
            return
        b1, b2 = self.betas
        if self.m is None:
            self.m = [torch.zeros_like(p) for p in self.params]
            self.v = [torch.zeros_like(p) for p in self.params]
        c1, c2 = 1 - b1 ** self.t, 1 - b2 ** self.t
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            p.addcdiv_(m, v.sqrt().div_(c2 ** 0.5).add_(self.eps), value=-self.lr / c1)

    def state(self, s: int) -> dict:
        """Network s's optimizer state (its slices of the buffers)."""
        pick = lambda ts: None if ts is None else [t[s].clone() for t in ts]  # noqa: E731
        return {"kind": self.kind, "t": self.t, "buf": pick(self.buf), "m": pick(self.m), "v": pick(self.v)}

    def load(self, states: list[dict]) -> None:
        """Restore from one `state(s)` per network of the stack, in order."""
        self.t = int(states[0]["t"])
        stack = lambda key: (None if states[0][key] is None  # noqa: E731
                             else [torch.stack([st[key][i] for st in states]) for i in range(len(states[0][key]))])
        self.buf, self.m, self.v = stack("buf"), stack("m"), stack("v")
        dev = self.params[0].device  # state files hold CPU tensors; the stack may train elsewhere
        self.buf, self.m, self.v = ([t.to(dev) for t in ts] if ts is not None else None
                                    for ts in (self.buf, self.m, self.v))


__all__ = ["StackedOptimizer"]
