"""Iterative magnitude pruning (IMP) with rewinding: the lottery-ticket procedure, as a loop of steps.

Frankle & Carbin 2019 (LTH) §2, with late rewinding from Frankle et al. 2019 (Stab):

1. initialise; save θ0 as tensors (never rebuild it by re-seeding);
2. level 0: train the dense network to the end, saving θk on the way (k = rewind_iter);
3. prune a fraction of the *surviving* weights with the smallest |w| of the level just
   trained, per layer (LTH: fc 20 %, output at half rate, conv 10–15 %) or globally
   (`ticketlab.methods.imp.IMP.prune_masks`, the step of the public `ticketlab.IMP`);
4. rewind the survivors to θk (θ0 when k = 0) and retrain from iteration k; go to 3.

`run` is that loop, for one replicate and its controls. Each step is a function of (replicate,
level[, control, draw]) that writes files and is skipped when they exist: `prune` saves a run's
masks, `plan` rewinds (the start weights and schedule, ready to train) and `train` trains it.
`needs` declares which runs a step reads; the runner (`ticketlab.experiments.lottery.runner`)
calls the same steps per run once those are trained, across replicates, controls and processes.
The `Replicate` getters only read: asking for what is not there yet raises, it never trains.

What is rewound (see docs/lottery.md §5): weights always; the optimizer
state only with `rewind_optimizer` (open_lth starts a fresh optimizer); the learning-rate
schedule is fast-forwarded to k unless `rewind_schedule` is false; the data order continues
from k (it is a pure function of the iteration).

Storage, per replicate, inside the experiment folder:

    replicate_<r>/level_<L>/mask.pt        the level's boolean masks (written before training)
    replicate_<r>/level_<L>/...            the level's run (metrics.jsonl, summary.json, final.pt)
    replicate_<r>/level_0/snapshot_<k>.pt  θ0 and θk: the rewind points
    replicate_<r>/<control>/level_<L>/     control branches (`ticketlab.experiments.lottery.controls`)

With `baseline_length` m > 1 the dense level 0 and the controls train m times the recipe's length,
while IMP prunes from level 0's weights at the recipe's length (its snapshot there), so the tickets
do not change (docs/lottery.md §7; issue 18: under-trained baselines inflated the margins).

Levels are cached: asking for more levels later computes only the new ones, and an
interrupted level resumes from its checkpoint. The number of levels and replicates and the
controls are run shape, not identity: they are not hashed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from ticketlab.core import masks as M
from ticketlab.core import config as C
from ticketlab.core.config import Config, param
from ticketlab.core.errors import ConfigError, DamagedError, TicketlabError
from ticketlab.core.integrity import ADVICE
from ticketlab.experiments.lottery.controls import CONTROLS, branch_name
from ticketlab.methods.imp import IMP, level_fractions, n_levels, prune_level, pruned_layers
from ticketlab.training.loop import TrainConfig, load_state
from ticketlab.training.rundir import RunDir, load_tensors, save_file

log = logging.getLogger(__name__)


class _DefaultLevels(int):
    """The default of `LotteryConfig.levels` (5), told apart from an explicit `levels=5`: only an
    explicit value conflicts with `target_sparsity`. It equals, hashes and serialises as the int 5."""


DEFAULT_LEVELS = _DefaultLevels(5)


@dataclass(frozen=True)
class LotteryConfig(Config):
    """IMP hyper-parameters. The training recipe is a separate `TrainConfig`."""

    strategy: str = param("layerwise", "prune each layer by its own rate, or one global threshold",
                          choices=("layerwise", "global"))
    prune_fraction: float = param(0.2, "fraction of the surviving weights pruned per level, strictly between 0 "
                                  "and 1")  # the range is `check`'s: one message for every value outside it
    output_fraction: float | None = param(
        None, "layerwise: the output layer's rate (None: half of prune_fraction, LTH §2)", min=0.0, max=1.0)
    conv_fraction: float | None = param(
        None, "layerwise: the conv layers' rate (LTH: 0.1 for Conv-2/4, 0.15 for Conv-6; None: prune_fraction)",
        min=0.0, max=1.0)
    layers: tuple[str, ...] = param(("*",), "name patterns of the prunable parameters to prune")
    exclude: tuple[str, ...] = param((), "name patterns of prunable parameters never to prune")
    rewind_iter: int = param(0, "rewind point k: 0 resets to θ0 (LTH); k > 0 is late rewinding", min=0)
    rewind_optimizer: bool = param(False, "also rewind the optimizer state (momentum, Adam moments) to iteration k")
    rewind_schedule: bool = param(True, "fast-forward the learning-rate schedule to k (else restart it at k)")
    baseline_length: int = param(
        1, "train the dense level 0 and the controls this many times the recipe's length, so that their "
        "figures come from converged runs; IMP still prunes from level 0's weights at the recipe's length "
        "(docs/lottery.md §7)", min=1, hashed="unless_default")
    # ---- run shape: how much to run, not what the experiment is ----
    levels: int = param(DEFAULT_LEVELS, "pruning levels after the dense level 0 (not with target_sparsity)",
                        min=0, hashed=False)
    target_sparsity: float | None = param(
        None, "run as many levels as needed to reach this sparsity (not with levels)", min=0.0, max=0.9999,
        hashed=False)
    replicates: int = param(1, "independent replicates (init seed and data seed + r)", min=1, hashed=False)
    controls: tuple[str, ...] = param((), "control branches: " + ", ".join(CONTROLS), choices=CONTROLS,
                                      hashed=False)
    control_draws: int = param(1, "draws per random control (reinit, random masks)", min=1, hashed=False)
    control_levels: tuple[int, ...] = param((), "levels at which to run controls (empty: every level >= 1)",
                                            min=1, hashed=False)

    def check(self) -> None:
        """prune_fraction strictly inside (0, 1); levels and target_sparsity not both given."""
        if not 0.0 < self.prune_fraction < 1.0:
            raise ConfigError(f"prune_fraction: got {self.prune_fraction!r}, expected a number strictly between "
                              "0 and 1 (0 prunes nothing, 1 prunes every weight)")
        if self.target_sparsity is not None and type(self.levels) is not _DefaultLevels:
            raise ConfigError(f"levels: got {self.levels!r} together with target_sparsity {self.target_sparsity!r}; "
                              "give one of them")


def stored_lottery(values: dict, source: str) -> LotteryConfig:
    """The LotteryConfig recorded in a store's config.json. A run by `target_sparsity` records the
    default `levels` beside it; that stored pair is not a user's conflicting choice."""
    if values.get("target_sparsity") is not None:
        values = {k: v for k, v in values.items() if k != "levels"}
    return C.from_dict(LotteryConfig, values, source=source)


