"""The one scheduler: trains a graph of runs in dependency order, in stacks, on worker processes.

Every experiment kind (IMP with its controls, ticket transfer, sparse training, teacher–student)
is a set of runs, some of which need others finished first: IMP level L prunes level L−1's
trained weights (LTH §2, docs/lottery.md); a transferred ticket needs nothing. A kind emits one
`Node` per run and one `train(payloads)` function that trains a group of runs in the calling
process; this module decides what runs when:

- `groups`: nodes with equal stack keys (runs that may share one batched step) are split into
  groups of at most `stack`. The split is a fixed function of the nodes, their order and `stack`,
  never of timing or of the number of workers: stacked and single runs agree only to float
  rounding (docs/performance.md §4), so which runs share a stack must not depend on scheduling.
- `run`: a group starts once every node it depends on outside the group is done, on one of
  `workers` processes (`ticketlab.engine.parallel`: one torch thread each, docs/performance.md
  §2) or in this process. A node is done when its run folder holds `summary.json` (every loop
  writes it last): a finished run is never retrained, an interrupted one resumes from its
  checkpoint. A worker's error is raised here, at once; on it or on Ctrl-C the workers are killed
  (they ignore SIGINT), and their runs resume from their checkpoints next time. A worker repeats
  this process's device, precision and deterministic settings; each group running at once holds a
  slot 0..workers-1, and on a machine with several GPUs slot i trains on `cuda:i % n_gpus`
  (`ticketlab.training.device.for_worker`).

    nodes = [Node(key=r, run_dir=exp / f"replicate_{r}", payload=r, stack="recipe") for r in range(R)]
    run(groups(nodes, stack=8), functools.partial(train_group, spec), workers=2)
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Hashable, Sequence

from ticketlab.core import progress as _progress
from ticketlab.engine.parallel import make_executor
from ticketlab.training import determinism as _determinism, device as _device, precision as _precision

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Node:
    """One run of an experiment graph.

    `key` names it (unique in the graph; `deps` are keys of the runs it needs finished first);
    `run_dir` is its folder (done = `run_dir/summary.json` exists); `payload` is what `train`
    gets for it (picklable when it goes to a worker); runs with equal `stack` keys may train as
    one stack (None: always alone); `name` is how the log line names it.
    """

    key: Hashable
    run_dir: str | Path
    payload: Any
    deps: tuple = ()
    stack: Hashable = None
    name: str = ""

    def done(self) -> bool:
        """Whether the run has finished (its summary is written last, atomically)."""
        return (Path(self.run_dir) / "summary.json").exists()


def groups(nodes: Sequence[Node], stack: int, *, even: bool = False, spread: int = 1) -> list[list[Node]]:
    """Split `nodes` into the groups that train together, in order.

    Nodes with equal stack keys form a bucket (buckets in order of first appearance, nodes in the
    order given); a node without a stack key is a group of its own. A bucket is cut into
    consecutive groups of at most `stack` nodes: filled in turn (the last one short), or with
    `even` into equal parts, at least `spread` of them when the bucket has that many nodes (so
    that `spread` workers share it).
    """
    stack = max(stack, 1)
    buckets: dict[Hashable, list[Node]] = {}
    for i, n in enumerate(nodes):
        buckets.setdefault(("alone", i) if n.stack is None else ("stack", n.stack), []).append(n)
    out = []
    for ns in buckets.values():
        size = stack
        if even:
            size = math.ceil(len(ns) / max(math.ceil(len(ns) / stack), min(len(ns), spread)))
        out += [list(ns[i:i + size]) for i in range(0, len(ns), size)]
    return out


def run(groups: Sequence[Sequence[Node]], train: Callable[[list], object], *, workers: int = 1,
        executor: cf.Executor | None = None, progress: bool = False) -> None:
    """Train every group that has a run not yet done, each once its dependencies are.

    `train(payloads)` trains one group's unfinished runs; it runs in this process when `workers`
    is 1 and no `executor` is given, else on `workers` processes (or the given executor, which is
    left running), so it must then be picklable (a module-level function, or a
    `functools.partial` of one). `progress` shows a bar of finished runs when they run on workers.
    Each group started is one INFO line of this module's logger; what the workers log shows where
    this process's messages show when the CLI configured them (`ticketlab.core.progress`).
    Raises the first error of a group, after stopping the others.
    """
    nodes = [n for g in groups for n in g]
    keys = {n.key for n in nodes}
    if len(keys) != len(nodes):
        raise ValueError("schedule: two nodes share a key")
    for n in nodes:
        missing = [d for d in n.deps if d not in keys]
        if missing:
            raise ValueError(f"schedule: {n.name or n.key} depends on {missing[0]!r}, which is not in the graph")
    done = {n.key for n in nodes if n.done()}
    pending = [(list(g), {n.key for n in g}) for g in groups if any(n.key not in done for n in g)]
    if not pending:
        return
    own = None
    if executor is None and workers > 1:
        workers = min(workers, len(pending))  # no idle worker to start
        executor = own = make_executor("process", workers)
    bar = _progress.bar(len(nodes), enabled=progress and executor is not None, initial=len(done), desc="runs",
                        leave=True, mininterval=0.1)
    if executor is not None:  # worker processes start with logging unconfigured: repeat ours there
        settings = (_device.current(), _precision.current(), _determinism.current())
        train = functools.partial(_in_worker, _progress.worker_level(), settings, train)
    running: dict[cf.Future, list[Node]] = {}
    slots: dict[cf.Future, int] = {}  # the slot of each running group: its GPU on a several-GPU machine
    try:
        while pending or running:
            ready = [p for p in pending if all(d in done or d in p[1] for n in p[0] for d in n.deps)]
            if not ready and not running:
                raise RuntimeError("schedule: runs are pending but none is ready (a dependency cycle?)")
            for p in ready[:max(0, (workers if executor else 1) - len(running))]:
                pending.remove(p)
                todo = [n for n in p[0] if n.key not in done]
                log.info("training %s", ", ".join(n.name or str(n.key) for n in todo))
                if executor is None:
                    train([n.payload for n in todo])
                    _finish(p[0], done, bar)
                else:
                    slot = min(set(range(len(running) + 1)) - set(slots.values()))
                    f = executor.submit(functools.partial(train, slot), [n.payload for n in todo])
                    running[f], slots[f] = p[0], slot
            if running:
                finished, _ = cf.wait(list(running), return_when=cf.FIRST_COMPLETED)
                for f in finished:
                    g = running.pop(f)
                    slots.pop(f)
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


def _finish(group: list[Node], done: set, bar) -> None:
    new = {n.key for n in group} - done
    done.update(new)
    if bar is not None:
        bar.update(len(new))


def _in_worker(level: int | None, settings: tuple, train: Callable[[list], object], slot: int,
               payloads: list) -> object:
    _progress.configure_worker(level)
    device, precision, deterministic = settings  # the parent's (ticketlab.training.device, ...)
    _determinism.use(deterministic)  # first: cuBLAS reads its workspace setting when CUDA starts
    _device.use(_device.for_worker(device, slot))
    _precision.use(precision)
    return train(payloads)


__all__ = ["Node", "groups", "run"]
