"""Figures of teacher–student experiments (PNG and SVG), after Tian 2019 "Student Specialization"
Figs. 4–6 and Tian et al. 2019 "Luck Matters" §5:

- `plot_success_by_node`: success rate (fraction of seeds in which teacher node k has a student node
  with correlation ≥ τ) against the teacher node index k, one line per strength decay p, one panel
  per over-realization; dotted at an early step, solid at the end (SS Fig. 5);
- `plot_success_vs_multi`: success rate against over-realization, one line per p, mean and min–max
  over seeds;
- `plot_lshape`: the L-shape (SS Fig. 4): per student node, its best correlation with any teacher
  node against the norm of its fan-out; panels p × over-realization (first hidden layer), or one
  panel per layer for a deeper net; crosses mark the teacher nodes' own fan-out norms at x = 1;
- `plot_best_over_training`: mean best-match correlation per layer against the step (mean and
  min–max over seeds);
- `plot_nodes_over_training`: every teacher node's best match against the step (strong nodes first);
- `plot_luck`: where the final winners stood at initialisation: a histogram of their initial rank
  (as a fraction of the student width; uniform = no luck) and their final correlation against it;
- `plot_all`: whatever applies to a set of experiments.
Every figure states τ, the data std and the sample counts in its title or axis labels.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Sequence

from matplotlib.figure import Figure

from ticketlab.reports.style import save_figure
from ticketlab.experiments.teacher_student.experiment import load_config, run_summaries, seeds_of
from ticketlab.training.rundir import RunDir

MARKERS = ("o", "s", "^", "D", "v", "P")


def _load(exps: Sequence[str | Path]) -> list[tuple[Path, object, list[dict]]]:
    out = []
    for e in exps:
        cfg = load_config(e)
        out.append((Path(e), cfg, run_summaries(Path(e), cfg)))
    return out


def _metrics(exp: Path, cfg) -> list[list[dict]]:
    rows = []
    for s in seeds_of(cfg):
        run = RunDir(exp / f"seed_{s}")
        if run.done() and not run.summary().get("diverged"):  # a diverged run is counted, not drawn
            rows.append(run.read_metrics())  # rows written before "iter" (with "step") read alike
    return rows


def _suptitle(fig: Figure, text: str, fontsize: float = 9) -> None:
    """`fig.suptitle`, each line wrapped to the figure's width, so that a narrow figure (one
    panel) does not cut its title off at the edges."""
    width = max(20, int(fig.get_figwidth() * 72 / (0.6 * fontsize)))  # ~0.6 em per character
    lines = [w for line in text.split("\n") for w in textwrap.wrap(line, width) or [""]]
    fig.suptitle("\n".join(lines), fontsize=fontsize)


def _subtitle(cfg, n_runs: int) -> str:
    return (f"τ = {cfg.threshold:g}; inputs N(0, {cfg.data_std:g}²), d = {cfg.input_dim}; "
            f"{cfg.eval_size} eval samples; {n_runs} seeds; {cfg.steps} steps")


def plot_success_by_node(exps: Sequence[str | Path], out, early: float = 0.2) -> list[Path]:
    """Success rate per teacher node index, lines per p, panels per over-realization (first hidden layer)."""
    data = _load(exps)
    multis = sorted({cfg.multi for _, cfg, _ in data})
    ps = sorted({cfg.strength_decay for _, cfg, _ in data})
    fig = Figure(figsize=(3.6 * len(multis) + 0.6, 3.6), layout="constrained")
    axes = fig.subplots(1, len(multis), squeeze=False)[0]
    for ax, m in zip(axes, multis):
        for i, p in enumerate(ps):
            for exp, cfg, runs in data:
                if cfg.multi != m or cfg.strength_decay != p or not runs:
                    continue
                tau = cfg.threshold
                k = len(runs[0]["layers"][0]["best"])
                final = [sum(r["layers"][0]["best"][j] >= tau for r in runs) / len(runs) for j in range(k)]
                ax.plot(range(k), final, marker=MARKERS[i % len(MARKERS)], color=f"C{i}", label=f"p = {p:g}")
                mets = _metrics(exp, cfg)
                target = early * cfg.steps
                at = [min(rs, key=lambda r: abs(r["iter"] - target)) for rs in mets]
                early_s = [sum(r["best"][0][j] >= tau for r in at) / len(at) for j in range(k)]
                ax.plot(range(k), early_s, ls=":", color=f"C{i}")
        ax.set_title(f"student ×{m}")
        ax.set_xlabel("teacher node index (0 = strongest)")
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("success rate over seeds")
    axes[-1].legend(title=f"solid: end; dotted: step ≈{early:.0%}", fontsize=8, title_fontsize=8)
    cfg0 = data[0][1]
    _suptitle(fig, "teacher nodes recovered (first hidden layer)\n" + _subtitle(cfg0, len(data[0][2])), fontsize=9)
    return save_figure(fig, out)


def plot_success_vs_multi(exps: Sequence[str | Path], out) -> list[Path]:
    """Success rate against over-realization, one line per p (mean, min–max over seeds)."""
    data = _load(exps)
    ps = sorted({cfg.strength_decay for _, cfg, _ in data})
    fig = Figure(figsize=(5.2, 3.8), layout="constrained")
    ax = fig.subplots()
    for i, p in enumerate(ps):
        pts = []
        for _, cfg, runs in sorted(((e, c, r) for e, c, r in data if c.strength_decay == p), key=lambda t: t[1].multi):
            if not runs:
                continue
            tau = cfg.threshold
            s = [sum(b >= tau for b in r["layers"][0]["best"]) / len(r["layers"][0]["best"]) for r in runs]
            pts.append((cfg.multi, sum(s) / len(s), min(s), max(s)))
        if pts:
            x, m, lo, hi = zip(*pts)
            ax.errorbar(x, m, yerr=[[max(0.0, a - b) for a, b in zip(m, lo)], [max(0.0, b - a) for a, b in zip(m, hi)]],
                        marker=MARKERS[i % len(MARKERS)], capsize=3, label=f"p = {p:g}")
    ax.set_xscale("log")
    multis = sorted({cfg.multi for _, cfg, _ in data})
    ax.set_xticks(multis, [f"×{m}" for m in multis])
    ax.minorticks_off()
    ax.set_xlabel("over-realization (student width / teacher width)")
    ax.set_ylabel("fraction of teacher nodes specialized")
    ax.set_ylim(-0.05, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _suptitle(fig, "success rate vs over-realization (mean, min–max over seeds)\n" +
                 _subtitle(data[0][1], len(data[0][2])), fontsize=9)
    return save_figure(fig, out)


def _fan_out(exp: Path, run: dict, layer: int, scaled: bool) -> tuple[list[float], list[float]]:
    """(student, teacher) fan-out norms of one run's hidden layer, raw or times the fan-in norm
    (read from the run's final.pt and teacher.pt when its summary predates that field)."""
    L = run["layers"][layer]
    if not scaled:
        return L["fan_out_norm"], L["teacher_fan_out_norm"]
    if "fan_out_scaled" in L:
        return L["fan_out_scaled"], L["teacher_fan_out_scaled"]
    from ticketlab.experiments.teacher_student.metrics import scaled_fan_out
    from ticketlab.experiments.teacher_student.net import Net
    from ticketlab.training.loop import load_state
    d = exp / f"seed_{run['seed']}"
    student = Net.from_state(load_state(d / "final.pt")["student"])
    teacher = Net.from_state(load_state(d / "teacher.pt"))
    return scaled_fan_out(student, layer)[0].tolist(), scaled_fan_out(teacher, layer)[0].tolist()


def plot_lshape(exps: Sequence[str | Path], out, scaled: bool = False) -> list[Path]:
    """The L-shape: best correlation vs fan-out norm of every student node, all seeds pooled.
    `scaled`: y = fan-out norm × fan-in norm, which does not depend on how a ReLU node's scale is
    split between its incoming and outgoing weights."""
    data = [d for d in _load(exps) if d[2]]
    deep = len(data[0][2][0]["layers"]) > 1
    if deep:  # one panel per (experiment, layer)
        cells = [(exp, cfg, runs, l, (f"{exp.name[-6:]}: " if len(data) > 1 else "") +
                  f"layer {l + 1} ({runs[0]['teacher_widths'][l]} teacher, {runs[0]['student_widths'][l]} student nodes)")
                 for exp, cfg, runs in data for l in range(len(runs[0]["layers"]))]
        nrows, ncols = len(data), len(data[0][2][0]["layers"])
    else:
        multis = sorted({c.multi for _, c, _ in data})
        ps = sorted({c.strength_decay for _, c, _ in data})
        cells = []
        for p in ps:
            for m in multis:
                hit = [(e, c, r) for e, c, r in data if c.multi == m and c.strength_decay == p]
                cells.append((*hit[0], 0, f"p = {p:g}, ×{m}") if hit else None)
        nrows, ncols = len(ps), len(multis)
    fig = Figure(figsize=(2.8 * ncols + 0.5, 2.5 * nrows + 0.8), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, cell in zip(axes.flat, cells):
        if cell is None:
            ax.set_visible(False)
            continue
        exp, cfg, runs, l, title = cell
        x = [v for r in runs for v in r["layers"][l]["student_max_corr"]]
        fo = [_fan_out(exp, r, l, scaled) for r in runs]
        y = [v for f, _ in fo for v in f]
        # thousands of points: rasterized inside the SVG, which keeps it small
        ax.scatter(x, y, s=6, alpha=0.5, color="C0", label="student nodes", rasterized=True)
        ty = [v for _, t in fo for v in t]
        ax.scatter([1.0] * len(ty), ty, s=18, marker="x", color="C3", label="teacher nodes")
        ax.axvline(cfg.threshold, color="0.6", ls=":", lw=1)
        ax.set_title(title, fontsize=9)
        ax.set_xlim(min(0.0, min(x) - 0.02), 1.02)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("max correlation with a teacher node")
    for ax in axes[:, 0]:
        ax.set_ylabel("fan-out norm × fan-in norm" if scaled else "fan-out norm")
    axes.flat[0].legend(fontsize=7, loc="best")
    what = " (× fan-in norm: invariant to a ReLU node's rescaling)" if scaled else ""
    _suptitle(fig, f"L-shape{what}: specialized nodes keep their fan-out, the rest shrink toward 0\n" +
                 _subtitle(data[0][1], len(data[0][2])), fontsize=9)
    return save_figure(fig, out)


def plot_best_over_training(exps: Sequence[str | Path], out) -> list[Path]:
    """Mean best-match correlation per layer against the step, one panel per experiment."""
    data = [d for d in _load(exps) if d[2]]
    fig = Figure(figsize=(4.6 * len(data) + 0.5, 3.8), layout="constrained")
    axes = fig.subplots(1, len(data), squeeze=False)[0]
    for ax, (exp, cfg, runs) in zip(axes, data):
        mets = _metrics(exp, cfg)
        steps = [r["iter"] for r in mets[0]]
        for l in range(len(mets[0][0]["best"])):
            per_seed = [[sum(r["best"][l]) / len(r["best"][l]) for r in rs] for rs in mets]
            n = min(len(v) for v in per_seed)
            mean = [sum(v[i] for v in per_seed) / len(per_seed) for i in range(n)]
            lo = [min(v[i] for v in per_seed) for i in range(n)]
            hi = [max(v[i] for v in per_seed) for i in range(n)]
            ax.plot(steps[:n], mean, color=f"C{l}", label=f"layer {l + 1} ({runs[0]['teacher_widths'][l]} teacher nodes)")
            ax.fill_between(steps[:n], lo, hi, color=f"C{l}", alpha=0.2, lw=0)
        ax.set_title(f"teacher {'-'.join(map(str, runs[0]['teacher_widths']))}, student ×{cfg.multi}", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylim(0, 1.01)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    axes[0].set_ylabel("mean best-match correlation")
    _suptitle(fig, "best-match correlation per layer during training (mean, min–max over seeds)\n" +
                 _subtitle(data[0][1], len(data[0][2])), fontsize=9)
    return save_figure(fig, out)


def plot_nodes_over_training(exps: Sequence[str | Path], out) -> list[Path]:
    """Best-match correlation of every teacher node (first hidden layer) against the step, mean over
    seeds, one panel per experiment: with strength decay, strong (low-index) nodes are learned first."""
    from matplotlib import colormaps
    data = [d for d in _load(exps) if d[2]]
    fig = Figure(figsize=(4.2 * len(data) + 0.8, 3.6), layout="constrained")
    axes = fig.subplots(1, len(data), squeeze=False)[0]
    cmap = colormaps["viridis"]
    for ax, (exp, cfg, runs) in zip(axes, data):
        mets = _metrics(exp, cfg)
        n = min(len(rs) for rs in mets)
        steps = [r["iter"] for r in mets[0][:n]]
        k = len(mets[0][0]["best"][0])
        for j in range(k):
            y = [sum(rs[i]["best"][0][j] for rs in mets) / len(mets) for i in range(n)]
            ax.plot(steps, y, color=cmap(j / max(1, k - 1)), lw=1.4, label=f"node {j}" if j in (0, k - 1) else None)
        ax.axhline(cfg.threshold, color="0.6", ls=":", lw=1)
        ax.set_xscale("symlog", linthresh=max(1, steps[1] if len(steps) > 1 else 1))
        ax.set_xlim(0, steps[-1])
        ax.set_title(f"p = {cfg.strength_decay:g}, student ×{cfg.multi}", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylim(0, 1.01)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("best-match correlation (mean over seeds)")
    axes[-1].legend(fontsize=7, loc="best", title="teacher node", title_fontsize=7)
    _suptitle(fig, "each teacher node's best match during training (dark = strongest node 0)\n" +
                 _subtitle(data[0][1], len(data[0][2])), fontsize=9)
    return save_figure(fig, out)


def plot_luck(exps: Sequence[str | Path], out, layer: int = 0) -> list[Path]:
    """Initial rank of each teacher node's final best student, pooled over seeds and p, one
    histogram per over-realization (a uniform density = no luck), and the final match against it."""
    data = [d for d in _load(exps) if d[2]]
    groups: dict[int, list[tuple[float, float, bool]]] = {}
    widths: dict[int, int] = {}
    for _, cfg, runs in data:
        for r in runs:
            if layer >= len(r["layers"]):
                continue
            lk = r["layers"][layer]["luck"]
            n = max(1, lk["students"] - 1)
            widths[cfg.multi] = lk["students"]
            groups.setdefault(cfg.multi, []).extend(
                (v / n, f, f >= cfg.threshold) for v, f in zip(lk["init_rank"], lk["final_corr"]))
    fig = Figure(figsize=(9.6, 3.8), layout="constrained")
    a1, a2 = fig.subplots(1, 2)
    for i, (m, pts) in enumerate(sorted(groups.items())):
        a2.scatter([f for f, _, _ in pts], [c for _, c, _ in pts], s=8, alpha=0.5, color=f"C{i}", label=f"×{m}",
                   rasterized=True)
        won = [f for f, _, s in pts if s]
        if len(won) >= 2:
            # at most one possible rank per bin, so a uniform draw has density 1 in every bin
            a1.hist(won, bins=min(10, widths[m]), range=(0, 1), density=True, histtype="step", lw=1.8, color=f"C{i}",
                    label=f"×{m} (n = {len(won)})")
    a1.axhline(1.0, color="0.3", ls="--", lw=1, label="no luck (uniform)")
    a1.set_xlabel("specialized winner's rank at init / (student width - 1)\n(0 = it was already the closest)")
    a1.set_ylabel("density")
    a1.legend(fontsize=8)
    a2.set_xlabel("winner's rank at init (fraction)")
    a2.set_ylabel("final best-match correlation")
    a2.axhline(data[0][1].threshold, color="0.6", ls=":", lw=1)
    a2.grid(alpha=0.3)
    a2.legend(fontsize=8)
    _suptitle(fig, f"luck: where each teacher node's final best student stood at initialisation (hidden layer {layer + 1})\n"
                 + _subtitle(data[0][1], len(data[0][2])), fontsize=9)
    return save_figure(fig, out)


def plot_all(exps: Sequence[str | Path], out_dir) -> list[Path]:
    """Every figure that applies: success plots when several over-realizations or p values of a
    one-hidden-layer teacher are given, the L-shape, best match over training, and luck."""
    out_dir = Path(out_dir)
    data = [d for d in _load(exps) if d[2]]
    if not data:
        return []
    paths = []
    one_layer = [e for e, c, r in data if len(r[0]["layers"]) == 1]
    deep = [e for e, c, r in data if len(r[0]["layers"]) > 1]
    if one_layer:
        paths += plot_success_by_node(one_layer, out_dir / "success_by_node")
        paths += plot_success_vs_multi(one_layer, out_dir / "success_vs_multi")
        paths += plot_lshape(one_layer, out_dir / "lshape")
        paths += plot_lshape(one_layer, out_dir / "lshape_scaled", scaled=True)
        paths += plot_luck(one_layer, out_dir / "luck")
        # per p, the widest student: each teacher node's best match over training
        widest = {}
        for e, c, r in data:
            if e in one_layer and (c.strength_decay not in widest or c.multi > widest[c.strength_decay][1].multi):
                widest[c.strength_decay] = (e, c)
        paths += plot_nodes_over_training([widest[p][0] for p in sorted(widest)], out_dir / "nodes_over_training")
    if deep:
        paths += plot_lshape(deep, out_dir / "lshape_layers")
        paths += plot_lshape(deep, out_dir / "lshape_layers_scaled", scaled=True)
        paths += plot_best_over_training(deep, out_dir / "best_over_training_layers")
        paths += plot_luck(deep, out_dir / "luck_layer1")
    return paths


__all__ = ["plot_success_by_node", "plot_success_vs_multi", "plot_lshape", "plot_best_over_training",
           "plot_nodes_over_training", "plot_luck", "plot_all"]