def check_control_levels(cfg: LotteryConfig, levels: int) -> None:
    """Refuse control levels outside this run's levels 1..`levels` (known once the level count is:
    `target_sparsity` resolves it from the layer sizes), before anything trains."""
    outside = [L for L in cfg.control_levels if L > levels]
    if outside:
        raise ConfigError(f"control_levels: got {outside[0]}, expected a level in 1..{levels} (this run has "
                          f"{levels} pruning levels)")


@dataclass(frozen=True)
class LotteryRun:
    """A lottery experiment's identity: the training recipe and the IMP hyper-parameters.

    `train` is the task's recipe (`ticketlab.engine.tasks`); the task's name is recorded but not hashed,
    since the recipe's own fields already tell the tasks apart."""

    train: "TrainConfig"
    lottery: LotteryConfig
    task: str = param("classify", "the domain: classify, rl, lm or translate (ticketlab.engine.tasks)", hashed=False)


@dataclass(frozen=True)
class RunKey:
    """Names one run of a replicated IMP study: replicate `r`, `level`, and the branch (`control`
    None for the trunk, else a control or a random ticket, with its `draw`)."""

    r: int
    level: int
    control: str | None = None
    draw: int = 0


def save_masks(path: Path, masks: M.Masks) -> None:
    """Atomically save boolean masks (loadable with weights_only=True), recorded in the folder's manifest."""
    save_file(path, {n: m.clone() for n, m in masks.items()})


def load_masks(path: Path) -> M.Masks:
    """Load masks saved by `save_masks`, checked against the manifest; DamagedError when they are
    not a dict of tensors."""
    return load_tensors(path)


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """A finished run's trained weights."""
    path = Path(run_dir) / "final.pt"
    state = load_state(path)
    if not isinstance(state.get("model"), dict):
        raise DamagedError(f"{path}: expected a state with the model's weights; {ADVICE}")
    return state["model"]


