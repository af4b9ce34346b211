"""Runs a lottery experiment's runs in dependency order, stacked and across worker processes.

An IMP study is a graph of runs: level L of a replicate needs level L−1 (its mask comes from
L−1's trained weights); a control at level L needs the same, plus level 0 (the rewind point and,
for one-shot, the trained dense net); `continued` level L needs `continued` L−1. Everything
else is independent. The graph comes from the trunk's steps (`ticketlab.experiments.lottery.trunk`):
its runs are the loop's (`trunk.branches`), its edges the steps' declared inputs (`trunk.needs`),
and a node runs the loop's own `prune` and `plan` before training. The runner keeps the ready runs
flowing to the workers:

- worker processes, one torch thread each (docs/performance.md §2: 2 processes ×
  1 thread gave 1.6× over one process, and 2 threads in one process can be 30× slower when
  another process holds a core);
- within a worker, ready runs that share a schedule and a stackable architecture train as one
  batched computation (`ticketlab.training.stacked.Stacked`, up to `stack` models; with 8 per process the
  reference measured 1.9× over one model at a time); other architectures train one by one.

Every run writes its own folder exactly as if trained alone, so the results and resume do not
depend on the workers or the stacking (stacked and single runs agree to float rounding,
`tests/test_ensemble.py`).
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ticketlab.experiments.lottery import trunk
from ticketlab.experiments.lottery.controls import CONTROLS, branch_name
from ticketlab.experiments.lottery.trunk import LotteryConfig, LotteryRun, Replicate, execute, lottery_levels, replicate_seeds
from ticketlab.engine.results import aggregate, run_rows
from ticketlab.engine.store import Store
from ticketlab.engine.tasks import get_task, task_of


@dataclass(frozen=True)
class Task:
    """One run of the graph: a trunk level (control None) or a control branch at a level."""

    r: int
    level: int
    control: str | None = None
    draw: int = 0

    def run_dir(self, exp_path: Path) -> Path:
        rep = Path(exp_path) / f"replicate_{self.r}"
        branch = branch_name(self.control, self.draw) if self.control else ""
        return (rep / branch if branch else rep) / f"level_{self.level}"

    def deps(self) -> list["Task"]:
        """The runs this one reads: the inputs its steps declare (`trunk.needs`)."""
        return [Task(self.r, L, c) for L, c in trunk.needs(self.level, self.control)]

    def kind(self) -> str:
        """Tasks of one kind share a schedule: the rewound ones (tickets, reinit, random masks,
        one-shot), level 0, and each control that does not rewind (continued training)."""
        if self.control is not None and not CONTROLS[self.control].rewinds:
            return self.control
        return "dense" if self.control is None and self.level == 0 else "rewind"


@dataclass(frozen=True)
class Spec:
    """What a worker needs to rebuild the experiment (picklable)."""

    train: object  # the task's recipe: a TrainConfig for classification
    lottery: LotteryConfig
    exp_path: str
    data_dir: str | None
    checkpoint_every: int
    task: str = "classify"  # `ticketlab.engine.tasks`: what `train` configures


def replicate(spec: Spec, r: int, *, progress: bool = False, log=None) -> Replicate:
    """Replicate r of the experiment, with its task's trainer."""
    seed, data_seed = replicate_seeds(spec.train, r)
    trainer = get_task(spec.task).make_trainer(
        dataclasses.replace(spec.train, init_seed=seed, data_seed=data_seed), data_dir=spec.data_dir,
        progress=progress, checkpoint_every=spec.checkpoint_every)
    return Replicate(spec.lottery, trainer, Path(spec.exp_path), r, seed=seed, data_seed=data_seed,
                     log=log or (lambda s: None))


def run_tasks(spec: Spec, tasks: list[Task], progress: bool = False) -> list[Task]:
    """Train one group of tasks in this process: each pruned and planned by the trunk's steps, then
    trained as one stack when they can."""
    exp = Path(spec.exp_path)
    tasks = [t for t in tasks if not (t.run_dir(exp) / "summary.json").exists()]
    reps: dict[int, Replicate] = {}
    plans = []
    for t in tasks:
        rep = reps.get(t.r) or reps.setdefault(t.r, replicate(spec, t.r, progress=progress))
        trunk.prune(rep, t.level, t.control, t.draw)
        plans.append(trunk.plan(rep, t.level, t.control, t.draw))
    if plans:
        execute(plans, stack=len(plans))
    return tasks


