"""Static sparse training: a fixed random sparse mask, never updated.

The RigL paper's "Static" baseline (Evci et al. 2020, §4; google-research/rigl ``training_method=scratch``):
a random mask with exact per-layer counts from a sparsity distribution (uniform / ER / ERK), trained as
is. Also the method that carries one-shot pruning-at-init masks (SNIP, GraSP, SynFlow) through
training: pass them to `Updater(Static(), masks=...)`. Not the rigl code's ``static`` flag, which is an
ablation that re-initialises the weakest weights in place (docs/sparse_training.md §1).
"""

from __future__ import annotations

from dataclasses import dataclass

from ticketlab.methods.sparse.updater import Method


@dataclass(frozen=True)
class Static(Method):
    """A fixed sparse mask (no fields: the mask comes from the distribution, the seed or `masks`)."""

    name = "static"
