"""Runs a lottery experiment's runs in dependency order, stacked and across worker processes.

An IMP study is a graph of runs: level L of a replicate needs level L−1 (its mask comes from
L−1's trained weights); a control at level L needs the same, plus level 0 (the rewind point and,
for one-shot, the trained dense net); `continued` level L needs `continued` L−1. Everything
else is independent. The graph comes from the trunk's steps (`ticketlab.experiments.lottery.trunk`):
its runs are the loop's (`trunk.branches`), its edges the steps' declared inputs (`trunk.needs`),
and a node runs the loop's own `prune` and `plan` before training. The runner emits these runs
to the one scheduler (`ticketlab.engine.schedule`), which keeps the ready runs flowing to the workers:

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
import functools
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from ticketlab.experiments.lottery import replay, trunk
from ticketlab.experiments.lottery.controls import CONTROLS, branch_name
from ticketlab.experiments.lottery.trunk import LotteryConfig, LotteryRun, Replicate, execute, lottery_levels, replicate_seeds
from ticketlab.engine import schedule
from ticketlab.engine.forkserver import prestart
from ticketlab.engine.parallel import cpu_count
from ticketlab.engine.results import aggregate, run_rows
from ticketlab.engine.store import Store
from ticketlab.engine.tasks import get_task, task_of
from ticketlab.training.rundir import CHECKPOINT, SUMMARY, read_json
from ticketlab.core import integrity

STACK_FILE = "stack.json"  # in an unfinished run's folder: the runs it trains with, so a resume keeps the stack

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class LotteryNode(trunk.RunKey):
    """One run of the lottery graph (the key and payload of its `ticketlab.engine.schedule.Node`):
    a trunk level (control None) or a control branch at a level."""

    def run_dir(self, exp_path: Path) -> Path:
        rep = Path(exp_path) / f"replicate_{self.r}"
        branch = branch_name(self.control, self.draw) if self.control else ""
        return (rep / branch if branch else rep) / f"level_{self.level}"

    def deps(self) -> list["LotteryNode"]:
        """The runs this one reads: the inputs its steps declare (`trunk.needs`)."""
        return [LotteryNode(self.r, L, c) for L, c in trunk.needs(self.level, self.control)]

    def kind(self) -> str:
        """Tasks of one kind share a schedule: the rewound ones (tickets, reinit, random masks,
        one-shot), level 0, and each control that does not rewind (continued training)."""
        if self.control is not None and not CONTROLS[self.control].rewinds:
            return self.control
        return "dense" if self.control is None and self.level == 0 else "rewind"


@dataclass(frozen=True)
class LotterySpec:
    """What a worker needs to rebuild the experiment (picklable)."""

    train: object  # the task's recipe: a TrainConfig for classification
    lottery: LotteryConfig
    exp_path: str
    data_dir: str | None
    checkpoint_every: int
    task: str = "classify"  # `ticketlab.engine.tasks`: what `train` configures


Spec, Task = LotterySpec, LotteryNode  # the old names, kept for one release


def replicate(spec: LotterySpec, r: int, *, progress: bool = False) -> Replicate:
    """Replicate r of the experiment, with its task's trainer."""
    seed, data_seed = replicate_seeds(spec.train, r)
    trainer = get_task(spec.task).make_trainer(
        dataclasses.replace(spec.train, init_seed=seed, data_seed=data_seed), data_dir=spec.data_dir,
        progress=progress, checkpoint_every=spec.checkpoint_every)
    return Replicate(spec.lottery, trainer, Path(spec.exp_path), r, seed=seed, data_seed=data_seed)


