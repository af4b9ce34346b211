"""The sweep kinds: for each experiment kind a sweep can run, the config sections of one trial,
its folder in the results store, and how one trial runs and what it reports.

    kind             sections (the [base.<section>] / [grid.<section>] tables)   one trial is
    train            train (TrainConfig)                                         `ticketlab train`
    lottery          train (the task's config: TrainConfig, RLConfig, ...),      `ticketlab lottery --task T`
                     lottery (LotteryConfig)
    sparse           train (TrainConfig), sparse (SparseConfig)                  `ticketlab sparse-train`
    transfer         transfer (TransferConfig: source, target, levels, ...)       `ticketlab transfer SOURCE`
    teacher_student  teacher_student (TeacherStudentConfig)                      one point of `ticketlab teacher-student`

Each trial calls the experiment function its command calls, with the same config, so its results
land in the store folder the hand-run command would use. A trial runs in one process (the
sweep's parallelism is across trials), with the kind's default stack and checkpoint interval
(`ticketlab.engine.options.KIND_DEFAULTS`) unless the sweep's [sweep] table says otherwise.

Teacher–student trials are *batched*: all of a sweep's points go to one call, so that runs of
different points sharing shapes and schedule train as one stacked computation, exactly as
`ticketlab teacher-student --sweep ...` trains them (its `--workers` spread the groups).

To add a kind, `register(Kind(...))` (an example is in the README's Architecture section): its
sections, its store folder, and a function running one trial with a `Context`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ticketlab.core import config as C
from ticketlab.core.errors import ConfigError
from ticketlab.training import timing
from ticketlab.engine.options import RunOptions
from ticketlab.engine.store import resolve_store
from ticketlab.experiments import dense, sparse_training, transfer
from ticketlab.experiments.lottery import runner as lottery_runner
from ticketlab.experiments.lottery.trunk import LotteryConfig, LotteryRun
from ticketlab.experiments.sparse_training import SparseConfig, SparseRun
from ticketlab.experiments.teacher_student import experiment as teacher_student
from ticketlab.experiments.transfer import TransferConfig
from ticketlab.training import precision as _precision
from ticketlab.training.loop import TrainConfig


@dataclass(frozen=True)
class Context:
    """What a trial runs with (picklable: it goes to the worker)."""

    store: str
    data_dir: str | None
    options: RunOptions       # resolved for the kind: workers, stack, checkpoint_every, progress
    replicates: int = 1       # sparse only


@dataclass(frozen=True)
class Kind:
    """A sweep kind.

    - `sections(task)`: {section name: config class}, in the order of a trial's configs;
    - `run(configs, ctx)`: run one trial; return its key metrics with "experiment" (its folder),
      and "status" ("done" / "skipped") when the folder could not be known beforehand;
      a `batched` kind's `run` takes the list of every trial's configs and returns a list;
    - `folder(configs, store)`: the trial's experiment folder (trials sharing one run one after
      the other; a finished `train` trial is skipped without dispatch), or None when only running
      tells (a transfer's source must be resolved first);
    - `shares(configs)`: for a kind without `folder`, a key: trials with equal keys never run at once;
    - `recipes(configs, store)`: the training configs whose runs may stack, for the stacking
      calibration of `ticketlab sweep` (`ticketlab.engine.calibrate.options`); None: not calibrated;
    - `joins(configs)`: for a kind whose trials' runs can share stacks (sparse: the points on one
      training recipe), a key: trials with equal keys whose options stack go to one worker together,
      run by `run_joined(list of configs, ctx)`, which returns one result per trial.
    """

    name: str
    sections: Callable[[str], dict]
    run: Callable
    folder: Callable | None = None
    shares: Callable | None = None
    batched: bool = False
    recipes: Callable | None = None
    joins: Callable | None = None
    run_joined: Callable | None = None


KINDS: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    """Make a kind available to sweep files (`kind = "<name>"`)."""
    KINDS[kind.name] = kind
    return kind


def sections(kind: str, task: str = "classify") -> dict:
    """The config sections of a kind's trials (for `lottery`, with the task's config class)."""
    if kind not in KINDS:
        raise ConfigError(f"kind: got {kind!r}, expected one of {', '.join(KINDS)}")
    return KINDS[kind].sections(task)


def store_folder(store, kind: str, identity) -> Path:
    """The store folder `Store(store).experiment(kind, identity)` names, not created."""
    return resolve_store(store) / f"{kind}-{C.config_hash(kind, identity, _precision.identity())}"


def summaries(folder) -> set[str]:
    """The finished runs under a folder (their summary.json files)."""
    return {str(p) for p in Path(folder).glob("**/summary.json")} if folder and Path(folder).is_dir() else set()


# ---- train ---------------------------------------------------------------------------------

def _run_train(configs, ctx: Context) -> dict:
    o = ctx.options
    s = dense.train(configs[0], store=ctx.store, data_dir=ctx.data_dir, progress=o.progress,
                    checkpoint_every=o.checkpoint_every)
    return train_metrics(s)


def train_metrics(s: dict) -> dict:
    """A train run's key metrics, from its summary."""
    return {"experiment": s["experiment"], "es_iter": s["early_stop"]["iter"],
            "es_test_acc": s["early_stop"]["test_acc"], "final_test_acc": s["final"]["test_acc"],
            "stack_wall_s": timing.read(s)["stack_wall_time_s"], "stack_size": timing.read(s)["stack_size"]}


register(Kind("train", sections=lambda task: {"train": TrainConfig}, run=_run_train,
              folder=lambda configs, store: store_folder(store, "train", configs[0])))


# ---- lottery (any task) --------------------------------------------------------------------

