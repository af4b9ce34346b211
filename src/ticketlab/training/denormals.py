"""Subnormal floats flushed to zero while ticketlab's own loops train on the CPU.

Why (docs/performance.md, "Denormals"): Adam's first moment decays by β1 = 0.9 per step once a
weight's gradient is exactly zero (a dead ReLU unit, a unit whose inputs were all pruned), and after
about 800 such steps it sits in the subnormal range (< 1.2e-38), where x86 arithmetic takes a slow
microcode path. A pruned LeNet-300-100 has more such units than a dense one, so subnormals made
masked training 7-11 % slower than dense after a few thousand steps (benchmarks/speed). With
flush-to-zero and denormals-are-zero (the default of TensorFlow's and XLA's CPU kernels), those
values become exact zeros: a change below 1.2e-38 in a moment estimate, which leaves accuracy alone
but not the last bits of a run, so a run's summary records it (`flush_denormal`).

`torch.set_flush_denormal` is a setting of the process (the CPU's FTZ/DAZ flags of each thread);
CUDA kernels are not affected. `flushed()` turns it on for the time a loop trains and back to
torch's default (off) afterwards, so a caller's own computations after a `ticketlab.api` call
keep IEEE semantics.
"""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def flushed():
    """Flush subnormals to zero inside the block (where the CPU supports it: SSE3), then restore
    torch's default. Yields whether flushing is on."""
    on = torch.set_flush_denormal(True)
    try:
        yield on
    finally:
        torch.set_flush_denormal(False)


__all__ = ["flushed"]
