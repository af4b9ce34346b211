"""Static sparse training: a fixed random sparse mask, never updated; and the dense baseline.

The RigL paper's "Static" baseline (Evci et al. 2020, §4; google-research/rigl ``training_method=scratch``):
a random mask with exact per-layer counts from a sparsity distribution (uniform / ER / ERK), trained as
is. Also the method that carries one-shot pruning-at-init masks (SNIP, GraSP, SynFlow) through
training: pass them to `Updater(Static(), masks=...)`. Not the rigl code's ``static`` flag, which is an
ablation that re-initialises the weakest weights in place (docs/sparse_training.md §1).

`Dense` is the comparison's other end (the RigL paper's dense baseline): no mask at all, so no
`Updater`; it is a registered method name so that an experiment can ask for it like any other.
"""

from __future__ import annotations

from dataclasses import dataclass

from ticketlab.core.config import Config
from ticketlab.methods.sparse.updater import Method


@dataclass(frozen=True)
class Static(Method):
    """A fixed sparse mask (no fields: the mask comes from the distribution, the seed or `masks`)."""

    name = "static"


@dataclass(frozen=True)
class Dense(Config):
    """The dense baseline: no mask and no `Updater` (not a `Method`)."""

    name = "dense"
