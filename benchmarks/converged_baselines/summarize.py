"""Tables of benchmarks/converged_baselines: the same lottery at the recipe's length and with the
dense level and the controls trained longer (`--baseline-length`), margins side by side.

    python benchmarks/converged_baselines/summarize.py STORE > benchmarks/converged_baselines/results.md
"""

from __future__ import annotations

import sys

from ticketlab import api
from ticketlab.engine.results import aggregate, run_rows


def experiments(store: str) -> dict[int, dict]:
    """{baseline_length: {(branch, level): aggregate row}} of the store's lottery experiments."""
    out = {}
    for row in api.ls(store=store):
        exp = api.show(row["experiment"], store=store)
        length = exp["config"]["lottery"].get("baseline_length", 1)
        out[length] = {(a["branch"], a["level"]): a for a in aggregate(run_rows(exp["path"]))}
    return out


def cell(a: dict | None, key: str) -> str:
    if a is None or key not in a:
        return ""
    mark = f" †{a['n_unconverged']}" if a.get("n_unconverged") else ""
    return f"{100 * a[key]:.2f} ± {100 * a[key + '_std']:.2f}{mark}"


def main(store: str) -> None:
    exps = experiments(store)
    lengths = sorted(exps)
    for key, title in (("es_score", "at early stopping (min validation loss)"), ("final_score", "at the end")):
        print(f"\n### Test accuracy (%) {title}, mean ± std over replicates\n")
        cols = ["level", "weights"] + [f"{b} ×{n}" for n in lengths for b in ("dense/ticket", "random_mask", "reinit")]
        print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
        levels = sorted({lv for e in exps.values() for (_, lv) in e})
        for lv in levels:
            t = exps[lengths[0]].get(("ticket", lv))
            row = [str(lv), f"{100 * t['density']:.1f} %" if t else ""]
            for n in lengths:
                e = exps[n]
                row += [cell(e.get(("ticket", lv)), key), cell(e.get(("random_mask", lv)), key),
                        cell(e.get(("reinit", lv)), key)]
            print("| " + " | ".join(row) + " |")
        print(f"\nMargins (pp, {title}): ticket − dense, ticket − random mask, ticket − reinit\n")
        print("| level | " + " | ".join(f"×{n}: vs dense, vs random mask, vs reinit" for n in lengths) + " |\n|---|"
              + "---|" * len(lengths))
        for lv in levels:
            parts = []
            for n in lengths:
                e = exps[n]
                t, d = e.get(("ticket", lv)), e.get(("ticket", 0))
                if t is None or lv == 0:
                    parts.append("")
                    continue
                m = [f"{100 * (t[key] - d[key]):+.2f}"]
                for b in ("random_mask", "reinit"):
                    c = e.get((b, lv))
                    m.append(f"{100 * (t[key] - c[key]):+.2f}" if c else "–")
                parts.append(", ".join(m))
            if any(parts):
                print(f"| {lv} | " + " | ".join(parts) + " |")
        print("\n†k: k of the point's runs did not converge (early stopping in the last 20 % of the run).")


if __name__ == "__main__":
    main(sys.argv[1])
