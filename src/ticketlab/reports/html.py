"""A self-contained HTML report of one experiment (`ticketlab report EXP -o report.html`).

One file, no external resources (inline CSS; the plots inlined as SVG), so it can be mailed or
archived as is. For a lottery experiment it holds:

- the resolved config (config.json), with the run-shape fields (not hashed) marked and the fields
  left to a preset shown with the preset's value;
- per level: weights remaining, early-stopping iteration, the task's metric (test accuracy in %,
  perplexity, BLEU points, return) at early stopping, at the end and at its best, mean ± std over
  replicates (and control draws), with n, one table per branch (the ticket and each control), as in LTH
  Figs. 3–5, so that each fits a 1280-pixel window; a std over one value is "—"; a point with
  runs that did not converge is marked † with their count (issue 18; `ticketlab.reports.tables`);
- mask overlap between the replicates' tickets at each level (Jaccard |a ∩ b| / |a ∪ b|, mean
  over pairs) beside the overlap expected of random masks with the same per-layer densities;
- instability results (`ticketlab.experiments.lottery.instability`), if any;
- the plots (`ticketlab.reports.plots`) and the total training wall time.

A `train` experiment gets its config, summary, learning curves and wall time.
"""

from __future__ import annotations

import html
import itertools
import json
import math
import re
import tempfile
from pathlib import Path

from ticketlab.core import atomic as _atomic
from ticketlab.core.version import __version__
from ticketlab.core.errors import TicketlabError
from ticketlab.experiments.lottery.controls import branch_order
from ticketlab.engine.results import result_key
from ticketlab.reports.style import METRIC_LABELS, metric_label, task_metric
from ticketlab.reports.tables import unconverged_legend, unconverged_mark
from ticketlab.training.final_evals import FINAL_EVALS
from ticketlab.training import timing
from ticketlab.training.rundir import read_json

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 1.8em;
       border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
