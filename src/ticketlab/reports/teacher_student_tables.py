"""Tables of teacher–student results: the CLI's printed tables and the CSV files beside the plots.

- `points`: one row per experiment (teacher, over-realization, p): success rate and mean best match
  per hidden layer (mean, std and min–max over seeds), eval loss relative to the teacher's output
  variance, the luck readout and each run's share of its stack's wall time;
- `per_node`: success rate over seeds per teacher node index (SS Fig. 5's data), with its n;
- `prune`: node pruning and the ticket, per experiment, mean ± std over seeds (with a merge before
  pruning: the merge cosine, the nodes merged away per layer, and the merged student's error);

Every figure averaged over seeds comes with its spread (issue #18 point 5): the CSV files have a
`<name>_std` column beside it, the printed tables show "mean ± std", and `seeds` is the n.
- `luck`: one row per (run, layer, teacher node): the winner's initial rank and correlations.
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path
from typing import Sequence


def _f(v, nd=4):
    return f"{v:.{nd}f}" if isinstance(v, float) else v


def _pm(mean: float, std: float, fmt: str) -> str:
    """ "mean ± std" in the format `fmt` (a printed cell)."""
    return f"{mean:{fmt}} ± {std:{fmt}}"


def _std(d: dict, key: str):
    """The std stored beside `key` (a point read from a store written before it was recorded: None)."""
    return d.get(key + "_std")


def _seeds(r: dict):
    """The n of a point's means, and the diverged seeds that none of them includes."""
    return f"{r['seeds']} + {r['n_diverged']} diverged" if r.get("n_diverged") else r["seeds"]


def points(rows: Sequence[dict]) -> list[dict]:
    """One flat row per experiment; `seeds` is the n of every mean, `<name>_std` its sample std."""
    out = []
    for r in rows:
        row = {"experiment": r["experiment"], "teacher": "-".join(map(str, r["teacher_widths"])),
               "multi": r["multi"], "p": f"{r['p']:g}",
               "seeds": _seeds(r),
               "steps": r["steps"]}
        for l, L in enumerate(r.get("layers", [])):
            for name, key, nd in (("success", "success", 3), ("mean_best", "mean_best", 4),
                                  ("mean_best_init", "mean_best_init", 3), ("mean_best_pre", "mean_best_pre", 4),
                                  ("luck_rank", "luck_rank_frac", 3), ("luck_top10", "luck_top10", 3)):
                row[f"{name}_L{l + 1}"] = _f(L[key], nd)
                row[f"{name}_L{l + 1}_std"] = _f(_std(L, key), nd)
                if name == "success":
                    row[f"success_L{l + 1}_minmax"] = f"{L['success_min']:.2f}-{L['success_max']:.2f}"
            row[f"luck_n_L{l + 1}"] = L.get("luck_n")  # the luck readouts pool winners over seeds
        if "eval_rel_mse" in r:
            row["eval_rel_mse"] = f"{r['eval_rel_mse']:.3g}"
            row["eval_rel_mse_std"] = f"{r['eval_rel_mse_std']:.3g}" if "eval_rel_mse_std" in r else None
            share = r.get("stack_wall_share_s", r.get("wall_time_s"))  # older rows: wall_time_s
            row["wall_s_per_run"] = f"{share:.1f}"  # stack wall time / stack size, mean over seeds
        out.append(row)
    return out


def short_points(rows: Sequence[dict]) -> list[dict]:
    """The columns the CLI prints: success and mean best match per layer and loss, each as
    mean ± std over the `seeds` (n), and each run's share of its stack's wall time."""
    out = []
    for r in rows:
        row = {"experiment": r["experiment"], "teacher": "-".join(map(str, r["teacher_widths"])),
               "multi": r["multi"], "p": f"{r['p']:g}", "seeds": _seeds(r)}
        layers = r.get("layers", [])
        row["success_per_layer"] = " ".join(_pm(L["success"], L.get("success_std", 0.0), ".3f") for L in layers)
        row["mean_best_per_layer"] = " ".join(_pm(L["mean_best"], L.get("mean_best_std", 0.0), ".4f")
                                              for L in layers)
        row["eval_rel_mse"] = _pm(r["eval_rel_mse"], r.get("eval_rel_mse_std", 0.0), ".3g") if "eval_rel_mse" in r else ""
        share = r.get("stack_wall_share_s", r.get("wall_time_s"))
        row["wall_s_per_run"] = f"{share:.1f}" if share is not None else ""
        out.append(row)
    return out


def per_node(rows: Sequence[dict]) -> list[dict]:
    """Per teacher node: the fraction of the `seeds` (n) whose student specialized to it."""
    out = []
    for r in rows:
        for l, L in enumerate(r.get("layers", [])):
            for j, v in enumerate(L["per_node_success"]):
                out.append({"experiment": r["experiment"], "multi": r["multi"], "p": r["p"], "layer": l + 1,
                            "teacher_node": j, "success_rate": _f(v, 3), "seeds": r["seeds"]})
    return out


