"""Figures of lottery experiments, in the style of the LTH papers; each written as PNG and SVG.

- `plot_accuracy`: test accuracy against the percent of weights remaining, log axis decreasing
  from 100 (LTH Figs. 1, 3, 4): one line per branch (the ticket and each control) per experiment,
  mean ± std over replicates and control draws as a shaded band, the dense network (level 0)
  as a dashed horizontal line; each branch's label gives its runs per point (n), and a point with
  runs that did not converge (`ticketlab.training.rundir.converged`) gets a hollow marker (issue 18);
- `plot_early_stop`: the early-stopping iteration against weights remaining (LTH Fig. 4 left);
- `plot_instability`: the test error along the linear path between two copies, and the
  instability against the rewind point k, one line per level (LMC Figs. 3, 5);
- `plot_learning_curves`: validation and test accuracy against the iteration, for a `train`
  experiment or for every level of a lottery experiment's first replicate;
- `plot_all`: whatever applies to the given experiments.

`out` is a path without extension (a `.png`/`.svg` suffix is ignored): `out.png` and `out.svg`
are written and returned. Several experiments are overlaid, each labelled by the config keys
that tell them apart (else by folder name). Figures use matplotlib's object API (no pyplot, so
no global backend is set and nothing is shown on screen).
"""

from __future__ import annotations

import math

import json
import re
from pathlib import Path
from typing import Sequence

import matplotlib

from ticketlab.core.errors import TicketlabError
from ticketlab.engine.results import METRICS, aggregate, result_key, run_rows
from ticketlab.experiments.lottery.controls import CONTROLS, branch_order
from ticketlab.reports.style import MARKERS, METRIC_LABELS, density_axis, figure, metric_label, save_figure  # noqa: F401
from ticketlab.reports.style import task_metric as task_metric_name  # `task_metric` names a parameter here
from ticketlab.training.rundir import CONVERGED_BEFORE, early_stopping, read_json, read_metrics


TICKET_COLOR = "C0"  # the branches' colours, line styles and labels are the controls' (`CONTROLS`)
LEVEL_STYLES = ("-", "--", ":", "-.")


# ---- experiments: kinds, configs, labels -------------------------------------------------------

def experiment_kind(path: str | Path) -> str:
    """'train', 'lottery', ... from config.json; else guessed from the folder's content."""
    path = Path(path)
    cfg = path / "config.json"
    if cfg.exists():
        return read_json(cfg).get("kind", "unknown")  # checked: a damaged file is one line
    if (path / "metrics.jsonl").exists():
        return "run"
    if any(path.glob("replicate_*")):
        return "lottery"
    raise TicketlabError(f"{path} is neither an experiment nor a run folder")


def _config(path: Path) -> dict:
    cfg = path / "config.json"
    return json.loads(cfg.read_text()) if cfg.exists() else {}


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k in ("train", "lottery"):  # LotteryRun's two configs
            out.update(_flat(v, ""))
        else:
            out[prefix + k] = json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v
    return out


def experiment_labels(experiments: Sequence[str | Path], max_keys: int = 3) -> list[str]:
    """A short label per experiment: the config keys whose values differ between them
    ("rewind_iter=500, lr=0.1"), or the folder name when there is one experiment, when nothing
    differs or when more than `max_keys` keys do."""
    paths = [Path(e) for e in experiments]
    if len(paths) < 2:
        return [p.name for p in paths]
    flats = []
    for p in paths:
        body = _config(p)
        flats.append(_flat(body.get("identity") or body.get("config") or {}))
    keys = sorted({k for f in flats for k in f})
    diff = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flats}) > 1]
    labels = []
    for p, f in zip(paths, flats):
        if not diff or len(diff) > max_keys:
            labels.append(p.name)
        else:
            labels.append(", ".join(f"{k}={f.get(k)}" for k in diff))
    if len(set(labels)) < len(labels):
        return [p.name for p in paths]
    return labels


def run_name(path: str | Path) -> str:
    """What a figure calls an experiment: a sparse-training one by its method, distribution and
    sparsity ("rigl, erk, 90% sparse"), any other by its folder name."""
    p = Path(path)
    sparse = _config(p).get("config", {}).get("sparse") if (p / "config.json").exists() else None
    if not isinstance(sparse, dict) or "method" not in sparse:
        return p.name
    if sparse["method"] == "dense":
        return "dense"
    return f"{sparse['method']}, {sparse.get('distribution', '?')}, {100 * sparse.get('sparsity', 0):g}% sparse"