def _train_recipe(configs, store) -> list:
    """The recipe of a lottery or sparse trial: its [train] section."""
    return [configs[0]]


def _lottery_sections(task: str) -> dict:
    from ticketlab.engine.tasks import get_task
    return {"train": get_task(task).config, "lottery": LotteryConfig}


def _run_lottery(configs, ctx: Context) -> dict:
    o = ctx.options
    res = lottery_runner.run_lottery(*configs, store=ctx.store, data_dir=ctx.data_dir, progress=o.progress,
                                     checkpoint_every=o.checkpoint_every, workers=o.workers, stack=o.stack)
    return last_level(res, "ticket")


def last_level(res: dict, branch: str) -> dict:
    """The deepest level of `branch` in an experiment's aggregate: its density and headline metric
    at early stopping (replicate mean; test accuracy, or the task's metric and score), and where the
    task's headline is not the early-stopping value (RL: the mean return over the final
    evaluations) that headline too."""
    rows = [a for a in res["aggregate"] if a["branch"] == branch]
    out = {"experiment": res["experiment"]}
    if rows:
        t = max(rows, key=lambda a: a["level"])
        if "es_iter" not in t:  # every run at that level diverged: nothing to average
            out.update(level=t["level"], density=t["density"], status=f"{t['n_diverged']} diverged")
            return out
        es_iter = t["es_iter"]  # a mean over replicates: shown as an integer when it is one
        out.update(level=t["level"], density=t["density"],
                   es_iter=int(es_iter) if float(es_iter).is_integer() else es_iter)
        if "es_test_acc" in t:
            out["es_test_acc"] = t["es_test_acc"]
        else:
            out.update(metric=t["metric"], es_score=t["es_score"])
            if "headline_score" in t and t.get("headline") != "es_" + t["metric"]:  # RL: the final evaluations
                out.update(headline=t["headline"], headline_score=t["headline_score"])
    return out


register(Kind("lottery", sections=_lottery_sections, run=_run_lottery,
              folder=lambda configs, store: store_folder(store, "lottery", LotteryRun(*configs)),
              recipes=_train_recipe))


# ---- sparse training -----------------------------------------------------------------------

def _run_sparse(configs, ctx: Context) -> dict:
    return _run_sparse_points([configs], ctx)[0]


def _run_sparse_points(configs_list, ctx: Context) -> list[dict]:
    # the points of one training recipe, their runs sharing stacks (`sparse_training.run_points`)
    o = ctx.options
    res = sparse_training.run_points(configs_list[0][0], [c[1] for c in configs_list], store=ctx.store,
                                     data_dir=ctx.data_dir, progress=o.progress, replicates=ctx.replicates,
                                     stack=o.stack, checkpoint_every=o.checkpoint_every)
    return [{"experiment": r["experiment"], "final_test_acc": r["aggregate"]["final_test_acc"],
             "final_test_acc_std": r["aggregate"].get("final_test_acc_std")} for r in res]


register(Kind("sparse", sections=lambda task: {"train": TrainConfig, "sparse": SparseConfig}, run=_run_sparse,
              folder=lambda configs, store: store_folder(store, "sparse", SparseRun(*configs)),
              recipes=_train_recipe, joins=lambda configs: json.dumps(C.to_dict(configs[0]), sort_keys=True),
              run_joined=_run_sparse_points))


# ---- transfer ------------------------------------------------------------------------------

def _run_transfer(configs, ctx: Context) -> dict:
    o = ctx.options
    t0 = time.time()
    res = transfer.run(configs[0], store=ctx.store, data_dir=ctx.data_dir, progress=o.progress,
                       checkpoint_every=o.checkpoint_every, workers=o.workers, stack=o.stack)
    # the folder is known only once the source is resolved: a run finished now means work was done
    root = resolve_store(ctx.store)
    folders = [res["experiment"], root / res["random"]] + ([root / res["own"]] if res["own"] else [])
    done = any(Path(p).stat().st_mtime >= t0 for f in folders for p in summaries(f))
    return {"status": "done" if done else "skipped", **last_level(res, "transfer")}


def _transfer_shares(configs) -> str:
    # transfers onto one target recipe share its own lottery and random tickets (locked folders)
    return "transfer onto " + json.dumps(configs[0].target, sort_keys=True)


register(Kind("transfer", sections=lambda task: {"transfer": TransferConfig}, run=_run_transfer,
              shares=_transfer_shares,
              recipes=lambda configs, store: transfer.target_recipes(configs[0], store)))


# ---- teacher-student (batched) -------------------------------------------------------------

def _run_teacher_student(configs_list, ctx: Context) -> list[dict]:
    o = ctx.options
    res = teacher_student.run([c[0] for c in configs_list], store=ctx.store, workers=o.workers, stack=o.stack,
                              checkpoint_every=o.checkpoint_every, verbose=o.progress)
    return [point_metrics(e, row) for e, row in zip(res["experiments"], res["rows"])]


def point_metrics(experiment: str, row: dict) -> dict:
    """A teacher–student point's key metrics: first-layer success rate and mean best match, and the
    teacher-fit error (means over seeds)."""
    out = {"experiment": experiment}
    if row.get("layers"):
        out.update(success=row["layers"][0]["success"], mean_best=row["layers"][0]["mean_best"],
                   eval_rel_mse=row["eval_rel_mse"])
    return out


register(Kind("teacher_student", sections=lambda task: {"teacher_student": teacher_student.TeacherStudentConfig},
              run=_run_teacher_student, batched=True,
              folder=lambda configs, store: store_folder(store, teacher_student.KIND, configs[0])))


__all__ = ["Kind", "Context", "KINDS", "register", "sections", "store_folder", "summaries", "train_metrics",
           "last_level", "point_metrics"]
