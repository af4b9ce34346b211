"""The Python API: one function per CLI command, sharing one code path with the CLI.

    from ticketlab import api
    from ticketlab.training.loop import TrainConfig
    summary = api.train(TrainConfig(dataset="mnist1d", model="mlp", iterations=2000))

Each function takes a config dataclass, finds (or creates) the experiment's folder in
the results store, and runs whatever is not done yet: a finished experiment returns its
stored results without training; an interrupted one resumes.

How it runs is one `RunOptions` (`ticketlab.engine.options`: workers, stack, threads, progress,
checkpoint_every, device), the same object and defaults as the command line's run flags:

    api.lottery(train_cfg, cfg, options=RunOptions(workers=2, stack=8))
    api.lottery(train_cfg, cfg, workers=2, stack=8)        # the same: keywords build the options

Called from Python, `workers` defaults to 1: every run in the caller's process, as always (worker
processes would not see what the caller registered or patched at run time, and would import its
script again; a script asking for workers > 1 guards its entry point with `if __name__ ==
"__main__":`). The command line, which owns its process, defaults to one worker per core, capped at
the runs that can train at once (`lottery_width`, `transfer_width`).

Messages go to the `ticketlab` loggers (`logging`): nothing is printed unless the caller configures
logging, e.g. `logging.basicConfig(level=logging.INFO)`; progress bars follow `progress`. The `log=`
callables of earlier releases are still accepted for one release (deprecated).
"""

from __future__ import annotations

import logging
from pathlib import Path

from ticketlab.core.atomic import check_out
from ticketlab.core.progress import forwarding
from ticketlab.data import load_dataset
from ticketlab.core.errors import TicketlabError
from ticketlab.engine.options import RunOptions
from ticketlab.engine.store import Experiment, Store
from ticketlab.engine.parallel import set_threads  # noqa: F401  (part of the API)
from ticketlab.training import determinism as _determinism, device as _device, precision as _precision
from ticketlab.training import stack_size as _stack_size
from ticketlab.experiments import dense
from ticketlab.training.loop import TrainConfig
from ticketlab.training.rundir import CHECKPOINT, PREVIOUS, RunDir, summary_converged

log = logging.getLogger(__name__)


def build(cfg: TrainConfig, data_dir=None, *, seed: int | None = None):
    """(dataset, model) for a training config; the model is initialised from `seed` (default: init_seed)."""
    return dense.build(cfg, data_dir, seed=seed)


def _options(kind: str, options: RunOptions | None, runs: int | None = None, **given) -> RunOptions:
    """The run options of one call: `options` with the keywords given (not None) applied, every
    None filled with `kind`'s default (workers: 1, the caller's process; `runs`: the runs that can
    train at once, when known); threads applied when given, the device, precision and deterministic
    mode always (`ticketlab.training.device.use`, ...)."""
    opts = RunOptions.build(options, **given).resolved(kind, runs)
    if opts.threads is not None:
        set_threads(opts.threads)
    _determinism.use(opts.deterministic)  # first: cuBLAS reads its workspace setting when CUDA starts
    _device.use(opts.device)  # like the thread count, a setting of the process (and of its workers)
    _precision.use(opts.precision)
    return opts


def _stack(o: RunOptions, given: RunOptions, train_cfg, data_dir) -> int:
    """The stack of a call: as given; else, on CUDA and for a classification recipe, the most models
    that fit the GPU's free memory (`ticketlab.training.stack_size`); else the kind's CPU-measured
    default (`o.stack`, already filled)."""
    if given.stack is not None or not isinstance(train_cfg, TrainConfig):
        return o.stack
    dev = _device.resolve(o.device)
    if dev.type != "cuda":
        return o.stack
    data, model = build(train_cfg, data_dir)
    stack = _stack_size.cuda_stack(model, data.input_shape, train_cfg.batch_size, dev,
                                   slots=_stack_size.optimizer_slots(train_cfg.optimizer, train_cfg.momentum))
    logging.getLogger(__name__).info("stack %d: from the free memory of %s", stack, dev)
    return stack


def train(cfg: TrainConfig, *, store=None, data_dir=None, progress: bool | None = None,
          tensorboard: bool = False, checkpoint_every: int | None = None, options: RunOptions | None = None) -> dict:
    """Train one dense model (the `ticketlab train` command). Returns the run's summary dict,
    with `experiment` set to the experiment's folder."""
    o = _options("train", options, progress=progress, checkpoint_every=checkpoint_every)
    return dense.train(cfg, store=store, data_dir=data_dir, progress=o.progress, tensorboard=tensorboard,
                       checkpoint_every=o.checkpoint_every)