def prune(rows: Sequence[dict]) -> list[dict]:
    """Mean ± std over seeds (n: `seeds`) of the node-pruning readout, per experiment."""
    std = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0  # noqa: E731
    out = []
    for r in rows:
        pr = r.get("prune")
        if not pr:
            continue
        mean = lambda v: f"{sum(v) / len(v):.3f} ± {std(v):.3f}"  # noqa: E731
        mean_g = lambda v: f"{sum(v) / len(v):.3g} ± {std(v):.3g}"  # noqa: E731
        n_layers = len(pr[0]["layers"])
        row = {"experiment": r["experiment"], "teacher": "-".join(map(str, r["teacher_widths"])),
               "multi": r["multi"], "p": f"{r['p']:g}", "seeds": len(pr), "score": pr[0]["score"]}
        row["kept_per_layer"] = " ".join(str(L["keep"]) for L in pr[0]["layers"])
        row["spec_kept/spec"] = " ".join(
            f"{sum(x['layers'][l]['specialized_kept'] for x in pr)}/{sum(x['layers'][l]['specialized'] for x in pr)}"
            for l in range(n_layers))
        row["kept_spec_frac"] = " ".join(mean([x['layers'][l]['kept_specialized_frac'] for x in pr])
                                         for l in range(n_layers))
        if pr[0].get("merge_cos") is not None:  # co-aligned nodes merged before pruning
            row["merge_cos"] = f"{pr[0]['merge_cos']:g}"
            row["merged_away"] = " ".join(mean([float(x['layers'][l]['merged_away']) for x in pr])
                                          for l in range(n_layers))
        row["rel_mse_full"] = mean_g([x['eval_rel_mse_full'] for x in pr])
        if "eval_rel_mse_merged" in pr[0]:
            row["rel_mse_merged"] = mean_g([x['eval_rel_mse_merged'] for x in pr])
        row["rel_mse_pruned"] = mean_g([x['eval_rel_mse_pruned'] for x in pr])
        for b in ("ticket", "reinit"):
            have = [x for x in pr if f"{b}_eval_rel_mse" in x]
            if have:
                row[f"rel_mse_{b}"] = mean_g([x[f'{b}_eval_rel_mse'] for x in have])
                row[f"success_{b}"] = " ".join(mean([x[f'{b}_success'][l] for x in have]) for l in range(n_layers))
                if len(have) != len(pr):  # fewer retrained seeds than pruned ones: their own n
                    row[f"seeds_{b}"] = len(have)
        row["success_full"] = " ".join(mean([x['layers'][l]['success_full'] for x in pr]) for l in range(n_layers))
        row["success_pruned"] = " ".join(mean([x['layers'][l]['success_pruned'] for x in pr]) for l in range(n_layers))
        out.append(row)
    return out


def luck(exps: Sequence[str | Path]) -> list[dict]:
    """One row per teacher node, seed and layer of the experiments `exps` (Tian 2019's lucky nodes):
    the student node that matches it best at the end (`winner`), that node's rank among the students
    by correlation at initialisation (`init_rank`, 0 = already the closest), and its correlation with
    the teacher node at initialisation and at the end (`metrics.luck`)."""
    from ticketlab.experiments.teacher_student.experiment import load_config, run_summaries
    out = []
    for e in exps:
        cfg = load_config(e)
        for r in run_summaries(Path(e), cfg):
            for l, L in enumerate(r["layers"]):
                lk = L["luck"]
                for j in range(len(lk["winner"])):
                    out.append({"experiment": Path(e).name, "multi": cfg.multi, "p": cfg.strength_decay,
                                "seed": r["seed"], "layer": l + 1, "teacher_node": j, "winner": lk["winner"][j],
                                "init_rank": lk["init_rank"][j], "students": lk["students"],
                                "init_corr": _f(lk["init_corr"][j]), "final_corr": _f(lk["final_corr"][j])})
    return out


def write_csv(path: str | Path, rows: Sequence[dict]) -> Path:
    """Write rows (the union of their keys, in first-seen order) as CSV."""
    from ticketlab.core import atomic as _atomic
    path = Path(path)
    cols = list(dict.fromkeys(k for r in rows for k in r))
    with _atomic.atomic_open(path, "w") as f:
        w = csv.DictWriter(f, cols)
        w.writeheader()
        w.writerows(rows)
    return path


def write_all(rows: Sequence[dict], exps: Sequence[str | Path], out_dir: str | Path) -> list[Path]:
    """points.csv, per_node.csv, luck.csv and (with pruning) prune.csv in `out_dir`."""
    out_dir = Path(out_dir)
    paths = [write_csv(out_dir / "points.csv", points(rows)), write_csv(out_dir / "per_node.csv", per_node(rows)),
             write_csv(out_dir / "luck.csv", luck(exps))]
    pr = prune(rows)
    if pr:
        paths.append(write_csv(out_dir / "prune.csv", pr))
    return paths


__all__ = ["points", "short_points", "per_node", "prune", "luck", "write_csv", "write_all"]
