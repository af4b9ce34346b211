"""The Python API: one function per CLI command, sharing one code path with the CLI.

    from ticketlab import api
    from ticketlab.training.loop import TrainConfig
    summary = api.train(TrainConfig(dataset="mnist1d", model="mlp", iterations=2000))

Each function takes a config dataclass, finds (or creates) the experiment's folder in
the results store, and runs whatever is not done yet: a finished experiment returns its
stored results without training; an interrupted one resumes.
"""

from __future__ import annotations

import json
from pathlib import Path

from ticketlab.data import load_dataset
from ticketlab.core.errors import TicketlabError
from ticketlab.engine.store import Experiment, Store
from ticketlab.engine.parallel import set_threads  # noqa: F401  (part of the API)
from ticketlab.experiments import dense
from ticketlab.training.loop import TrainConfig


def build(cfg: TrainConfig, data_dir=None, *, seed: int | None = None):
    """(dataset, model) for a training config; the model is initialised from `seed` (default: init_seed)."""
    return dense.build(cfg, data_dir, seed=seed)


def train(cfg: TrainConfig, *, store=None, data_dir=None, progress: bool = True,
          tensorboard: bool = False, checkpoint_every: int = 1000) -> dict:
    """Train one dense model (the `ticketlab train` command). Returns the run's summary dict,
    with `experiment` set to the experiment's folder."""
    return dense.train(cfg, store=store, data_dir=data_dir, progress=progress, tensorboard=tensorboard,
                       checkpoint_every=checkpoint_every)


def lottery(train_cfg, cfg, *, store=None, data_dir=None, progress: bool = True,
            log=None, checkpoint_every: int = 1000, workers: int = 1, stack: int = 8) -> dict:
    """Run (or extend, or resume) an IMP experiment with its controls (`ticketlab lottery`).

    `train_cfg` is the task's recipe: a `TrainConfig` (classification), or the config of another
    task (`ticketlab.engine.tasks`: RL agents, language models, translation), which picks the trainer.
    Runs go to `workers` processes (1: this process), and compatible runs of a stackable model
    train `stack` at a time as one batched computation (`ticketlab.experiments.lottery.runner`).
    Returns {"experiment": folder, "rows": one row per trained network, "aggregate": mean ± std
    per (branch, level)}. Levels, replicates and controls already in the store are not re-run.
    """
    from ticketlab.experiments.lottery.runner import run_lottery
    return run_lottery(train_cfg, cfg, store=store, data_dir=data_dir, progress=progress, log=log,
                       checkpoint_every=checkpoint_every, workers=workers, stack=stack)


def instability(ref: str, *, level: int, rewind_iters, replicates=(0,), points: int = 11,
                data_seeds=(1000, 1001), store=None, data_dir=None, progress: bool = True,
                allow_inexact: bool = False, log=None) -> list[dict]:
    """Linear-mode-connectivity instability of a lottery experiment's ticket at `level`, from each
    rewind point in `rewind_iters` (`ticketlab instability`; see `ticketlab.experiments.lottery.instability`)."""
    from ticketlab.experiments.lottery.instability import experiment_task, instability as one, load_configs
    exp = Store(store).get(ref)
    if experiment_task(exp.path) != "classify":
        raise TicketlabError(f"{exp.name}: instability is measured on classification experiments only "
                             f"(this one is a {experiment_task(exp.path)!r} task)")
    t, _ = load_configs(exp.path)
    data = load_dataset(t.dataset, data_dir, val_size=t.val_size, split_seed=t.split_seed,
                        train_fraction=t.train_fraction)
    return [one(exp.path, level=level, rewind_iter=k, replicate=r, points=points, data_seeds=tuple(data_seeds),
                data=data, progress=progress, allow_inexact=allow_inexact, log=log)
            for r in replicates for k in rewind_iters]


def plot(refs, out_dir, *, store=None) -> list[str]:
    """Plots of one or several experiments, overlaid, as PNG and SVG (`ticketlab plot`)."""
    from ticketlab.reports.plots import plot_all
    return [str(p) for p in plot_all([Store(store).get(r).path for r in refs], out_dir)]


def report(ref: str, out, *, store=None) -> str:
    """A self-contained HTML report of one experiment (`ticketlab report`)."""
    from ticketlab.reports.html import write_report
    return str(write_report(Store(store).get(ref).path, out))


def export(ref: str, out, *, level: int, replicate: int = 0, branch: str = "", store=None,
           min_sparsity: float = 0.0) -> Path:
    """Write a level's ticket as a compact sparse model: linear layers in CSR (`ticketlab export`)."""
    from ticketlab.engine.export import export_experiment
    return export_experiment(ref, out, level=level, replicate=replicate, branch=branch, store=store,
                             min_sparsity=min_sparsity)


def sweep(path, **kw) -> list[dict]:
    """Run a grid of train or lottery configs from a TOML file (`ticketlab sweep`; see examples/sweep.toml).

    Keyword arguments: backend ("process" | "ray" | "inline"), workers, address, store, data_dir,
    retries, progress. Returns one row per trial."""
    from ticketlab.sweep import run_file
    return run_file(path, **kw)


def sparse_train(train_cfg: TrainConfig, sparse_cfg, *, store=None, data_dir=None, progress: bool = True,
                 replicates: int = 1, stack: int = 8, checkpoint_every: int = 1000, log=None) -> dict:
    """Dynamic or static sparse training from scratch (`ticketlab sparse-train`; see `ticketlab.experiments.sparse_training`).

    Returns {"experiment", "rows", "aggregate"}."""
    from ticketlab.experiments.sparse_training import run
    return run(train_cfg, sparse_cfg, store=store, data_dir=data_dir, progress=progress, replicates=replicates,
               stack=stack, checkpoint_every=checkpoint_every, log=log)