def lottery(train_cfg, cfg, *, store=None, data_dir=None, progress: bool | None = None, log=None,
            checkpoint_every: int | None = None, workers: int | None = None, stack: int | None = None,
            options: RunOptions | None = None) -> dict:
    """Run (or extend, or resume) an IMP experiment with its controls (`ticketlab lottery`).

    `train_cfg` is the task's recipe: a `TrainConfig` (classification), or the config of another
    task (`ticketlab.engine.tasks`: RL agents, language models, translation), which picks the trainer.
    Runs go to `workers` processes (default 1: this process), and compatible runs of a stackable
    model train `stack` at a time (default 8; with one worker, all the runs of a level, up to
    `engine.options.MAX_STACK`) as one batched computation (`ticketlab.experiments.lottery.runner`).
    Returns {"experiment": folder, "rows": one row per trained network, "aggregate": mean ± std
    per (branch, level)}. Levels, replicates and controls already in the store are not re-run.
    `log` (deprecated, removed in the next release: use `logging`, see `ticketlab.core.progress`): a
    callable that receives the `ticketlab` loggers' INFO messages while the call runs.
    """
    from ticketlab.experiments.lottery.runner import run_lottery
    o = _options("lottery", options, lottery_width(cfg), progress=progress, checkpoint_every=checkpoint_every,
                 workers=workers, stack=stack)
    stack = _stack(o, RunOptions.build(options, stack=stack), train_cfg, data_dir)
    with forwarding(log):
        return run_lottery(train_cfg, cfg, store=store, data_dir=data_dir, progress=o.progress,
                           checkpoint_every=o.checkpoint_every, workers=o.workers, stack=stack)


def lottery_width(cfg) -> int:
    """The most runs of a lottery experiment that can train at once: per replicate, the next
    trunk level beside the controls of the level before (every control branch and draw)."""
    from ticketlab.experiments.lottery.controls import CONTROLS
    return cfg.replicates * (1 + sum(CONTROLS[c].draws(cfg) for c in cfg.controls))


def instability(ref: str, *, level: int, rewind_iters, replicates=(0,), points: int = 11,
                data_seeds=(1000, 1001), store=None, data_dir=None, progress: bool = True,
                allow_inexact: bool = False, log=None, options: RunOptions | None = None) -> list[dict]:
    """Linear-mode-connectivity instability of a lottery experiment's ticket at `level`, from each
    rewind point in `rewind_iters` (`ticketlab instability`; see `ticketlab.experiments.lottery.instability`).
    `options`: its device, precision (the experiment's own) and deterministic mode apply; its copies
    train in this process.

    `log` (deprecated, removed in the next release: use `logging`, see `ticketlab.core.progress`): a
    callable that receives the `ticketlab` loggers' INFO messages while the call runs.
    """
    from ticketlab.experiments.lottery.instability import experiment_task, instability as one, load_configs
    _options("lottery", options)
    exp = Store(store).get(ref)
    if experiment_task(exp.path) != "classify":
        raise TicketlabError(f"{exp.name}: instability is measured on classification experiments only "
                             f"(this one is a {experiment_task(exp.path)!r} task)")
    t, _ = load_configs(exp.path)
    data = load_dataset(t.dataset, data_dir, val_size=t.val_size, split_seed=t.split_seed,
                        train_fraction=t.train_fraction)
    with forwarding(log):
        return [one(exp.path, level=level, rewind_iter=k, replicate=r, points=points, data_seeds=tuple(data_seeds),
                    data=data, progress=progress, allow_inexact=allow_inexact)
                for r in replicates for k in rewind_iters]


def plot(refs, out_dir, *, store=None) -> list[str]:
    """Plots of one or several experiments, overlaid, as PNG and SVG (`ticketlab plot`)."""
    from ticketlab.reports.plots import plot_all
    check_out(out_dir, folder=True)
    return [str(p) for p in plot_all([Store(store).get(r).path for r in refs], out_dir)]


def report(ref: str, out, *, store=None) -> str:
    """A self-contained HTML report of one experiment (`ticketlab report`)."""
    from ticketlab.reports.html import write_report
    check_out(out, folder=False)
    return str(write_report(Store(store).get(ref).path, out))


