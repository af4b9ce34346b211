"""Figures of ticket-transfer experiments (Morcos et al. 2019, Figs. 1–4), as PNG and SVG.

- `plot_target`: test accuracy against weights remaining on one target: a curve per source ticket
  (one per transfer experiment), plus the controls on that target: the random tickets, the target's
  own ticket, and the dense network as a dashed line. Mean ± std over replicates as a band.
- `plot_gap_heatmap`: sources × targets, the accuracy gap of the transferred ticket over the random
  ticket (percentage points) at the level whose weights remaining are nearest a chosen value; the
  diagonal (a source recipe equal to the target's) shows the target's own ticket.
- `plot_all`: one `plot_target` per target, and the heat map.

Random tickets are shared by every transfer onto a target at the same per-layer counts (see
`ticketlab.experiments.transfer`), so they are pooled by run folder, never counted twice.
"""

from __future__ import annotations

import math
import numbers
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from ticketlab.core.errors import ConfigError, TicketlabError
from ticketlab.reports.style import METRIC_LABELS, density_axis as _density_axis, figure as _figure, mean_std, save_figure
from ticketlab.experiments.transfer import experiment_info, transfer_rows

CONTROL_STYLES = {"random": dict(color="C3", linestyle=(0, (1, 1.2)), marker="v"),
                  "own": dict(color="k", linestyle="-", marker="s")}


def curve(rows: list[dict], metric: str, key=lambda r: r["level"]) -> list[tuple[float, float, float, int]]:
    """[(density, mean, std, n)] of `metric` per group of rows (default: per level), densest first."""
    by = defaultdict(list)
    for r in rows:
        by[key(r)].append(r)
    out = []
    for rs in by.values():
        m, s = mean_std([r[metric] for r in rs])
        out.append((sum(r["density"] for r in rs) / len(rs), m, s, len(rs)))
    return sorted(out, reverse=True)


def _unique(rows: list[dict]) -> list[dict]:
    seen, out = set(), []
    for r in rows:
        if r["path"] not in seen:
            seen.add(r["path"])
            out.append(r)
    return out


def _line(ax, pts, label, scale, **style):
    x = [100 * p[0] for p in pts]
    y = [scale * p[1] for p in pts]
    s = [scale * p[2] for p in pts]
    ax.plot(x, y, label=label, markersize=4, linewidth=1.6, **style)
    if any(v > 0 for v in s):
        ax.fill_between(x, [a - d for a, d in zip(y, s)], [a + d for a, d in zip(y, s)], color=style.get("color"),
                        alpha=0.12, linewidth=0)
    return x


PALETTE = ("C0", "C1", "C2", "C4", "C5", "C6", "C8", "C9")


def plot_target(experiments: Sequence[str | Path], out: str | Path, metric: str = "es_test_acc",
                colors: dict | None = None) -> list[Path]:
    """Accuracy against weights remaining on one target: each experiment's transferred ticket
    (labelled by its source; `colors` maps source labels to colours), the pooled random tickets,
    the target's own ticket, dense dashed."""
    paths = [Path(e) for e in experiments]
    infos = [experiment_info(p) for p in paths]
    if len({i["target_key"] for i in infos}) > 1:
        raise TicketlabError("plot_target: the experiments have different targets: "
                             + "; ".join(sorted({i["target_label"] for i in infos})))
    scale = 100.0 if metric.endswith("_acc") else 1.0
    fig = _figure()
    ax = fig.add_subplot()
    xs, controls = [], defaultdict(list)
    for i, (p, info) in enumerate(zip(paths, infos)):
        rows = transfer_rows(p)
        pts = curve([r for r in rows if r["branch"] == "transfer"], metric)
        if pts:
            color = (colors or {}).get(info["source_label"], PALETTE[i % len(PALETTE)])
            xs += _line(ax, pts, f"ticket from {info['source_label']}", scale, color=color, linestyle="-", marker="o")
        for r in rows:
            if r["branch"] != "transfer":
                controls[r["branch"]].append(r)
    # random tickets keyed by their counts folder: several transfers may share one
    rnd = _unique(controls["random"])
    if rnd:
        xs += _line(ax, curve(rnd, metric, key=lambda r: str(Path(r["path"]).parent.parent)), "random ticket",
                    scale, **CONTROL_STYLES["random"])
    own = _unique(controls["own"])
    if own:
        xs += _line(ax, curve(own, metric), "target's own ticket", scale, **CONTROL_STYLES["own"])
    dense = _unique(controls["dense"])
    if dense:
        m, s = mean_std([r[metric] for r in dense])
        ax.axhline(scale * m, color="0.35", linestyle="--", linewidth=1.0, label=f"dense ({scale * m:.4g} ± {scale * s:.2g})")
    if not xs:
        raise TicketlabError("plot_target: no finished runs to plot")
    _density_axis(ax, xs)
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.set_title(f"Ticket transfer to {infos[0]['target_label']}", fontsize=10)
    ax.legend(fontsize=7, loc="best", title="mean ± std over replicates", title_fontsize=7)
    return save_figure(fig, out)


def nearest_level(rows: list[dict], density: float) -> int | None:
    """The level of the transferred tickets whose mean weights remaining is nearest `density` (log scale)."""
    pts = {}
    for r in rows:
        if r["branch"] == "transfer":
            pts.setdefault(r["level"], []).append(r["density"])
    if not pts:
        return None
    return min(pts, key=lambda L: abs(math.log(sum(pts[L]) / len(pts[L])) - math.log(density)))