class Replicate:
    """One IMP trunk: the seeds, folders and getters of one replicate.

    The getters (`masks`, `trained_weights`, `rewind_state`) read what the steps wrote and raise a
    `TicketlabError` when it is not there yet: they never train."""

    def __init__(self, cfg: LotteryConfig, trainer, root: Path, r: int, *, seed: int, data_seed: int):
        self.cfg, self.trainer, self.r = cfg, trainer, r
        self.root = Path(root) / f"replicate_{r}"
        self.seed, self.data_seed = seed, data_seed
        probe = trainer.build(seed)
        self.prunable_shapes = {n: p.detach() for n, p in trainer.prunable(probe).items()}
        self.output = trainer.output_layer(probe)
        # the public IMP object prunes the trunk: the path a user's own loop takes (issue 15)
        self.imp = IMP.from_config(cfg, output=self.output)
        # the dense level 0 and the controls train `baseline_length` times longer (issue 18); the
        # tickets, and the weights IMP prunes, keep the recipe's length `standard_end`
        self.standard_end = trainer.total_iterations
        self.baseline_trainer = trainer if cfg.baseline_length == 1 else _longer(trainer, cfg.baseline_length)

    def level_dir(self, L: int, branch: str = "") -> Path:
        return (self.root / branch if branch else self.root) / f"level_{L}"

    # ---- getters: they read, never train ----
    def masks(self, L: int, branch: str = "") -> M.Masks:
        """The saved masks of level L (of the ticket, or of a control's `branch` folder)."""
        path = self.level_dir(L, branch) / "mask.pt"
        if not path.exists():
            raise TicketlabError(f"{path} is missing: level {L} of replicate {self.r} is not pruned yet "
                                 f"(prune it once level {L - 1} is trained: trunk.prune)")
        return load_masks(path)

    def trained_weights(self, L: int, branch: str = "") -> dict[str, torch.Tensor]:
        """The trained weights of level L (of the ticket, or of a control's `branch` folder)."""
        run_dir = self.level_dir(L, branch)
        if not (run_dir / "summary.json").exists():
            raise TicketlabError(f"{run_dir} is not trained yet: train level {L} of replicate {self.r} "
                                 f"first (trunk.train)")
        at_standard = L == 0 and not branch and self.cfg.baseline_length > 1
        diverged = RunDir(run_dir).summary().get("diverged")
        # NaN weights prune to an arbitrary mask: no ticket derives from a diverged run
        if diverged and not (at_standard and diverged["iteration"] > self.standard_end):
            raise TicketlabError(f"{run_dir} diverged at iteration {diverged['iteration']} (its training loss "
                                 "became NaN or infinite): nothing can be pruned from it; lower the learning rate")
        if at_standard:  # a longer dense run: IMP prunes its weights at the recipe's length, as LTH does
            return load_state(run_dir / f"snapshot_{self.standard_end}.pt")["model"]
        return final_weights(run_dir)

    def rewind_state(self) -> dict:
        """The saved state at the rewind point k (level 0's snapshot)."""
        path = self.level_dir(0) / f"snapshot_{self.cfg.rewind_iter}.pt"
        if not path.exists():
            raise TicketlabError(f"{path} is missing: level 0 of replicate {self.r} has not been trained "
                                 f"(trunk.train)")
        return load_state(path)

    # ---- runs, ready to train ----
    def start(self, weights: dict, masks: M.Masks, *, seed: int | None = None) -> torch.nn.Module:
        """A model holding `weights`, masked (pruned entries zero)."""
        model = self.trainer.build(self.seed if seed is None else seed)
        if weights is not None:
            model.load_state_dict(weights)
        M.apply_masks(self.trainer.prunable(model), masks)
        return model

    def plan_rewind(self, run_dir: Path, masks: M.Masks, weights: dict | None, desc: str,
                    *, seed: int | None = None) -> "Plan":
        """A masked network that trains from the rewind point k to the end (the ticket and its controls).

        `weights` None means the ticket's own θk; the level's `snapshot_<k>.pt` records the
        rewound, masked starting state."""
        k = self.cfg.rewind_iter
        state = self.rewind_state()
        model = self.start(state["model"] if weights is None else weights, masks, seed=seed)
        opt = state.get("optimizer") if self.cfg.rewind_optimizer else None
        return Plan(self.trainer, run_dir, model, masks, start_iter=k, start_optimizer=opt,
                    lr_offset=0 if self.cfg.rewind_schedule else k, snapshot_iters=(k,),
                    data_seed=self.data_seed, desc=desc)

    def plan_from(self, run_dir: Path, masks: M.Masks, weights: dict, desc: str) -> "Plan":
        """A masked network that trains the whole schedule from `weights`, with a fresh optimizer
        (no rewinding: the `continued` control)."""
        return Plan(self.trainer, run_dir, self.start(weights, masks), masks, data_seed=self.data_seed, desc=desc)

    def plan_level(self, L: int) -> "Plan":
        """Level L's run: level 0 dense from θ0 (saving θ0 and θk), later levels from the rewind point."""
        masks = self.masks(L)
        desc = f"rep {self.r} level {L} ({100 * M.density(masks):.1f}% left)"
        if L > 0:
            return self.plan_rewind(self.level_dir(L), masks, None, desc)
        k = self.cfg.rewind_iter
        if k > self.trainer.total_iterations:
            raise ConfigError(f"rewind_iter: got {k}, expected at most the run length "
                              f"({self.trainer.total_iterations} iterations)")
        longer = self.cfg.baseline_length > 1  # then also keep the weights at the recipe's end, to prune
        return Plan(self.baseline_trainer, self.level_dir(0), self.trainer.build(self.seed), masks,
                    snapshot_iters=tuple(sorted({0, k, *([self.standard_end] if longer else [])})),
                    data_seed=self.data_seed, desc=desc)

    def train_from_rewind(self, run_dir: Path, masks: M.Masks, weights: dict | None, desc: str,
                          *, seed: int | None = None) -> dict:
        """Train (or load) one run from the rewind point: see `plan_rewind`."""
        if (run_dir / "summary.json").exists():
            return RunDir(run_dir).summary()
        return execute([self.plan_rewind(run_dir, masks, weights, desc, seed=seed)])[0]

    def run_level(self, L: int) -> dict:
        """Prune and train (or load) level L of the trunk; level L−1 must be trained."""
        prune(self, L)
        return train(self, L)

    def run(self, levels: int) -> list[dict]:
        """Run (or load) levels 0..levels and the configured controls: `run`."""
        return run(self, levels)


