"""The training loop: runs of one shape trained together as one stacked computation, resumable.

Runs that share every shape and training field (they may differ in seed, strength decay, data
std, teacher seed and init) train as one stack (`net.Net`): one `baddbmm` per layer for S
networks, gradients written out by hand (`Net.loss_and_grads`), one elementwise optimizer
(`optim.StackedOptimizer`). Each run still draws its own minibatches from its own generator and
writes its own folder through `ticketlab.training.rundir` (`metrics.jsonl`, `checkpoint.pt` every
`checkpoint_every` steps, `final.pt`, `corr.pt`, `summary.json`), so its results do not depend on its
group, and an interrupted group resumes exactly. Groups are scheduled by the one scheduler
(`ticketlab.engine.schedule`), in this process or in worker processes (`ticketlab.engine.parallel`).

Divergence is a result (docs/architecture/divergence.md): a run whose training loss becomes NaN or
infinite stops counting at once: its metrics rows from that step on are null, its summary records
`"diverged": {"iteration": N}` (N the 1-based step), and the stack stops when every member has
diverged. Its stack-mates train on unchanged (the arithmetic is per slice).

Every `log_every` steps the correlation of every teacher node with every student node, of every
hidden layer, after and before the activation, is measured on the run's evaluation inputs
(`metrics.CorrStats`), and each teacher node's best match is logged.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from contextlib import ExitStack
from pathlib import Path
from typing import Sequence

import torch

from ticketlab.core.progress import bar as progress_bar
from ticketlab.core.schedules import lr_factor
from ticketlab.engine import schedule
from ticketlab.engine.store import Experiment
from ticketlab.experiments.teacher_student import metrics as Mx
from ticketlab.experiments.teacher_student.net import Net
from ticketlab.experiments.teacher_student.optim import StackedOptimizer
from ticketlab.experiments.teacher_student.spec import SCHEDULE_FIELDS, JobSpec, TeacherStudentConfig, _seed, datasets
from ticketlab.training import device as _device, precision as _precision, rundir, timing
from ticketlab.training.rundir import RunDir, load_state

log = logging.getLogger(__name__)

@torch.no_grad()
def _evaluate(teacher: Net, student: Net, x: torch.Tensor, y: torch.Tensor, chunk: int = 2048
              ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """(eval MSE [S] (mean over outputs), post- and pre-activation correlations per layer [S, m, n])."""
    post = [Mx.CorrStats() for _ in teacher.widths]
    pre = [Mx.CorrStats() for _ in teacher.widths]
    se = torch.zeros(student.size, dtype=torch.float64, device=x.device)
    for i in range(0, x.shape[1], chunk):
        xb = x[:, i:i + chunk]
        _, tpre, tpost = teacher.forward(xb)
        out, spre, spost = student.forward(xb)
        se += (out - y[:, i:i + chunk]).double().pow(2).sum((1, 2))
        for l in range(len(post)):
            post[l].update(tpost[l], spost[l])
            pre[l].update(tpre[l], spre[l])
    return se / (x.shape[1] * y.shape[2]), [c.corr() for c in post], [c.corr() for c in pre]


def _lr_at(cfg: TeacherStudentConfig, step: int) -> float:
    return cfg.lr * lr_factor(step, schedule="multistep", total=cfg.steps, milestones=cfg.milestones, gamma=cfg.gamma)


def fit_group(specs: Sequence[JobSpec], *, checkpoint_every: int = 5000, verbose: bool = False) -> list[dict]:
    """Train runs of one shape and schedule together; each writes its own folder. Returns summaries.

    Every `log_every` steps one line is logged: at INFO with `verbose`, else at DEBUG.

    All runs must be new, or all have checkpoints at the same step (the caller groups them so).
    """
    cfgs = [s.config for s in specs]
    c = cfgs[0]
    S = len(specs)
    dirs = [RunDir(s.run_dir).create() for s in specs]  # create: also removes a killed run's temp files
    dev = _device.resolve(None)  # this process's device (`ticketlab.training.device`)
    teacher = Net.stack([Net.from_state(load_state(Path(s.teacher_path))) for s in specs]).to(dev)
    init = Net.stack([Net.from_state(load_state(Path(s.init_path))) for s in specs]).to(dev)
    d = teacher.input_dim
    data = [datasets(cfg, s.seed, d) for cfg, s in zip(cfgs, specs)]  # drawn on the CPU: the same on every device
    x_eval = torch.stack([e for _, e in data]).to(dev)  # [S, E, d]
    with torch.no_grad():
        y_eval = torch.cat([teacher(x_eval[:, i:i + 4096]) for i in range(0, x_eval.shape[1], 4096)], 1)
        y_var = y_eval.double().var(1).mean(1)  # [S]: the teacher's output variance, for relative MSE
        x_train = y_train = None
        if c.train_size:
            x_train = torch.stack([t for t, _ in data]).to(dev)  # [S, N, d]
            y_train = torch.cat([teacher(x_train[:, i:i + 4096]) for i in range(0, x_train.shape[1], 4096)], 1)
    stds = torch.tensor([cfg.data_std for cfg in cfgs], device=dev).view(S, 1, 1)

    student = init.detach()
    params = student.params()  # plain leaf tensors: gradients are set by hand (`Net.loss_and_grads`)
    opt = StackedOptimizer(params, c.optimizer, lr=c.lr, momentum=c.momentum)
    gens = [torch.Generator().manual_seed(_seed(s.seed, 4)) for s in specs]
    step, elapsed, cpu = 0, 0.0, 0.0
    rows: list[list[dict]] = [[] for _ in specs]
    resumed = rundir.resume_group(dirs, "fit_group")
    if resumed is not None:
        states, rows = resumed
        step = int(states[0]["iteration"])
        loaded = Net.stack([Net.from_state(st["student"]) for st in states])
        with torch.no_grad():
            for p, q in zip(params, loaded.params()):
                p.copy_(q)
        opt.load([st["optimizer"] for st in states])
        for g, st in zip(gens, states):
            g.set_state(st["gen"])
        elapsed, cpu = float(states[0]["elapsed"]), float(states[0].get("cpu", 0.0))

    diverged: list[int | None] = [None] * S  # per run: the step whose loss was NaN or infinite
    if resumed is not None:
        diverged = [st.get("diverged") for st in states]
    running = torch.zeros(S, dtype=torch.float64, device=dev)
    n_running = 0
    level = logging.INFO if verbose else logging.DEBUG

    def record(i: int) -> None:
        nonlocal running, n_running
        mse, post, pre = _evaluate(teacher, student, x_eval, y_eval)
        for s in range(S):
            bests = [Mx.best_match(cp[s]) for cp in post]
            rows[s].append({
                "iter": i, "lr": _lr_at(c, i),
                "train_loss": float(running[s]) / n_running if n_running else None,
                "eval_mse": float(mse[s]), "eval_rel_mse": float(mse[s] / y_var[s]),
                "best": [[round(v, 6) for v in b.tolist()] for b, _ in bests],
                "best_idx": [k.tolist() for _, k in bests],
                "best_pre": [[round(v, 6) for v in Mx.best_match(cp[s])[0].tolist()] for cp in pre]})
            if diverged[s] is not None:  # after a divergence the metrics are noise: null (strict JSON)
                rows[s][-1] = {k: (v if k in ("iter", "lr") else None) for k, v in rows[s][-1].items()}
        running, n_running = torch.zeros(S, dtype=torch.float64, device=dev), 0
        if log.isEnabledFor(level):
            means = " ".join(f"{sum(sum(r['best'][l]) / len(r['best'][l]) for r in (rs[-1] for rs in rows)) / S:.3f}"
                             for l in range(len(post)))
            log.log(level, f"{Path(specs[0].exp_path).name} step {i}: eval rel. MSE {float((mse / y_var).mean()):.4g}, "
                           f"mean best match per layer {means}")

    def save_checkpoints(i: int) -> None:
        for s in range(S):
            dirs[s].checkpoint(rows[s], i, student=student.state(s), optimizer=opt.state(s),
                               gen=gens[s].get_state(), elapsed=clock.wall(), cpu=clock.cpu(),
                               **({"diverged": diverged[s]} if diverged[s] is not None else {}))

    # Divergence: on the CPU the loss is read every step (no device sync); on an accelerator the
    # running sum is read at each evaluation and checkpoint, so the hot loop keeps free of host syncs
    # (as in `ticketlab.training.loop.fit_many`; a run's recorded step is then that of the read).
    check_each_step = _device.reads_are_free(dev)

    def diverge(i: int, losses: torch.Tensor) -> bool:
        """Mark the runs whose loss (`losses` [S]: the step's, or the running sum) is NaN or infinite as
        diverged at step i; True when every run has diverged."""
        if math.isfinite(float(losses.sum())):  # one read; NaN or ±inf in any member
            return False
        for r in (~torch.isfinite(losses.detach())).nonzero().flatten().tolist():
            if diverged[r] is None:
                diverged[r] = i
                log.warning("%s: the training loss became %s by step %d: diverged", dirs[r].path,
                            float(losses[r]), i)
        return all(d is not None for d in diverged)

    clock = timing.StackClock(elapsed, cpu)
    if not rows[0]:
        record(0)
    ar = torch.arange(S, device=dev).unsqueeze(1)
    B = c.batch_size
    lr = None
    # the bar of every training loop (`ticketlab.core.progress`); log lines print above it
    name = Path(specs[0].exp_path).name
    bar = progress_bar(c.steps, enabled=verbose, initial=step, unit="step", desc=f"{name} ×{S}" if S > 1 else name)
    autocast = _precision.autocast(dev)
    # ALGO: the hot loop: S networks, one stacked forward/backward per step.
    while step < c.steps:
        new_lr = _lr_at(c, step)
        if new_lr != lr:
            lr = new_lr
            opt.lr = lr
        if x_train is not None:  # with replacement, as SS's use_sgd
            # the draws come from CPU generators (the same batches on every device), then move
            idx = _device.upload(torch.stack([torch.randint(c.train_size, (B,), generator=g) for g in gens]), dev)  # [S, B]
            xb, yb = x_train[ar, idx], y_train[ar, idx]
        else:
            xb = _device.upload(torch.stack([torch.randn(B, d, generator=g) for g in gens]), dev) * stds
            with torch.no_grad():
                yb = teacher(xb)
        with autocast:  # bf16: the hand-written forward and backward; the optimizer state stays fp32
            per_run, grads = student.loss_and_grads(xb, yb, c.loss)  # each slice its own run's gradient
        grads = [g.float() for g in grads]  # fp32 already: the same tensors
        opt.step(grads)  # elementwise: one optimizer on the stack is S optimizers
        running += per_run.double()
        n_running += 1
        step += 1
        if bar is not None:
            bar.update(1)
        if check_each_step:
            stop = diverge(step, per_run)
        else:  # the running sum, where the step records or checkpoints
            stop = (step % c.log_every == 0 or step == c.steps or step % checkpoint_every == 0) \
                and diverge(step, running)
        if stop:  # every run diverged: stop at once
            record(step)
            break
        if step % c.log_every == 0 or step == c.steps:
            record(step)
        if step % checkpoint_every == 0 and step < c.steps:
            save_checkpoints(step)
    if bar is not None:
        bar.close()
    stack_time = clock.fields(S)  # the stack's, not a run's: its runs trained together

    # ---- final readouts: correlations at init and at the end, L-shape, luck ----
    student = student.detach()
    _, post_f, pre_f = _evaluate(teacher, student, x_eval, y_eval)
    _, post_0, pre_0 = _evaluate(teacher, init, x_eval, y_eval)
    summaries = []
    for s in range(S):
        dirs[s].save(rundir.FINAL, step, student=student.state(s))
        rundir.save_file(dirs[s].path / "corr.pt", {
            "init": [cp[s].float() for cp in post_0], "final": [cp[s].float() for cp in post_f],
            "init_pre": [cp[s].float() for cp in pre_0], "final_pre": [cp[s].float() for cp in pre_f]})
        layers = []
        for l in range(len(post_f)):
            best, idx = Mx.best_match(post_f[l][s])
            layers.append({
                "teacher_width": teacher.widths[l], "student_width": student.widths[l],
                "best": best.tolist(), "best_idx": idx.tolist(),
                "best_pre": Mx.best_match(pre_f[l][s])[0].tolist(),
                "best_init": Mx.best_match(post_0[l][s])[0].tolist(),
                "student_max_corr": Mx.student_max_corr(post_f[l][s]).tolist(),
                "fan_out_norm": student.slice(s).fan_out_norm(l)[0].tolist(),
                "teacher_fan_out_norm": teacher.slice(s).fan_out_norm(l)[0].tolist(),
                "fan_out_scaled": Mx.scaled_fan_out(student.slice(s), l)[0].tolist(),
                "teacher_fan_out_scaled": Mx.scaled_fan_out(teacher.slice(s), l)[0].tolist(),
                "luck": Mx.luck(post_0[l][s], post_f[l][s])})
        last = rows[s][-1]
        summary = {"seed": specs[s].seed, "steps": step, "trained_with": S, **stack_time,
                   "teacher_widths": list(teacher.widths), "student_widths": list(student.widths),
                   "eval_mse": last.get("eval_mse"), "eval_rel_mse": last.get("eval_rel_mse"),
                   "train_loss": last.get("train_loss"), "layers": layers, "trained_on": _device.describe(dev),
                   **_precision.summary(),
                   **({"diverged": {"iteration": diverged[s]}} if diverged[s] is not None else {})}
        summaries.append(dirs[s].finish(rows[s], summary, drop=False))
    for d in dirs:  # only once every run is done (`rundir.finished`)
        d.drop_checkpoints()
    return summaries


def _fit_job(specs: list[JobSpec], checkpoint_every: int, verbose: bool) -> list[dict]:
    """A group as one job (module level, so a worker process can run it), under the runs' locks."""
    torch.set_num_threads(1)
    with ExitStack() as stack:
        for s in specs:
            stack.enter_context(Experiment(Path(s.exp_path)).lock(s.lock))
        todo = [s for s in specs if not (Path(s.run_dir) / "summary.json").exists()]  # another process may have run it
        if todo:
            fit_group(todo, checkpoint_every=checkpoint_every, verbose=verbose)
    return [json.loads((Path(s.run_dir) / "summary.json").read_text()) for s in specs]


def group_jobs(specs: Sequence[JobSpec], stack: int) -> list[list[JobSpec]]:
    """Group runs that can train as one computation: same shapes, same training fields, same
    resume step; at most `stack` per group (`ticketlab.engine.schedule.groups`)."""
    nodes = []
    for s in specs:
        cfg = {k: s.cfg[k] for k in SCHEDULE_FIELDS}
        at = RunDir(s.run_dir).checkpoint_iter() or 0
        nodes.append(_node(s, stack=(json.dumps(cfg, sort_keys=True), s.shapes(), at)))
    return [[n.payload for n in g] for g in schedule.groups(nodes, stack)]


def _node(s: JobSpec, stack=None) -> schedule.Node:
    name = f"{Path(s.exp_path).name}/{Path(s.run_dir).relative_to(s.exp_path)}"
    return schedule.Node(s.run_dir, s.run_dir, s, stack=stack, name=name)


def execute(groups: list[list[JobSpec]], *, workers: int = 1, checkpoint_every: int = 5000,
            verbose: bool = False) -> None:
    """Train groups with the one scheduler (`ticketlab.engine.schedule`), in this process
    (workers = 1, or a single group) or across worker processes (`ticketlab.engine.parallel`).
    The first error of a group is raised, after the other groups are stopped."""
    train = functools.partial(_fit_job, checkpoint_every=checkpoint_every, verbose=verbose)
    schedule.run([[_node(s) for s in g] for g in groups], train, workers=workers if len(groups) > 1 else 1)


__all__ = ["fit_group", "group_jobs", "execute"]
