"""The interval every speed benchmark here gives beside a median ratio (numpy only, no torch)."""

from __future__ import annotations

import numpy as np


def ci95(ratios, resamples: int = 10_000, seed: int = 0) -> list[float]:
    """The 2.5th and 97.5th percentiles of the median of `ratios` (one per round) resampled with
    replacement `resamples` times: a 95 % bootstrap interval of the median."""
    r = np.asarray(list(ratios), dtype=float)
    medians = np.median(r[np.random.default_rng(seed).integers(0, len(r), (resamples, len(r)))], axis=1)
    return [round(float(q), 4) for q in np.percentile(medians, [2.5, 97.5])]