.sub { color: #666; margin-top: 0; }
.scroll { overflow-x: auto; }
h3 { font-size: 1em; margin: 1em 0 0.2em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; } td.key, th.key { text-align: left; font-family: monospace; }
td.val { text-align: left; font-family: monospace; white-space: pre-wrap; }
tr.shape td { color: #777; } .tag { font-size: 0.75em; color: #999; }
.configs { display: flex; gap: 2em; flex-wrap: wrap; align-items: flex-start; }
figure { margin: 1em 0; } figcaption { color: #555; font-size: 0.85em; }
figure svg { max-width: 100%; height: auto; }
.note { color: #555; font-size: 0.85em; max-width: 60em; }
"""

def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _value(v) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def _pm(mean: float, std: float, scale: float = 100.0, digits: int = 2, n: int = 2) -> str:
    """mean ± std; over a single value the std is undefined and shown as "—"."""
    if n < 2:
        return f"{scale * mean:.{digits}f} ± —"
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"


def _cell(v, none_means: str | None) -> str:
    """A config value; None as what it means for that field, when its help says."""
    if v is None and none_means:
        return f'<span class="tag">{_e(none_means)}</span>'
    return _e(_value(v))


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


# ---- sections ----------------------------------------------------------------------------------

def _presets(cfg: dict) -> dict:
    """The training recipe's values resolved from its task's presets (`resolved()`, e.g. the LM
    presets of Zaremba et al.), for the fields stored as None; {} when the task has none."""
    from ticketlab.engine.tasks import get_task
    from ticketlab.core import config as C
    values = cfg.get("train", cfg)
    try:
        task = get_task(cfg.get("task", "classify"))
        obj = C.from_dict(task.config, values, source="config.json")
    except Exception:  # an optional task not installed, an old config: show the stored values
        return {}
    if not hasattr(obj, "resolved"):
        return {}
    return {k: v for k, v in obj.resolved().items() if values.get(k) is None and v is not None}


_NONE_MEANS = re.compile(r"\(None: ([^)]*)\)")


def _none_meanings(cfg: dict) -> dict:
    """Per config group, what a None value means, from the field's help ("(None: the dataset's
    default)"), so that the table says it rather than `null`."""
    from ticketlab.engine.tasks import get_task
    from ticketlab.experiments.lottery.trunk import LotteryConfig
    import dataclasses
    out = {}
    try:
        classes = {"train": get_task(cfg.get("task", "classify")).config, "lottery": LotteryConfig}
    except Exception:  # an optional task not installed: show the stored values
        return out
    for group, cls in classes.items():
        for f in dataclasses.fields(cls):
            m = _NONE_MEANS.search(f.metadata.get("help", ""))
            if m:
                out[(group, f.name)] = m.group(1)
    return out


def _config_tables(body: dict) -> str:
    cfg, ident = body.get("config", {}), body.get("identity", {})
    presets, means = _presets(cfg), _none_meanings(cfg)
    groups = [(k, v, ident.get(k, {})) for k, v in cfg.items() if isinstance(v, dict) and k in ("train", "lottery")]
    if not groups:
        groups = [("config", cfg, ident)]
    parts = []
    for name, values, hashed in groups:
        group = "train" if name == "config" else name
        rows = []
        for k in sorted(values):
            shape = bool(hashed) and k not in hashed
            preset = name in ("train", "config") and k in presets
            tag = "".join(f' <span class="tag">{t}</span>' for t, on in (("run shape", shape), ("preset", preset)) if on)
            cls = ' class="shape"' if shape else ""
            rows.append(f'<tr{cls}><td class="key">{_e(k)}{tag}</td>'
                        f'<td class="val">{_cell(presets[k] if preset else values[k], means.get((group, k)))}</td></tr>')
        parts.append(f'<table class="config" data-config="{_e(name)}"><thead><tr><th class="key" colspan="2">'
                     f'{_e(name)}</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')
    return f'<div class="configs">{"".join(parts)}</div>'


def _results_table(agg: list[dict]) -> str:
    """One table per branch (the ticket, then each control), so each fits a 1280-pixel window."""
    branches = [b for b in branch_order() if any(a["branch"] == b for a in agg)]
    branches += sorted({a["branch"] for a in agg} - set(branches))
    by = {(a["branch"], a["level"]): a for a in agg}
    metric = agg[0].get("metric", "test_acc") if agg else "test_acc"
    _, _, scale = task_metric(metric)
    # no "best" column: the best evaluation is picked on the test set, not a valid estimate (issue #18)
    keys = ("es_test_acc", "final_test_acc") if metric == "test_acc" else ("es_score", "final_score")
    cols = [("n", "n"), ("es_iter", "ES iter")] + [(k, metric_label(metric, when))
                                                   for k, when in zip(keys, ("ES", "final"))]
    if result_key(metric) == "headline_score":  # RL: the headline first, with its standard error
        cols[2:2] = [("headline_score", METRIC_LABELS["headline_score"]),
                     ("headline_sem", "its standard error (mean over runs)")]
    head = '<th>level</th><th>weights remaining (%)</th>' + "".join(f"<th>{_e(label)}</th>" for _, label in cols)
    tables = []
    for b in branches:
        rows = []
        for level in sorted(L for (br, L) in by if br == b):
            a = by[(b, level)]
            cells = [f"<td>{level}</td>", f"<td>{100 * a['density']:.2f}</td>"]
            for key, _ in cols:
                if key == "n":
                    cells.append(f"<td>{a['n']}{_diverged(a)}</td>")
                elif key == "headline_sem":  # absent: runs recorded before episode counts were
                    cells.append(f"<td>{a['headline_sem']:.2f}</td>" if key in a else "<td>—</td>")
                elif key not in a:  # every run of this point diverged
                    cells.append("<td>diverged</td>")
                elif key == "es_iter":
                    cells.append(f"<td>{_pm(a['es_iter'], a['es_iter_std'], 1.0, 0, a['n'])}"
                                 f"{_e(unconverged_mark(a))}</td>")
                else:
                    cells.append(f"<td>{_pm(a[key], a[key + '_std'], scale, 2, a['n'])}</td>")
            rows.append(f'<tr class="level" data-level="{level}">{"".join(cells)}</tr>')
        tables.append(f'<h3>{_e(b)}</h3><div class="scroll" data-branch="{_e(b)}"><table class="results">'
                      f'<thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>')
    return "".join(tables)


def _diverged(a: dict) -> str:
    """' + k diverged' after a point's run count, when k of its runs diverged (counted, not averaged)."""
    return f" + {a['n_diverged']} diverged" if a.get("n_diverged") else ""


def mask_overlap(exp_path: str | Path) -> list[dict]:
    """Per level ≥ 1 with tickets in ≥ 2 replicates: mean, std, min of the Jaccard overlap over
    replicate pairs, and the overlap expected of two random masks with the same per-layer
    densities, Σ d²·n / Σ (2d − d²)·n over layers (ratio of expectations)."""
    from ticketlab.experiments.lottery.trunk import load_masks
    from ticketlab.core.pruning import jaccard

    exp_path = Path(exp_path)
    by_level: dict[int, list[Path]] = {}
    for p in exp_path.glob("replicate_*/level_*/mask.pt"):
        L = int(p.parent.name.split("_")[1])
        if L >= 1:
            by_level.setdefault(L, []).append(p)
    out = []
    for L in sorted(by_level):
        paths = sorted(by_level[L])
        if len(paths) < 2:
            continue
        masks = [load_masks(p) for p in paths]
        vals = [jaccard(a, b) for a, b in itertools.combinations(masks, 2)]
        mean = sum(vals) / len(vals)
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
        inter = union = 0.0
        for m in masks[0].values():
            d, n = float(m.float().mean()), m.numel()
            inter += d * d * n
            union += (2 * d - d * d) * n
        kept = sum(int(m.sum()) for m in masks[0].values()) / sum(m.numel() for m in masks[0].values())
        out.append({"level": L, "density": kept, "pairs": len(vals), "jaccard": mean, "jaccard_std": std,
                    "jaccard_min": min(vals), "random_expected": inter / union if union else 1.0})
    return out


def _overlap_table(rows: list[dict]) -> str:
    body = "".join(
        f'<tr data-level="{r["level"]}"><td>{r["level"]}</td><td>{100 * r["density"]:.2f}</td><td>{r["pairs"]}</td>'
        f'<td>{_pm(r["jaccard"], r["jaccard_std"], 1.0, 4, r["pairs"])}</td><td>{r["jaccard_min"]:.4f}</td>'
        f'<td>{r["random_expected"]:.4f}</td></tr>' for r in rows)
    return ('<table class="overlap"><thead><tr><th>level</th><th>weights remaining (%)</th><th>pairs</th>'
            '<th>Jaccard (mean ± std)</th><th>min</th><th>random masks (expected)</th></tr></thead>'
            f'<tbody>{body}</tbody></table>')


def _instability_table(rows: list[dict]) -> str:
    body = []
    for r in rows:
        e0, e1 = r["endpoint_errors"]
        source, check = r.get("rewind_source", ""), r.get("rewind_check") or {}
        if source == "reproduced":
            source += {True: " (verified exact)", False: " (INEXACT)", None: " (unverified)"}[check.get("exact")]
        body.append(
            f'<tr><td>{r["replicate"]}</td><td>{r["level"]}</td><td>{100 * r["density"]:.2f}</td>'
            f'<td>{r["rewind_iter"]}</td><td>{100 * r["instability"]:.2f}</td><td>{100 * e0:.2f}</td>'
            f'<td>{100 * e1:.2f}</td><td>{100 * max(r["errors"]):.2f}</td><td>{r["points"]}</td>'
            f'<td>{_e(", ".join(str(s) for s in r["data_seeds"]))}</td><td>{_e(source)}</td></tr>')
    return ('<div class="scroll"><table class="instability"><thead><tr><th>replicate</th><th>level</th>'
            '<th>weights remaining (%)</th><th>rewind k</th><th>instability (pp)</th><th>error α=0 (%)</th>'
            '<th>error α=1 (%)</th><th>max error (%)</th><th>points</th><th>data seeds</th><th>θk</th>'
            f'</tr></thead><tbody>{"".join(body)}</tbody></table></div>')


def _train_summary(s: dict) -> str:
    es, fin = s["early_stop"], s["final"]
    cells = [("iterations", s["iterations"]), ("ES iter", es["iter"]),
             ("ES test acc (%)", f"{100 * es['test_acc']:.2f}"), ("ES val loss", f"{es['val_loss']:.4f}"),
             ("final test acc (%)", f"{100 * fin['test_acc']:.2f}")]  # no test-selected best (issue #18)
    return ('<table class="summary"><thead><tr>' + "".join(f"<th>{_e(k)}</th>" for k, _ in cells) +
            '</tr></thead><tbody><tr>' + "".join(f"<td>{_e(v)}</td>" for _, v in cells) + "</tr></tbody></table>")


_SVG_PROLOGUE = re.compile(r"^.*?(?=<svg\b)", re.S)
_SVG_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)


def inline_svg(path: Path) -> str:
    """An SVG file's `<svg>` element, for inlining in HTML (XML prologue, DOCTYPE and the RDF
    metadata block removed)."""
    text = Path(path).read_text(encoding="utf-8")
    text = _SVG_PROLOGUE.sub("", text, count=1)
    return _SVG_METADATA.sub("", text)


def _plots(exp: Path, kind: str) -> list[tuple[str, str]]:
    """(caption, inline svg) of every plot that applies."""
    from ticketlab.reports import plots
    from ticketlab.experiments.lottery.instability import instability_rows

    specs = []
    if kind == "lottery":
        from ticketlab.engine.results import run_rows
        rows = run_rows(exp)
        metric = rows[0]["metric"] if rows else "test_acc"
        name, unit, _ = task_metric(metric)
        when = (f"averaged over the last {FINAL_EVALS} evaluations" if result_key(metric) == "headline_score"
                else "at early stopping")
        specs += [(f"{name[0].upper() + name[1:]}{f' ({unit})' if unit else ''} {when} against "
                   "weights remaining (mean ± std band).",
                   lambda out: plots.plot_accuracy([exp], out, metric=result_key(metric))),
                  ("Early-stopping iteration (minimum validation loss) against weights remaining.",
                   lambda out: plots.plot_early_stop([exp], out))]
        if instability_rows(exp):
            specs.append(("Error along the linear path between two copies trained from θk, and "
                          "instability against k.", lambda out: plots.plot_instability([exp], out)))
        caption = "Learning curves of the ticket at each level (replicate 0); dots mark early stopping."
    else:
        caption = "Learning curves; the dot marks early stopping (minimum validation loss)."
    specs.append((caption, lambda out: plots.plot_learning_curves(exp, out)))
    out = []
    with tempfile.TemporaryDirectory(prefix="ticketlab-report-") as tmp:
        for i, (cap, fn) in enumerate(specs):
            files = fn(Path(tmp) / f"plot{i}")
            svg = next(f for f in files if f.suffix == ".svg")
            out.append((cap, inline_svg(svg)))
    return out


# ---- the page ----------------------------------------------------------------------------------

def write_report(exp_path: str | Path, out: str | Path) -> Path:
    """Write the experiment's HTML report to `out` (atomically) and return its path."""
    from ticketlab.reports.plots import experiment_kind

    exp = Path(exp_path)
    cfg_path = exp / "config.json"
    if not cfg_path.exists():
        raise TicketlabError(f"{exp} is not an experiment folder (no config.json)")
    body = read_json(cfg_path)
    kind = experiment_kind(exp)
    cfg = body.get("config", {})
    tr = cfg.get("train", cfg)
    sections = [f"<h2>Config</h2>{_config_tables(body)}"]
    wall, n_runs = 0.0, 0
    for s in exp.rglob("summary.json"):
        wall += timing.run_share_s(read_json(s))  # a stack's wall time once, not once per run
        n_runs += 1

    if kind == "lottery":
        from ticketlab.experiments.lottery.instability import instability_rows
        from ticketlab.engine.results import aggregate, run_rows
        rows = run_rows(exp)
        if not rows:
            raise TicketlabError(f"{exp}: no finished runs to report")
        agg = aggregate(rows)
        reps = sorted({r["replicate"] for r in rows})
        sections.append(
            "<h2>Results per level</h2>"
            f'<p class="note">Mean ± std over {len(reps)} replicate(s) (and control draws); n is the number '
            "of runs per cell; a std over one run is —. ES = early stopping, the iteration of minimum "
            f"validation loss (LTH App. C). The metric: {_e(metric_label(rows[0]['metric']))}."
            + (" The headline of an RL run is its test return averaged over its last "
               f"{FINAL_EVALS} evaluations after its start (not the early-stopping pick), with the "
               "standard error of that mean over their pooled test episodes."
               if result_key(rows[0]["metric"]) == "headline_score" else "") + "</p>"
            + (f'<p class="note">{_e(unconverged_legend(agg))}.</p>' if unconverged_legend(agg) else "")
            + _results_table(agg))
        overlap = mask_overlap(exp)
        if overlap:
            sections.append(
                "<h2>Mask overlap between replicates</h2>"
                '<p class="note">Jaccard overlap |a ∩ b| / |a ∪ b| of the kept weights of the tickets of '
                "different replicates (different initialisations and data orders), mean over pairs; random "
                "masks with the same per-layer densities would overlap about as much as the last column.</p>"
                + _overlap_table(overlap))
        inst = instability_rows(exp)
        if inst:
            sections.append(
                "<h2>Instability (linear mode connectivity)</h2>"
                '<p class="note">Two copies trained from θk with different data orders; instability = max error '
                "along the linear path − mean of the endpoint errors, in percentage points (Frankle et al. 2020; "
                "stable below about 2). The mask is the experiment's ticket at that level.</p>"
                + _instability_table(inst))
    else:
        summary = exp / "summary.json"
        if summary.exists():
            sections.append("<h2>Results</h2>" + _train_summary(json.loads(summary.read_text())))

    figs = _plots(exp, kind)
    sections.append("<h2>Plots</h2>" + "".join(
        f"<figure>{svg}<figcaption>{_e(cap)}</figcaption></figure>" for cap, svg in figs))
    inst_wall = sum(timing.run_share_s(read_json(s)) for s in exp.glob("replicate_*/instability/**/summary.json"))
    detail = f"; of which instability copies: {_duration(inst_wall)}" if inst_wall else ""
    sections.append(f'<h2>Wall time</h2><p class="wall">Total training time: {_e(_duration(wall))} '
                    f"({wall:.1f} s wall-clock, each stack of runs trained together counted once; {n_runs} run(s)"
                    f"{_e(detail)}).</p>")

    title = f"{kind} experiment {exp.name}"
    sub = f"{tr.get('model', '?')} on {tr.get('dataset', '?')}" if isinstance(tr, dict) else ""
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<h1>{_e(title)}</h1>\n<p class=\"sub\">{_e(sub)} · config hash {_e(body.get('hash', ''))} · "
        f"ticketlab {_e(__version__)}</p>\n" + "\n".join(sections) + "\n</body>\n</html>\n")
    out = Path(out)
    _atomic.write_text(out, page)
    return out


__all__ = ["write_report", "mask_overlap", "inline_svg"]
