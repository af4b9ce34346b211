"""Learning-rate schedules as plain functions of the iteration.

The learning rate at iteration `it` is a pure function of the config, so a resumed or
rewound run needs only the iteration counter to be at the right point of its schedule
(LTH/open_lth fast-forward the schedule to the rewind point k; here that is free).

- constant;
- multistep: multiply by `gamma` at each milestone iteration (VGG/ResNet recipes, LTH §4);
- cosine: cosine decay from the base rate to 0 over the run (Loshchilov & Hutter 2017);
- linear warmup from 0 over `warmup_iters`, composed with any of the above (Goyal et al. 2017;
  LTH §4 uses it for VGG-19 and ResNet-18).
"""

from __future__ import annotations

import bisect
import math


def lr_factor(it: int, *, schedule: str, total: int, milestones: tuple[int, ...] = (),
              gamma: float = 0.1, warmup_iters: int = 0) -> float:
    """Multiplier of the base learning rate for the step taken at iteration `it` (0-based)."""
    if schedule == "constant":
        f = 1.0
    elif schedule == "multistep":
        f = gamma ** bisect.bisect_right(sorted(milestones), it)
    elif schedule == "cosine":
        f = 0.5 * (1.0 + math.cos(math.pi * min(it, total) / max(total, 1)))
    else:
        raise ValueError(f"unknown schedule {schedule!r}")
    if warmup_iters > 0 and it < warmup_iters:
        f *= (it + 1) / warmup_iters
    return f
