"""Sweeps: run the cartesian product of config values as independent trials (`ticketlab sweep`),
for every experiment kind.

- `grammar`: the sweep file (kind, task, [base], [grid], [sweep]) and the `KEY=V1,V2` flag front;
- `kinds`: what a trial of each kind (train, lottery of any task, sparse, transfer,
  teacher_student) configures, where it lands in the store, and how it runs;
- `dispatch`: the trials on an executor (inline, process pool, Ray): skipping, retries, Ctrl-C.

    from ticketlab.sweep import load_sweep, run_sweep
    trials, options = load_sweep("examples/sweep.toml")
    rows = run_sweep(trials, **options)

This module adds the summary table and the `ticketlab sweep FILE` command.
"""

from __future__ import annotations

from pathlib import Path

from ticketlab.core.errors import TicketlabError
from ticketlab.engine.options import RunOptions
from ticketlab.engine.parallel import set_threads
from ticketlab.reports.tables import text_table
from ticketlab.sweep.dispatch import experiment_path, run_sweep, run_trial
from ticketlab.sweep.grammar import OWN, Trial, load_sweep, short
from ticketlab.sweep.kinds import KINDS

METRICS = ("level", "density", "es_iter", "es_test_acc", "metric", "es_score", "headline", "headline_score",
           "final_test_acc", "final_test_acc_std", "success", "mean_best", "eval_rel_mse")


def format_table(rows: list[dict]) -> str:
    """The sweep's summary: one line per trial, grid values as columns, then status and metrics."""
    keys = list(dict.fromkeys(k for r in rows for k in r.get("overrides", {})))
    metrics = [m for m in METRICS if any(r.get(m) is not None for r in rows)]
    cells = []
    for r in rows:
        c = {"trial": r["trial"], "status": r["status"], "experiment": Path(r.get("experiment", "")).name,
             "attempts": r.get("attempts"), "time_s": f"{r.get('time_s', 0):.1f}"}
        c.update({k: short(r["overrides"][k]) for k in keys if k in r.get("overrides", {})})
        c.update({m: r.get(m) for m in metrics})
        if r.get("error"):
            c["error"] = r["error"] if len(r["error"]) <= 80 else r["error"][:77] + "..."
        cells.append(c)
    cols = ["trial", *keys, "status", "experiment", *metrics, "attempts", "time_s"]
    if any("error" in c for c in cells):
        cols.append("error")
    return text_table(cells, cols)


def run_file(path, *, options: RunOptions | None = None, backend: str | None = None, address: str | None = None,
             store=None, data_dir=None, retries: int | None = None, calibrated: bool = False, **run) -> list[dict]:
    """Load a sweep file and run it (`api.sweep`). Its [sweep] table gives the run options unless
    `options` (a RunOptions) replaces them; `run`, RunOptions fields as keywords (workers, stack,
    threads, progress, checkpoint_every, device), and the other arguments override them where
    given (not None). `calibrated`: stack only where stacking wins here (`run_sweep`)."""
    trials, file_options = load_sweep(path)
    own = {k: v for k, v in file_options.items() if k in OWN}
    own.update({k: v for k, v in dict(backend=backend, address=address, retries=retries).items() if v is not None})
    if options is None:
        options = RunOptions(**{k: v for k, v in file_options.items() if k not in OWN})
    return run_sweep(trials, store=store, data_dir=data_dir, options=RunOptions.build(options, **run),
                     calibrated=calibrated, **own)


def command(path, **kwargs) -> list[dict]:
    """`ticketlab sweep FILE`: `run_file`, then print the table. Raises TicketlabError after the
    table if any trial failed (so the command exits non-zero)."""
    set_threads(1)  # the inline backend trains in this process; the others only wait here
    rows = run_file(path, calibrated=True, **kwargs)  # the command owns its process: stack where it wins
    print(format_table(rows))
    failed = [r["trial"] for r in rows if r["status"] == "failed"]
    if failed:
        raise TicketlabError(f"{len(failed)} of {len(rows)} trials failed (trials {', '.join(map(str, failed))}); "
                             f"run the same command again to retry them")
    return rows


__all__ = ["Trial", "KINDS", "load_sweep", "run_sweep", "run_file", "run_trial", "format_table", "command",
           "experiment_path"]
