"""Tables and plots of the NLP lottery benchmarks (benchmarks/nlp/run.sh), from the results store.

Usage: .venv/bin/python benchmarks/nlp/summarize.py [STORE] [OUT_DIR]
Writes OUT_DIR/{lm,translate}_results.csv, {lm,translate}_metric.{png,svg} (the task's metric at
the early-stopping row against weights remaining, ticket vs controls, dense level dashed) and
{lm,translate}_curves.{png,svg} (learning curves of the ticket's levels), and prints a Markdown table.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import torch

from ticketlab.reports.plots import _metric_vs_density, plot_learning_curves
from ticketlab.engine.results import run_rows
from ticketlab.training import timing


def experiments(store: Path) -> dict[str, Path]:
    """The newest lottery experiment of each NLP task in the store."""
    out = {}
    for cfg in sorted(store.glob("lottery-*/config.json"), key=lambda p: p.stat().st_mtime):
        task = json.loads(cfg.read_text())["config"].get("task")
        if task in ("lm", "translate"):
            out[task] = cfg.parent
    return out


def rows(exp: Path) -> list[dict]:
    """One row per run: branch, level, density of the prunable weights and of all weights, the
    early-stopping metrics, times and throughput."""
    out = []
    for r in run_rows(exp):
        d = Path(r["path"])
        s = json.loads((d / "summary.json").read_text())
        masks = torch.load(d / "mask.pt", weights_only=True)
        pruned = sum(int((~m).sum()) for m in masks.values())
        es = s["early_stop"]
        out.append({
            "branch": r["branch"], "level": r["level"], "weights_remaining_%": round(100 * r["density"], 2),
            "all_params_remaining_%": round(100 * (1 - pruned / s["parameters"]), 2),
            "es_iter": es["iter"], "metric": s["metric"], "es_" + s["metric"]: round(es[s["metric"]], 3),
            "es_" + s["select"]: round(es[s["select"]], 4), "final_" + s["metric"]: round(s["final"][s["metric"]], 3),
            "steps": s["iterations"] - s["start_iter"], "wall_s": round(timing.read(s)["stack_wall_time_s"]),
            "cpu_s": round(timing.read(s)["stack_cpu_time_s"]), "tokens_per_s_wall": round(s["tokens_per_s"]),
            "tokens_per_cpu_s": round(s["tokens_per_cpu_s"]),
        })
    return out


def main(store: str = "/work/bench/nlp/store", out_dir: str = "benchmarks/nlp") -> None:
    out = Path(out_dir)
    for task, exp in experiments(Path(store)).items():
        rs = rows(exp)
        if not rs:
            print(f"\n### {task}: {exp.name}: no finished runs yet")
            continue
        with open(out / f"{task}_results.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rs[0]))
            w.writeheader()
            w.writerows(rs)
        title = {"lm": "Test perplexity (PTB)", "translate": "Test BLEU (Multi30k En→De)"}[task]
        _metric_vs_density([exp], out / f"{task}_metric", "es_score", [task], dense_line=True, title=title)
        plot_learning_curves(exp, out / f"{task}_curves")
        print(f"\n### {task}: {exp.name}\n")
        cols = list(rs[0])
        print("| " + " | ".join(cols) + " |")
        print("|" + "---|" * len(cols))
        for r in rs:
            print("| " + " | ".join(str(r[c]) for c in cols) + " |")
        print(f"\ntotal: {sum(r['cpu_s'] for r in rs)} CPU-s, {sum(r['wall_s'] for r in rs)} s wall")


if __name__ == "__main__":
    main(*sys.argv[1:])
