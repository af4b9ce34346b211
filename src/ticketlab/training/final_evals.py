"""A run's headline from its final evaluations: the mean over the last k evaluations, with the
standard error of that mean over the episodes behind it.

Issue #18 point 2 (docs/rl_nlp.md §2): an RL return read at one evaluation, or at the
early-stopping pick among many noisy evaluations, is a noisy and upward-biased estimate; the
early-stopping choice once picked a rewound agent's untrained weights. The headline of an RL run
is therefore the mean test return over its last `FINAL_EVALS` evaluations after its start (the
evaluation at the start, before any training, never counts), and its standard error pools every
test episode of those evaluations.

The rows are `metrics.jsonl` rows carrying `<key>` (the mean over an evaluation's episodes),
`<key>_std` (their std, ddof 0) and `<key>_n` (how many episodes; absent in rows written before
it was recorded, which then have no standard error).
"""

from __future__ import annotations

import math
from typing import Sequence

# The last 5 evaluations: with the default RL recipe (10 evaluations after the start) the second
# half of training, where a converged agent's return is flat, and 5 x 20 = 100 test episodes.
FINAL_EVALS = 5


def final_mean(rows: Sequence[dict], key: str, start_iter: int = 0, k: int = FINAL_EVALS) -> dict | None:
    """{"value": mean of `key` over the last k rows after `start_iter`, "sem": its standard error over
    the pooled episodes (None if unknown), "evals": how many rows, "from_iter": the first row's iter}.

    A run with no row after its start (a rewind point at the run's end) uses its last row; a run
    with no row holding `key` has no headline (None)."""
    have = [r for r in rows if r.get(key) is not None]
    last = ([r for r in have if r["iter"] > start_iter] or have[-1:])[-k:]
    if not last:
        return None
    value = sum(r[key] for r in last) / len(last)
    return {"value": value, "sem": pooled_sem(last, key), "evals": len(last), "from_iter": last[0]["iter"]}


def pooled_sem(rows: Sequence[dict], key: str) -> float | None:
    """Standard error of the mean over every episode of `rows` (sample std / sqrt(N)), from each
    row's mean, std (ddof 0) and episode count; None without the counts or with one episode."""
    if any(r.get(key + "_n") is None or r.get(key + "_std") is None for r in rows):
        return None
    n = sum(r[key + "_n"] for r in rows)
    if n < 2:
        return None
    mean = sum(r[key] * r[key + "_n"] for r in rows) / n
    second = sum((r[key + "_std"] ** 2 + r[key] ** 2) * r[key + "_n"] for r in rows) / n
    var = max(second - mean ** 2, 0.0) * n / (n - 1)
    return math.sqrt(var / n)


__all__ = ["FINAL_EVALS", "final_mean", "pooled_sem"]
