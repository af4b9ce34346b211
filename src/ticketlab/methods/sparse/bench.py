"""Measure what a mask update costs against training, in one run (docs/performance.md §6).

`update_cost` trains a model on one fixed random batch with a sparse method attached and times every
optimizer step (forward, backward and step included) and every mask update, interleaved in the same
process, so slow drift of machine load hits both. It reports the median time of a plain training step,
the median time of one update, and the update amortised over ΔT steps:
``overhead = update / (ΔT · step)``. The dense-gradient capture is free here (RigL keeps a reference
to ``p.grad``), and RigL's skipped optimizer step on update steps is not credited.

    python -c "from ticketlab.methods.sparse.bench import update_cost; print(update_cost('lenet300_100'))"
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

from ticketlab.core import distributions
from ticketlab.models import create_model, prunable_parameters
from ticketlab.methods.sparse import METHODS, Updater


def update_cost(model: str = "lenet300_100", *, input_shape: tuple[int, ...] = (1, 28, 28),
                num_classes: int = 10, batch: int = 60, sparsity: float = 0.9,
                distribution: str = "uniform", method: str = "rigl", drop_fraction: float = 0.3,
                interval: int = 10, updates: int = 10, amortise_at: int = 100, threads: int | None = 1,
                model_args: dict | None = None, seed: int = 0) -> dict:
    """Median step and update times (ms) of `method` on `model`, and the update's overhead at ΔT =
    `amortise_at` as a fraction of training time.

    Updates run every `interval` steps (`updates` of them, the first after a warm-up), at a constant
    drop fraction (the largest the cosine schedule reaches). Every conv/linear weight is masked at
    `sparsity` with `distribution`, as in docs/performance.md §6 (uniform, density 0.1, α = 0.3).
    """
    if threads is not None:
        torch.set_num_threads(threads)
    net = create_model(model, input_shape=input_shape, num_classes=num_classes, seed=seed, **(model_args or {}))
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    params = prunable_parameters(net)
    s = distributions.sparsities(distribution, {n: tuple(p.shape) for n, p in params.items()}, sparsity)
    cls = METHODS[method]
    kw = dict(update_interval=interval, drop_fraction=drop_fraction, drop_fraction_decay="constant",
              begin_step=interval)
    meth = cls(**kw) if method in ("set", "rigl", "snfs") else cls()
    updater = Updater(meth, s, seed=seed).attach(opt, params)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, *input_shape, generator=g)
    y = torch.randint(0, num_classes, (batch,), generator=g)
    steps, upd = [], []
    total = interval * (updates + 1)
    for it in range(total):
        before = updater.update_seconds
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        opt.step()
        dt = time.perf_counter() - t0
        du = updater.update_seconds - before
        if meth.is_update(it):
            upd.append(du)
        elif it >= 3:  # skip warm-up steps
            steps.append(dt)
    updater.detach()
    step_ms = 1e3 * statistics.median(steps)
    update_ms = 1e3 * statistics.median(upd) if upd else 0.0
    return {"model": model, "batch": batch, "method": method, "sparsity": sparsity, "distribution": distribution,
            "params": sum(p.numel() for p in params.values()), "threads": torch.get_num_threads(),
            "step_ms": step_ms, "update_ms": update_ms, "update_in_steps": update_ms / step_ms,
            "amortised_at": amortise_at, "overhead": update_ms / (amortise_at * step_ms)}
