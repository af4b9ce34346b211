"""The resumable training loop of the NLP tasks (language modelling, translation).

It writes its run folder through `ticketlab.training.rundir`, as every loop does, so the lottery engine,
the store, the results tables and the plots treat an NLP run like any other (see docs/rl_nlp.md §5):
`snapshot_<k>.pt` (the state before step k: the rewind points), `checkpoint.pt` every
`checkpoint_every` steps (weights, optimizer, masks, RNG state and the recurrent state carried
between BPTT segments, so an interrupted run resumes exactly), `metrics.jsonl` (one row per
evaluation), `final.pt` and, last, `summary.json`, whose presence marks the run done.

A step: loss → backward → mask the gradients → clip the global gradient norm (Zaremba et al.
2014 §4; masked first, so the norm is the surviving weights') → optimizer step → re-zero the
pruned weights (`ticketlab.core.masks.MaskEnforcer`). Throughput is measured in training tokens per
second of training time (evaluation excluded), shown on the progress bar and recorded per
evaluation and in the summary; the summary also gives tokens per second of the process's CPU
time, the figure that stays meaningful on a shared machine (`stack_cpu_time_s`: the whole run's; an
NLP run trains alone, `stack_size` 1; see `ticketlab.training.timing`).

The early-stopping row is the evaluation with the lowest validation loss (perplexity or
cross-entropy): selected on validation data, never on test data (LTH App. C).

Divergence is a result (docs/architecture/divergence.md): a run whose training loss becomes NaN or
infinite stops; the last metrics row is written with null metrics, and the summary records
`"diverged": {"iteration": N}`, as the supervised loop does. On the CPU the loss is read every step
(it costs no device sync) and N is the 1-based step. On an accelerator the losses are summed on the
device and read at each evaluation and checkpoint, so the hot loop waits for the device only there
(and N is the step of that read); the training time then counts the wait for the steps' queued work.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Callable, Protocol, Sequence

import torch

from ticketlab.core import schedules
from ticketlab.core.progress import bar as progress_bar
from ticketlab.core.masks import MaskEnforcer
from ticketlab.training import device as _device, precision as _precision, rundir
from ticketlab.training.optim import make_optimizer
from ticketlab.training.rundir import RunDir

log = logging.getLogger(__name__)

class Objective(Protocol):
    """What the loop needs from a task: a training loss per step and an evaluation."""

    def train_loss(self, model: torch.nn.Module, it: int, carry) -> tuple[torch.Tensor, int, object]:
        """(mean loss of step `it`, tokens it trained on, state carried to the next step)."""

    def evaluate(self, model: torch.nn.Module) -> dict:
        """The evaluation columns of a metrics row (the first two are what learning curves draw)."""

    # optional `loss_scale`: the gradient is that of loss_scale × the (logged) mean loss


def lr_factor(it: int, *, warmup: int = 0, **schedule) -> float:
    """`ticketlab.core.schedules.lr_factor` under this module's older keyword `warmup` (= warmup_iters)."""
    return schedules.lr_factor(it, warmup_iters=warmup, **schedule)


