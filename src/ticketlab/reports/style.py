"""The shared look of every ticketlab figure: figure size, markers, metric labels, the
weights-remaining axis of the LTH figures (Frankle & Carbin 2019, Figs. 1, 3, 4) and the writer
of PNG and SVG files. Uses matplotlib's object API (no pyplot: no global backend, nothing shown).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Sequence

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
METRIC_LABELS = {
    "es_test_acc": "test accuracy at early stopping (%)",
    "final_test_acc": "final test accuracy (%)",
    # the best evaluation on the test set is chosen with the test labels (issue #18 point 3)
    "best_test_acc": "best test accuracy (%), selected on the test set: not a valid estimate",
    # an RL run's headline (ticketlab.training.final_evals): not the early-stopping pick
    "headline_score": "test return, mean over the final evaluations",
    "es_iter": "early-stopping iteration",
    "es_val_loss": "validation loss at early stopping",
}

# Each task's headline metric (`Domain.metric`): its name, its unit, and the factor from the stored
# value to that unit. Accuracy is stored as a fraction and shown in %; sacrebleu's BLEU is stored
# in BLEU points already; perplexity and an RL return have no unit.
TASK_METRICS = {
    "test_acc": ("test accuracy", "%", 100.0),
    "test_ppl": ("test perplexity", "", 1.0),
    "test_bleu": ("test BLEU", "BLEU points", 1.0),
    "eval_return": ("evaluation return", "mean episode return", 1.0),
}


def task_metric(metric: str) -> tuple[str, str, float]:
    """(name, unit, scale) of a task's headline metric; an unknown one is shown as stored."""
    return TASK_METRICS.get(metric, (metric.replace("_", " "), "", 1.0))


def metric_label(metric: str, prefix: str = "") -> str:
    """An axis or column label for a task's headline metric, with its unit: "ES test accuracy (%)"."""
    name, unit, _ = task_metric(metric)
    text = f"{prefix} {name}".strip()
    return f"{text} ({unit})" if unit else text


def mean_std(vals: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value) of what a figure or table shows over
    replicates."""
    m = statistics.fmean(vals)
    return m, statistics.stdev(vals) if len(vals) > 1 else 0.0


def figure(ncols: int = 1) -> Figure:
    """A constrained-layout figure, one 6.4 x 4.2 in panel wide per column."""
    return Figure(figsize=(6.4 * ncols if ncols > 1 else 6.4, 4.2), layout="constrained")


def save_figure(fig: Figure, out: str | Path) -> list[Path]:
    """Write `fig` as out.png (150 dpi) and out.svg (text kept as text); return both paths."""
    out = Path(out)
    if out.suffix.lower() in (".png", ".svg"):
        out = out.with_suffix("")
    out.parent.mkdir(parents=True, exist_ok=True)
    png, svg = out.with_name(out.name + ".png"), out.with_name(out.name + ".svg")
    fig.savefig(png, dpi=150)
    # a fixed hash salt makes the SVG reproducible; the name keeps ids distinct between figures
    with matplotlib.rc_context({"svg.hashsalt": f"ticketlab-{out.name}", "svg.fonttype": "none"}):
        fig.savefig(svg, metadata={"Date": None})
    return [png, svg]


def density_axis(ax, percents: Sequence[float]) -> None:
    """Log x axis of percent of weights remaining, decreasing left to right (100 → 1), with
    ticks at the levels' own densities (as in the LTH figures), thinned to at most 10."""
    ticks = sorted({round(p, 6) for p in percents}, reverse=True)
    ax.set_xscale("log")
    ax.set_xlim(ticks[0] * 1.12, ticks[-1] / 1.12)
    step = -(-len(ticks) // 10)
    ticks = ticks[::step]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{t:.3g}" for t in ticks], fontsize=8)
    ax.set_xlabel("weights remaining (%)")
    ax.grid(True, which="major", alpha=0.3)


__all__ = ["MARKERS", "METRIC_LABELS", "TASK_METRICS", "task_metric", "metric_label", "figure", "save_figure", "density_axis"]