def run_tasks(spec: LotterySpec, tasks: list[LotteryNode], progress: bool = False) -> list[LotteryNode]:
    """Train one group of tasks in this process: each pruned and planned by the trunk's steps, then
    trained as one stack when they can. A run that `ticketlab verify --repair` removed trains in the
    stack it first trained in instead (`ticketlab.experiments.lottery.replay`), so it is bit-identical."""
    exp = Path(spec.exp_path)
    tasks = [t for t in tasks if not (t.run_dir(exp) / SUMMARY).exists()]
    for t in tasks:  # before any checkpoint: an interrupted run resumes in this same stack
        t.run_dir(exp).mkdir(parents=True, exist_ok=True)
        integrity.write_json(t.run_dir(exp) / STACK_FILE, {"members": [_folder(u) for u in tasks]})
    pending = {_folder(t): t for t in tasks}
    stacks = replay.original_stacks(exp, list(pending), lambda n: (exp / n / SUMMARY).exists())
    stacks = [st for st in stacks if all(n in pending or _node(n) is not None for n in st)]
    in_stacks = {n for st in stacks for n in st}
    reps: dict[int, Replicate] = {}

    def planned(t: LotteryNode, scratch: Path | None = None) -> trunk.Plan:
        rep = reps.get(t.r) or reps.setdefault(t.r, replicate(spec, t.r, progress=progress))
        if scratch is None:  # a replayed stack-mate's mask is stored: nothing to prune
            trunk.prune(rep, t.level, t.control, t.draw)
        p = dataclasses.replace(trunk.plan(rep, t.level, t.control, t.draw), name=_folder(t))
        return p if scratch is None else dataclasses.replace(p, run_dir=scratch / _folder(t))

    plans = [planned(t) for t in tasks if _folder(t) not in in_stacks]
    if plans:
        execute(plans, stack=len(plans))
    for st in stacks:  # re-formed: the removed runs for real, their stored stack-mates in scratch
        scratch = exp / replay.SCRATCH / next(n for n in st if n in pending).replace("/", "-")
        if not any((exp / n / "checkpoint.pt").exists() for n in st if n in pending):
            shutil.rmtree(scratch, ignore_errors=True)  # nothing to resume: start the mates afresh
        log.info("recomputing %s in the stack it first trained in (%s)", ", ".join(n for n in st if n in pending),
                 ", ".join(st))
        execute([planned(pending[n]) if n in pending else planned(_node(n), scratch) for n in st], stack=len(st))
        shutil.rmtree(scratch, ignore_errors=True)
        try:
            scratch.parent.rmdir()  # the last stack replayed (another worker may still use it)
        except OSError:
            pass
    replay.mark_recomputed(exp, pending, replayed=in_stacks)
    for t in tasks:  # needed only while a run is unfinished: a finished run folder is as before
        if (t.run_dir(exp) / SUMMARY).exists():
            integrity.forget(t.run_dir(exp) / STACK_FILE)
    return tasks


def _folder(t: LotteryNode) -> str:
    """The run's folder relative to its experiment (its name in a stack's record)."""
    return t.run_dir(Path()).as_posix()


def _node(folder: str) -> LotteryNode | None:
    """The run stored in `folder` (relative to its experiment), None if it names no lottery run."""
    parts = folder.split("/")
    try:
        r, level = int(parts[0].removeprefix("replicate_")), int(parts[-1].removeprefix("level_"))
    except ValueError:
        return None
    if len(parts) not in (2, 3):
        return None
    control, draw = None, 0
    if len(parts) == 3:  # a control's folder (`Control.folder`): its name, then `_<draw>` for a random one
        name, _, d = parts[1].rpartition("_")
        control, draw = (name, int(d)) if d.isdigit() and name in CONTROLS else (parts[1], 0)
        if control not in CONTROLS:
            return None
    node = LotteryNode(r, level, control, draw)
    return node if _folder(node) == folder else None


def groups(tasks: list[LotteryNode], stack: int, spread: int = 2) -> list[list[LotteryNode]]:
    """Split the runs into the groups that train together (`ticketlab.engine.schedule.groups`).

    The split is a fixed function of the experiment (its runs, `stack` and `spread`), never of
    timing, so results are reproducible: stacked and single runs agree only to float rounding, so
    which runs share a stack must not depend on the scheduling. Runs of one kind and level (across
    replicates, controls and draws) are split into balanced stacks of at most `stack`, and into at
    least `spread` when there are that many: 2 when two or more workers share each level, 1 for
    one worker, which then takes each level as one stack (issue #18, point 6). Level 0 (the dense
    runs) always trains unstacked: a rewind point that was not saved can then be replayed bit for
    bit (`ticketlab.experiments.lottery.instability`).
    """
    return [[n.payload for n in g] for g in _stacks(tasks, stack, Path(), spread)]


def spread_for(workers: int, executor: cf.Executor | None = None) -> int:
    """Stacks per level: 2 when workers share the levels (the rule every store before #18 used), 1
    for one worker in this process, so that it never runs a level as stacks one after another."""
    return 2 if executor is not None or workers > 1 else 1


def _stacks(tasks: list[LotteryNode], stack: int, exp: Path, spread: int = 2,
            longer: bool = False) -> list[list[schedule.Node]]:
    """The stacks of `groups`; with `longer` (`LotteryConfig.baseline_length` > 1) the controls train
    longer than the tickets of their level, so they stack apart from them."""
    def key(t: LotteryNode):
        if t.kind() == "dense":
            return None
        return (t.kind(), t.level, "longer") if longer and t.control is not None else (t.kind(), t.level)
    order = sorted(tasks, key=lambda t: (t.level, t.kind(), t.control or "", t.draw, t.r))
    nodes = [schedule.Node(t, t.run_dir(exp), t, deps=tuple(t.deps()), name=_name(t), stack=key(t))
             for t in order]
    resumed, rest = _interrupted(nodes, stack)
    return resumed + schedule.groups(rest, stack, even=True, spread=spread)


