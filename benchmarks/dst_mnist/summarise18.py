"""Summarise issue #18's dst_mnist store (`run18.py`): the tables of the README's 2026-12-06 section.

Reads every finished replicate of the points of `run18.points` from the store (folders found by config
hash, so nothing but the store is read) and writes `results-i18.md` and `results-i18.csv` next to this file:

- final test accuracy (%), mean ± std over the replicates, with n; a dagger (†k) where k replicates did
  not converge by the early-stopping rule (`ticketlab.training.rundir.converged`: early-stopping
  iteration in the last fifth of the run);
- `val gain, last 20 %`: validation accuracy at the end minus at 80 % of the run (pp, mean), which says
  whether an unconverged run was still improving;
- paired gaps (same init and data seeds, replicate by replicate): RigL − GMP, RigL − static, SET − static,
  RigL − SET;
- CPU and wall time of each point's stack (`stack_cpu_time_s`, `stack_wall_time_s`).

    PYTHONPATH=src python benchmarks/dst_mnist/summarise18.py --store /work/bench/dst/i18 --epochs 20
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _ms(vals: list[float]) -> tuple[float, float]:
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def load_point(exp: Path) -> list[dict]:
    """One dict per finished replicate of the experiment folder `exp` (empty if none finished)."""
    out = []
    for rep in sorted(exp.glob("replicate_*"), key=lambda p: int(p.name.split("_")[1])):
        if not (rep / "summary.json").exists():
            continue
        s = json.loads((rep / "summary.json").read_text())
        rows = [json.loads(x) for x in (rep / "metrics.jsonl").read_text().splitlines() if x.strip()]
        end = s["iterations"]
        at80 = max((r for r in rows if r["iter"] <= 0.8 * end), key=lambda r: r["iter"])
        out.append({"replicate": int(rep.name.split("_")[1]), "final_test_acc": 100 * s["final"]["test_acc"],
                    "es_test_acc": 100 * s["early_stop"]["test_acc"], "es_iter": s["early_stop"]["iter"],
                    "iterations": end, "converged": s.get("converged"),
                    "val_gain_last20": 100 * (s["final"]["val_acc"] - at80["val_acc"]),
                    "stack_cpu_time_s": s.get("stack_cpu_time_s"), "stack_wall_time_s": s.get("stack_wall_time_s"),
                    "group": tuple(json.loads((rep / "group.json").read_text())["members"])})
    return out


def cell(reps: list[dict], key: str = "final_test_acc") -> str:
    """'mean ± std (n)' with †k for k unconverged replicates; '–' if nothing finished."""
    if not reps:
        return "–"
    m, s = _ms([r[key] for r in reps])
    k = sum(1 for r in reps if r["converged"] is False)
    return f"{m:.2f} ± {s:.2f} (n={len(reps)})" + (f" †{k}" if k else "")


def gap(a: list[dict], b: list[dict]) -> str:
    """Paired gap a − b of final test accuracy (pp) over the replicates both finished: mean ± std (n)."""
    bb = {r["replicate"]: r for r in b}
    d = [r["final_test_acc"] - bb[r["replicate"]]["final_test_acc"] for r in a if r["replicate"] in bb]
    if not d:
        return "–"
    m, s = _ms(d)
    return f"{m:+.2f} ± {s:.2f} (n={len(d)})"


def stack_times(reps: list[dict]) -> tuple[float, float]:
    """(CPU s, wall s) of the stacks that trained these replicates, each stack counted once."""
    seen, cpu, wall = set(), 0.0, 0.0
    for r in reps:
        if r["group"] not in seen and r["stack_cpu_time_s"] is not None:
            seen.add(r["group"])
            cpu += r["stack_cpu_time_s"]
            wall += r["stack_wall_time_s"]
    return cpu, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--epochs", type=int, default=20)
    a = ap.parse_args()

    import sys
    from ticketlab.core.config import config_hash
    from ticketlab.experiments.sparse_training import SparseRun
    sys.path.insert(0, str(HERE))  # run18.py, next to this file: one list of points for both scripts
    from run18 import points

    res, csv_rows = {}, []
    for group, label, train, sparse in points(a.epochs):
        exp = Path(a.store) / f"sparse-{config_hash('sparse', SparseRun(train, sparse))}"
        reps = load_point(exp) if exp.exists() else []
        res[label] = reps
        for r in reps:
            csv_rows.append({"group": group, "label": label, "folder": exp.name,
                             **{k: v for k, v in r.items() if k != "group"}})

    L = [f"LeNet-300-100 / MNIST, {a.epochs} epochs, ERK, final test accuracy (%), mean ± std over n seeds; "
         "†k: k seeds not converged by the early-stopping rule.", "",
         "### RigL against GMP (SGD, the benchmark's recipe)", "",
         "| sparsity | dense | static | RigL | GMP | RigL − GMP (paired, pp) |", "|---|---|---|---|---|---|"]
    for s in ("90", "98"):
        L.append(f"| {s}% | {cell(res['dense sgd'])} | {cell(res[f'static sgd {s}'])} | {cell(res[f'rigl sgd {s}'])} "
                 f"| {cell(res[f'gmp sgd {s}'])} | {gap(res[f'rigl sgd {s}'], res[f'gmp sgd {s}'])} |")
    L.append(f"| 98%, RigL 2x ({2 * a.epochs} epochs) | | | {cell(res['rigl sgd 98 2x'])} | "
             f"{cell(res['gmp sgd 98'])} (1x) | {gap(res['rigl sgd 98 2x'], res['gmp sgd 98'])} |")
    L += ["", "### Does Adam blunt RigL? (98 % ERK)", "",
          "| optimizer | dense | static | SET | RigL | RigL − static (paired, pp) | SET − static (paired, pp) "
          "| RigL − SET (paired, pp) |", "|---|---|---|---|---|---|---|---|"]
    L.append(f"| SGD (Nesterov, lr 0.1) | {cell(res['dense sgd'])} | {cell(res['static sgd 98'])} "
             f"| {cell(res['set sgd 98'])} | {cell(res['rigl sgd 98'])} "
             f"| {gap(res['rigl sgd 98'], res['static sgd 98'])} | {gap(res['set sgd 98'], res['static sgd 98'])} "
             f"| {gap(res['rigl sgd 98'], res['set sgd 98'])} |")
    L.append(f"| Adam (lr 1e-3), grow_state zero | {cell(res['dense adam'])} | {cell(res['static adam 98'])} "
             f"| {cell(res['set adam 98'])} | {cell(res['rigl adam zero 98'])} "
             f"| {gap(res['rigl adam zero 98'], res['static adam 98'])} "
             f"| {gap(res['set adam 98'], res['static adam 98'])} | {gap(res['rigl adam zero 98'], res['set adam 98'])} |")
    L.append(f"| Adam (lr 1e-3), grow_state keep | | | | {cell(res['rigl adam keep 98'])} "
             f"| {gap(res['rigl adam keep 98'], res['static adam 98'])} | | {gap(res['rigl adam keep 98'], res['set adam 98'])} |")
    L.append("")
    L.append(f"RigL under Adam, keep − zero (paired): {gap(res['rigl adam keep 98'], res['rigl adam zero 98'])} pp.")
    L += ["", "### Per point: early stopping, convergence, time", "",
          "| point | final test acc | test acc at early stopping | ES iteration / run | converged | "
          "val gain, last 20 % (pp) | CPU s | wall s |", "|---|---|---|---|---|---|---|---|"]
    tot_cpu = tot_wall = 0.0
    for label, reps in res.items():
        if not reps:
            L.append(f"| {label} | not run | | | | | | |")
            continue
        cpu, wall = stack_times(reps)
        tot_cpu, tot_wall = tot_cpu + cpu, tot_wall + wall
        es = ", ".join(str(r["es_iter"]) for r in reps)
        conv = sum(1 for r in reps if r["converged"])
        L.append(f"| {label} | {cell(reps)} | {cell(reps, 'es_test_acc')} | {es} / {reps[0]['iterations']} "
                 f"| {conv}/{len(reps)} | {statistics.fmean(r['val_gain_last20'] for r in reps):+.2f} "
                 f"| {cpu:.0f} | {wall:.0f} |")
    L += ["", f"Training time over the points above (stacks of 3 seeds): {tot_cpu / 60:.1f} CPU-min, "
          f"{tot_wall / 60:.1f} wall-min."]
    (HERE / "results-i18.md").write_text("\n".join(L) + "\n")
    if csv_rows:
        with open(HERE / "results-i18.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(csv_rows[0]))
            w.writeheader()
            w.writerows(csv_rows)
    print("\n".join(L))


if __name__ == "__main__":
    main()