def groups(tasks: list[Task], stack: int) -> list[list[Task]]:
    """Split the runs into the groups that train together.

    The split is a fixed function of the experiment (its runs and `stack`), never of timing or
    of the number of workers, so results are reproducible: stacked and single runs agree only to
    float rounding, so which runs share a stack must not depend on the scheduling. Runs of one
    kind and level (across replicates, controls and draws) are split into balanced stacks of at
    most `stack`, and into at least two when there are two or more, so that two workers share
    each level. Level 0 (the dense runs) always trains unstacked: a rewind point that was not
    saved can then be replayed bit for bit (`ticketlab.experiments.lottery.instability`).
    """
    by: dict[tuple, list[Task]] = {}
    for t in tasks:
        by.setdefault((t.kind(), t.level), []).append(t)
    out = []
    for (kind, _), ts in sorted(by.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        ts = sorted(ts, key=lambda t: (t.control or "", t.draw, t.r))
        if kind == "dense" or stack <= 1:
            out += [[t] for t in ts]
            continue
        n_groups = max(math.ceil(len(ts) / stack), min(len(ts), 2))
        size = math.ceil(len(ts) / n_groups)
        out += [ts[i:i + size] for i in range(0, len(ts), size)]
    return out


def graph(spec: Spec) -> list[Task]:
    """Every run of the experiment (trunks and controls), in a topological order."""
    cfg = spec.lottery
    probe = replicate(spec, 0)
    levels = lottery_levels(cfg, probe)
    tasks = [Task(r, L) for L in range(levels + 1) for r in range(cfg.replicates)]
    return tasks + [Task(r, L, c, d) for r in range(cfg.replicates) for L, c, d in trunk.branches(cfg, levels)]


def run_graph(spec: Spec, *, workers: int = 1, stack: int = 8, progress: bool = True,
              log: Callable[[str], None] | None = None, executor: cf.Executor | None = None) -> None:
    """Run every group of tasks not yet done, as soon as its dependencies are, on `workers` processes.

    `stack` caps the models trained as one computation (1 disables stacking). With one worker
    everything runs in this process (no start-up cost); otherwise groups go to worker processes
    (`ticketlab.engine.parallel`), or to the given `executor`.
    """
    exp = Path(spec.exp_path)
    tasks = graph(spec)
    done = {t for t in tasks if (t.run_dir(exp) / "summary.json").exists()}
    pending = [g for g in groups(tasks, stack) if any(t not in done for t in g)]
    if not pending:
        return
    log = log or (lambda s: None)
    bar = _bar(progress and (workers > 1 or executor is not None), len(tasks), len(done))
    own = None
    if executor is None and workers > 1:
        from ticketlab.engine.parallel import make_executor
        executor = own = make_executor("process", workers)
    running: dict[cf.Future, list[Task]] = {}
    try:
        while pending or running:
            ready = [g for g in pending if all(d in done for t in g for d in t.deps() if d not in g)]
            if not ready and not running:
                raise RuntimeError("runner: runs are pending but none is ready (a dependency cycle?)")
            for g in ready[:max(0, (workers if executor else 1) - len(running))]:
                pending.remove(g)
                log("training " + ", ".join(_name(t) for t in g))
                if executor is None:
                    run_tasks(spec, g, progress=progress)
                    _finish(g, done, bar)
                else:
                    running[executor.submit(run_tasks, spec, g)] = g
            if running:
                finished, _ = cf.wait(list(running), return_when=cf.FIRST_COMPLETED)
                for f in finished:
                    g = running.pop(f)
                    f.result()  # a worker's error is raised here
                    _finish(g, done, bar)
    except BaseException:
        for f in running:
            f.cancel()
        if own is not None:  # workers ignore SIGINT: kill them; their runs resume from checkpoints
            own.terminate()
            own = None
        raise
    finally:
        if own is not None:
            own.shutdown(wait=True, cancel_futures=True)
        if bar is not None:
            bar.close()


def _finish(group, done, bar) -> None:
    done.update(group)
    if bar is not None:
        bar.update(len(group))


def _name(t: Task) -> str:
    return f"r{t.r}/{branch_name(t.control, t.draw) + '/' if t.control else ''}L{t.level}"


def _bar(progress: bool, total: int, initial: int):
    if not progress:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=initial, desc="runs", dynamic_ncols=True)


def run_lottery(train_cfg, cfg, *, store=None, data_dir=None, progress: bool = True, log=None,
                checkpoint_every: int = 1000, workers: int = 1, stack: int = 8) -> dict:
    """Run (or extend, or resume) an IMP experiment with its controls: `ticketlab.api.lottery`.

    Returns {"experiment": folder, "rows": one row per trained network, "aggregate": mean ± std
    per (branch, level)}. Levels, replicates and controls already in the store are not re-run."""

    task = get_task(task_of(train_cfg))
    if task.validate is not None:
        task.validate(train_cfg, data_dir)
    exp = Store(store).experiment("lottery", LotteryRun(train_cfg, cfg, task=task.name))
    spec = Spec(train_cfg, cfg, str(exp.path), None if data_dir is None else str(data_dir), checkpoint_every,
                task=task.name)
    with exp.lock():
        run_graph(spec, workers=workers, stack=stack, progress=progress, log=log)
    rows = run_rows(exp.path)
    return {"experiment": str(exp.path), "rows": rows, "aggregate": aggregate(rows)}


def default_workers() -> int:
    """One worker per core."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
