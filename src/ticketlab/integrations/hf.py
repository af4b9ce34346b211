"""The Hugging Face `Trainer`: sparse training as a `TrainerCallback`, and IMP levels around `Trainer.train()`.

- `sparsify(trainer, method, sparsity)` adds a `SparseTraining` callback: a sparse `Updater` (RigL, SET,
  SNFS, GMP, static; docs/sparse_training.md) on the trainer's optimizer, its state inside
  `optimizer.state_dict()`, hence in each checkpoint's optimizer.pt.
- `run_imp(trainer, imp, levels)`: IMP with rewinding (LTH §2; Frankle et al. 2019, "Stabilizing the
  LTH", §3). Level 0 trains dense (θ0, and θk after k optimizer steps taken); each later level prunes,
  rewinds to θk and calls `trainer.train()` again: the whole schedule from θk (`max_steps` steps, the
  Trainer's learning-rate schedule rebuilt from its start); the optimizer state is fresh (or θk's,
  with `rewind_optimizer`). The
  masks ride in optimizer.pt (`ticketlab.masks.enforce`), θ0, θk and the level in `ticketlab_imp.pt`
  beside it in every checkpoint folder, so `run_imp(..., resume_from_checkpoint=path)` continues.
The Trainer builds its optimizer inside `train()` and loads a checkpoint's optimizer.pt right after,
before any callback event; so both attach through `trainer.create_optimizer` (wrapped on this trainer
instance), between the two. The Trainer clips gradients (`max_grad_norm`, 1.0 by default) before
`optimizer.step()`, as a plain loop does. docs/architecture/integrations.md.
"""

from __future__ import annotations

import logging
import os
from typing import Callable

import torch
import transformers

from ticketlab.core import masks as M
from ticketlab.core.errors import TicketlabError
from ticketlab.integrations.optim import SparseCheckpoint, innermost
from ticketlab.methods.imp import IMP
from ticketlab.methods.sparse import Method

logger = logging.getLogger(__name__)

IMP_FILE = "ticketlab_imp.pt"  # IMP's state (θ0, θk, masks, level) in a checkpoint folder


def when_optimizer_exists(trainer: "transformers.Trainer", fn: Callable[[torch.optim.Optimizer], None]) -> None:
    """Call `fn(optimizer)` (the innermost torch optimizer) once for each optimizer `trainer.train()`
    builds (or was given in `optimizers=`), before a checkpoint's optimizer state is loaded into it."""
    create, seen = trainer.create_optimizer, []

    def create_optimizer(*args, **kwargs):
        optimizer = innermost(create(*args, **kwargs))
        if not any(o is optimizer for o in seen):
            seen.append(optimizer)
            fn(optimizer)
        return trainer.optimizer
    trainer.create_optimizer = create_optimizer


class SparseTraining(transformers.TrainerCallback):
    """The callback `sparsify` adds; `updater` is the attached `Updater` once `train()` starts."""

    def __init__(self, method: Method, sparsity: float, **sparsify_kwargs):
        self.method, self.sparsity, self.kwargs = method, sparsity, sparsify_kwargs
        self.updater = self._carry = None
        self.bound = False

    def bind(self, trainer: "transformers.Trainer") -> "SparseTraining":
        """Attach to `trainer`'s optimizer when `train()` builds it. Returns self."""
        def attach(optimizer):
            if self._carry is not None:
                self._carry.remove()
            # resuming (global_step > 0 already): loading optimizer.pt next attaches its masks
            self._carry = SparseCheckpoint.for_run(trainer.model, optimizer, self.method, self.sparsity,
                                                   trainer.state.max_steps, resuming=trainer.state.global_step > 0,
                                                   **self.kwargs)
            self.updater = self._carry.updater
        when_optimizer_exists(trainer, attach)
        self.bound = True
        return self

    def on_train_begin(self, args, state, control, **kwargs):
        if not self.bound:
            raise TicketlabError("SparseTraining: add it with ticketlab.integrations.hf.sparsify(trainer, ...), "
                                 "which binds it to the trainer's optimizer")
        if not self._carry.attached:
            raise TicketlabError("SparseTraining: the checkpoint's optimizer.pt holds no sparse state "
                                 "(it was not saved under SparseTraining)")


def sparsify(trainer: "transformers.Trainer", method: Method, sparsity: float, **sparsify_kwargs) -> SparseTraining:
    """Train `trainer.model` sparse with `method` at `sparsity` (keyword arguments as `ticketlab.sparsify`).
    Fractions of training (`end_fraction=0.75`) are resolved against the run's optimizer steps.
    Returns the callback, added to `trainer`."""
    callback = SparseTraining(method, sparsity, **sparsify_kwargs).bind(trainer)
    trainer.add_callback(callback)
    return callback


class _SaveIMP(transformers.TrainerCallback):
    """Writes IMP's state into every checkpoint folder the Trainer saves."""

    def __init__(self, imp: IMP):
        self.imp = imp

    def on_save(self, args, state, control, **kwargs):
        folder = os.path.join(args.output_dir, f"{transformers.trainer_utils.PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        if os.path.isdir(folder):
            torch.save(self.imp.state_dict(), os.path.join(folder, IMP_FILE))


def run_imp(trainer: "transformers.Trainer", imp: IMP, levels: int, *,
            resume_from_checkpoint: str | None = None) -> list[dict]:
    """Run IMP levels 0..`levels` with `trainer`: train, evaluate (if it has an `eval_dataset`), prune,
    rewind, train again. Returns one row per level: `level`, `density` (of the pruned tensors) and the
    evaluation metrics. With `resume_from_checkpoint` (a folder this function's run saved), the level
    that checkpoint belongs to continues from it."""
    if resume_from_checkpoint is not None:
        # onto the CPU, so a checkpoint written on a GPU loads anywhere; the masks and θ follow the model
        imp.load_state_dict(torch.load(os.path.join(resume_from_checkpoint, IMP_FILE), map_location="cpu",
                                       weights_only=True))
    if trainer.lr_scheduler is not None and not getattr(trainer, "_created_lr_scheduler", False):  # given in `optimizers=`
        logger.warning("run_imp: the Trainer was given its own lr_scheduler, which train() does not rebuild: "
                       "each level continues that schedule where the last one ended instead of restarting it")
    when_optimizer_exists(trainer, lambda optimizer: _attach(imp, trainer.model, optimizer))
    trainer.add_callback(_SaveIMP(imp))
    rows, base = [], trainer.args.output_dir
    for level in range(imp.level, levels + 1):
        if level > imp.level:
            imp.prune()
            imp.rewind()  # θk, masked; a fresh optimizer state (train() restarts the schedule)
        trainer.args.output_dir = os.path.join(base, f"level_{level}")  # each level's checkpoints apart
        trainer.train(resume_from_checkpoint=resume_from_checkpoint)
        resume_from_checkpoint = None
        row = {"level": level, "density": M.density(imp.masks)}
        if trainer.eval_dataset is not None:
            row |= trainer.evaluate()
        logger.info("IMP level %d: %s", level, row)
        rows.append(row)
    trainer.args.output_dir = base
    return rows


def _attach(imp: IMP, model, optimizer) -> None:
    imp.detach()
    imp.attach(model, optimizer)
