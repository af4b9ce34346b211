"""Tables of the lth_mnist re-measure (issue #18): LeNet-300-100 on MNIST, LTH §2 protocol, with the dense
level and the controls trained longer (`--baseline-length`), so that margins are against converged runs.

Prints markdown: per level the ticket (early-stopping iteration, test accuracy there and at the end) and
the controls, mean ± std over replicates with n and the † marks of unconverged runs; then the ticket's
margins over the dense network and over each control, with the replicates in which the ticket wins.

    python benchmarks/lth_mnist/summarize.py /work/bench/lth18 > benchmarks/lth_mnist/results-2026-12-06.md
"""

from __future__ import annotations

import statistics
import sys

from ticketlab import api
from ticketlab.engine.results import aggregate, run_rows

CONTROLS = ("reinit", "random_mask")


def cell(a: dict | None, key: str, scale: float = 100.0, digits: int = 2) -> str:
    """'mean ± std †k' of an aggregate row's field (empty when the point was not run)."""
    if a is None or key not in a:
        return ""
    mark = f" †{a['n_unconverged']}" if a.get("n_unconverged") else ""
    return f"{scale * a[key]:.{digits}f} ± {scale * a[key + '_std']:.{digits}f}{mark}"


def margin(rows: list[dict], level: int, other: str, other_level: int | None, key: str) -> str:
    """Ticket − other at `level` (other at `other_level`, default the same): mean ± std over the
    replicates' paired differences (pp), and in how many replicates the ticket is ahead."""
    def by_rep(branch, lv):
        return {r["replicate"]: r[key] for r in rows if r["branch"] == branch and r["level"] == lv
                and r.get("diverged") is None}
    t, o = by_rep("ticket", level), by_rep(other, level if other_level is None else other_level)
    diffs = [100 * (t[r] - o[r]) for r in sorted(t) if r in o]
    if not diffs:
        return "–"
    sd = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
    return f"{statistics.mean(diffs):+.2f} ± {sd:.2f} ({sum(d > 0 for d in diffs)}/{len(diffs)})"


def main(store: str) -> None:
    (exp,) = api.ls(store=store)
    info = api.show(exp["experiment"], store=store)
    rows = run_rows(info["path"])
    agg = {(a["branch"], a["level"]): a for a in aggregate(rows)}
    levels = sorted({lv for (b, lv) in agg if b == "ticket"})
    lot = info["config"]["lottery"]
    print(f"Experiment `{exp['experiment']}`; baseline length ×{lot.get('baseline_length', 1)} "
          "(dense level 0 and the controls).\n")
    print("### Test accuracy (%), mean ± std over replicates (n per point in the last column)\n")
    cols = ["level", "weights", "ticket ES iter", "ticket ES", "ticket final"] + \
        [f"{c} {w}" for c in CONTROLS for w in ("ES iter", "ES", "final")] + ["n"]
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for lv in levels:
        t = agg[("ticket", lv)]
        row = [str(lv), f"{100 * t['density']:.1f} %", cell(t, "es_iter", 1, 0), cell(t, "es_test_acc"),
               cell(t, "final_test_acc")]
        ns = [str(t["n"])]
        for c in CONTROLS:
            a = agg.get((c, lv))
            row += [cell(a, "es_iter", 1, 0), cell(a, "es_test_acc"), cell(a, "final_test_acc")]
            if a:
                ns.append(f"{c} {a['n']}")
        print("| " + " | ".join(row + [", ".join(ns)]) + " |")
    print("\n†k: k of the point's runs did not converge (early stopping in the last 20 % of the run).")
    for key, title in (("es_test_acc", "at early stopping"), ("final_test_acc", "at the end")):
        print(f"\n### Ticket margins (pp, test accuracy {title}): mean ± std of the paired differences "
              "over replicates (replicates in which the ticket is ahead)\n")
        print("| level | weights | vs dense (level 0) | " + " | ".join(f"vs {c}" for c in CONTROLS) + " |\n"
              + "|---|---|---|" + "---|" * len(CONTROLS))
        for lv in levels[1:]:
            cells = [margin(rows, lv, "ticket", 0, key)] + [margin(rows, lv, c, None, key) for c in CONTROLS]
            print(f"| {lv} | {100 * agg[('ticket', lv)]['density']:.1f} % | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