@dataclass
class Plan:
    """One run, ready to train: the unit the runner schedules, and stacks with compatible ones."""

    trainer: object  # the replicate's trainer: its config carries the replicate's seeds
    run_dir: Path
    model: torch.nn.Module  # holding the starting weights, masked
    masks: M.Masks
    start_iter: int = 0
    start_optimizer: dict | None = None
    lr_offset: int = 0
    snapshot_iters: tuple[int, ...] = ()
    data_seed: int = 0
    desc: str = ""
    name: str = ""  # the run's folder relative to its experiment, recorded in a stack's summaries

    def key(self) -> tuple:
        """Plans with equal keys share a schedule, so they can train in lockstep."""
        return (self.start_iter, self.lr_offset, self.snapshot_iters, self.start_optimizer is None,
                self.trainer.total_iterations)

    def fit(self) -> dict:
        """Train this run alone."""
        return self.trainer.fit(self.model, self.run_dir, masks=self.masks, start_iter=self.start_iter,
                                start_optimizer=self.start_optimizer, lr_offset=self.lr_offset,
                                snapshot_iters=self.snapshot_iters, data_seed=self.data_seed, desc=self.desc)


def execute(plans: list[Plan], stack: int = 1) -> list[dict]:
    """Train plans: as one batched computation when there are several, they share a schedule and
    their trainer can stack them (`fit_stacked`), else one by one. Results in the order of `plans`."""
    trainer = plans[0].trainer if plans else None
    if (stack > 1 and len(plans) > 1 and hasattr(trainer, "fit_stacked")
            and len({p.key() for p in plans}) == 1 and all(trainer.can_stack(p.model) for p in plans)):
        return trainer.fit_stacked(plans)
    return [p.fit() for p in plans]


# ---- the steps: (replicate, level[, control, draw]) -> files, skipped when written ----------------

def needs(L: int, control: str | None = None) -> list[tuple[int, str | None]]:
    """The runs (level, control; None is the trunk) that must be trained before run (L, control) of
    the same replicate can be pruned and planned: the trunk's level L−1; a control's own `needs`."""
    if control is not None:
        return CONTROLS[control].needs(L)
    return [(L - 1, None)] if L > 0 else []


def _folder(control: str | None, draw: int) -> str:
    return branch_name(control, draw) if control is not None else ""


