"""Bit-exact mode: deterministic algorithms, and on CUDA the cuBLAS workspace setting they need.

Issue 16 ("Speed on every device", *Determinism*; docs/architecture/gpu.md). On the CPU, ticketlab's
results are already bit-identical run to run; on CUDA the same seeds agree within float tolerance,
because some kernels (atomic adds in reductions, cuBLAS split-K) are not deterministic.
`--deterministic` asks torch for deterministic kernels only (`torch.use_deterministic_algorithms`),
which raises on an op that has none, and sets `CUBLAS_WORKSPACE_CONFIG=:4096:8`, which cuBLAS
reads when CUDA initialises: `use` is called by `ticketlab.api` before any training and again in
each worker process, before the worker touches CUDA. Its cost is measured by benchmarks/gpu.
It changes no result on the CPU and is not part of any experiment hash; runs record it.
"""

from __future__ import annotations

import logging
import os

import torch

from ticketlab.core.errors import ConfigError

log = logging.getLogger(__name__)

CUBLAS = ("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
_current = False


def use(on: bool) -> None:
    """Turn deterministic mode on or off for this process (and the processes it starts later)."""
    global _current
    if not isinstance(on, bool):
        raise ConfigError(f"deterministic: got {on!r}, expected true or false")
    if on and os.environ.get(CUBLAS[0]) is None:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            log.warning("deterministic: CUDA was initialised before %s was set; cuBLAS may stay "
                        "non-deterministic in this process", CUBLAS[0])
        os.environ[CUBLAS[0]] = CUBLAS[1]  # inherited by worker processes started from now on
    if on != _current:  # only a change of this setting: a caller's own torch setting is left alone
        torch.use_deterministic_algorithms(on)
    _current = on


def current() -> bool:
    """Whether this process trains in deterministic mode."""
    return _current


__all__ = ["CUBLAS", "use", "current"]
