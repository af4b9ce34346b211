"""Reading a lottery experiment's results back from the store, per run and aggregated.

One row per trained network: the ticket at each level of each replicate, and every control
branch. `aggregate` gives mean ± std over replicates (and control draws) per (branch, level),
which is what the tables, plots and report show.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from pathlib import Path


from ticketlab.core import masks as M
from ticketlab.training import final_evals, timing
from ticketlab.training.rundir import RunDir, load_tensors, summary_converged

_LEVEL = re.compile(r"level_(\d+)$")
# best_test_acc and best_score are the best evaluation on the *test* episodes or set: selected on the
# test set, not a valid estimate (issue #18); kept for readers, shown only under a label that says so.
# The timing fields are a stack's (ticketlab.training.timing): runs that trained together share them.
METRICS = ("density", "es_iter", "es_test_acc", "es_val_loss", "final_test_acc", "best_test_acc",
           "es_score", "final_score", "best_score", "headline_score", "headline_sem",
           "stack_wall_time_s", "stack_cpu_time_s", "stack_size")


def _branch(folder: str) -> tuple[str, int]:
    """'reinit_2' -> ('reinit', 2); 'oneshot' -> ('oneshot', 0); '' -> ('ticket', 0)."""
    if not folder:
        return "ticket", 0
    m = re.match(r"(.+)_(\d+)$", folder)
    return (m.group(1), int(m.group(2))) if m else (folder, 0)


def run_rows(exp_path: str | Path) -> list[dict]:
    """One row per finished run in a lottery experiment folder."""
    rows = []
    for rep_dir in sorted(Path(exp_path).glob("replicate_*")):
        r = int(rep_dir.name.split("_")[1])
        for level_dir in sorted(rep_dir.glob("**/level_*")):
            m = _LEVEL.search(level_dir.name)
            summary = level_dir / "summary.json"
            if not m or not summary.exists():
                continue
            rel = level_dir.parent.relative_to(rep_dir)
            control, draw = _branch("" if str(rel) == "." else str(rel))
            s = with_headline(RunDir(level_dir).summary(), level_dir)
            masks = load_tensors(level_dir / "mask.pt")
            rows.append({"replicate": r, "branch": control, "draw": draw, "level": int(m.group(1)),
                         "density": M.density(masks), **summary_metrics(s), **outcome(level_dir, s),
                         "path": str(level_dir)})
    return sorted(rows, key=lambda x: (x["branch"] != "ticket", x["branch"], x["level"], x["replicate"], x["draw"]))


def outcome(run_dir: str | Path, s: dict) -> dict:
    """A run's `diverged` (the iteration, or None) and `converged` (`rundir.summary_converged`) from its
    summary `s`: the fields `aggregate` counts apart and marks. A summary written before `converged`
    existed gets it from the run's metrics rows."""
    rows = () if "converged" in s or "start_iter" in s else RunDir(run_dir).read_metrics()
    return {"diverged": diverged_at(s), "converged": summary_converged(s, rows)}


def summary_metrics(s: dict) -> dict:
    """A run summary's metrics as row fields.

    Every task reports its headline metric (`s["metric"]`, test accuracy when absent) at the
    early-stopping row, at the end and at its best, as `es_score`, `final_score` and `best_score`;
    classification runs also keep their accuracy names (`es_test_acc`, ...). `headline_score` is
    what tables show as the run's result: the summary's `headline` where it has one (RL: the mean
    return over the final evaluations, with `headline_sem` its standard error), else `es_score`.
    `best_*` is the best evaluation on the test set: selected on it, not a valid estimate."""
    metric = s.get("metric", "test_acc")
    es, fin = s["early_stop"], s["final"]
    out = {"metric": metric, "es_iter": es["iter"], "es_score": es[metric], "final_score": fin[metric],
           "best_score": s.get("best_score", s.get("best_" + metric, fin[metric])), **timing.read(s)}
    h = s.get("headline")
    if h:
        out.update(headline=h["name"], headline_score=h["value"], headline_sem=h["sem"])
    else:
        out.update(headline="es_" + metric, headline_score=out["es_score"])
    if "val_loss" in es:
        out["es_val_loss"] = es["val_loss"]
    if metric == "test_acc":
        out.update(es_test_acc=es["test_acc"], final_test_acc=fin["test_acc"], best_test_acc=s["best_test_acc"])
    return out


def result_key(metric: str) -> str:
    """The row or aggregate key that tables and plots show as a run's result for a task's metric:
    the early-stopping value, except for an RL return, whose headline is the mean over the final
    evaluations (issue #18; `summary_metrics`)."""
    return "es_test_acc" if metric == "test_acc" else "headline_score" if metric == "eval_return" else "es_score"


def with_headline(s: dict, run_dir: Path) -> dict:
    """An RL summary written before the headline was recorded gets it from its metrics rows
    (without a standard error where the rows lack episode counts); others are returned as they are."""
    if s.get("metric") != "eval_return" or "headline" in s:
        return s
    h = final_evals.final_mean(RunDir(run_dir).read_metrics(), "eval_return", s.get("start_iter", 0))
    return {**s, "headline": {"name": "final_return", "of": "eval_return", **h}} if h else s


def diverged_at(summary: dict) -> int | None:
    """The iteration at which a run diverged (its loss became NaN or infinite), None if it did not."""
    return (summary.get("diverged") or {}).get("iteration")


def aggregate(rows: list[dict]) -> list[dict]:
    """Mean and (sample) std of each metric per (branch, level), over replicates and draws.

    Diverged runs are counted (`n_diverged`), never averaged: `n` is the number of runs the means are
    over; a group whose runs all diverged has no metrics, only its density. Of those `n`, the runs
    whose early-stopping iteration lies in the last fifth of the run are counted as `n_unconverged`
    (`ticketlab.training.rundir.CONVERGED_BEFORE`): they are averaged, and marked where shown."""
    groups = defaultdict(list)
    for row in rows:
        groups[(row["branch"], row["level"])].append(row)
    out = []
    for (branch, level), group in sorted(groups.items(), key=lambda kv: (kv[0][0] != "ticket", kv[0])):
        rs = [x for x in group if x.get("diverged") is None]
        agg = {"branch": branch, "level": level, "n": len(rs), "n_diverged": len(group) - len(rs),
               "n_unconverged": sum(1 for x in rs if x.get("converged") is False),
               "metric": group[0].get("metric", "test_acc"), "headline": group[0].get("headline")}
        if not rs:
            agg["density"] = sum(x["density"] for x in group) / len(group)
            out.append(agg)
            continue
        for k in (k for k in METRICS if all(x.get(k) is not None for x in rs)):  # CPU time: None in old runs
            vals = [x[k] for x in rs]
            mean = sum(vals) / len(vals)
            agg[k] = mean
            agg[k + "_std"] = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
        out.append(agg)
    return out