def _interrupted(nodes: list[schedule.Node], stack: int) -> tuple[list[list[schedule.Node]], list[schedule.Node]]:
    """Interrupted runs (a checkpoint, no summary) in the stacks they started in, and the other nodes.

    A run resumes with the stack it trained in so far (the group's RNG and float rounding carry on
    unchanged): as recorded in its `stack.json`; in a store from before that file, as the rule of
    the time grouped its kind and level (`spread` 2).
    """
    by_folder = {_folder(n.key): n for n in nodes}  # stack.json names runs by folder, as summaries do
    out, seen = [], set()
    legacy = {n.stack for n in nodes if n.stack is not None and _started(n) and not (Path(n.run_dir) / STACK_FILE).exists()}
    for n in nodes:
        if _folder(n.key) in seen or n.stack in legacy or not _started(n):
            continue
        members = [by_folder[m] for m in read_json(Path(n.run_dir) / STACK_FILE)["members"]
                   if m in by_folder and m not in seen and not by_folder[m].done()]
        out.append(members)
        seen.update(_folder(m.key) for m in members)
    for key in legacy:
        out += schedule.groups([n for n in nodes if n.stack == key], stack, even=True, spread=2)
    return out, [n for n in nodes if _folder(n.key) not in seen and n.stack not in legacy]


def _started(n: schedule.Node) -> bool:
    return (Path(n.run_dir) / CHECKPOINT).exists() and not n.done()


def graph(spec: LotterySpec) -> list[LotteryNode]:
    """Every run of the experiment (trunks and controls), in a topological order."""
    cfg = spec.lottery
    probe = replicate(spec, 0)
    levels = lottery_levels(cfg, probe)
    trunk.check_control_levels(cfg, levels)
    tasks = [LotteryNode(r, L) for L in range(levels + 1) for r in range(cfg.replicates)]
    return tasks + [LotteryNode(r, L, c, d) for r in range(cfg.replicates) for L, c, d in trunk.branches(cfg, levels)]


def run_graph(spec: LotterySpec, *, workers: int = 1, stack: int = 8, progress: bool = True,
              executor: cf.Executor | None = None) -> None:
    """Run every group of tasks not yet done, as soon as its dependencies are, on `workers` processes.

    `stack` caps the models trained as one computation (1 disables stacking). With one worker
    everything runs in this process (no start-up cost), each level as one stack of at most `stack`;
    otherwise groups go to worker processes
    (`ticketlab.engine.parallel`), or to the given `executor`.
    """
    inline = executor is None and workers <= 1  # per-run progress bars only in this process
    train = functools.partial(run_tasks, spec, progress=progress) if inline else functools.partial(run_tasks, spec)
    stacks = _stacks(graph(spec), stack, Path(spec.exp_path), spread_for(workers, executor),
                     spec.lottery.baseline_length > 1)
    schedule.run(stacks, train, workers=workers, executor=executor,
                 progress=progress)


def _name(t: LotteryNode) -> str:
    return f"r{t.r}/{branch_name(t.control, t.draw) + '/' if t.control else ''}L{t.level}"


def run_lottery(train_cfg, cfg, *, store=None, data_dir=None, progress: bool = True,
                checkpoint_every: int = 1000, workers: int = 1, stack: int = 8) -> dict:
    """Run (or extend, or resume) an IMP experiment with its controls: `ticketlab.api.lottery`.

    Returns {"experiment": folder, "rows": one row per trained network, "aggregate": mean ± std
    per (branch, level)}. Levels, replicates and controls already in the store are not re-run."""

    if workers > 1:  # the workers' forkserver imports while this process loads data and builds the graph
        prestart()
    task = get_task(task_of(train_cfg))
    if task.validate is not None:
        task.validate(train_cfg, data_dir)
    exp = Store(store).experiment("lottery", LotteryRun(train_cfg, cfg, task=task.name))
    spec = LotterySpec(train_cfg, cfg, str(exp.path), None if data_dir is None else str(data_dir),
                       checkpoint_every, task=task.name)
    with exp.lock():
        run_graph(spec, workers=workers, stack=stack, progress=progress)
    rows = run_rows(exp.path)
    return {"experiment": str(exp.path), "rows": rows, "aggregate": aggregate(rows)}


def default_workers() -> int:
    """One worker per core (`ticketlab.engine.parallel.cpu_count`; kept for callers of the old name)."""
    return cpu_count()
