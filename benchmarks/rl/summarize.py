"""Tables and figures of the RL lottery benchmark (benchmarks/rl/run.sh), from its results store.

    python benchmarks/rl/summarize.py [STORE] [OUT_DIR]   (default /work/bench/rl/store, benchmarks/rl)

For every RL lottery experiment in the store: a CSV of mean ± std per (branch, level) of the final
and early-stopping evaluation returns, wall times and env-steps/s; figures of the final evaluation
return against weights remaining (ticket vs controls), of the return at the early-stopping point
(selected on validation episodes), and the ticket's learning curves per level (replicate 0). Late
rewinding and rewind-to-init experiments of the same recipe are also overlaid.
"""

from __future__ import annotations

import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

from ticketlab.reports import plots
from ticketlab.engine.results import aggregate, run_rows
from ticketlab.engine.store import Store


def experiments(store: Path) -> list[tuple[Path, dict]]:
    out = []
    for exp in Store(store).list():
        cfg = exp.config
        if exp.kind == "lottery" and cfg.get("task") == "rl" and run_rows(exp.path):
            out.append((exp.path, cfg))
    return out


def name(cfg: dict) -> str:
    t, lot = cfg["train"], cfg["lottery"]
    return f"{t['env'].replace('/', '_')}_{t['algo']}_{lot['strategy']}_k{lot['rewind_iter']}"


def table(path: Path) -> list[dict]:
    rows = run_rows(path)
    for r in rows:
        s = json.loads((Path(r["path"]) / "summary.json").read_text())
        r["env_steps_per_s"] = s.get("env_steps_per_s") or 0.0
    agg = aggregate(rows)
    speed = defaultdict(list)
    for r in rows:
        speed[(r["branch"], r["level"])].append(r["env_steps_per_s"])
    out = []
    for a in agg:
        sp = speed[(a["branch"], a["level"])]
        out.append({"branch": a["branch"], "level": a["level"], "n": a["n"],
                    "weights_remaining_%": round(100 * a["density"], 2),
                    "final_return": round(a["final_score"], 1), "final_return_std": round(a["final_score_std"], 1),
                    # the headline (issue #18): mean over the final evaluations, and its standard error
                    "headline_return": round(a["headline_score"], 1),
                    "headline_return_std": round(a["headline_score_std"], 1),
                    "headline_sem": round(a["headline_sem"], 1) if "headline_sem" in a else None,
                    "es_return": round(a["es_score"], 1), "es_return_std": round(a["es_score_std"], 1),
                    "es_env_step": round(a["es_iter"]), "wall_s_per_run": round(a["stack_wall_time_s"], 1),  # an RL run trains alone
                    "env_steps_per_s": round(sum(sp) / len(sp), 1)})
    return out


def main(store: str = "/work/bench/rl/store", out_dir: str = str(Path(__file__).parent)) -> None:
    store, out = Path(store), Path(out_dir)
    exps = experiments(store)
    by_recipe = defaultdict(list)
    for path, cfg in exps:
        n = name(cfg)
        rows = table(path)
        with open(out / f"{n}.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        print(f"\n## {n} ({path.name})")
        print(" | ".join(rows[0]))
        for r in rows:
            print(" | ".join(str(v) for v in r.values()))
        label = f"{cfg['train']['env']} {cfg['train']['algo']}"
        plots.plot_accuracy([path], out / f"{n}_final_return", metric="final_score", labels=[label])
        plots.plot_accuracy([path], out / f"{n}_es_return", metric="es_score", labels=[label])
        plots.plot_learning_curves(path, out / f"{n}_learning_curves")
        shape = ("rewind_iter", "levels", "controls", "control_levels", "replicates", "target_sparsity")
        recipe = json.dumps([cfg["train"], {k: v for k, v in cfg["lottery"].items() if k not in shape}], sort_keys=True)
        by_recipe[recipe].append((path, cfg))
    for group in by_recipe.values():
        if len(group) > 1:
            group.sort(key=lambda pc: -pc[1]["lottery"]["rewind_iter"])
            labels = [f"k={c['lottery']['rewind_iter']}" for _, c in group]
            n = name(group[0][1]).rsplit("_k", 1)[0] + "_rewind_ablation"
            plots.plot_accuracy([p for p, _ in group], out / n, metric="final_score", labels=labels)
    for svg in out.glob("*.svg"):  # keep the PNGs only (small outputs in the repository)
        svg.unlink()


if __name__ == "__main__":
    main(*sys.argv[1:])