def _slug(name: str) -> str:
    """A file-name form of `run_name`: "rigl_erk_90pct"."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", name.replace("% sparse", "pct")).strip("_")


def _title(experiments: Sequence[Path]) -> str:
    parts = []
    for p in experiments:
        body = _config(Path(p)).get("config", {})
        tr = body.get("train", body)
        if tr.get("model") and tr.get("dataset"):
            parts.append(f"{tr['model']} on {tr['dataset']}")
    return " / ".join(dict.fromkeys(parts))


# ---- figure helpers ----------------------------------------------------------------------------

def _style(i_exp: int, n_exp: int, branch: str) -> dict:
    """One experiment: colour by branch. Several: colour by experiment, line style by branch."""
    control = CONTROLS.get(branch)
    if n_exp == 1:
        color = TICKET_COLOR if branch == "ticket" else control.color if control else "C7"
        return dict(color=color, linestyle="-", marker="o")
    return dict(color=f"C{i_exp % 10}", linestyle=control.linestyle if control else "-",
                marker=MARKERS[i_exp % len(MARKERS)])


def _label(branch: str) -> str:
    return CONTROLS[branch].label if branch in CONTROLS else branch


def _aggregates(experiments: Sequence[Path]) -> list[list[dict]]:
    out = []
    for p in experiments:
        rows = run_rows(p)
        if not rows:
            raise TicketlabError(f"{p}: no finished lottery runs to plot")
        out.append(aggregate(rows))
    return out


def _metric_vs_density(experiments, out, metric: str, labels, *, dense_line: bool, title: str) -> list[Path]:
    if metric not in METRICS:
        raise TicketlabError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    paths = [Path(e) for e in experiments]
    labels = list(labels) if labels is not None else experiment_labels(paths)
    if len(labels) != len(paths):
        raise ValueError(f"got {len(labels)} labels for {len(paths)} experiments")
    aggs = _aggregates(paths)
    task_metrics = list(dict.fromkeys(a[0].get("metric", "test_acc") for a in aggs if a))
    if len(task_metrics) > 1:  # one axis cannot hold an accuracy and a perplexity
        which = ", ".join(f"{p.name}: {a[0].get('metric', 'test_acc')}" for p, a in zip(paths, aggs) if a)
        raise TicketlabError(f"cannot overlay experiments with different metrics ({', '.join(task_metrics)}; "
                             f"{which}); plot each metric's experiments separately")
    task_metric = task_metrics[0] if task_metrics else "test_acc"
    scale = 100.0 if metric.endswith("_acc") or (metric.endswith("_score") and task_metric.endswith("_acc")) else 1.0
    fig = figure()
    ax = fig.add_subplot()
    xs_all, n_max, any_unconverged = [], 1, False
    for i, (label, agg) in enumerate(zip(labels, aggs)):
        branches = [b for b in branch_order() if any(a["branch"] == b for a in agg)]
        branches += sorted({a["branch"] for a in agg} - set(branches))
        for b in branches:
            n_div = sum(a.get("n_diverged", 0) for a in agg if a["branch"] == b)  # counted, not plotted
            rs = sorted((a for a in agg if a["branch"] == b and metric in a), key=lambda a: a["level"])
            x = [100 * a["density"] for a in rs]
            y = [scale * a[metric] for a in rs]
            s = [scale * a[metric + "_std"] for a in rs]
            n_max = max([n_max, *(a["n"] for a in rs)])
            xs_all += x or [100 * a["density"] for a in agg if a["branch"] == b]  # all diverged: the axis still
            name = (_label(b) if len(paths) == 1 else f"{label}: {_label(b)}") + (
                f" ({n_div} diverged)" if n_div else "")
            ns = sorted({a["n"] for a in rs})
            name += f" (n={'–'.join(str(n) for n in ns[::max(len(ns) - 1, 1)])})" if ns else ""
            st = _style(i, len(paths), b)
            ax.plot(x, y, label=name, markersize=4, linewidth=1.6, **st)
            # a point with runs that did not converge: a hollow marker over the filled one
            hollow = [(xv, yv) for xv, yv, a in zip(x, y, rs) if a.get("n_unconverged")]
            if hollow:
                any_unconverged = True
                ax.plot(*zip(*hollow), linestyle="none", marker=st["marker"], markersize=6,
                        markerfacecolor="white", markeredgecolor=st["color"])
            if any(v > 0 for v in s):
                ax.fill_between(x, [a - d for a, d in zip(y, s)], [a + d for a, d in zip(y, s)],
                                color=st["color"], alpha=0.15, linewidth=0)
        dense = next((a for a in agg if a["branch"] == "ticket" and a["level"] == 0), None)
        if dense_line and dense is not None and metric in dense:
            ax.axhline(scale * dense[metric], color="0.35" if len(paths) == 1 else f"C{i % 10}",
                       linestyle="--", linewidth=1.0, alpha=0.8,
                       label=("dense (level 0)" if len(paths) == 1 else f"{label}: dense")
                       + (f", {dense['n_unconverged']} of {dense['n']} not converged" if dense.get("n_unconverged") else ""))
    density_axis(ax, xs_all)
    ax.set_ylabel(METRIC_LABELS.get(metric) or metric_label(task_metric, {"es": "ES"}.get(metric.split("_")[0],
                                                                                          metric.split("_")[0])))
    if title == "Accuracy" and task_metric != "test_acc":  # the task's own metric: "Test perplexity"
        name = task_metric_name(task_metric)[0]
        title = name[0].upper() + name[1:]
    sub = _title(paths)
    ax.set_title(f"{title}{' — ' + sub if sub else ''}", fontsize=10)
    if any_unconverged:  # the legend's entry for the hollow markers
        ax.plot([], [], linestyle="none", marker="o", markersize=6, markerfacecolor="white", markeredgecolor="0.3",
                label=f"hollow: some runs did not converge (ES in the last {100 * (1 - CONVERGED_BEFORE):.0f} %)")
    ax.legend(fontsize=7, loc="best", title=f"mean ± std (≤ {n_max} runs per point)", title_fontsize=7)
    return save_figure(fig, out)


# ---- the plots ---------------------------------------------------------------------------------

def plot_accuracy(experiments: Sequence[str | Path], out: str | Path, metric: str = "es_test_acc",
                  labels: Sequence[str] | None = None) -> list[Path]:
    """Test accuracy (`metric`: es_test_acc, final_test_acc or best_test_acc) against weights
    remaining, one line per branch per experiment, mean ± std band, dense level 0 dashed.
    best_test_acc is selected on the test set (not a valid estimate); its axis label says so."""
    return _metric_vs_density(experiments, out, metric, labels, dense_line=True, title="Accuracy")


def plot_early_stop(experiments: Sequence[str | Path], out: str | Path,
                    labels: Sequence[str] | None = None) -> list[Path]:
    """Early-stopping iteration (minimum validation loss) against weights remaining."""
    return _metric_vs_density(experiments, out, "es_iter", labels, dense_line=False, title="Early stopping")


def plot_instability(experiments: Sequence[str | Path], out: str | Path,
                     labels: Sequence[str] | None = None) -> list[Path]:
    """Left: test error along the linear path between the two copies (mean over replicates),
    per (level, k). Right: instability against the rewind point k, one line per level."""
    from ticketlab.experiments.lottery.instability import instability_rows

    paths = [Path(e) for e in experiments]
    labels = list(labels) if labels is not None else experiment_labels(paths)
    per_exp = [instability_rows(p) for p in paths]
    if not any(per_exp):
        raise TicketlabError("no instability results to plot; run `ticketlab instability` first")
    fig = figure(2)
    ax_path, ax_k = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    cmap = matplotlib.colormaps["viridis"]
    ks = sorted({r["rewind_iter"] for rows in per_exp for r in rows})
    for i, (label, rows) in enumerate(zip(labels, per_exp)):
        levels = sorted({r["level"] for r in rows})
        for j, L in enumerate(levels):
            at_level = [r for r in rows if r["level"] == L]
            name = f"level {L} ({100 * at_level[0]['density']:.3g}% left)"
            if len(paths) > 1:
                name = f"{label}: {name}"
            color = f"C{(i * len(levels) + j) % 10}"
            xs, means, stds = [], [], []
            for k in sorted({r["rewind_iter"] for r in at_level}):
                vals = [100 * r["instability"] for r in at_level if r["rewind_iter"] == k]
                m = sum(vals) / len(vals)
                xs.append(k)
                means.append(m)
                stds.append((sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5 if len(vals) > 1 else 0.0)
                for n_points in sorted({r["points"] for r in at_level if r["rewind_iter"] == k}):
                    same = [r for r in at_level if r["rewind_iter"] == k and r["points"] == n_points]
                    errs = [100 * sum(r["errors"][t] for r in same) / len(same) for t in range(n_points)]
                    shade = cmap(ks.index(k) / max(len(ks) - 1, 1))
                    ax_path.plot(same[0]["alphas"], errs, color=shade, linestyle=LEVEL_STYLES[j % len(LEVEL_STYLES)],
                                 marker=MARKERS[i % len(MARKERS)], markersize=3, linewidth=1.2,
                                 label=f"{name}, k={k}")
            ax_k.errorbar(xs, means, yerr=stds if any(stds) else None, color=color, marker=MARKERS[i % len(MARKERS)],
                          markersize=4, linewidth=1.6, capsize=3, label=name)
    ax_path.set_xlabel("interpolation α")
    ax_path.set_ylabel("test error (%)")
    ax_path.set_title("Error along the linear path", fontsize=10)
    ax_path.grid(True, alpha=0.3)
    ax_path.legend(fontsize=6, loc="best")
    ax_k.axhline(2.0, color="0.5", linestyle=":", linewidth=1, label="2% (LMC's stability threshold)")
    ax_k.set_xlabel("rewind point k (iteration)")
    ax_k.set_ylabel("instability (percentage points of error)")
    sub = _title(paths)
    ax_k.set_title(f"Instability{' — ' + sub if sub else ''}", fontsize=10)
    ax_k.grid(True, alpha=0.3)
    ax_k.legend(fontsize=7, loc="best")
    return save_figure(fig, out)


def _metrics(path: Path) -> list[dict]:
    return read_metrics(path)  # the run folder's reader: rows keyed by "iter", old "step" rows too


def learning_curve_runs(run_dir_or_exp: str | Path) -> list[tuple[str, Path]]:
    """(label, run folder) of the runs whose learning curves `plot_learning_curves` draws: the
    folder itself when it holds metrics.jsonl (a `train` experiment or any run), else every
    ticket level of a lottery experiment's first replicate."""
    p = Path(run_dir_or_exp)
    if (p / "metrics.jsonl").exists():
        return [(p.name, p)]
    reps = sorted(p.glob("replicate_*"), key=lambda q: int(q.name.split("_")[1]))
    if reps and (reps[0] / "metrics.jsonl").exists():  # a sparse-training experiment: one run per replicate
        return [(q.name.replace("_", " "), q) for q in reps if (q / "metrics.jsonl").exists()]
    if reps:
        levels = sorted((d for d in reps[0].glob("level_*") if (d / "metrics.jsonl").exists()),
                        key=lambda d: int(d.name.split("_")[1]))
        out = []
        for d in levels:
            label = d.name.replace("_", " ")
            if (d / "mask.pt").exists():
                from ticketlab.experiments.lottery.trunk import load_masks
                from ticketlab.core.masks import density
                label += f" ({100 * density(load_masks(d / 'mask.pt')):.3g}% left)"
            out.append((label, d))
        if out:
            return out
    raise TicketlabError(f"{p}: no metrics.jsonl to plot learning curves from")