DEMO_TRAIN = dict(dataset="mnist1d", model="mlp", model_args={"widths": [300, 100]}, optimizer="adam",
                  lr=1.2e-3, batch_size=100, iterations=1500, eval_every=50)
DEMO_LOTTERY = dict(levels=8, replicates=2, controls=("reinit", "random_mask"))


def demo(*, store=None, workers: int = 1, progress: bool = True, log=None) -> dict:
    """The `make demo` experiment: a small lottery-ticket study on MNIST-1D (generated offline).

    LeNet-300-100's shape (40-300-100-10 MLP), Adam 1.2e-3, 1,500 iterations per level, layerwise
    IMP at 20 % per level (output layer 10 %) with reset to init, 8 levels (down to ≈17 % of the
    weights), 2 replicates, random-reinit and random-mask controls. Writes plots and an HTML report
    into the experiment's folder; returns `lottery`'s result plus their paths."""
    from ticketlab.experiments.lottery.trunk import LotteryConfig
    res = lottery(TrainConfig(**DEMO_TRAIN), LotteryConfig(**DEMO_LOTTERY), store=store, progress=progress,
                  log=log, workers=workers)
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
        out["summary"] = json.loads(summary.read_text())
    return out


def ls(*, store=None) -> list[dict]:
    """One row per experiment in the store, with its key metrics (the `ticketlab ls` command)."""
    rows = []
    for exp in Store(store).list():
        rows.append(_row(exp))
    return rows


def _row(exp: Experiment) -> dict:
    cfg = exp.config
    train = cfg.get("train", cfg)  # lottery and sparse experiments nest the training config
    row = {"experiment": exp.name, "kind": exp.kind, "model": train.get("model"), "dataset": train.get("dataset")}
    summary = exp.path / "summary.json"
    if summary.exists():
        s = json.loads(summary.read_text())
        row.update(status="done", iterations=s["iterations"], es_iter=s["early_stop"]["iter"],
                   es_test_acc=s["early_stop"]["test_acc"], final_test_acc=s["final"]["test_acc"])
        return row
    if exp.kind == "lottery":
        from ticketlab.engine.results import run_rows
        tickets = [r for r in run_rows(exp.path) if r["branch"] == "ticket"]
        if tickets:  # the deepest level reached: its weights remaining and mean accuracy
            deepest = max(r["level"] for r in tickets)
            at = [r for r in tickets if r["level"] == deepest]
            row.update(levels=deepest, remaining=min(r["density"] for r in at))
            if at[0]["metric"] == "test_acc":
                row["es_test_acc"] = sum(r["es_test_acc"] for r in at) / len(at)
            else:  # other tasks: their own metric (a return, a perplexity, BLEU)
                row["metric"], row["es_score"] = at[0]["metric"], sum(r["es_score"] for r in at) / len(at)
    # levels and replicates are run shape: a lottery is never "done", it has so many finished runs
    n = sum(1 for _ in exp.path.glob("**/summary.json"))
    row["status"] = f"{n} runs" if n else "new"
    return row


__all__ = ["build", "train", "lottery", "instability", "plot", "report", "export", "sweep", "sparse_train", "demo", "show", "ls",
           "set_threads", "transfer", "teacher_student"]


def transfer(cfg=None, *, matrix=None, store=None, data_dir=None, progress: bool = True, log=None,
             checkpoint_every: int = 1000, workers: int = 1, stack: int = 8) -> dict:
    """Train a lottery experiment's tickets on another dataset and/or optimizer, with controls
    (`ticketlab transfer`; Morcos et al. 2019, see `ticketlab.experiments.transfer`). `cfg` is a
    `ticketlab.experiments.transfer.TransferConfig` (source, target overrides, levels, controls, ...); or
    `matrix`, a transfer-matrix TOML file (see `ticketlab.experiments.transfer_matrix`), runs all its pairs.

    Returns {"experiment", "source", "own", "random", "rows", "aggregate"} for one transfer, or
    {"lotteries", "transfers"} for a matrix."""
    if (cfg is None) == (matrix is None):
        from ticketlab.core.errors import ConfigError
        raise ConfigError("transfer: give either a TransferConfig or a matrix file, not both")
    kw = dict(store=store, data_dir=data_dir, progress=progress, log=log, checkpoint_every=checkpoint_every,
              workers=workers, stack=stack)
    if matrix is not None:
        from ticketlab.experiments.transfer_matrix import load_matrix, run_matrix
        return run_matrix(load_matrix(matrix), **kw)
    from ticketlab.experiments.transfer import run
    return run(cfg, **kw)


def teacher_student(cfg, **kw) -> dict:
    """Teacher–student specialization, luck and node tickets (`ticketlab teacher-student`; see
    `ticketlab.experiments.teacher_student`). `cfg`: a TeacherStudentConfig or a list of them (a sweep).
    Keyword arguments: store, workers, stack, checkpoint_every, out, verbose, log.
    Returns {"experiments", "rows", "files"}."""
    from ticketlab.experiments.teacher_student.experiment import run
    out = kw.pop("out", None)
    res = run(cfg, **kw)
    if out is not None:  # CSV tables and plots of every experiment, into `out`
        from ticketlab.reports.teacher_student_plots import plot_all
        from ticketlab.reports.teacher_student_tables import write_all
        paths = [Path(e) for e in res["experiments"]]
        res["files"] = [str(p) for p in write_all(res["rows"], paths, out) + plot_all(paths, out)]
    return res
