"""The trainer protocol: the one small interface through which a domain plugs into the pruning engine.

The IMP engine (`ticketlab.experiments.lottery.trunk`) knows nothing of images, rewards or tokens. It asks a
`Trainer` to build a model from a seed, to name the model's prunable parameters and output
layer, and to train a (masked) model from an iteration, writing its run folder. Supervised
classification is `ticketlab.domains.classify.ClassifyTrainer`; teacher–student, RL and language models implement the
same four calls.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

import torch


class Trainer(Protocol):
    """What the pruning engine needs from a domain."""

    def build(self, seed: int) -> torch.nn.Module:
        """A freshly initialised model; the same seed gives identical weights."""

    def prunable(self, model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
        """The model's prunable parameters by name (conv/linear weights by default)."""

    def output_layer(self, model: torch.nn.Module) -> str | None:
        """Name of the output layer's weight (pruned at its own rate), or None."""

    def fit(self, model: torch.nn.Module, run_dir: Path, *, masks: dict | None, start_iter: int = 0,
            start_optimizer: dict | None = None, lr_offset: int = 0,
            snapshot_iters: Sequence[int] = (), data_seed: int | None = None,
            desc: str = "") -> dict:
        """Train from `start_iter` to the end, resumably, in `run_dir`; return the summary dict
        (with `final` and `early_stop` rows: see `ticketlab.training.loop.fit`)."""


__all__ = ["Trainer"]
