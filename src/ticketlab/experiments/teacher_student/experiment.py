"""Teacher–student experiments on the results store: run them end to end, and read them back.

Reproduces the setting of Tian et al. 2019 ("Luck Matters", §5) and Tian 2019 ("Student
Specialization", §6): a fixed teacher (`teacher.py`), an over-realized student of the same depth
(`student.py`) trained by SGD or Adam on the squared error to the teacher's outputs, with Gaussian
inputs from a finite sampled training set or fresh each step; every `log_every` steps the
correlation of every teacher node with every student node is measured on an evaluation set
(`metrics.py`). After training, students can be node-pruned by fan-out and the kept nodes
retrained from their initial weights, against a random reinit (`prune.py`).

Store layout (kind "teacher_student"; the seeds are run shape, not identity):

    teacher_student-<hash>/config.json
    teacher_student-<hash>/seed_<s>/teacher.pt      the teacher's tensors (kept, never re-derived)
    teacher_student-<hash>/seed_<s>/init.pt         the student at step 0 (θ0)
    teacher_student-<hash>/seed_<s>/checkpoint.pt   resumable state, every `checkpoint_every` steps
    teacher_student-<hash>/seed_<s>/metrics.jsonl   one row per log step
    teacher_student-<hash>/seed_<s>/final.pt, corr.pt, summary.json   (summary.json marks it done)
    teacher_student-<hash>/seed_<s>/prune_<score>_keep<k>/{pruned.json, ticket/, reinit/}

The config and a run's pieces are in `spec.py`; the stacked, resumable training loop in
`loop.py`. This module runs experiments end to end: it prepares every seed's run, trains the
pending ones in groups, node-prunes finished students and retrains their tickets, and reads the
results back (`point_row`, `prune_readout`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import torch

from ticketlab.core import config as C, integrity
from ticketlab.engine.store import Experiment, Store
from ticketlab.experiments.lottery import replay
from ticketlab.experiments.teacher_student import metrics as Mx
from ticketlab.experiments.teacher_student import prune as P
from ticketlab.experiments.teacher_student.loop import _evaluate, execute, fit_group, group_jobs
from ticketlab.experiments.teacher_student.net import Net
from ticketlab.experiments.teacher_student.spec import (KIND, SCHEDULE_FIELDS, JobSpec, TeacherStudentConfig, _save, _seed,
                                            build_teacher, datasets, load_config, prepare_run, seeds_of)
from ticketlab.experiments.teacher_student.student import random_init
from ticketlab.training import timing
from ticketlab.training.loop import load_state
from ticketlab.training.rundir import read_json

# ---- node pruning and the ticket ------------------------------------------------------------

def prune_dir(run_dir: Path, cfg: TeacherStudentConfig) -> Path:
    """The folder of one pruning of a run: score, kept multiple and (only when set) the merge cosine."""
    merge = f"_merge{cfg.prune_merge_cos:g}" if cfg.prune_merge else ""
    return Path(run_dir) / f"prune_{cfg.prune_score}_keep{cfg.prune_keep:g}{merge}"


@torch.no_grad()
def prepare_prune(exp: Experiment, cfg: TeacherStudentConfig, seed: int) -> list[JobSpec]:
    """Node-prune a finished run's student; write the pruned readout and the ticket / reinit starts.
    Returns the retraining runs still to do."""
    run_dir = exp.path / f"seed_{seed}"
    pdir = prune_dir(run_dir, cfg)
    pdir.mkdir(parents=True, exist_ok=True)
    teacher = Net.from_state(load_state(run_dir / "teacher.pt"))
    init = Net.from_state(load_state(run_dir / "init.pt"))
    final = Net.from_state(load_state(run_dir / "final.pt")["student"])
    keep = P.kept_counts(teacher.widths, final.widths, cfg.prune_keep)
    merged, alive = P.merge_coaligned(final, cfg.prune_merge_cos) if cfg.prune_merge else (final, None)
    masks = P.node_masks(merged, keep, cfg.prune_score, alive=alive)
    if not (pdir / "pruned.json").exists():
        _, x_eval = datasets(cfg, seed, teacher.input_dim)
        x_eval, y_eval = x_eval.unsqueeze(0), teacher(x_eval.unsqueeze(0))
        var = y_eval.double().var(1).mean()
        mse_full, post_full, _ = _evaluate(teacher, final, x_eval, y_eval)
        pruned = P.compact(merged, masks)
        mse_p, post_p, _ = _evaluate(teacher, pruned, x_eval, y_eval)
        layers = []
        for l in range(len(keep)):
            best, idx = Mx.best_match(post_full[l][0])
            kept = masks[l][0].nonzero().squeeze(1).tolist()
            smax = Mx.student_max_corr(post_full[l][0])
            L = {"kept": kept, "keep": keep[l], "student_width": final.widths[l],
                 "best_full": best.tolist(), "best_idx_full": idx.tolist(),
                 "best_pruned": Mx.best_match(post_p[l][0])[0].tolist(),
                 "kept_max_corr": smax[kept].tolist()}
            if alive is not None:  # how many nodes the merge folded into others
                L["merged_away"] = int((~alive[l][0]).sum())
                L["alive"] = alive[l][0].nonzero().squeeze(1).tolist()
            layers.append(L)
        doc = {"score": cfg.prune_score, "keep_factor": cfg.prune_keep,
               "eval_mse_full": float(mse_full[0]), "eval_rel_mse_full": float(mse_full[0] / var),
               "eval_mse_pruned": float(mse_p[0]), "eval_rel_mse_pruned": float(mse_p[0] / var), "layers": layers}
        if cfg.prune_merge:  # the merged, unpruned student: what the merge itself changed
            mse_m, _, _ = _evaluate(teacher, merged, x_eval, y_eval)
            doc.update(merge_cos=cfg.prune_merge_cos, eval_mse_merged=float(mse_m[0]),
                       eval_rel_mse_merged=float(mse_m[0] / var))
        integrity.write_json(pdir / "pruned.json", doc)
    specs = []
    for branch in ("ticket", "reinit") if cfg.prune_retrain else ():
        bdir = pdir / branch
        bdir.mkdir(exist_ok=True)
        ipath = bdir / "init.pt"
        if not ipath.exists():
            if branch == "ticket":  # the kept nodes (with merge: the representatives) from their own init
                start = P.compact(init, masks)
            else:  # the same architecture, freshly initialised
                sizes = [teacher.input_dim, *keep, teacher.output_dim]
                g = torch.Generator().manual_seed(_seed(seed, 6))
                ws, bs = random_init(sizes, "small" if cfg.init == "small" else "default", g, cfg.init_std)
                start = Net([w.unsqueeze(0) for w in ws], [b.unsqueeze(0) for b in bs], teacher.activation,
                            teacher.slope)
            _save(ipath, start.state(0))
        if not (bdir / "summary.json").exists():
            specs.append(JobSpec(str(exp.path), str(bdir), C.to_dict(cfg), seed, str(run_dir / "teacher.pt"),
                                 str(ipath), f"seed_{seed}_{pdir.name}_{branch}"))
    return specs


def prune_readout(run_dir: Path, cfg: TeacherStudentConfig) -> dict:
    """The node-pruning result of one run at `cfg.threshold`: which nodes were kept, whether they are
    the specialized ones, the teacher-fit error before / after pruning, and ticket vs reinit."""
    pdir = prune_dir(run_dir, cfg)
    pr = json.loads((pdir / "pruned.json").read_text())
    tau = cfg.threshold
    layers = []
    for L in pr["layers"]:
        spec = {k for b, k in zip(L["best_full"], L["best_idx_full"]) if b >= tau}  # specialized winners
        kept = set(L["kept"])
        layers.append({
            "keep": L["keep"], "student_width": L["student_width"], "specialized": len(spec),
            "specialized_kept": len(spec & kept),
            "kept_specialized_frac": sum(1 for v in L["kept_max_corr"] if v >= tau) / len(kept),
            "success_full": sum(b >= tau for b in L["best_full"]) / len(L["best_full"]),
            "success_pruned": sum(b >= tau for b in L["best_pruned"]) / len(L["best_pruned"])})
    out = {"score": pr["score"], "keep_factor": pr["keep_factor"], "eval_rel_mse_full": pr["eval_rel_mse_full"],
           "eval_rel_mse_pruned": pr["eval_rel_mse_pruned"], "layers": layers, "merge_cos": pr.get("merge_cos")}
    if "eval_rel_mse_merged" in pr:
        out["eval_rel_mse_merged"] = pr["eval_rel_mse_merged"]
        for L, P_ in zip(layers, pr["layers"]):
            L["merged_away"] = P_["merged_away"]
    for branch in ("ticket", "reinit"):
        p = pdir / branch / "summary.json"
        if p.exists():
            s = read_json(p)
            out[f"{branch}_eval_rel_mse"] = s["eval_rel_mse"]
            out[f"{branch}_success"] = [sum(b >= tau for b in L["best"]) / len(L["best"]) for L in s["layers"]]
            out[f"{branch}_mean_best"] = [sum(L["best"]) / len(L["best"]) for L in s["layers"]]
    return out


# ---- readouts of an experiment ----------------------------------------------------------------

def run_summaries(exp_path: Path, cfg: TeacherStudentConfig, *, diverged: bool = False) -> list[dict]:
    """The finished runs' summaries of an experiment, by seed: those that trained to the end, or with
    `diverged` those whose loss became NaN or infinite (counted, never averaged: issue 17)."""
    out = []
    for s in seeds_of(cfg):
        p = Path(exp_path) / f"seed_{s}" / "summary.json"
        if p.exists():
            summary = read_json(p)
            if bool(summary.get("diverged")) == diverged:
                out.append(summary)
    return out


def _mean(v):
    v = [x for x in v if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return sum(v) / len(v) if v else float("nan")


def _std(v):
    """Sample std of the finite values (0 for one value, nan for none): the spread beside each mean
    over seeds (issue #18 point 5)."""
    v = [x for x in v if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if len(v) < 2:
        return 0.0 if v else float("nan")
    m = sum(v) / len(v)
    return math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


def point_row(exp_path: Path, cfg: TeacherStudentConfig) -> dict:
    """One row per experiment: success rate and mean best match per layer (mean, min, max over
    seeds), the per-teacher-node success rate over seeds, eval loss, luck and wall time. Each mean
    over seeds has its sample std beside it (`<name>_std`); `seeds` is their n. The luck readouts
    pool the specialized winners of all seeds (their n: `luck_n`)."""
    runs = run_summaries(exp_path, cfg)
    tau = cfg.threshold
    row = {"experiment": Path(exp_path).name, "teacher_widths": list(runs[0]["teacher_widths"]) if runs else
           list(cfg.teacher_widths), "multi": cfg.multi, "p": cfg.strength_decay, "seeds": len(runs),
           "n_diverged": len(run_summaries(exp_path, cfg, diverged=True)), "steps": cfg.steps, "threshold": tau}
    if not runs:
        return row
    n_layers = len(runs[0]["layers"])
    layers = []
    for l in range(n_layers):
        succ = [sum(b >= tau for b in r["layers"][l]["best"]) / len(r["layers"][l]["best"]) for r in runs]
        mb = [_mean(r["layers"][l]["best"]) for r in runs]
        m = len(runs[0]["layers"][l]["best"])
        per_node = [sum(r["layers"][l]["best"][j] >= tau for r in runs) / len(runs) for j in range(m)]
        # luck: the init rank (as a fraction of the student width) of specialized winners
        lk = [(r["layers"][l]["luck"]["init_rank"][j] / max(1, r["layers"][l]["luck"]["students"] - 1))
              for r in runs for j in range(m) if r["layers"][l]["best"][j] >= tau]
        pre = [_mean(r["layers"][l]["best_pre"]) for r in runs]
        ini = [_mean(r["layers"][l]["best_init"]) for r in runs]
        top = [1.0 if v <= 0.1 else 0.0 for v in lk]
        sp = [r["layers"][l]["luck"]["rank_final_spearman"] for r in runs]
        layers.append({"success": _mean(succ), "success_std": _std(succ), "success_min": min(succ),
                       "success_max": max(succ),
                       "mean_best": _mean(mb), "mean_best_std": _std(mb), "mean_best_min": min(mb),
                       "mean_best_max": max(mb),
                       "mean_best_pre": _mean(pre), "mean_best_pre_std": _std(pre),
                       "mean_best_init": _mean(ini), "mean_best_init_std": _std(ini),
                       "per_node_success": per_node,
                       "luck_rank_frac": _mean(lk), "luck_rank_frac_std": _std(lk),
                       "luck_top10": _mean(top), "luck_top10_std": _std(top), "luck_n": len(lk),
                       "luck_rank_final_spearman": _mean(sp), "luck_rank_final_spearman_std": _std(sp)})
    rel = [r["eval_rel_mse"] for r in runs]
    share = [timing.run_share_s(r) for r in runs]  # a run's share of its stack's wall time
    row.update(layers=layers, eval_rel_mse=_mean(rel), eval_rel_mse_std=_std(rel),
               stack_wall_share_s=_mean(share), stack_wall_share_s_std=_std(share))
    if cfg.prune:
        pr = [prune_readout(Path(exp_path) / f"seed_{r['seed']}", cfg) for r in runs
              if (prune_dir(Path(exp_path) / f"seed_{r['seed']}", cfg) / "pruned.json").exists()]
        if pr:
            row["prune"] = pr
    return row


# ---- the entry point ----------------------------------------------------------------------------

def run(cfgs: TeacherStudentConfig | Sequence[TeacherStudentConfig], *, store=None, workers: int = 1,
        stack: int = 16, checkpoint_every: int = 5000, verbose: bool = False) -> dict:
    """Run (or resume, or just read) one or several teacher–student experiments.

    Runs of all experiments that share shapes and schedule train stacked, `stack` at a time, in
    `workers` processes. With `prune`, finished runs are node-pruned and their ticket and reinit
    retrained (stacked likewise). The tables and plots are written by `ticketlab.api.teacher_student`
    (the reports floor sits above this one).
    Returns {"experiments": [folders], "rows": [`point_row` per config], "files": []}.
    """
    if isinstance(cfgs, TeacherStudentConfig):
        cfgs = [cfgs]
    store = Store(store)
    exps = []
    for cfg in cfgs:
        build_teacher(cfg, cfg.seed)  # fail on a bad teacher before a store folder is made
        exps.append(store.experiment(KIND, cfg))
    specs = []
    for exp, cfg in zip(exps, cfgs):
        for s in seeds_of(cfg):
            if not (exp.path / f"seed_{s}" / "summary.json").exists():
                specs.append(prepare_run(exp, cfg, s))
    execute(group_jobs(specs, stack), workers=workers, checkpoint_every=checkpoint_every, verbose=verbose)
    retrain = []
    for exp, cfg in zip(exps, cfgs):
        if cfg.prune:
            for s in seeds_of(cfg):
                if not read_json(exp.path / f"seed_{s}" / "summary.json").get("diverged"):  # NaN: nothing to prune
                    retrain += prepare_prune(exp, cfg, s)
    execute(group_jobs(retrain, stack), workers=workers, checkpoint_every=checkpoint_every, verbose=verbose)
    for exp in exps:  # teacher-student runs are not replayed: a recompute after a repair is marked
        replay.mark_recomputed(exp.path)
    rows = [point_row(e.path, cfg) for e, cfg in zip(exps, cfgs)]
    return {"experiments": [str(e.path) for e in exps], "rows": rows, "files": []}


__all__ = ["KIND", "TeacherStudentConfig", "SCHEDULE_FIELDS", "build_teacher", "datasets", "JobSpec", "prepare_run",
           "fit_group", "group_jobs", "execute", "prepare_prune", "prune_readout", "run_summaries", "point_row",
           "run", "load_config", "seeds_of"]
