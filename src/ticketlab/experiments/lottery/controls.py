"""Lottery-ticket controls: branches off an IMP trunk, one registered class each.

LTH (Frankle & Carbin 2019) §2, App. B and E; open_lth's branches; docs/lottery.md §6. A control
trains a network that is compared with the ticket at the same level:

- `reinit`: the ticket's mask with a fresh random initialisation (LTH §2: 3 reinits per
  ticket). It trains the same schedule as the ticket, from the rewind point.
- `random_mask`: a random mask with the ticket's per-layer counts (open_lth
  `randomly_prune --strategy=layerwise`), started from the ticket's weights θk.
- `random_mask_global`: a random mask with the ticket's total count, at random positions over
  the pruned layers (per-layer counts change; open_lth `--strategy=global`).
- `oneshot`: prune the trained dense network (level 0) straight to the level's per-layer
  (layerwise) or total (global) density, rewind, train (LTH §2 one-shot).
- `continued`: LTH App. B "strategy 2": prune and keep training from the trained weights,
  with no reset; each level continues from the previous continued level.

A control is a `Control` subclass decorated with `@register`: its name, its masks, where it
starts (weights and schedule), which runs it needs, and its plot style. `CONTROLS` (name →
control, in registration order) is what the config's `controls` choices, the run graph
(`ticketlab.experiments.lottery.runner`), the plots and the report read, so adding a control
touches one file. The steps that save a control's masks and train it are the trunk's own
(`ticketlab.experiments.lottery.trunk.prune`, `.plan`, `.train`).

Folders: `replicate_<r>/<control>_<draw>/level_<L>/` for random controls,
`replicate_<r>/<control>/level_<L>/` for deterministic ones.
"""

from __future__ import annotations

from ticketlab.core import masks as M, pruning, scores
from ticketlab.core.seeds import derive_seed
from ticketlab.methods.imp import pruned_layers

CONTROLS: dict = {}  # name -> Control, in registration order (a live view: later registrations count)


def register(cls: type) -> type:
    """Class decorator: add a control to `CONTROLS` (its place there is its place in plots and tables)."""
    control = cls()
    if not control.name or control.name == "ticket":
        raise ValueError(f"{cls.__name__}: a control needs a name other than 'ticket'")
    CONTROLS[control.name] = control
    return cls


class Control:
    """One control branch. `rep` below is the replicate (`trunk.Replicate`): its getters
    (`masks`, `trained_weights`, `rewind_state`) read finished runs and never train."""

    name: str = ""
    random: bool = False   # drawn `control_draws` times: folders <name>_<draw>, seeds by `control_seed`
    rewinds: bool = True   # starts at the rewind point k, so it shares the ticket's schedule (and stacks)
    color: str = "C7"      # plot colour (one experiment: colour by branch)
    linestyle: object = "-"  # plot line style (several experiments: line style by branch)

    @property
    def label(self) -> str:
        """The legend's name of the branch."""
        return self.name

    def draws(self, cfg) -> int:
        """How many times the control runs per level (`cfg` is the `LotteryConfig`)."""
        return cfg.control_draws if self.random else 1

    def folder(self, draw: int) -> str:
        """The branch's folder in the replicate."""
        return f"{self.name}_{draw}" if self.random else self.name

    def needs(self, level: int) -> list[tuple[int, str | None]]:
        """The runs (level, control; None is the trunk) trained before this control's run at `level`:
        the trunk's level L−1, whose pruning gives the ticket's mask, and level 0, the rewind point."""
        return [(0, None), (level - 1, None)]

    def masks(self, rep, level: int, draw: int) -> M.Masks:
        """The masks the control trains with (the trunk saves them as its `mask.pt`)."""
        raise NotImplementedError

    def plan(self, rep, level: int, draw: int, run_dir, masks: M.Masks, desc: str):
        """Where the run starts, as a `trunk.Plan`: by default the ticket's own θk, rewound."""
        return rep.plan_rewind(run_dir, masks, None, desc)


def branch_order() -> list[str]:
    """Every branch of a lottery experiment in the plots' and tables' order: the ticket, then the
    controls as registered."""
    return ["ticket", *CONTROLS]


def branch_name(control: str, draw: int) -> str:
    """Folder name of a control branch."""
    return CONTROLS[control].folder(draw)


def control_seed(rep, control: str, level: int, draw: int) -> int:
    """A 32-bit seed for a random control, stable across processes (`ticketlab.core.seeds`)."""
    return derive_seed(rep.seed, rep.r, control, level, draw, bits=32)


@register
class Reinit(Control):
    """The ticket's mask with fresh random weights (LTH §2)."""

    name, random, color, linestyle = "reinit", True, "C3", (0, (4, 1.5))

    def masks(self, rep, level, draw):
        return rep.masks(level)

    def plan(self, rep, level, draw, run_dir, masks, desc):
        seed = control_seed(rep, self.name, level, draw)
        fresh = rep.imp.reinit_weights(rep.trainer.build, seed, masks)  # the public IMP's control (issue 15)
        return rep.plan_rewind(run_dir, masks, fresh, desc, seed=seed)


@register
class RandomMask(Control):
    """A random mask with the ticket's per-layer counts, from the ticket's θk."""

    name, random, color, linestyle = "random_mask", True, "C2", (0, (1, 1.2))
    strategy = "layerwise"

    def masks(self, rep, level, draw):  # the public IMP's control (issue 15)
        return rep.imp.random_masks_like(rep.masks(level), control_seed(rep, self.name, level, draw), self.strategy)


@register
class RandomMaskGlobal(RandomMask):
    """A random mask with the ticket's total count, anywhere in the pruned layers, from θk."""

    name, color, linestyle = "random_mask_global", "C4", (0, (4, 1.5, 1, 1.5))
    strategy = "global"


@register
class OneShot(Control):
    """The trained dense network pruned straight to the ticket's density, rewound (LTH §2)."""

    name, color, linestyle = "oneshot", "C1", (0, (6, 2))

    def masks(self, rep, level, draw):
        ticket, layers = rep.masks(level), pruned_layers(rep.cfg, rep.prunable_shapes)
        dense = rep.trained_weights(0)
        s = scores.magnitude({n: dense[n] for n in ticket})
        full = M.ones_masks(ticket)
        if rep.cfg.strategy == "layerwise":
            return pruning.prune_to_density(s, full, M.layer_density(ticket))
        kept, total = M.count({n: ticket[n] for n in layers})
        return pruning.prune_to_density(s, full, kept / total, layers)


@register
class Continued(Control):
    """Prune and keep training, never rewinding (LTH App. B strategy 2): level L continues level L−1."""

    name, rewinds, color, linestyle = "continued", False, "C5", (0, (2, 2))

    def needs(self, level):
        return super().needs(level) + ([(level - 1, self.name)] if level > 1 else [])

    def _previous(self, level: int) -> tuple[int, str]:
        """The run that level `level` continues: the trunk's level 0, then the chain's own L−1."""
        return (0, "") if level == 1 else (level - 1, self.name)

    def masks(self, rep, level, draw):
        L, branch = self._previous(level)
        return rep.imp.prune_masks(rep.trained_weights(L, branch), rep.masks(L, branch))

    def plan(self, rep, level, draw, run_dir, masks, desc):
        # a fresh optimizer and the full schedule again, from the trained weights: no reset
        return rep.plan_from(run_dir, masks, rep.trained_weights(*self._previous(level)), desc)


__all__ = ["CONTROLS", "Control", "register", "branch_order", "branch_name", "control_seed"]