def gap_cells(experiments: Sequence[str | Path], density: float, metric: str = "es_test_acc") -> list[dict]:
    """Per experiment, and per target's own ticket: the gap over the random ticket at the level
    nearest `density`: {source_label, target_label, level, density, value, random, gap}."""
    cells, own_done = [], set()
    for p in experiments:
        info, rows = experiment_info(p), transfer_rows(p)
        L = nearest_level(rows, density)
        if L is None:
            continue
        at = {b: [r for r in rows if r["branch"] == b and r["level"] == L] for b in ("transfer", "random", "own")}
        if not at["random"]:
            continue
        rnd = sum(r[metric] for r in at["random"]) / len(at["random"])
        d = sum(r["density"] for r in at["transfer"]) / len(at["transfer"])
        for branch, src in (("transfer", info["source_label"]), ("own", info["target_label"])):
            if not at[branch] or (branch == "own" and (info["own"], L) in own_done):
                continue
            if branch == "own":
                own_done.add((info["own"], L))
            v = sum(r[metric] for r in at[branch]) / len(at[branch])
            cells.append({"source_label": src, "target_label": info["target_label"], "branch": branch, "level": L,
                          "density": d, "value": v, "random": rnd, "gap": v - rnd})
    return cells


def plot_gap_heatmap(experiments: Sequence[str | Path], out: str | Path, density: float = 0.05,
                     metric: str = "es_test_acc") -> list[Path]:
    """Heat map, sources (rows) × targets (columns), of the transferred ticket's accuracy minus the
    random ticket's (percentage points) at the level nearest `density`; own tickets on the diagonal."""
    cells = gap_cells(experiments, density, metric)
    if not cells:
        raise TicketlabError("plot_gap_heatmap: no transfer with finished random-ticket controls to plot")
    targets = sorted({c["target_label"] for c in cells})
    # rows in the columns' order first, so the own tickets fall on the diagonal
    sources = [t for t in targets if any(c["source_label"] == t for c in cells)]
    sources += sorted({c["source_label"] for c in cells} - set(sources))
    grid = [[math.nan] * len(targets) for _ in sources]
    for c in cells:
        grid[sources.index(c["source_label"])][targets.index(c["target_label"])] = 100 * c["gap"]
    vals = [v for row in grid for v in row if not math.isnan(v)]
    lim = max(abs(v) for v in vals) or 1.0
    fig = _figure()
    ax = fig.add_subplot()
    im = ax.imshow(grid, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            if not math.isnan(v):
                ax.text(j, i, f"{v:+.2f}", ha="center", va="center", fontsize=8,
                        color="white" if abs(v) > 0.6 * lim else "black")
    ax.set_xticks(range(len(targets)), targets, fontsize=7, rotation=20, ha="right")
    ax.set_yticks(range(len(sources)), sources, fontsize=7)
    ax.set_xlabel("target")
    ax.set_ylabel("source of the ticket (diagonal: own ticket)", fontsize=8)
    mean_d = sum(c["density"] for c in cells) / len(cells)
    ax.set_title(f"Gap over the random ticket (pp, {metric}) at ≈{100 * mean_d:.3g}% weights remaining", fontsize=9)
    fig.colorbar(im, ax=ax, label="percentage points")
    return save_figure(fig, out)


def check_density(density) -> None:
    """A ConfigError unless `density` is a fraction of the weights remaining in (0, 1]."""
    # any real number (numpy's too), not a string or a bool; NaN fails the comparison
    if isinstance(density, bool) or not isinstance(density, numbers.Real) or not 0 < density <= 1:
        raise ConfigError(f"--density: got {density!r}, expected the fraction of the weights remaining "
                          "at which to compare, in (0, 1], e.g. 0.05")


def plot_all(experiments: Sequence[str | Path], out_dir: str | Path, density: float = 0.05,
             metric: str = "es_test_acc") -> list[Path]:
    """One accuracy plot per target (`accuracy_<target>`), and the gap heat map (`gap_heatmap`) at the
    level nearest `density` (a fraction of the weights remaining, in (0, 1])."""
    check_density(density)
    out_dir = Path(out_dir)
    by: dict[str, list[Path]] = defaultdict(list)
    labels, sources = {}, set()
    for p in map(Path, experiments):
        info = experiment_info(p)
        by[info["target_key"]].append(p)
        labels[info["target_key"]] = info["target_label"]
        sources.add(info["source_label"])
    colors = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(sorted(sources))}  # one colour per source
    files: list[Path] = []
    for key, ps in by.items():
        slug = "".join(ch if ch.isalnum() else "_" for ch in labels[key]).strip("_")
        files += plot_target(sorted(ps, key=lambda q: experiment_info(q)["source_label"]),
                             out_dir / f"accuracy_{slug}", metric, colors)
    try:
        files += plot_gap_heatmap(experiments, out_dir / "gap_heatmap", density, metric)
    except TicketlabError:
        pass  # no random-ticket controls: nothing to compare against
    return files


__all__ = ["plot_target", "plot_gap_heatmap", "plot_all", "gap_cells", "nearest_level", "curve"]
