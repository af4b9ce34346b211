"""PyTorch Lightning callbacks: dynamic sparse training (`SparseTraining`) and IMP levels (`LotteryTicket`).

The callbacks attach ticketlab's public objects to the optimizer that `configure_optimizers` returns, in
`on_fit_start` (after Lightning builds the optimizer, before it loads a checkpoint's optimizer state):
- `SparseTraining(method, sparsity)`: a sparse `Updater` (RigL, SET, SNFS, GMP, static; docs/sparse_training.md),
  whose state rides in `optimizer.state_dict()`, hence in Lightning's checkpoint.
- `LotteryTicket(imp)`: IMP with rewinding (LTH §2; Frankle et al. 2019, "Stabilizing the LTH", §3). One
  `trainer.fit` is one level: the first fit trains dense (θ0 and θk are captured), each later fit first
  prunes the weights the previous fit left and rewinds to θk under the new fit's fresh optimizer and
  schedule. The masks ride in `optimizer.state_dict()` (`ticketlab.masks.enforce`); θ0, θk and the level
  in the callback's own state, so a resumed fit (`ckpt_path=`) restores both.
Lightning runs forward, backward and gradient clipping inside `optimizer.step(closure)`; both callbacks
run the closure before the step hooks (`ticketlab.integrations.optim.run_closure_first`), so masks see
this step's gradients, as in a plain loop. docs/architecture/integrations.md.
"""

from __future__ import annotations

import logging

import lightning.pytorch as pl

from ticketlab.core.errors import TicketlabError
from ticketlab.integrations.optim import SparseCheckpoint, innermost, run_closure_first
from ticketlab.methods.imp import IMP
from ticketlab.methods.sparse import Method

logger = logging.getLogger(__name__)


def _the_optimizer(trainer: "pl.Trainer", who: str):
    if len(trainer.optimizers) != 1:
        raise TicketlabError(f"{who}: configure_optimizers must return one optimizer, got {len(trainer.optimizers)}")
    return innermost(trainer.optimizers[0])


class SparseTraining(pl.Callback):
    """Train the LightningModule sparse with `method` (e.g. `ticketlab.RigL(end_step=...)`) at `sparsity`.

    Keyword arguments are `ticketlab.sparsify`'s (`distribution`, `dense_first`, `dense_last`, `dense`,
    `seed`). Fractions of training (`end_fraction=0.75`) are resolved against the fit's optimizer steps. `updater` is the attached `Updater` (its `masks`, `history`) once fitting starts. A later
    `fit` with the same callback continues from its masks and step; `fit(ckpt_path=...)` from the
    checkpoint's."""

    def __init__(self, method: Method, sparsity: float, **sparsify_kwargs):
        self.method, self.sparsity, self.kwargs = method, sparsity, sparsify_kwargs
        self.updater = None
        self._carry = self._closure = None

    def on_fit_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        optimizer = _the_optimizer(trainer, "SparseTraining")
        # a later fit with this callback goes on with the masks (and step) where the last one stopped
        previous = self.updater.state_dict() if self._carry is not None and self._carry.attached else None
        self.teardown_hooks()
        self._closure = run_closure_first(optimizer)  # first: the updater's hooks come after it
        # resuming (ckpt_path): Lightning loads the optimizer state next, and that attaches the checkpoint's masks
        self._carry = SparseCheckpoint.for_run(pl_module, optimizer, self.method, self.sparsity,
                                               int(trainer.estimated_stepping_batches),
                                               resuming=trainer.ckpt_path is not None, previous=previous,
                                               **self.kwargs)
        self.updater = self._carry.updater

    def on_train_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if not self._carry.attached:
            raise TicketlabError(f"SparseTraining: the checkpoint {trainer.ckpt_path} holds no sparse state "
                                 f"(it was not saved under SparseTraining)")

    def teardown_hooks(self) -> None:
        """Take the optimizer hooks off (the masks stay on the weights)."""
        if self._carry is not None:
            self._carry.remove()
            self._closure.remove()
            self._carry = self._closure = None


class LotteryTicket(pl.Callback):
    """IMP levels across `trainer.fit` calls: fit 0 trains dense, every later fit prunes then rewinds.

        ticket = LotteryTicket(ticketlab.IMP(prune_fraction=0.2, rewind_iter=100))
        for level in range(4):
            L.Trainer(max_epochs=5, callbacks=[ticket]).fit(module, data)

    `imp` is the `ticketlab.IMP` it drives (`imp.masks`, `imp.level`). A fit resumed from a checkpoint
    (`ckpt_path=`) continues its level: it neither prunes nor rewinds."""

    def __init__(self, imp: IMP):
        self.imp = imp
        self.trained = False  # a fit has finished since the last pruning: the next fit prunes first
        self._closure = None

    def on_fit_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        optimizer = _the_optimizer(trainer, "LotteryTicket")
        if self._closure is not None:
            self._closure.remove()
        self._closure = run_closure_first(optimizer)  # first: the masks' hooks come after it
        if self.imp.model is not None and self.trained and trainer.ckpt_path is None:
            self.imp.prune()
            self.imp.rewind(optimizer)  # θk, masked, under this fit's fresh optimizer
            self.trained = False
        else:  # the first fit, or a fit that continues a level (resumed): enforce the masks on its optimizer
            self.imp.detach()
            self.imp.attach(pl_module, optimizer)

    def on_fit_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self.trained = True

    def state_dict(self) -> dict:
        return {"imp": self.imp.state_dict(), "trained": self.trained}

    def load_state_dict(self, state_dict: dict) -> None:
        self.imp.load_state_dict(state_dict["imp"])
        self.trained = state_dict["trained"]