def export(ref: str, out, *, level: int, replicate: int = 0, branch: str = "", store=None,
           min_sparsity: float = 0.0) -> Path:
    """Write a level's ticket as a compact sparse model: linear layers in CSR (`ticketlab export`)."""
    from ticketlab.engine.export import export_experiment
    check_out(out, folder=False)
    return export_experiment(ref, out, level=level, replicate=replicate, branch=branch, store=store,
                             min_sparsity=min_sparsity)


def sweep(path, **kw) -> list[dict]:
    """Run a grid of experiments of one kind (train, lottery of any task, sparse, transfer,
    teacher_student) from a TOML file (`ticketlab sweep`; see examples/sweep.toml and
    `ticketlab.sweep.grammar`).

    Keyword arguments: options (a RunOptions replacing the file's [sweep] run options) or its
    fields (workers: trials at once, stack, threads, progress, checkpoint_every, device), backend
    ("process" | "ray" | "inline"), address, store, data_dir, retries. Returns one row per trial."""
    from ticketlab.sweep import run_file
    return run_file(path, **kw)


def sparse_train(train_cfg: TrainConfig, sparse_cfg, *, store=None, data_dir=None, progress: bool | None = None,
                 replicates: int = 1, stack: int | None = None, checkpoint_every: int | None = None, log=None,
                 options: RunOptions | None = None) -> dict:
    """Dynamic or static sparse training from scratch (`ticketlab sparse-train`; see `ticketlab.experiments.sparse_training`).

    Replicates of a stackable model train `stack` at a time (default 8). Returns {"experiment", "rows", "aggregate"}.
    `sparse_cfg` may be a list of SparseConfigs, the points of a sparse sweep on this recipe
    (`ticketlab sparse-train --sweep`): the runs of points with one method share stacks
    (`ticketlab.experiments.sparse_training.run_points`), and the result is a list, one per point.

    `log` (deprecated, removed in the next release: use `logging`, see `ticketlab.core.progress`): a
    callable that receives the `ticketlab` loggers' INFO messages while the call runs.
    """
    from ticketlab.experiments.sparse_training import run, run_points
    o = _options("sparse", options, progress=progress, stack=stack, checkpoint_every=checkpoint_every)
    stack = _stack(o, RunOptions.build(options, stack=stack), train_cfg, data_dir)
    with forwarding(log):
        if isinstance(sparse_cfg, (list, tuple)):
            return run_points(train_cfg, list(sparse_cfg), store=store, data_dir=data_dir, progress=o.progress,
                              replicates=replicates, stack=stack, checkpoint_every=o.checkpoint_every)
        return run(train_cfg, sparse_cfg, store=store, data_dir=data_dir, progress=o.progress, replicates=replicates,
                   stack=stack, checkpoint_every=o.checkpoint_every)


DEMO_TRAIN = dict(dataset="mnist1d", model="mlp", model_args={"widths": [300, 100]}, optimizer="adam",
                  lr=1.2e-3, batch_size=100, iterations=1500, eval_every=50)
DEMO_LOTTERY = dict(levels=8, replicates=2, controls=("reinit", "random_mask"))


def demo(*, store=None, workers: int | None = None, progress: bool | None = None, log=None,
         options: RunOptions | None = None) -> dict:
    """The `make demo` experiment: a small lottery-ticket study on MNIST-1D (generated offline).

    LeNet-300-100's shape (40-300-100-10 MLP), Adam 1.2e-3, 1,500 iterations per level, layerwise
    IMP at 20 % per level (output layer 10 %) with reset to init, 8 levels (down to ≈17 % of the
    weights), 2 replicates, random-reinit and random-mask controls. Writes plots and an HTML report
    into the experiment's folder; returns `lottery`'s result plus their paths.

    `log` (deprecated, removed in the next release: use `logging`, see `ticketlab.core.progress`): a
    callable that receives the `ticketlab` loggers' INFO messages while the call runs.
    """
    from ticketlab.experiments.lottery.trunk import LotteryConfig
    options = RunOptions.build(options, workers=workers).resolved("demo")  # its table's stacks (3 a level)
    with forwarding(log):
        res = lottery(TrainConfig(**DEMO_TRAIN), LotteryConfig(**DEMO_LOTTERY), store=store, progress=progress,
                      options=options)
    exp = res["experiment"]
    res["plots"] = plot([exp], Path(exp) / "plots", store=store)
    res["report"] = report(exp, Path(exp) / "report.html", store=store)
    return res


