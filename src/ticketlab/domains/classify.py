"""Supervised classification as a `Trainer` for the pruning engine (LTH's setting)."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Sequence

import torch

from ticketlab.core.errors import ConfigError
from ticketlab.data import load_dataset
from ticketlab.models import create_model, output_layer_name, prunable_parameters
from ticketlab.training import device as _device
from ticketlab.training.stacked_conv import family
from ticketlab.engine.tasks import Domain, register_task
from ticketlab.engine.trainer import Trainer  # noqa: F401  (the old `ticketlab.trainers.Trainer`)
from ticketlab.training.loop import Run, RunOptions, TrainConfig, fit, fit_many, total_iterations


class ClassifyTrainer:
    """Trains `cfg.model` on `cfg.dataset` with the shared loop (`ticketlab.training.loop.fit`)."""

    def __init__(self, cfg: TrainConfig, data=None, *, data_dir=None, progress: bool = True,
                 checkpoint_every: int = 1000):
        self.cfg = cfg
        self.data = data if data is not None else load_dataset(
            cfg.dataset, data_dir, val_size=cfg.val_size, split_seed=cfg.split_seed,
            train_fraction=cfg.train_fraction)
        self.progress = progress
        self.checkpoint_every = checkpoint_every

    @property
    def total_iterations(self) -> int:
        return total_iterations(self.cfg, len(self.data.train))

    def longer(self, factor: int) -> "ClassifyTrainer":
        """This trainer for `factor` times the run length, on the same data: the longer baselines of a
        lottery experiment (`LotteryConfig.baseline_length`). Its first iterations are the recipe's, bit
        for bit, since the data order and the learning rate are functions of the iteration; a cosine
        schedule is a function of the length too, so it is refused."""
        if self.cfg.schedule == "cosine":
            raise ConfigError(f"baseline_length: got {factor} with schedule 'cosine', expected 1: a cosine "
                              "schedule depends on the run length, so a longer run would not pass through "
                              "the recipe's weights")
        cfg = (dataclasses.replace(self.cfg, epochs=self.cfg.epochs * factor) if self.cfg.epochs is not None
               else dataclasses.replace(self.cfg, iterations=self.cfg.iterations * factor))
        return ClassifyTrainer(cfg, self.data, progress=self.progress, checkpoint_every=self.checkpoint_every)

    def build(self, seed: int) -> torch.nn.Module:
        return create_model(self.cfg.model, input_shape=self.data.input_shape,
                            num_classes=self.data.num_classes, seed=seed, init=self.cfg.init,
                            **self.cfg.model_args)

    def prunable(self, model):
        return prunable_parameters(model)

    def output_layer(self, model):
        return output_layer_name(model)

    def fit(self, model, run_dir: Path, *, masks=None, start_iter: int = 0, start_optimizer=None,
            lr_offset: int = 0, snapshot_iters: Sequence[int] = (), data_seed: int | None = None,
            desc: str = "") -> dict:
        cfg = self.cfg if data_seed is None else dataclasses.replace(self.cfg, data_seed=data_seed)
        return fit(model, self.data, cfg, run_dir, masks=masks, prunable=self.prunable(model),
                   start_iter=start_iter, start_optimizer=start_optimizer, lr_offset=lr_offset,
                   snapshot_iters=snapshot_iters,
                   options=RunOptions(progress=self.progress, desc=desc or "train",
                                      checkpoint_every=self.checkpoint_every))

    def can_stack(self, model) -> bool:
        """Whether runs of this model can train stacked on this process's device
        (`ticketlab.training.stacked_conv.family`: Linear chains anywhere, conv nets on an accelerator)."""
        return family(model, _device.resolve()) is not None

    def fit_stacked(self, plans) -> list[dict]:
        """Train planned runs that share a schedule as one batched computation.

        The config's seeds only seed the RNG, which stackable models (no dropout) do not use;
        each run's data order comes from its plan."""
        p0 = plans[0]
        runs = [Run(p.run_dir, model=p.model, masks=p.masks, start_optimizer=p.start_optimizer,
                    data_seed=p.data_seed, name=p.name or None) for p in plans]
        ensemble = family(p0.model, _device.resolve())([p.model for p in plans])
        return fit_many(runs, self.data, self.cfg, ensemble, start_iter=p0.start_iter,
                        lr_offset=p0.lr_offset, snapshot_iters=p0.snapshot_iters,
                        options=RunOptions(progress=self.progress, desc=f"{len(plans)} runs stacked",
                                           checkpoint_every=self.checkpoint_every))


@functools.lru_cache(maxsize=4)
def _dataset(name, data_dir, val_size, split_seed, train_fraction):
    """A dataset loaded once per process (the runs of a lottery experiment share it)."""
    return load_dataset(name, data_dir, val_size=val_size, split_seed=split_seed, train_fraction=train_fraction)


def dataset_of(cfg: TrainConfig, data_dir=None):
    """`cfg`'s dataset with its split, loaded once per process and shared by every experiment there
    (a lottery's runs, a transfer's source and target)."""
    return _dataset(cfg.dataset, None if data_dir is None else str(data_dir), cfg.val_size, cfg.split_seed,
                    cfg.train_fraction)


def make_trainer(cfg: TrainConfig, *, data_dir=None, progress: bool = False,
                 checkpoint_every: int = 1000) -> ClassifyTrainer:
    """The classification trainer of one replicate (`ticketlab.engine.tasks`)."""
    return ClassifyTrainer(cfg, dataset_of(cfg, data_dir), progress=progress, checkpoint_every=checkpoint_every)


def validate(cfg: TrainConfig, data_dir=None) -> None:
    """Check that the dataset and model exist and accept the config, without training."""
    data = dataset_of(cfg, data_dir)
    # A real (CPU) build: milliseconds for LeNet, ~0.3 s for VGG-19. Building on the "meta" device
    # instead imports torch's reference ops on the first init call, measured at 2-4 s per process,
    # all of it on the critical path before any run starts.
    create_model(cfg.model, input_shape=data.input_shape, num_classes=data.num_classes,
                 init=cfg.init, **cfg.model_args)


register_task(Domain("classify", TrainConfig, make_trainer, metric="test_acc", validate=validate))