def fit(model: torch.nn.Module, run_dir: Path, objective: Objective, *, optimizer: torch.optim.Optimizer,
        total: int, lr: float, lr_at: Callable[[int], float], clip: float, eval_every: int,
        select: str, metric: str, higher_is_better: bool, masks: dict | None, prunable: dict,
        start_iter: int = 0, start_optimizer: dict | None = None, lr_offset: int = 0,
        snapshot_iters: Sequence[int] = (), seed: int = 0, progress: bool = False, desc: str = "train",
        checkpoint_every: int = 1000, extra_summary: dict | None = None) -> dict:
    """Train `model` from `start_iter` to `total` steps in `run_dir`, resumably; return the summary.

    `lr_at(i)` is the learning-rate factor of schedule position i; step `it` uses position
    `it - lr_offset` (a rewound run that restarts its schedule). `select` is the row key the
    early-stopping row minimises; `metric` the headline key (best over rows by `higher_is_better`).
    `seed` seeds dropout when the run starts fresh; a resumed run restores the RNG state.
    """
    rd = RunDir(run_dir).create()
    if rd.done():
        return rd.summary()
    # this process's device (`ticketlab.training.device`); the optimizer keeps the same parameter
    # objects, and a loaded optimizer state follows them there
    dev = _device.resolve(None)
    home = next(model.parameters()).device  # the caller's model goes back there at the end
    model.to(dev)
    if not 0 <= start_iter <= total:
        raise ValueError(f"start_iter {start_iter} outside [0, {total}]")
    it, carry = start_iter, None
    acc = {"elapsed": 0.0, "cpu": 0.0, "train_time": 0.0, "train_cpu": 0.0, "tokens": 0.0, "loss_sum": 0.0,
           "loss_n": 0.0}
    resumed = rd.resume(masks)
    if resumed is not None:
        state, rows = resumed
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        _device.set_rng_state(state, dev)  # dropout's CUDA RNG, when the run resumes on CUDA
        it = int(state["iteration"])
        carry = tuple(t.to(dev) for t in state["carry"]) if state.get("carry") else None
        acc.update({k: float(state[k]) for k in acc if k in state})
    else:
        if start_optimizer is not None:
            optimizer.load_state_dict(start_optimizer)
        torch.manual_seed(seed)
        rows = []
    enforcer = MaskEnforcer(prunable, masks) if masks else None
    if enforcer is not None:
        enforcer.install(optimizer)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    scale = float(getattr(objective, "loss_scale", 1.0))
    snapshot_iters = sorted(k for k in set(snapshot_iters) if it <= k <= total)

    def state(**extra) -> dict:
        return dict(model=model.state_dict(), masks=dict(masks or {}), optimizer=optimizer.state_dict(), **extra)

    bar = progress_bar(total, enabled=progress, initial=it, desc=desc, mininterval=1.0)
    t_start, c_start = time.perf_counter(), time.process_time()
    t_interval, tok_interval = 0.0, 0

    diverged = None  # the step whose training loss was NaN or infinite
    check_each_step = _device.reads_are_free(dev)
    pending, n_pending = torch.zeros((), device=dev), 0  # an accelerator's losses not yet read: sum, count

    def settle() -> bool:
        """Read the losses summed on the accelerator into the running mean (one wait for the device,
        counted as training time); False when their sum is not finite."""
        nonlocal pending, n_pending, t_interval
        if not n_pending:
            return True
        t = time.perf_counter()
        value = float(pending)
        waited = time.perf_counter() - t
        acc["train_time"] += waited
        t_interval += waited
        acc["loss_sum"] += value
        acc["loss_n"] += n_pending
        pending, n_pending = torch.zeros((), device=dev), 0
        return math.isfinite(value)

    def record(i: int) -> None:
        nonlocal t_interval, tok_interval
        row = {"iter": i, **objective.evaluate(model),
               "train_loss": acc["loss_sum"] / acc["loss_n"] if acc["loss_n"] else None,
               "lr": lr * lr_at(max(i - 1, 0) - lr_offset),
               "tokens_per_s": tok_interval / t_interval if t_interval > 0 else None}
        if diverged is not None:  # after a divergence the metrics are noise: null (strict JSON)
            row = {k: (v if k in ("iter", "lr") else None) for k, v in row.items()}
        rows.append(row)
        acc["loss_sum"] = acc["loss_n"] = 0.0
        t_interval, tok_interval = 0.0, 0
        model.train()

    if it in snapshot_iters:
        rd.save(rundir.snapshot_name(it), it, **state())
    model.train()
    autocast = _precision.autocast(dev)
    # ALGO: the hot loop
    while it < total:
        t0, c0 = time.perf_counter(), time.process_time()
        for g in optimizer.param_groups:
            g["lr"] = lr * lr_at(it - lr_offset)
        optimizer.zero_grad(set_to_none=True)
        with autocast:  # bf16 (`ticketlab.training.precision`): weights, grads and masks stay fp32
            loss, n_tok, carry = objective.train_loss(model, it, carry)
        (loss * scale if scale != 1.0 else loss).backward()
        if enforcer is not None:
            enforcer.after_backward(it)
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()
        if enforcer is not None:
            enforcer.after_step(it)
        it += 1
        dt = time.perf_counter() - t0
        acc["train_time"] += dt
        acc["train_cpu"] += time.process_time() - c0
        acc["tokens"] += n_tok
        t_interval += dt
        tok_interval += n_tok
        if check_each_step:
            value = float(loss.detach())
            acc["loss_sum"] += value
            acc["loss_n"] += 1
            if not math.isfinite(value):
                diverged = it
                log.warning("%s: the training loss became %s at iteration %d: diverged", rd.path, value, it)
                break
        else:
            pending += loss.detach().float()
            n_pending += 1
            if (it % eval_every == 0 or it == total or it % checkpoint_every == 0) and not settle():
                diverged = it
                log.warning("%s: the training loss became non-finite by iteration %d: diverged", rd.path, it)
                break
        if bar is not None:
            bar.update(1)
            if acc["loss_n"]:
                bar.set_postfix(loss=f"{acc['loss_sum'] / acc['loss_n']:.3f}",
                                tok_s=f"{tok_interval / max(t_interval, 1e-9):.0f}", refresh=False)
        if it % eval_every == 0 or it == total:
            record(it)
            if bar is not None:
                bar.set_postfix({k: f"{v:.4g}" for k, v in list(rows[-1].items())[1:3]}, refresh=False)
        if it in snapshot_iters:
            rd.save(rundir.snapshot_name(it), it, **state())
        if it % checkpoint_every == 0 and it < total:
            c = [t.detach() for t in carry] if isinstance(carry, tuple) else []
            rd.checkpoint(rows, it, **state(carry=c, **{**acc, "elapsed": acc["elapsed"] + time.perf_counter() - t_start,
                                                        "cpu": acc["cpu"] + time.process_time() - c_start}))
    if not rows or rows[-1]["iter"] != it:  # a run that starts at its end (rewind point = total)
        record(it)
    if bar is not None:
        bar.close()
    wall = acc["elapsed"] + time.perf_counter() - t_start
    cpu = acc["cpu"] + time.process_time() - c_start
    rd.save(rundir.FINAL, it, **state())
    model.to(home)
    best = (max if higher_is_better else min)((r[metric] for r in rows if r[metric] is not None), default=None)
    summary = {"iterations": total, "start_iter": start_iter, "metric": metric, "select": select,
               "final": rows[-1], "early_stop": rundir.early_stopping(rows, select),
               "best_score": best, "stack_wall_time_s": wall, "stack_cpu_time_s": cpu, "stack_size": 1,
               "train_time_s": acc["train_time"],
               "train_tokens": int(acc["tokens"]),
               "tokens_per_s": acc["tokens"] / acc["train_time"] if acc["train_time"] else None,
               "tokens_per_cpu_s": acc["tokens"] / acc["train_cpu"] if acc["train_cpu"] else None,
               "trained_on": _device.describe(dev), **_precision.summary(), **(extra_summary or {}),
               **({"diverged": {"iteration": diverged}} if diverged is not None else {})}
    return rd.finish(rows, summary)


__all__ = ["Objective", "fit", "lr_factor", "make_optimizer"]
