"""Importance scores for pruning: plain functions of the parameters, higher = more important.

Every score function maps ``{name: parameter}`` to ``{name: float tensor}`` of the same shapes,
detached from autograd; `ticketlab.core.pruning` removes the lowest-scored surviving entries.

- `magnitude`: |w|, the criterion of iterative magnitude pruning (Frankle & Carbin, "The Lottery
  Ticket Hypothesis", ICLR 2019, §2; open_lth ``pruning/sparse_global.py``).
- `random_scores`: i.i.d. uniform scores, for the random-mask controls (LTH Fig. 1; open_lth
  ``randomly_prune``). Deterministic from (seed, parameter name) in any process.

Saliency and gradient scores (SNIP, GraSP, SynFlow), which also need a model and data, will join
here with the same return convention.
"""

from __future__ import annotations

import operator
from typing import Mapping

import torch
from torch import Tensor

from ticketlab.core.seeds import derive_seed


def magnitude(params: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """|w| of each parameter: new tensors, detached, same dtype and shape.

    >>> magnitude({"w": torch.tensor([-2.0, 0.5])})["w"]
    tensor([2.0000, 0.5000])
    """
    return {n: p.detach().abs() for n, p in params.items()}


def name_seed(seed: int, name: str) -> int:
    """A 63-bit generator seed derived from (seed, name) (`ticketlab.core.seeds.derive_seed`).

    Stable across processes, platforms and Python versions (unlike the built-in ``hash``, which
    is salted per process by PYTHONHASHSEED).
    """
    return derive_seed(operator.index(seed), name)


def random_scores(params: Mapping[str, Tensor], seed: int, *,
                  dtype: torch.dtype = torch.float32) -> dict[str, Tensor]:
    """Uniform [0, 1) scores of each parameter's shape, on CPU.

    Each tensor's scores come from its own ``torch.Generator`` seeded with ``name_seed(seed, name)``,
    so they depend only on (seed, name, shape, dtype): not on the other parameters, their order, the
    parameter values or the process. `dtype` float64 makes ties (which pruning breaks by index)
    far rarer than float32's 2^24 levels on tensors of millions of entries.
    """
    if not dtype.is_floating_point:
        raise ValueError(f"random_scores dtype must be floating point, got {dtype}")
    out = {}
    for n, p in params.items():
        g = torch.Generator().manual_seed(name_seed(seed, n))
        out[n] = torch.rand(p.shape, generator=g, dtype=dtype)
    return out
