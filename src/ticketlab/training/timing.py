"""The timing fields of a run summary, and how to read them from summaries old and new.

Several runs of one experiment can train together as one stack (docs/parallel.md), so a run's
own wall time is not measurable: what is measured is the stack's. Issue #18 point 4 asks that the
fields say so. A summary written now records

- `stack_wall_time_s`: wall-clock seconds of the whole stack (resumed runs: summed over sessions);
- `stack_cpu_time_s`: CPU seconds of the process over the stack (`time.process_time`, all
  threads), the figure that stays meaningful on a shared machine;
- `stack_size`: how many runs trained in that stack (1: the run alone).

Summaries written before recorded only `wall_time_s`, the stack's wall time divided by its size,
and `trained_with` (the size). `read` turns either form into the new fields (CPU time None when
it was not recorded), and `run_share_s` gives a run's share of its stack's wall time, the figure
that sums to an experiment's total wall time.
"""

from __future__ import annotations

import time

FIELDS = ("stack_wall_time_s", "stack_cpu_time_s", "stack_size")


class StackClock:
    """Wall and CPU time of one stack, continued from what a resumed checkpoint recorded."""

    def __init__(self, wall: float = 0.0, cpu: float = 0.0):
        self.wall0, self.cpu0 = wall, cpu
        self.t0, self.c0 = time.perf_counter(), time.process_time()

    def wall(self) -> float:
        """Wall seconds so far, sessions before a resume included."""
        return self.wall0 + time.perf_counter() - self.t0

    def cpu(self) -> float:
        """Process CPU seconds so far, sessions before a resume included."""
        return self.cpu0 + time.process_time() - self.c0

    def fields(self, size: int) -> dict:
        """The summary's timing fields for a stack of `size` runs."""
        return {"stack_wall_time_s": self.wall(), "stack_cpu_time_s": self.cpu(), "stack_size": size}


def read(summary: dict) -> dict:
    """`stack_wall_time_s`, `stack_cpu_time_s` (None if not recorded) and `stack_size` of a summary,
    written by this version or an older one (`wall_time_s` per run and `trained_with`)."""
    if "stack_wall_time_s" in summary:
        return {k: summary.get(k) for k in FIELDS}
    size = int(summary.get("trained_with", 1))
    cpu = summary.get("cpu_time_s") if size == 1 else None  # old NLP summaries: the run's own CPU time
    return {"stack_wall_time_s": float(summary.get("wall_time_s", 0.0)) * size, "stack_cpu_time_s": cpu,
            "stack_size": size}


def run_share_s(summary: dict) -> float:
    """A run's share of its stack's wall time (stack wall time / stack size): summed over the runs
    of an experiment, its total wall time."""
    t = read(summary)
    return t["stack_wall_time_s"] / t["stack_size"]


__all__ = ["StackClock", "read", "run_share_s", "FIELDS"]
