"""Summarise the issue #18 re-measurement of the teacher–student benchmark from its store.

Reads what `run18.sh` trained (README.md, "Re-measured 2026-12-06") and prints the README's tables
as markdown, every figure over seeds as mean ± std with its n. Nothing here trains or edits a store.

    PYTHONPATH=src python benchmarks/teacher_student/summarise18.py [STORE] > benchmarks/teacher_student/re18/summary.md

Convergence mark (†): the teacher–student loop has no early stopping, so a run counts as converged
when its specialization has stopped moving: no hidden layer's mean best-match correlation rose by
more than 0.01 over the last 20 % of the steps (metrics.jsonl, the log row at 80 % against the
last). A mean over seeds gets † when any of its runs is unconverged; the count is given.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
from pathlib import Path

from ticketlab.experiments.teacher_student.experiment import (load_config, point_row, prune_dir, prune_readout,
                                                              run_summaries)

STORE = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/bench/ts/store")
HERE = Path(__file__).resolve().parent / "re18"
RISE = 0.01  # the † threshold on a layer's mean best match over the last 20 % of the run


def ms(v, fmt=".3g"):
    """ "mean ± std" (sample std) of the finite values, and their n."""
    v = [x for x in v if x is not None and math.isfinite(x)]
    if not v:
        return "–"
    m = sum(v) / len(v)
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return f"{m:{fmt}} ± {sd:{fmt}}"


def unconverged(run_dir: Path, steps: int) -> bool:
    """Whether some layer's mean best match rose by more than RISE over the last 20 % of the run."""
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    late = [r for r in rows if r["iter"] <= 0.8 * steps][-1]
    last = rows[-1]
    mean = lambda b: sum(b) / len(b)  # noqa: E731
    return any(mean(b1) - mean(b0) > RISE for b0, b1 in zip(late["best"], last["best"]))


def experiments():
    for e in sorted(STORE.glob("teacher_student-*")):
        if (e / "config.json").exists():
            yield e, load_config(e)


def prunes(e: Path, cfg, merge_cos: float | None) -> list[dict]:
    """The node-pruning readouts of every finished seed, with or without a merge at `merge_cos`."""
    c = dataclasses.replace(cfg, prune=True, prune_merge=merge_cos is not None,
                            prune_merge_cos=merge_cos if merge_cos is not None else 0.95)
    out = []
    for r in run_summaries(e, c):
        d = e / f"seed_{r['seed']}"
        if (prune_dir(d, c) / "pruned.json").exists():
            out.append(prune_readout(d, c))
    return out


def cpu_wall(path: Path) -> str:
    """CPU (user + sys) and wall seconds from a `/usr/bin/time -v` log."""
    t = path.read_text()
    u = float(re.search(r"User time \(seconds\): ([\d.]+)", t).group(1))
    s = float(re.search(r"System time \(seconds\): ([\d.]+)", t).group(1))
    w = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", t).group(1).split(":")
    wall = sum(float(x) * 60 ** i for i, x in enumerate(reversed(w)))
    return f"{u + s:.0f} s CPU, {wall:.0f} s wall"