def prune(rep: Replicate, L: int, control: str | None = None, draw: int = 0) -> None:
    """Save the masks of level L (`mask.pt`, before it trains); skipped when saved.

    The trunk's are the trained weights of level L−1, pruned (level 0: every weight); a control's
    follow its rule (`Control.masks`), from the ticket's at the same level."""
    path = rep.level_dir(L, _folder(control, draw)) / "mask.pt"
    if path.exists():
        return
    if control is not None:
        prune(rep, L)  # every control is defined against the ticket of its level
        m = CONTROLS[control].masks(rep, L, draw)
    elif L == 0:
        m = M.ones_masks(rep.prunable_shapes)
    else:
        m = rep.imp.prune_masks(rep.trained_weights(L - 1), rep.masks(L - 1))
    save_masks(path, m)


def plan(rep: Replicate, L: int, control: str | None = None, draw: int = 0) -> Plan:
    """The run (L, control, draw) ready to train: its saved masks on its start weights, rewound to θk
    (the trunk's level 0: θ0, dense; a control: `Control.plan`)."""
    if control is None:
        return rep.plan_level(L)
    folder = _folder(control, draw)
    p = CONTROLS[control].plan(rep, L, draw, rep.level_dir(L, folder), rep.masks(L, folder),
                               f"rep {rep.r} {folder} level {L}")
    p.trainer = rep.baseline_trainer  # a control trains as long as the dense baseline (`baseline_length`)
    return p


def train(rep: Replicate, L: int, control: str | None = None, draw: int = 0) -> dict:
    """Train the run (L, control, draw) from its `plan`; skipped (its summary read) when trained."""
    summary = rep.level_dir(L, _folder(control, draw)) / "summary.json"
    if summary.exists():
        return RunDir(summary.parent).summary()
    p = plan(rep, L, control, draw)
    log.info("%s", p.desc)
    return execute([p])[0]


def _longer(trainer, factor: int):
    """The replicate's trainer for `factor` times the recipe's length (`LotteryConfig.baseline_length`)."""
    if not hasattr(trainer, "longer"):
        raise ConfigError(f"baseline_length: got {factor}, expected 1 for this task (only classification "
                          "trains its baselines longer)")
    return trainer.longer(factor)


def branches(cfg: LotteryConfig, levels: int) -> list[tuple[int, str, int]]:
    """The control runs of one replicate as (level, control, draw), by level: `controls` at
    `control_levels` (every level >= 1 when empty), and the control runs they need (a `continued`
    chain needs every level below it)."""
    at = [L for L in (cfg.control_levels or range(1, levels + 1)) if L <= levels]
    runs = {(L, c, d) for L in at for c in cfg.controls for d in range(CONTROLS[c].draws(cfg))}
    todo = list(runs)
    while todo:
        L, c, _ = todo.pop()
        for need in needs(L, c):
            if need[1] is not None and (*need, 0) not in runs:
                runs.add((*need, 0))
                todo.append((*need, 0))
    order = list(CONTROLS)
    return sorted(runs, key=lambda t: (t[0], order.index(t[1]), t[2]))


def run(rep: Replicate, levels: int) -> list[dict]:
    """Run (or load) levels 0..levels of one replicate, with its controls; the trunk's summaries.

    IMP as a loop (LTH §2): the runner (`runner.run_graph`) calls the same steps, run by run, in
    parallel, and writes the same files."""
    controls = branches(rep.cfg, levels)
    trunk = []
    for L in range(levels + 1):
        prune(rep, L)               # level L−1's trained weights, pruned (level 0: all weights)
        trunk.append(train(rep, L))  # rewound to θk (level 0: θ0) and trained
        for level, control, draw in controls:
            if level == L:          # the controls of this level, against its ticket
                prune(rep, L, control, draw)
                train(rep, L, control, draw)
    return trunk


def replicate_seeds(train_cfg, r: int) -> tuple[int, int]:
    """(init seed, data seed) of replicate r: the configured seeds shifted by r."""
    return train_cfg.init_seed + r, train_cfg.data_seed + r


def lottery_levels(cfg: LotteryConfig, rep: Replicate) -> int:
    """Number of pruning levels this run asks for."""
    return n_levels(cfg, rep.prunable_shapes, rep.output)


__all__ = ["LotteryConfig", "LotteryRun", "RunKey", "CONTROLS", "Replicate", "Plan", "execute", "prune_level", "level_fractions",
           "pruned_layers", "n_levels", "save_masks", "load_masks", "final_weights", "replicate_seeds",
           "lottery_levels", "stored_lottery", "check_control_levels", "DEFAULT_LEVELS", "needs", "prune", "plan", "train", "branches", "run"]
