"""Text tables for the terminal: the lottery table (LTH §2: the metric at the early-stopping
iteration, per level and branch) and a plain fixed-width formatter that every command shares.
"""

from __future__ import annotations


def pm(mean, std):
    """A fraction's mean ± std, in percent with 2 decimals."""
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def diverged_cell(a: dict) -> str:
    """The cell of a point whose every run diverged (the loss became NaN or infinite)."""
    return f"diverged ({a['n_diverged']})" if a.get("n_diverged", 0) > 1 else "diverged"


def lottery_table(agg: list[dict]) -> str:
    """Per level: weights remaining, and each branch's result (mean ± std): the task's metric at
    early stopping (test accuracy in % for classification), or for RL the headline return (the
    mean over the final evaluations, `final_return`) with its standard error (SEM, mean over runs)."""
    branches = list(dict.fromkeys(a["branch"] for a in agg))
    by = {(a["branch"], a["level"]): a for a in agg}
    metric = agg[0].get("metric", "test_acc") if agg else "test_acc"
    acc = metric.endswith("_acc")
    headline = metric == "eval_return"  # RL: the final evaluations, not the early-stopping pick
    score = "headline_score" if headline else "es_score"
    col = {b: f"{b}_acc_%" if acc else f"{b}_{agg[0].get('headline') or metric}" if headline else f"{b}_{metric}"
           for b in branches}
    rows = []
    for level in sorted({a["level"] for a in agg}):
        t = by.get(("ticket", level))
        row = {"level": level, "remaining_%": f"{100 * t['density']:.2f}" if t else "",
               "es_iter": f"{t['es_iter']:.0f}" if t and "es_iter" in t else ""}
        for b in branches:
            a = by.get((b, level))
            row[col[b]] = "" if not a else diverged_cell(a) if score not in a else (
                pm(a[score], a[score + "_std"]) if acc else f"{a[score]:.2f} ± {a[score + '_std']:.2f}"
            ) + (f" (SEM {a['headline_sem']:.2f})" if headline and "headline_sem" in a else "") + (
                f" ({a['n_diverged']} diverged)" if a.get("n_diverged") else "")
        rows.append(row)
    return text_table(rows, ["level", "remaining_%", "es_iter"] + [col[b] for b in branches])


def text_table(rows: list[dict], cols: list[str]) -> str:
    """Rows as a fixed-width text table with the given columns (floats to 4 digits, None empty)."""
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4f}"
        return "" if v is None else str(v)
    cells = [[fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


__all__ = ["text_table", "lottery_table", "pm", "diverged_cell"]