def two_layer(exps):
    pts = sorted(((cfg.multi, cfg.strength_decay, e, cfg) for e, cfg in exps if cfg.teacher_widths == (10,)),
                 key=lambda t: t[:2])
    print("### Two-layer: pruning to the teacher's 10 nodes, without and with merging co-aligned nodes\n")
    print("Relative eval MSE (eval MSE / teacher output variance) of the student: full, then pruned to 10 nodes "
          "by fan-out norm without merge, and after merging at cosine 0.99 / 0.95 / 0.9. No retraining.\n")
    print("| student, p | n | † | full | pruned, no merge | merged (0.95), unpruned | pruned, merge 0.99 "
          "| pruned, merge 0.95 | pruned, merge 0.9 |")
    print("|---|---|---|---|---|---|---|---|---|")
    cover = []
    for m, p, e, cfg in pts:
        runs = run_summaries(e, cfg)
        n_unc = sum(unconverged(e / f"seed_{r['seed']}", cfg.steps) for r in runs)
        plain = prunes(e, cfg, None)
        mg = {c: prunes(e, cfg, c) for c in (0.99, 0.95, 0.9)}
        print(f"| ×{m}, p = {p:g} | {len(runs)} | {n_unc} | {ms([x['eval_rel_mse_full'] for x in plain])} "
              f"| {ms([x['eval_rel_mse_pruned'] for x in plain])} "
              f"| {ms([x.get('eval_rel_mse_merged') for x in mg[0.95]])} | "
              + " | ".join(ms([x['eval_rel_mse_pruned'] for x in mg[c]]) for c in (0.99, 0.95, 0.9)) + " |")
        cover.append((m, p, runs, plain, mg))
    print("\nTeacher nodes covered (success: fraction of the 10 teacher nodes with a student node at ρ ≥ 0.95) "
          "before and after pruning, and the student nodes the merge folded away (of 10 × multi):\n")
    print("| student, p | n | full | pruned, no merge | pruned, merge 0.95 | pruned, merge 0.9 "
          "| merged away (0.95) | merged away (0.9) |")
    print("|---|---|---|---|---|---|---|---|")
    for m, p, runs, plain, mg in cover:
        L = lambda xs, k: [x["layers"][0][k] for x in xs]  # noqa: E731
        print(f"| ×{m}, p = {p:g} | {len(plain)} | {ms(L(plain, 'success_full'), '.3f')} "
              f"| {ms(L(plain, 'success_pruned'), '.3f')} | {ms(L(mg[0.95], 'success_pruned'), '.3f')} "
              f"| {ms(L(mg[0.9], 'success_pruned'), '.3f')} | {ms(L(mg[0.95], 'merged_away'), '.1f')} "
              f"| {ms(L(mg[0.9], 'merged_away'), '.1f')} |")
    print()
    if not any("ticket_eval_rel_mse" in x for _, _, _, plain, _ in cover for x in plain):
        return
    print("Retrained for the full 100,000 steps (run18.sh retrain): the ticket (kept nodes — with merge, each "
          "group's representative — from their own initial weights) against a fresh init of the same 100-10-50 "
          "shape. Relative eval MSE and success; \"ticket wins\" counts the seed pairs where the ticket's "
          "relative MSE is lower.\n")
    print("The † column counts unconverged retrains (tickets + reinits, by the rule above).\n")
    print("| student, p | n | no merge: ticket MSE | reinit MSE | ticket / reinit success | ticket wins | † "
          "| merge 0.95: ticket MSE | reinit MSE | ticket / reinit success | ticket wins | † |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for m, p, runs, plain, mg in cover:
        e, cfg = next((e, c) for mm, pp, e, c in pts if (mm, pp) == (m, p))
        cells = []
        for cos, xs in ((None, plain), (0.95, mg[0.95])):
            xs = [x for x in xs if "ticket_eval_rel_mse" in x and "reinit_eval_rel_mse" in x]
            wins = sum(x["ticket_eval_rel_mse"] < x["reinit_eval_rel_mse"] for x in xs)
            c = dataclasses.replace(cfg, prune=True, prune_merge=cos is not None, prune_merge_cos=cos or 0.95)
            dag = sum(unconverged(prune_dir(e / f"seed_{r['seed']}", c) / b, cfg.steps) for r in runs
                      for b in ("ticket", "reinit") if (prune_dir(e / f"seed_{r['seed']}", c) / b / "summary.json").exists())
            cells.append(f"{ms([x['ticket_eval_rel_mse'] for x in xs])} | {ms([x['reinit_eval_rel_mse'] for x in xs])} "
                         f"| {ms([x['ticket_success'][0] for x in xs], '.2f')} / "
                         f"{ms([x['reinit_success'][0] for x in xs], '.2f')} | {wins}/{len(xs)} | {dag}")
        print(f"| ×{m}, p = {p:g} | {len(plain)} | " + " | ".join(cells) + " |")
    print()


def multi_layer(exps):
    big = [(e, cfg) for e, cfg in exps if cfg.teacher_widths == (50, 75, 100, 125)]
    for e, cfg in big:
        row = point_row(e, cfg)
        runs = run_summaries(e, cfg)
        if not runs:
            print(f"### Multi-layer 50-75-100-125: no finished run yet in {e.name}\n")
            continue
        unc = [unconverged(e / f"seed_{r['seed']}", cfg.steps) for r in runs]
        n = len(runs)
        print(f"### Multi-layer 50-75-100-125, student ×{cfg.multi}, {cfg.steps} steps, seeds "
              f"{', '.join(str(r['seed']) for r in runs)} (n = {n}; unconverged by the † rule: {sum(unc)})\n")
        print("| hidden layer | teacher nodes | mean best match at init | at the end | success (ρ ≥ 0.95) "
              "| rise over the last 20 % | luck: mean rank fraction (winners) / top 10 % |")
        print("|---|---|---|---|---|---|---|")
        for l, L in enumerate(row["layers"]):
            rises = []
            for r in runs:
                rows = [json.loads(x) for x in (e / f"seed_{r['seed']}" / "metrics.jsonl").read_text().splitlines()]
                late = [x for x in rows if x["iter"] <= 0.8 * cfg.steps][-1]
                rises.append(sum(rows[-1]["best"][l]) / len(rows[-1]["best"][l])
                             - sum(late["best"][l]) / len(late["best"][l]))
            dag = "†" if any(x > RISE for x in rises) else ""
            luck = (f"{L['luck_rank_frac']:.3f} ± {L['luck_rank_frac_std']:.3f} / {L['luck_top10']:.0%} "
                    f"(n = {L['luck_n']})" if L["luck_n"] else "(no specialized node)")
            print(f"| {l + 1} | {len(runs[0]['layers'][l]['best'])} | {L['mean_best_init']:.3f} ± "
                  f"{L['mean_best_init_std']:.3f} | {L['mean_best']:.3f} ± {L['mean_best_std']:.3f}{dag} "
                  f"| {L['success']:.3f} ± {L['success_std']:.3f} | {ms(rises, '+.3f').replace('± +', '± ')} | {luck} |")
        print(f"\nRelative eval MSE at the end: {row['eval_rel_mse']:.3g} ± {row['eval_rel_mse_std']:.3g} (n = {n}).\n")
        plain = prunes(e, cfg, None)
        if plain:
            print("Node pruning to 50-75-100-125 by fan-out norm (no retraining):\n")
            print("| | n | relative eval MSE | success per layer after pruning | nodes merged away per layer |")
            print("|---|---|---|---|---|")
            print(f"| full student | {len(plain)} | {ms([x['eval_rel_mse_full'] for x in plain])} | "
                  + " / ".join(ms([x['layers'][l]['success_full'] for x in plain], '.2f') for l in range(4))
                  + " | – |")
            print(f"| pruned, no merge | {len(plain)} | {ms([x['eval_rel_mse_pruned'] for x in plain])} | "
                  + " / ".join(ms([x['layers'][l]['success_pruned'] for x in plain], '.2f') for l in range(4))
                  + " | – |")
            for c in (0.95, 0.9):
                mg = prunes(e, cfg, c)
                if not mg:
                    continue
                print(f"| merged at {c:g}, unpruned | {len(mg)} | {ms([x['eval_rel_mse_merged'] for x in mg])} "
                      f"| – | " + " / ".join(ms([x['layers'][l]['merged_away'] for x in mg], '.0f')
                                            for l in range(4)) + " |")
                print(f"| pruned, merge {c:g} | {len(mg)} | {ms([x['eval_rel_mse_pruned'] for x in mg])} | "
                      + " / ".join(ms([x['layers'][l]['success_pruned'] for x in mg], '.2f') for l in range(4))
                      + " | – |")
            print()


def timings():
    print("### Compute (`/usr/bin/time -v` of each command)\n")
    for p in sorted(HERE.glob("*/time*.txt")):
        if "Elapsed" in p.read_text():
            print(f"- `{p.relative_to(HERE.parent)}`: {cpu_wall(p)}")
    print()


if __name__ == "__main__":
    exps = list(experiments())
    two_layer(exps)
    multi_layer(exps)
    timings()
