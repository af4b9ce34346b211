"""Learning-rate schedules as plain functions of the iteration.

The learning rate at iteration `it` is a pure function of the config, so a resumed or
rewound run needs only the iteration counter to be at the right point of its schedule
(LTH/open_lth fast-forward the schedule to the rewind point k; here that is free).
`lr_factor` is the one schedule of every loop (classification, language modelling,
translation, teacher-student):

- constant;
- multistep: multiply by `gamma` at each milestone iteration (VGG/ResNet recipes, LTH §4);
- cosine: cosine decay from the base rate to 0 over the run (Loshchilov & Hutter 2017);
- zaremba: constant for `decay_start` epochs, then × `lr_decay` every `decay_every` epochs
  (Zaremba et al. 2014 §4: small, 4 epochs then ×0.5 per epoch; medium, 6 then ÷1.2);
- inverse_sqrt: ∝ 1/√step after the warmup, peaking at the base rate (Vaswani et al. 2017 §5.3);
- linear warmup from 0 over `warmup_iters`, composed with any of the above (Goyal et al. 2017;
  LTH §4 uses it for VGG-19 and ResNet-18).
"""

from __future__ import annotations

import bisect
import math


def lr_factor(it: int, *, schedule: str, total: int, milestones: tuple[int, ...] = (),
              gamma: float = 0.1, warmup_iters: int = 0, steps_per_epoch: int | None = None,
              decay_start: float = 0.0, decay_every: float = 1.0, lr_decay: float = 1.0) -> float:
    """Multiplier of the base learning rate for the step taken at iteration `it` (0-based).

    `milestones`/`gamma` belong to multistep; `steps_per_epoch`, `decay_start`, `decay_every`
    and `lr_decay` (epochs, factor) to zaremba.
    """
    if schedule == "constant":
        f = 1.0
    elif schedule == "multistep":
        f = gamma ** bisect.bisect_right(sorted(milestones), it)
    elif schedule == "cosine":
        f = 0.5 * (1.0 + math.cos(math.pi * min(it, total) / max(total, 1)))
    elif schedule == "zaremba":
        epoch = it / steps_per_epoch
        f = lr_decay ** (math.floor((epoch - decay_start) / decay_every) + 1) if epoch >= decay_start else 1.0
    elif schedule == "inverse_sqrt":
        f = math.sqrt(max(warmup_iters, 1) / max(it + 1, warmup_iters, 1))
    else:
        raise ValueError(f"unknown schedule {schedule!r}")
    if warmup_iters > 0 and it < warmup_iters:
        f *= (it + 1) / warmup_iters
    return f


# ---- sparse-training schedules (ticketlab.methods.sparse) -------------------------------------------

def drop_fraction(step: int, *, initial: float, decay: str = "cosine", begin_step: int = 0,
                  end_step: int | None = None) -> float:
    """Fraction of a layer's active connections that a drop-and-grow update at `step` replaces.

    RigL (Evci et al. 2020, §3; google-research/rigl ``get_drop_fraction``):
    - ``"constant"``: `initial` (α) at every step;
    - ``"cosine"``: α/2 · (1 + cos(π · min(t, T) / T)) with T = end_step − begin_step and t the
      **raw** global step, not t − begin_step. That is the official code's form (copied by
      jaxpruner); it differs from "cosine from begin_step" only when begin_step > 0.

    >>> drop_fraction(0, initial=0.3, end_step=100), drop_fraction(50, initial=0.3, end_step=100)
    (0.3, 0.15)
    """
    if decay == "constant":
        return float(initial)
    if decay != "cosine":
        raise ValueError(f"unknown drop-fraction decay {decay!r}; use 'cosine' or 'constant'")
    if end_step is None:
        raise ValueError("a cosine drop-fraction decay needs an end_step")
    T = end_step - begin_step
    if T <= 0:
        return float(initial)
    f = 0.5 * initial * (1.0 + math.cos(math.pi * min(max(step, 0), T) / T))
    return round(f, 15)  # cos(π/2) is 6e-17, not 0: keep exact values exact


def gmp_sparsity(step: int, *, final: float, initial: float = 0.0, begin_step: int, end_step: int) -> float:
    """Target sparsity at `step` of gradual magnitude pruning (Zhu & Gupta 2017, eq. 1).

    s_t = s_f + (s_i − s_f) · (1 − p)³ with p = (t − t0)/(t1 − t0) clipped to [0, 1]: s_i up to
    t0, s_f from t1 on, pruning fast early and slowly near the end (tf.contrib.model_pruning, the
    rigl `prune` baseline).

    >>> gmp_sparsity(0, final=0.9, begin_step=0, end_step=100), gmp_sparsity(50, final=0.9, begin_step=0, end_step=100)
    (0.0, 0.7875)
    """
    if end_step <= begin_step:
        p = 1.0 if step >= begin_step else 0.0
    else:
        p = min(max((step - begin_step) / (end_step - begin_step), 0.0), 1.0)
    return final + (initial - final) * (1.0 - p) ** 3