def _curve_keys(rows: list[dict]) -> tuple[str, str]:
    """The two columns of metrics.jsonl to draw: validation and test accuracy for classification;
    for other tasks the first two numeric columns after `iter` (e.g. evaluation return, perplexity)."""
    if "val_acc" in rows[0] and "test_acc" in rows[0]:
        return "val_acc", "test_acc"
    keys = [k for k, v in rows[0].items() if k != "iter" and isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not keys:
        raise TicketlabError("metrics.jsonl rows have no numeric column to plot")
    return keys[0], keys[1] if len(keys) > 1 else keys[0]


def plot_learning_curves(run_dir_or_exp: str | Path, out: str | Path) -> list[Path]:
    """Validation and test accuracy (other tasks: their first two metrics) against the iteration,
    one line per run, with the early-stopping iteration (minimum validation loss) marked."""
    runs = learning_curve_runs(run_dir_or_exp)
    fig = figure(2)
    axes = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    cmap = matplotlib.colormaps["viridis"]
    keys = None
    for i, (label, d) in enumerate(runs):
        rows = _metrics(d / "metrics.jsonl")
        if not rows:
            continue
        keys = keys or _curve_keys(rows)
        scale = 100.0 if keys[0].endswith("_acc") else 1.0
        color = "C0" if len(runs) == 1 else cmap(i / max(len(runs) - 1, 1) * 0.9)
        es = early_stopping(rows, "val_loss") if "val_loss" in rows[0] else None
        its = [r["iter"] for r in rows]
        for ax, key in zip(axes, keys):
            ax.plot(its, [scale * r[key] if r[key] is not None else math.nan for r in rows],  # null: diverged
                    color=color, linewidth=1.3, label=label)
            if es is not None:
                ax.plot([es["iter"]], [scale * es[key]], color=color, marker="o", markersize=5,
                        markeredgecolor="black", markeredgewidth=0.6, linestyle="none")
    name = run_name(run_dir_or_exp)
    keys = keys or ("val_acc", "test_acc")
    for ax, key in zip(axes, keys):
        what = {"val_acc": "validation accuracy (%)", "test_acc": "test accuracy (%)"}.get(key, key)
        ax.set_xlabel("iteration")
        ax.set_ylabel(what)
        ax.grid(True, alpha=0.3)
        ax.set_title(f"{what[0].upper() + what[1:]} — {name}", fontsize=10)
    axes[1].legend(fontsize=7, loc="best", title="● early stopping" if keys[0] == "val_acc" else None,
                   title_fontsize=7)
    return save_figure(fig, out)


def plot_all(experiments: Sequence[str | Path], out_dir: str | Path) -> list[Path]:
    """Every plot that applies: learning curves for each experiment; for the lottery ones
    (overlaid), accuracy and early stopping, and instability if any was measured; for the
    sparse-training ones, accuracy against sparsity per method and the mask churn."""
    paths = [Path(e) for e in experiments]
    out_dir = Path(out_dir)
    kinds = [experiment_kind(p) for p in paths]
    lottery = [p for p, k in zip(paths, kinds) if k == "lottery"]
    files: list[Path] = []
    if lottery:
        labels = experiment_labels(lottery)
        metrics = {run_rows(p)[0]["metric"] for p in lottery if run_rows(p)}
        metric = result_key(next(iter(metrics), "test_acc")) if len(metrics) <= 1 else "es_score"
        files += plot_accuracy(lottery, out_dir / "accuracy", metric=metric, labels=labels)
        files += plot_early_stop(lottery, out_dir / "early_stop", labels=labels)
        from ticketlab.experiments.lottery.instability import instability_rows
        with_inst = [(p, lab) for p, lab in zip(lottery, labels) if instability_rows(p)]
        if with_inst:
            files += plot_instability([p for p, _ in with_inst], out_dir / "instability",
                                      labels=[lab for _, lab in with_inst])
    sparse = [p for p, k in zip(paths, kinds) if k == "sparse"]
    if sparse:
        from ticketlab.reports.sparse_plots import plot_churn, plot_sparse_accuracy
        files += plot_sparse_accuracy(sparse, out_dir / "sparse_accuracy")
        updating = [p for p in sparse if any(f.stat().st_size for f in p.glob("replicate_*/churn.jsonl"))]
        if updating:
            files += plot_churn(updating, out_dir / "churn")
    names = [run_name(p) for p in paths]
    for p, n in zip(paths, names):
        # a sparse experiment is named by its method and sparsity; a name shared by two gets the folder's
        slug = n if names.count(n) == 1 else f"{n}_{p.name}"
        name = "learning_curves" if len(paths) == 1 else f"learning_curves_{_slug(slug)}"
        files += plot_learning_curves(p, out_dir / name)
    return files


__all__ = ["plot_accuracy", "plot_early_stop", "plot_instability", "plot_learning_curves", "plot_all",
           "save_figure", "experiment_kind", "experiment_labels", "learning_curve_runs"]
