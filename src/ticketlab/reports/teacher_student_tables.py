"""Tables of teacher–student results: the CLI's printed tables and the CSV files beside the plots.

- `points`: one row per experiment (teacher, over-realization, p): success rate and mean best match
  per hidden layer (mean and min–max over seeds), eval loss relative to the teacher's output
  variance, the luck readout and the wall time per run;
- `per_node`: success rate over seeds per teacher node index (SS Fig. 5's data);
- `prune`: node pruning and the ticket, per experiment, means over seeds;
- `luck`: one row per (run, layer, teacher node): the winner's initial rank and correlations.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence


def _f(v, nd=4):
    return f"{v:.{nd}f}" if isinstance(v, float) else v


def points(rows: Sequence[dict]) -> list[dict]:
    """One flat row per experiment."""
    out = []
    for r in rows:
        row = {"experiment": r["experiment"], "teacher": "-".join(map(str, r["teacher_widths"])),
               "multi": r["multi"], "p": f"{r['p']:g}",
               "seeds": f"{r['seeds']} + {r['n_diverged']} diverged" if r.get("n_diverged") else r["seeds"],
               "steps": r["steps"]}
        for l, L in enumerate(r.get("layers", [])):
            row[f"success_L{l + 1}"] = _f(L["success"], 3)
            row[f"success_L{l + 1}_minmax"] = f"{L['success_min']:.2f}-{L['success_max']:.2f}"
            row[f"mean_best_L{l + 1}"] = _f(L["mean_best"], 4)
            row[f"mean_best_init_L{l + 1}"] = _f(L["mean_best_init"], 3)
            row[f"mean_best_pre_L{l + 1}"] = _f(L["mean_best_pre"], 4)
            row[f"luck_rank_L{l + 1}"] = _f(L["luck_rank_frac"], 3)
            row[f"luck_top10_L{l + 1}"] = _f(L["luck_top10"], 3)
        if "eval_rel_mse" in r:
            row["eval_rel_mse"] = f"{r['eval_rel_mse']:.3g}"
            row["wall_s_per_run"] = f"{r['wall_time_s']:.1f}"
        out.append(row)
    return out


def short_points(rows: Sequence[dict]) -> list[dict]:
    """The columns the CLI prints: success and mean best match per layer, loss, wall time."""
    keep = ("experiment", "teacher", "multi", "p", "seeds", "eval_rel_mse", "wall_s_per_run")
    out = []
    for r in points(rows):
        row = {k: r.get(k, "") for k in keep[:5]}
        n = sum(1 for k in r if k.startswith("success_L") and not k.endswith("minmax"))
        row["success_per_layer"] = " ".join(str(r[f"success_L{l}"]) for l in range(1, n + 1))
        row["mean_best_per_layer"] = " ".join(str(r[f"mean_best_L{l}"]) for l in range(1, n + 1))
        row.update({k: r.get(k, "") for k in keep[5:]})
        out.append(row)
    return out


def per_node(rows: Sequence[dict]) -> list[dict]:
    out = []
    for r in rows:
        for l, L in enumerate(r.get("layers", [])):
            for j, v in enumerate(L["per_node_success"]):
                out.append({"experiment": r["experiment"], "multi": r["multi"], "p": r["p"], "layer": l + 1,
                            "teacher_node": j, "success_rate": _f(v, 3)})
    return out


def prune(rows: Sequence[dict]) -> list[dict]:
    """Means over seeds of the node-pruning readout, per experiment."""
    out = []
    for r in rows:
        pr = r.get("prune")
        if not pr:
            continue
        mean = lambda v: sum(v) / len(v)  # noqa: E731
        n_layers = len(pr[0]["layers"])
        row = {"experiment": r["experiment"], "teacher": "-".join(map(str, r["teacher_widths"])),
               "multi": r["multi"], "p": f"{r['p']:g}", "seeds": len(pr), "score": pr[0]["score"]}
        row["kept_per_layer"] = " ".join(str(L["keep"]) for L in pr[0]["layers"])
        row["spec_kept/spec"] = " ".join(
            f"{sum(x['layers'][l]['specialized_kept'] for x in pr)}/{sum(x['layers'][l]['specialized'] for x in pr)}"
            for l in range(n_layers))
        row["kept_spec_frac"] = " ".join(f"{mean([x['layers'][l]['kept_specialized_frac'] for x in pr]):.3f}"
                                         for l in range(n_layers))
        row["rel_mse_full"] = f"{mean([x['eval_rel_mse_full'] for x in pr]):.3g}"
        row["rel_mse_pruned"] = f"{mean([x['eval_rel_mse_pruned'] for x in pr]):.3g}"
        for b in ("ticket", "reinit"):
            have = [x for x in pr if f"{b}_eval_rel_mse" in x]
            if have:
                row[f"rel_mse_{b}"] = f"{mean([x[f'{b}_eval_rel_mse'] for x in have]):.3g}"
                row[f"success_{b}"] = " ".join(f"{mean([x[f'{b}_success'][l] for x in have]):.3f}"
                                               for l in range(n_layers))
        row["success_full"] = " ".join(f"{mean([x['layers'][l]['success_full'] for x in pr]):.3f}" for l in range(n_layers))
        row["success_pruned"] = " ".join(f"{mean([x['layers'][l]['success_pruned'] for x in pr]):.3f}"
                                         for l in range(n_layers))
        out.append(row)
    return out


def luck(exps: Sequence[str | Path]) -> list[dict]:
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
