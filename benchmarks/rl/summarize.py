"""Tables and figures of the RL lottery benchmark (benchmarks/rl/run.sh, run18.sh), from its results store.

    python benchmarks/rl/summarize.py [STORE] [OUT_DIR]   (default /work/bench/rl/store, benchmarks/rl)

For every RL lottery experiment in the store: a CSV of mean ± std per (branch, level) of the
headline return (mean test return over the final evaluations, src/ticketlab/training/final_evals.py),
the final and early-stopping evaluation returns, how many runs did not converge, CPU and wall times
and env-steps/s; a markdown file (`<name>.md`) with the headline table (mean ± std, n, mean SEM,
† = runs that did not converge), every seed's headline, and the paired comparisons of issue #18
(the ticket against each control and against the dense level 0, seed by seed: wins and the mean
difference); figures of the headline and the early-stopping return against weights remaining
(ticket vs controls) and the ticket's learning curves per level (replicate 0). Late rewinding and
rewind-to-init experiments of the same recipe are also overlaid. Yu et al. 2019 (arXiv 1906.02768)
§3 compare tickets with parameter-matched random initialisations; docs/rl_nlp.md §3.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

from ticketlab.reports import plots
from ticketlab.engine.results import aggregate, run_rows
from ticketlab.engine.store import Store
from ticketlab.training.rundir import load_tensors


# A seed-paired difference within this many standard errors (over the two runs' test episodes) is a tie.
TIE_SEMS = 2.0


def experiments(store: Path) -> list[tuple[Path, dict]]:
    out = []
    for exp in Store(store).list():
        cfg = exp.config
        if exp.kind == "lottery" and cfg.get("task") == "rl" and run_rows(exp.path):
            out.append((exp.path, cfg))
    return out


def name(cfg: dict) -> str:
    t, lot = cfg["train"], cfg["lottery"]
    # the training length too: the same recipe at two lengths (run18.sh's AL and AL2) are two experiments
    return f"{t['env'].replace('/', '_')}_{t['algo']}_{lot['strategy']}_k{lot['rewind_iter']}_{t['env_steps']}"


def table(path: Path) -> list[dict]:
    rows = run_rows(path)
    for r in rows:
        s = json.loads((Path(r["path"]) / "summary.json").read_text())
        r["env_steps_per_s"] = s.get("env_steps_per_s") or 0.0
        r["train_return"] = s["final"].get("train_return")
    agg = aggregate(rows)
    speed, train = defaultdict(list), defaultdict(list)
    for r in rows:
        speed[(r["branch"], r["level"])].append(r["env_steps_per_s"])
        if r["train_return"] is not None:
            train[(r["branch"], r["level"])].append(r["train_return"])
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
                    "es_env_step": round(a["es_iter"]), "n_unconverged": a["n_unconverged"],
                    # an RL run trains alone (stack size 1): the stack's times are the run's
                    "wall_s_per_run": round(a["stack_wall_time_s"], 1),
                    "cpu_s_per_run": round(a["stack_cpu_time_s"], 1) if "stack_cpu_time_s" in a else None,
                    "env_steps_per_s": round(sum(sp) / len(sp), 1),
                    # the stochastic training policy's mean episode return in the last rollout: on an
                    # unsolved task (LunarLander at 10 % of its length) it differs from the deterministic
                    # evaluation policy's return
                    "final_train_return": round(sum(tr) / len(tr), 1) if (tr := train[(a["branch"], a["level"])]) else None})
    return out


def paired(rows: list[dict], branch: str, level: int, against: tuple[str, int]) -> dict | None:
    """The ticket-vs-control comparison seed by seed (issue #18): `branch` at `level` against the
    run `against` = (branch, level) of the same replicate (draw 0), on the headline return.
    {"n": seeds with both, "wins": seeds where `branch` is higher, "ties", "diff_mean", "diff_std"
    (sample std over seeds), "pairs": [(replicate, value, other)]}; None without a common seed.
    Pairing by seed removes the seed-to-seed spread that both share (same data seed). A tie is a
    difference within twice its standard error over the two runs' episodes (`TIE_SEMS`): two agents
    that both collapsed to a constant action score 9.4 ± 0.1, and which is 0.04 higher is no win."""
    def by_rep(b: str, lv: int) -> dict[int, dict]:
        return {r["replicate"]: r for r in rows
                if r["branch"] == b and r["level"] == lv and r["draw"] == 0 and r.get("diverged") is None}
    mine, other = by_rep(branch, level), by_rep(*against)
    reps = sorted(set(mine) & set(other))
    if not reps:
        return None
    d, tol = [], []
    for r in reps:
        a, b = mine[r], other[r]
        d.append(a["headline_score"] - b["headline_score"])
        sems = (a.get("headline_sem"), b.get("headline_sem"))
        tol.append(TIE_SEMS * math.hypot(*sems) if None not in sems else 0.0)
    mean = sum(d) / len(d)
    std = math.sqrt(sum((x - mean) ** 2 for x in d) / (len(d) - 1)) if len(d) > 1 else 0.0
    return {"n": len(reps), "wins": sum(x > t for x, t in zip(d, tol)),
            "ties": sum(abs(x) <= t for x, t in zip(d, tol)), "diff_mean": mean, "diff_std": std,
            "pairs": [(r, mine[r]["headline_score"], other[r]["headline_score"]) for r in reps]}


def kept_per_layer(rows: list[dict], branch: str, level: int) -> dict[int, dict[str, tuple[int, int]]]:
    """{replicate: {layer: (weights kept, weights)}} of `branch` at `level` (draw 0), from each run's
    mask.pt: where global pruning puts the surviving weights (actor or critic, hidden or output layer)."""
    out = {}
    for r in rows:
        if r["branch"] == branch and r["level"] == level and r["draw"] == 0:
            masks = load_tensors(Path(r["path"]) / "mask.pt")
            out[r["replicate"]] = {k: (int(v.sum()), v.numel()) for k, v in masks.items()}
    return out


def cell(a: dict) -> str:
    """'mean ± std (n, SEM s)' of a headline, with '†k' when k of its runs did not converge."""
    mark = f" †{a['n_unconverged']}" if a.get("n_unconverged") else ""
    sem = f", SEM {a['headline_sem']:.1f}" if a.get("headline_sem") is not None else ""
    return f"{a['headline_score']:.1f} ± {a['headline_score_std']:.1f}{mark} (n {a['n']}{sem})"


def markdown(path: Path, title: str) -> str:
    """The experiment's markdown report: headline per (level, branch), seeds, paired comparisons."""
    rows = run_rows(path)
    agg = [a for a in aggregate(rows) if "headline_score" in a]
    branches = ["ticket"] + sorted({a["branch"] for a in agg} - {"ticket"})
    levels = sorted({a["level"] for a in agg})
    at = {(a["branch"], a["level"]): a for a in agg}
    dens = {a["level"]: a["density"] for a in agg}  # a control has its level's ticket's per-layer counts
    out = [f"### {title}", "", "Headline return (mean test return over the last 5 evaluations): mean ± std over "
           "seeds (n seeds, mean over runs of each run's SEM over its episodes); †k: k runs did not converge "
           "(early stopping in the last 20 % of the run).", "",
           "| weights left | " + " | ".join(branches) + " |", "|---|" + "---|" * len(branches)]
    for lv in levels:
        out.append(f"| {100 * dens[lv]:.1f} % | "
                   + " | ".join(cell(at[(b, lv)]) if (b, lv) in at else "" for b in branches) + " |")
    reps = sorted({r["replicate"] for r in rows})
    out += ["", "Per seed (headline return; ES = early-stopping env step):", "",
            "| branch | level | " + " | ".join(f"seed {r}" for r in reps) + " |", "|---|---|" + "---|" * len(reps)]
    for b in branches:
        for lv in levels:
            got = {r["replicate"]: r for r in rows if r["branch"] == b and r["level"] == lv and r["draw"] == 0}
            if got:
                out.append(f"| {b} | {lv} | " + " | ".join(
                    f"{got[r]['headline_score']:.1f}{'' if got[r]['converged'] is not False else ' †'} "
                    f"(ES {got[r]['es_iter']})" if r in got else "" for r in reps) + " |")
    out += ["", "Paired by seed (headline; wins = seeds where the first is higher by more than 2 SEM of the "
            "difference, ties = within 2 SEM):", "",
            "| comparison | level | n | wins | ties | mean difference ± std |", "|---|---|---|---|---|---|"]
    for lv in levels[1:]:
        for what, b, against in [("ticket − dense", "ticket", ("ticket", 0))] + [
                (f"ticket − {c}", "ticket", (c, lv)) for c in branches[1:]]:
            p = paired(rows, b, lv, against)
            if p:
                out.append(f"| {what} | {lv} | {p['n']} | {p['wins']} | {p['ties']} | "
                           f"{p['diff_mean']:+.1f} ± {p['diff_std']:.1f} |")
    last = max(levels)
    kept = kept_per_layer(rows, "ticket", last) if last else {}
    if kept:
        seeds = sorted(kept)
        out += ["", f"Ticket's weights kept per layer at level {last} (kept / weights):", "",
                "| layer | " + " | ".join(f"seed {r}" for r in seeds) + " |", "|---|" + "---|" * len(seeds)]
        for layer in kept[seeds[0]]:
            out.append(f"| {layer} | " + " | ".join(f"{kept[r][layer][0]} / {kept[r][layer][1]}" for r in seeds) + " |")
    return "\n".join(out) + "\n"


def main(store: str = "/work/bench/rl/store", out_dir: str = str(Path(__file__).parent)) -> None:
    store, out = Path(store), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    exps = experiments(store)
    by_recipe = defaultdict(list)
    for path, cfg in exps:
        n = name(cfg)
        rows = table(path)
        with open(out / f"{n}.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        (out / f"{n}.md").write_text(markdown(path, f"{n} ({path.name})"))
        print(f"\n## {n} ({path.name})")
        print(" | ".join(rows[0]))
        for r in rows:
            print(" | ".join(str(v) for v in r.values()))
        label = f"{cfg['train']['env']} {cfg['train']['algo']}"
        plots.plot_accuracy([path], out / f"{n}_headline_return", metric="headline_score", labels=[label])
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
            plots.plot_accuracy([p for p, _ in group], out / n, metric="headline_score", labels=labels)
    for svg in out.glob("*.svg"):  # keep the PNGs only (small outputs in the repository)
        svg.unlink()


if __name__ == "__main__":
    main(*sys.argv[1:])