def show(ref: str, *, store=None) -> dict:
    """An experiment's config and results (the `ticketlab show` command)."""
    exp = Store(store).get(ref)
    out = {"experiment": exp.name, "path": str(exp.path), "kind": exp.kind, "config": exp.config}
    summary = exp.path / "summary.json"
    if summary.exists():
        out["summary"] = RunDir(exp.path).summary()
    return out


def verify(refs=(), *, store=None, repair: bool = False) -> list[dict]:
    """Check the store's files against their manifests (`ticketlab verify`): one row per damaged
    file, with the run folders derived from it. With `repair`, delete those folders (the next run
    recomputes them; see `ticketlab.experiments.verify`) and add `"removed": True` to each row."""
    from ticketlab.experiments import verify as V
    Store(store).existing()
    damage = V.verify(refs, store=store)
    rows = [d.row() for d in damage]
    if repair and damage:
        V.repair(damage, store=store)
        rows = [{**r, "removed": True} for r in rows]
    return rows


def ls(*, store=None) -> list[dict]:
    """One row per experiment in the store, with its key metrics (the `ticketlab ls` command)."""
    from ticketlab.experiments.verify import lost
    rows = []
    for exp in Store(store).existing().list():
        rows.append(_row(exp))
    for _, line in lost(store):  # a deleted config.json / summary.json: said, not silently skipped
        log.warning(line)
    return rows


def _row(exp: Experiment) -> dict:
    cfg = exp.config
    train = cfg.get("train", cfg)  # lottery and sparse experiments nest the training config
    row = {"experiment": exp.name, "kind": exp.kind, "model": train.get("model"), "dataset": train.get("dataset")}
    summary = exp.path / "summary.json"
    if summary.exists():
        s = RunDir(exp.path).summary()
        row.update(status="done", iterations=s["iterations"], es_iter=s["early_stop"]["iter"],
                   es_test_acc=s["early_stop"]["test_acc"], final_test_acc=s["final"]["test_acc"])
        if s.get("diverged"):
            row["status"] = f"diverged at iteration {s['diverged']['iteration']}"
        elif summary_converged(s, RunDir(exp.path).read_metrics()) is False:
            row["status"] = "done, not converged"  # early stopping in the last fifth of the run
        return row
    if exp.kind == "lottery":
        from ticketlab.engine import results
        runs = results.run_rows(exp.path)
        tickets = [r for r in runs if r["branch"] == "ticket"]
        n_diverged = sum(1 for r in runs if r["diverged"] is not None)
        n_unconverged = sum(1 for r in runs if r["converged"] is False)
        if tickets:  # the deepest level reached: its weights remaining and mean accuracy
            deepest = max(r["level"] for r in tickets)
            at = [r for r in tickets if r["level"] == deepest]
            row.update(levels=deepest, remaining=min(r["density"] for r in at))
            ok = [r for r in at if r["diverged"] is None]  # a diverged run is counted, never averaged
            key = results.result_key(at[0]["metric"])
            if key != "es_test_acc":  # other tasks: their own metric (a return, a perplexity, BLEU)
                row["metric"] = at[0]["metric"] if key == "es_score" else at[0]["headline"]
            row[key] = sum(r[key] for r in ok) / len(ok) if ok else None
    else:  # every other kind: a run whose summary says diverged (issue 17)
        n_diverged = sum(1 for p in exp.path.glob("**/summary.json") if RunDir(p.parent).summary().get("diverged"))
        n_unconverged = 0
    # levels and replicates are run shape: a lottery is never "done", it has so many finished runs
    n = sum(1 for _ in exp.path.glob("**/summary.json"))
    # runs with a checkpoint and no summary: stopped (Ctrl-C, a kill) or still training elsewhere
    n_open = len({p.parent for name in (CHECKPOINT, PREVIOUS) for p in exp.path.glob(f"**/{name}")
                  if not (p.parent / "summary.json").exists()})
    row["status"] = ", ".join(([f"{n} runs"] if n else [] if n_open else ["new"])
                              + ([f"{n_diverged} diverged"] if n_diverged else [])
                              + ([f"{n_unconverged} not converged"] if n_unconverged else [])
                              + ([f"{n_open} unfinished"] if n_open else []))
    return row


