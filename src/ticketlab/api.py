"""The Python API: one function per CLI command, sharing one code path with the CLI.

    from ticketlab import api
    from ticketlab.train import TrainConfig
    summary = api.train(TrainConfig(dataset="mnist1d", model="mlp", iterations=2000))

Each function takes a config dataclass, finds (or creates) the experiment's folder in
the results store, and runs whatever is not done yet: a finished experiment returns its
stored results without training; an interrupted one resumes.
"""

from __future__ import annotations

import dataclasses
import json

import torch

from ticketlab.data import load_dataset
from ticketlab.errors import TicketlabError
from ticketlab.models import create_model
from ticketlab.store import Experiment, Store
from ticketlab.train import RunOptions, TrainConfig, fit


def build(cfg: TrainConfig, data_dir=None, *, seed: int | None = None):
    """(dataset, model) for a training config; the model is initialised from `seed` (default: init_seed)."""
    data = load_dataset(cfg.dataset, data_dir, val_size=cfg.val_size, split_seed=cfg.split_seed,
                        train_fraction=cfg.train_fraction)
    model = create_model(cfg.model, input_shape=data.input_shape, num_classes=data.num_classes,
                         seed=cfg.init_seed if seed is None else seed, init=cfg.init, **cfg.model_args)
    return data, model


def train(cfg: TrainConfig, *, store=None, data_dir=None, progress: bool = True,
          tensorboard: bool = False, checkpoint_every: int = 1000) -> dict:
    """Train one dense model (the `ticketlab train` command). Returns the run's summary dict,
    with `experiment` set to the experiment's folder."""
    exp = Store(store).experiment("train", cfg) if _valid(cfg, data_dir) else None
    if (exp.path / "summary.json").exists():
        return {**json.loads((exp.path / "summary.json").read_text()), "experiment": str(exp.path)}
    data, model = build(cfg, data_dir)
    with exp.lock():
        summary = fit(model, data, cfg, exp.path, options=RunOptions(
            progress=progress, desc=f"train {exp.name}", checkpoint_every=checkpoint_every,
            tensorboard=exp.path / "tb" if tensorboard else None))
    return {**summary, "experiment": str(exp.path)}


def lottery(train_cfg: TrainConfig, cfg, *, store=None, data_dir=None, progress: bool = True,
            log=None, checkpoint_every: int = 1000) -> dict:
    """Run (or extend, or resume) an IMP experiment with its controls (`ticketlab lottery`).

    Returns {"experiment": folder, "rows": one row per trained network, "aggregate": mean ± std
    per (branch, level)}. Levels, replicates and controls already in the store are not re-run.
    """
    from ticketlab.controls import RANDOM, run_control
    from ticketlab.lottery import LotteryRun, Replicate, lottery_levels, replicate_seeds
    from ticketlab.results import aggregate, run_rows
    from ticketlab.trainers import ClassifyTrainer

    data = load_dataset(train_cfg.dataset, data_dir, val_size=train_cfg.val_size,
                        split_seed=train_cfg.split_seed, train_fraction=train_cfg.train_fraction)
    _valid(train_cfg, data_dir, data)
    exp = Store(store).experiment("lottery", LotteryRun(train_cfg, cfg))
    def run_replicate(r: int) -> None:
        seed, data_seed = replicate_seeds(train_cfg, r)
        trainer = ClassifyTrainer(dataclasses.replace(train_cfg, init_seed=seed, data_seed=data_seed),
                                  data, progress=progress, checkpoint_every=checkpoint_every)
        rep = Replicate(cfg, trainer, exp.path, r, seed=seed, data_seed=data_seed, log=log or (lambda s: None))
        levels = lottery_levels(cfg, rep)
        rep.run(levels)
        for control in cfg.controls:
            for level in (cfg.control_levels or range(1, levels + 1)):
                if level > levels:
                    continue
                for draw in range(cfg.control_draws if control in RANDOM else 1):
                    run_control(rep, control, level, draw)

    # Replicates are locked one by one, so several processes given the same command share the
    # work: each skips the replicates another holds, then waits for them at the end.
    busy = []
    for r in range(cfg.replicates):
        try:
            with exp.lock(f"replicate_{r}"):
                run_replicate(r)
        except TicketlabError as e:
            if "another process" not in str(e):
                raise
            busy.append(r)
    for r in busy:
        with exp.lock(f"replicate_{r}", wait=True):
            run_replicate(r)  # finds the other process's work done, or finishes it
    rows = run_rows(exp.path)
    return {"experiment": str(exp.path), "rows": rows, "aggregate": aggregate(rows)}


def _valid(cfg: TrainConfig, data_dir=None, data=None) -> bool:
    """Check that the dataset and model exist and accept the config before a store folder is made
    (a typo must not leave an empty experiment behind). Raises a TicketlabError naming the problem."""
    if data is None:
        data = load_dataset(cfg.dataset, data_dir, val_size=cfg.val_size, split_seed=cfg.split_seed,
                            train_fraction=cfg.train_fraction)
    with torch.device("meta"):  # checks names and arguments without allocating or initialising
        create_model(cfg.model, input_shape=data.input_shape, num_classes=data.num_classes,
                     init=cfg.init, **cfg.model_args)
    return True


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
    row = {"experiment": exp.name, "kind": exp.kind, "model": cfg.get("model"), "dataset": cfg.get("dataset")}
    summary = exp.path / "summary.json"
    if summary.exists():
        s = json.loads(summary.read_text())
        row.update(status="done", iterations=s["iterations"], es_iter=s["early_stop"]["iter"],
                   es_test_acc=s["early_stop"]["test_acc"], final_test_acc=s["final"]["test_acc"])
    else:
        row["status"] = "partial" if any(exp.path.iterdir()) else "new"
    return row


def set_threads(n: int | None = None) -> None:
    """One torch thread per process by default: measured here, 2 threads can run up to 30x
    slower when another process holds a core (../shared/reference/performance.md §3)."""
    torch.set_num_threads(n or 1)


__all__ = ["build", "train", "lottery", "show", "ls", "set_threads"]
