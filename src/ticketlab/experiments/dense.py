"""Dense training as an experiment: one model trained into the results store (`ticketlab train`).

The dense network is level 0 of every lottery study (Frankle & Carbin 2019, LTH §2); this is the
same run on its own, keyed by the hash of its `TrainConfig`, resumable and skipped when done.
"""

from __future__ import annotations


from ticketlab.data import load_dataset
from ticketlab.engine.store import Store
from ticketlab.models import create_model
from ticketlab.training.loop import RunOptions, TrainConfig, fit
from ticketlab.training.rundir import read_json


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
    # Building first checks the dataset, model and arguments before a store folder is made (a typo
    # must not leave an empty experiment behind); the data is then loaded once.
    data, model = build(cfg, data_dir)
    exp = Store(store).experiment("train", cfg)
    if (exp.path / "summary.json").exists():
        return {**read_json(exp.path / "summary.json"), "experiment": str(exp.path)}
    with exp.lock():
        summary = fit(model, data, cfg, exp.path, options=RunOptions(
            progress=progress, desc=f"train {exp.name}", checkpoint_every=checkpoint_every,
            tensorboard=exp.path / "tb" if tensorboard else None))
    return {**summary, "experiment": str(exp.path)}


__all__ = ["build", "train"]