__all__ = ["build", "train", "lottery", "instability", "plot", "report", "export", "sweep", "sparse_train", "demo", "show", "ls",
           "set_threads", "transfer", "teacher_student", "RunOptions", "lottery_width", "transfer_width"]


def transfer(cfg=None, *, matrix=None, store=None, data_dir=None, progress: bool | None = None, log=None,
             checkpoint_every: int | None = None, workers: int | None = None, stack: int | None = None,
             options: RunOptions | None = None) -> dict:
    """Train a lottery experiment's tickets on another dataset and/or optimizer, with controls
    (`ticketlab transfer`; Morcos et al. 2019, see `ticketlab.experiments.transfer`). `cfg` is a
    `ticketlab.experiments.transfer.TransferConfig` (source, target overrides, levels, controls, ...); or
    `matrix`, a transfer-matrix TOML file (see `ticketlab.experiments.transfer_matrix`), runs all its pairs.

    Returns {"experiment", "source", "own", "random", "rows", "aggregate"} for one transfer, or
    {"lotteries", "transfers"} for a matrix.

    `log` (deprecated, removed in the next release: use `logging`, see `ticketlab.core.progress`): a
    callable that receives the `ticketlab` loggers' INFO messages while the call runs.
    """
    if (cfg is None) == (matrix is None):
        from ticketlab.core.errors import ConfigError
        raise ConfigError("transfer: give either a TransferConfig or a matrix file, not both")
    if matrix is not None and options is None:  # the file's [sweep] run options, under the keywords
        from ticketlab.experiments.transfer_matrix import run_options
        options = run_options(matrix)
    o = _options("transfer", options, progress=progress,
                 checkpoint_every=checkpoint_every, workers=workers, stack=stack)
    kw = dict(store=store, data_dir=data_dir, progress=o.progress, checkpoint_every=o.checkpoint_every,
              workers=o.workers, stack=o.stack)
    with forwarding(log):
        if matrix is not None:
            from ticketlab.experiments.transfer_matrix import load_matrix, run_matrix
            return run_matrix(load_matrix(matrix), **kw)
        from ticketlab.experiments.transfer import run
        return run(cfg, **kw)


def transfer_width(cfg) -> int | None:
    """The most runs of a transfer that can train at once (every level, replicate and random
    ticket), or None when the levels or replicates are left to the source."""
    if not (cfg.levels and cfg.replicates):
        return None
    return len(cfg.levels) * cfg.replicates * (1 + (cfg.control_draws if "random" in cfg.controls else 0))


def teacher_student(cfg, *, store=None, workers: int | None = None, stack: int | None = None,
                    checkpoint_every: int | None = None, out=None, verbose: bool | None = None, log=None,
                    options: RunOptions | None = None) -> dict:
    """Teacher–student specialization, luck and node tickets (`ticketlab teacher-student`; see
    `ticketlab.experiments.teacher_student`). `cfg`: a TeacherStudentConfig or a list of them (a sweep),
    whose runs of one shape and schedule train `stack` at a time (default 16), in `workers`
    processes (default 1: this process); `verbose` is `progress`: each run's lines at INFO (else DEBUG).
    `out`: write the CSV tables and plots of every experiment there. Returns {"experiments", "rows", "files"}.

    `log` (deprecated, removed in the next release: use `logging`, see `ticketlab.core.progress`): a
    callable that receives the `ticketlab` loggers' INFO messages while the call runs.
    """
    from ticketlab.experiments.teacher_student.experiment import run
    if out is not None:  # before training, not after it
        check_out(out, folder=True)
    o = _options("teacher_student", options, progress=verbose, workers=workers, stack=stack,
                 checkpoint_every=checkpoint_every)
    with forwarding(log):
        res = run(cfg, store=store, workers=o.workers, stack=o.stack, checkpoint_every=o.checkpoint_every,
                  verbose=o.progress)
    if out is not None:  # CSV tables and plots of every experiment, into `out`
        from ticketlab.reports.teacher_student_plots import plot_all
        from ticketlab.reports.teacher_student_tables import write_all
        paths = [Path(e) for e in res["experiments"]]
        res["files"] = [str(p) for p in write_all(res["rows"], paths, out) + plot_all(paths, out)]
    return res
