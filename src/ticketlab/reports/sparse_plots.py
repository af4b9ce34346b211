"""Figures of sparse-training experiments (`ticketlab sparse-train`), as PNG and SVG.

- `plot_sparse_accuracy`: test accuracy against sparsity, one line per method, one panel per
  (model, distribution), over several experiments (RigL Fig. 2 left, Evci et al. 2019): mean ± std
  over replicates as a band, dense training as a dashed horizontal line;
- `plot_churn`: mask churn at each update over training, the fraction of connections changed
  (`ticketlab.experiments.sparse_training`'s module docstring defines it), mean over replicates, one line per
  experiment. RigL's drop fraction decays with a cosine, and churn follows it (RigL §3, Fig. 2 right).

Rows come from `ticketlab.experiments.sparse_training.replicate_row`, one per finished replicate.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from ticketlab.core.errors import TicketlabError
from ticketlab.reports.style import MARKERS, figure as _figure, mean_std, save_figure
from ticketlab.training.rundir import read_json

METRIC_LABELS = {"final_test_acc": "final test accuracy (%)", "es_test_acc": "test accuracy at early stopping (%)",
                 "best_test_acc": "best test accuracy (%), selected on the test set: not a valid estimate"}
METHOD_ORDER = ("rigl", "snfs", "set", "static", "gmp", "snip", "grasp", "synflow")


def sparse_rows(experiments: Sequence[str | Path]) -> list[dict]:
    """One row per finished replicate of each sparse-training experiment folder, with the model."""
    from ticketlab.experiments.sparse_training import replicate_row
    rows = []
    for e in experiments:
        e = Path(e)
        body = read_json(e / "config.json")
        if body.get("kind") != "sparse":
            raise TicketlabError(f"{e} is a {body.get('kind')!r} experiment; a sparse-training one is needed")
        model = body["config"]["train"]["model"]
        for rep in sorted(e.glob("replicate_*"), key=lambda p: int(p.name.split("_")[1])):
            if (rep / "summary.json").exists() and (rep / "sparsity.json").exists():
                rows.append({**replicate_row(e, int(rep.name.split("_")[1])), "model": model})
    return rows


def accuracy_table(rows: list[dict], metric: str = "final_test_acc") -> list[dict]:
    """Mean ± std of `metric` (%) per (model, method, distribution, sparsity), over replicates."""
    groups = defaultdict(list)
    for r in rows:
        dist = "-" if r["method"] == "dense" else r["distribution"]
        groups[(r["model"], r["method"], dist, r["sparsity"])].append(100 * r[metric])
    out = []
    for (model, method, dist, s), vals in sorted(groups.items()):
        m, sd = mean_std(vals)
        out.append({"model": model, "method": method, "distribution": dist, "sparsity": s, "n": len(vals),
                    "mean": m, "std": sd})
    return out


def plot_sparse_accuracy(experiments: Sequence[str | Path], out: str | Path,
                         metric: str = "final_test_acc", floor: float | None = None) -> list[Path]:
    """Accuracy against sparsity per method; one panel per (model, distribution), each line
    labelled with its method at its last point.

    The y axis spans every method's means and dense (issue 17: a fixed floor below dense hid most
    methods of a short sweep). `floor`: stop the axis `floor` points below dense instead, so that a
    collapsed run (a layer cut off at high sparsity) does not flatten the differences between the
    others; such points are drawn on the bottom edge as ▼ with their value written beside them."""
    if metric not in METRIC_LABELS:
        raise TicketlabError(f"unknown metric {metric!r}; known: {', '.join(METRIC_LABELS)}")
    table = accuracy_table(sparse_rows(experiments), metric)
    if not table:
        raise TicketlabError("no finished sparse-training runs to plot")
    panels = list(dict.fromkeys((t["model"], t["distribution"]) for t in table if t["method"] != "dense"))
    panels = panels or list(dict.fromkeys((t["model"], "-") for t in table))
    fig = _figure(len(panels))
    methods = sorted({t["method"] for t in table if t["method"] != "dense"},
                     key=lambda m: METHOD_ORDER.index(m) if m in METHOD_ORDER else 99)
    for i, (model, dist) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        dense = next((t for t in table if t["model"] == model and t["method"] == "dense"), None)
        rows = [t for t in table if t["model"] == model and t["distribution"] == dist]
        lo = None
        if floor is not None and dense is not None:
            lo = max(min(t["mean"] - t["std"] for t in rows + [dense]) - 0.2, dense["mean"] - floor)
        for j, method in enumerate(methods):
            pts = sorted((t for t in rows if t["method"] == method), key=lambda t: t["sparsity"])
            if not pts:
                continue
            x = [100 * t["sparsity"] for t in pts]
            y = [t["mean"] if lo is None else max(t["mean"], lo) for t in pts]
            sd = [t["std"] for t in pts]
            color = f"C{j % 10}"
            ax.plot(x, y, color=color, marker=MARKERS[j % len(MARKERS)], markersize=4, linewidth=1.4, label=method)
            ax.annotate(method, (x[-1], y[-1]), textcoords="offset points", xytext=(5, 0), va="center",
                        fontsize=7, color=color, annotation_clip=False)
            if any(sd):
                ax.fill_between(x, [a - b for a, b in zip(y, sd)], [a + b for a, b in zip(y, sd)],
                                color=color, alpha=0.12, linewidth=0)
            for t, xv in zip(pts, x):
                if lo is not None and t["mean"] < lo:  # off the axis: mark it on the edge
                    ax.plot([xv], [lo], marker="v", color=color, markersize=7, clip_on=False)
                    ax.annotate(f"{t['mean']:.1f}", (xv, lo), textcoords="offset points", xytext=(4, 4 + 8 * j),
                                fontsize=6, color=color)
        if dense is not None:
            ax.axhline(dense["mean"], color="0.3", linestyle="--", linewidth=1.0,
                       label=f"dense ({dense['mean']:.2f}" + (f" ± {dense['std']:.2f})" if dense["n"] > 1 else ")"))
        if lo is not None:  # the top too: a collapsed point's wide band must not stretch the axis
            ax.set_ylim(lo, max([dense["mean"]] + [t["mean"] + t["std"] for t in rows if t["mean"] >= lo]) + 0.3)
        else:  # from the data: every mean inside, a wide std band clipped rather than stretching it
            ys = [t["mean"] for t in rows] + ([dense["mean"]] if dense is not None else [])
            pad = max(0.08 * (max(ys) - min(ys)), 0.3)
            ax.set_ylim(min(ys) - pad, max(ys) + pad)
        ax.margins(x=0.12)  # room for the method labels at the lines' ends
        ax.set_xlabel("sparsity (%)")
        ax.set_ylabel(METRIC_LABELS[metric])
        ax.set_title(f"{model}, {dist}" if dist != "-" else model, fontsize=10)
        ax.grid(True, alpha=0.3)
        n_max = max(t["n"] for t in rows) if rows else 0
        ax.legend(fontsize=6, loc="best", title=f"mean ± std (≤ {n_max} seeds)", title_fontsize=6)
    return save_figure(fig, out)


def churn_curves(experiment: str | Path) -> tuple[str, list[tuple[int, float]]]:
    """(label, [(step, mean churn over replicates)]) of one experiment's mask updates."""
    e = Path(experiment)
    cfg = read_json(e / "config.json")["config"]["sparse"]
    by_step = defaultdict(list)
    for f in e.glob("replicate_*/churn.jsonl"):
        for line in f.read_text().splitlines():
            if line.strip():
                c = json.loads(line)
                by_step[c["step"]].append(c["churn"])
    label = f"{cfg['method']} {cfg['distribution']} {100 * cfg['sparsity']:g}%"
    return label, [(s, statistics.fmean(v)) for s, v in sorted(by_step.items())]


def plot_churn(experiments: Sequence[str | Path], out: str | Path) -> list[Path]:
    """Mask churn (% of connections changed per update) against the training step."""
    fig = _figure()
    ax = fig.add_subplot()
    drawn = 0
    for i, e in enumerate(experiments):
        label, pts = churn_curves(e)
        if not pts:
            continue
        ax.plot([s for s, _ in pts], [100 * c for _, c in pts], color=f"C{i % 10}", linewidth=1.2,
                marker=MARKERS[i % len(MARKERS)], markersize=2.5, label=label)
        drawn += 1
    if not drawn:
        raise TicketlabError("no mask updates to plot (dense, static and prune-at-init runs do not update masks)")
    ax.set_xlabel("training step")
    ax.set_ylabel("connections changed per update (%)")
    ax.set_title("Mask churn", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=6, loc="best", title="mean over replicates", title_fontsize=6)
    return save_figure(fig, out)


__all__ = ["sparse_rows", "accuracy_table", "plot_sparse_accuracy", "churn_curves", "plot_churn"]
