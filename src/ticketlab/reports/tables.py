"""Text tables for the terminal: the lottery table (LTH §2: the metric at the early-stopping
iteration, per level and branch, beside its final value, with the spread and convergence marks of
issue 18, see docs/lottery.md) and a plain fixed-width formatter that every command shares.
"""

from __future__ import annotations

from ticketlab.training.rundir import CONVERGED_BEFORE


def pm(mean, std):
    """A fraction's mean ± std, in percent with 2 decimals."""
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def diverged_cell(a: dict) -> str:
    """The cell of a point whose every run diverged (the loss became NaN or infinite)."""
    return f"diverged ({a['n_diverged']})" if a.get("n_diverged", 0) > 1 else "diverged"


UNCONVERGED = "†"  # marks a point with runs whose early stopping fell in the last fifth of the run


def unconverged_mark(a: dict) -> str:
    """' †k' after a point's figures when k of its runs did not converge, else ''."""
    k = a.get("n_unconverged", 0)
    return f" {UNCONVERGED}{k}" if k else ""


def unconverged_legend(agg: list[dict]) -> str | None:
    """The legend line of the unconverged mark, when some point carries it."""
    if not any(a.get("n_unconverged") for a in agg):
        return None
    return (f"{UNCONVERGED}k: k of the point's runs did not converge (early stopping in the last "
            f"{100 * (1 - CONVERGED_BEFORE):.0f} % of the run): its figures may understate what longer training "
            "gives, and so may a margin against it")


def _column(branch: str, when: str, metric: str) -> str:
    """A metric's column: at early stopping under the names the table always had (`ticket_acc_%`, or
    `ticket_<metric>`), at the end with `final` in the name."""
    if metric.endswith("_acc"):
        return f"{branch}_acc_%" if when == "es" else f"{branch}_final_acc_%"
    return f"{branch}_{metric}" if when == "es" else f"{branch}_final_{metric}"


def lottery_table(agg: list[dict]) -> str:
    """Per level: weights remaining, and per branch the early-stopping iteration and the task's metric
    at early stopping and at the end (test accuracy in % for classification), each mean ± std over
    the point's runs; for RL, the headline return instead of the metric (the mean over the final
    evaluations, `final_return`, with its standard error SEM, mean over runs). Then a line with the
    runs per point (n) of each branch, and the legend of the unconverged mark (`unconverged_mark`)
    when a point carries it."""
    branches = list(dict.fromkeys(a["branch"] for a in agg))
    by = {(a["branch"], a["level"]): a for a in agg}
    metric = agg[0].get("metric", "test_acc") if agg else "test_acc"
    acc = metric.endswith("_acc")
    headline = metric == "eval_return"  # RL: the final evaluations, not the early-stopping pick

    def figures(b: str) -> list[tuple[str, str]]:
        """(aggregate key, column) of branch b's figures."""
        if headline:
            return [("headline_score", f"{b}_{agg[0].get('headline') or metric}")]
        return [("es_score", _column(b, "es", metric)), ("final_score", _column(b, "final", metric))]

    ns = {b: sorted({a["n"] for a in agg if a["branch"] == b}) for b in branches}
    cols = ["level", "remaining_%"]
    for b in branches:
        cols += [f"{b}_n"] if len(ns[b]) > 1 else []  # n differs between levels: a column, else the footer
        cols += [f"{b}_es_iter"] + [col for _, col in figures(b)]
    rows = []
    for level in sorted({a["level"] for a in agg}):
        t = by.get(("ticket", level))
        row = {"level": level, "remaining_%": f"{100 * t['density']:.2f}" if t else ""}
        for b in branches:
            a = by.get((b, level))
            if not a:
                continue
            row[f"{b}_n"] = str(a["n"])
            div = f" ({a['n_diverged']} diverged)" if a.get("n_diverged") else ""
            if "es_score" not in a:
                row[f"{b}_es_iter"] = diverged_cell(a)
                continue
            row[f"{b}_es_iter"] = f"{a['es_iter']:.0f} ± {a['es_iter_std']:.0f}{unconverged_mark(a)}"
            for key, col in figures(b):
                if key not in a:  # rows built by hand may carry the early-stopping figure only
                    continue
                cell = pm(a[key], a[key + "_std"]) if acc else f"{a[key]:.2f} ± {a[key + '_std']:.2f}"
                if key == "headline_score" and "headline_sem" in a:
                    cell += f" (SEM {a['headline_sem']:.2f})"
                row[col] = cell + div
        rows.append(row)
    lines = [text_table(rows, cols),
             "n (runs per point, mean ± std over them): " + ", ".join(
                 f"{b} {'–'.join(str(n) for n in ns[b][::max(len(ns[b]) - 1, 1)])}" for b in branches)]
    legend = unconverged_legend(agg)
    return "\n".join(lines + ([legend] if legend else []))


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


__all__ = ["text_table", "lottery_table", "pm", "diverged_cell", "unconverged_mark", "unconverged_legend", "UNCONVERGED"]
