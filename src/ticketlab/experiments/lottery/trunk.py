"""Iterative magnitude pruning (IMP) with rewinding: the lottery-ticket procedure.

Frankle & Carbin 2019 (LTH) §2, with late rewinding from Frankle et al. 2019 (Stab):

1. initialise; save θ0 as tensors (never rebuild it by re-seeding);
2. level 0: train the dense network to the end, saving θk on the way (k = rewind_iter);
3. prune a fraction of the *surviving* weights with the smallest |w| of the level just
   trained, per layer (LTH: fc 20 %, output at half rate, conv 10–15 %) or globally;
4. rewind the survivors to θk (θ0 when k = 0) and retrain from iteration k; go to 3.

What is rewound (see docs/lottery.md §5): weights always; the optimizer
state only with `rewind_optimizer` (open_lth starts a fresh optimizer); the learning-rate
schedule is fast-forwarded to k unless `rewind_schedule` is false; the data order continues
from k (it is a pure function of the iteration).

Storage, per replicate, inside the experiment folder:

    replicate_<r>/level_<L>/mask.pt        the level's boolean masks (written before training)
    replicate_<r>/level_<L>/...            the level's run (metrics.jsonl, summary.json, final.pt)
    replicate_<r>/level_0/snapshot_<k>.pt  θ0 and θk: the rewind points
    replicate_<r>/<control>/level_<L>/     control branches (`ticketlab.experiments.lottery.controls`)

Levels are cached: asking for more levels later computes only the new ones, and an
interrupted level resumes from its checkpoint. The number of levels and replicates and the
controls are run shape, not identity: they are not hashed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ticketlab.core import atomic as _atomic, masks as M, pruning, scores
from ticketlab.core.config import Config, param
from ticketlab.core.errors import ConfigError
from ticketlab.training.loop import TrainConfig, load_state

CONTROLS = ("reinit", "random_mask", "random_mask_global", "oneshot", "continued")


@dataclass(frozen=True)
class LotteryConfig(Config):
    """IMP hyper-parameters. The training recipe is a separate `TrainConfig`."""

    strategy: str = param("layerwise", "prune each layer by its own rate, or one global threshold",
                          choices=("layerwise", "global"))
    prune_fraction: float = param(0.2, "fraction of the surviving weights pruned per level", min=0.0, max=1.0)
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
    # ---- run shape: how much to run, not what the experiment is ----
    levels: int = param(5, "pruning levels after the dense level 0", min=0, hashed=False)
    target_sparsity: float | None = param(
        None, "run as many levels as needed to reach this sparsity (overrides levels)", min=0.0, max=0.9999,
        hashed=False)
    replicates: int = param(1, "independent replicates (init seed and data seed + r)", min=1, hashed=False)
    controls: tuple[str, ...] = param((), "control branches: " + ", ".join(CONTROLS), choices=CONTROLS,
                                      hashed=False)
    control_draws: int = param(1, "draws per random control (reinit, random masks)", min=1, hashed=False)
    control_levels: tuple[int, ...] = param((), "levels at which to run controls (empty: every level >= 1)",
                                            min=1, hashed=False)


@dataclass(frozen=True)
class LotteryRun:
    """A lottery experiment's identity: the training recipe and the IMP hyper-parameters.

    `train` is the task's recipe (`ticketlab.engine.tasks`); the task's name is recorded but not hashed,
    since the recipe's own fields already tell the tasks apart."""

    train: "TrainConfig"
    lottery: LotteryConfig
    task: str = param("classify", "the domain: classify, rl, lm or translate (ticketlab.engine.tasks)", hashed=False)


def level_fractions(cfg: LotteryConfig, params: dict[str, torch.Tensor], output: str | None) -> dict[str, float]:
    """Per-layer pruning rates of one level (layerwise strategy)."""
    names = pruned_layers(cfg, params)
    out = {}
    for n in names:
        if n == output:
            out[n] = cfg.output_fraction if cfg.output_fraction is not None else cfg.prune_fraction / 2
        elif params[n].dim() > 2 and cfg.conv_fraction is not None:
            out[n] = cfg.conv_fraction
        else:
            out[n] = cfg.prune_fraction
    return out


def pruned_layers(cfg: LotteryConfig, params: dict[str, torch.Tensor]) -> list[str]:
    """The prunable parameters this run prunes, by the include/exclude patterns."""
    try:
        names = pruning.select(params, cfg.layers)
        excluded = set(pruning.select(names, cfg.exclude)) if cfg.exclude else set()
    except ValueError as e:
        raise ConfigError(f"layers/exclude: {e}; prunable parameters: {', '.join(params)}") from None
    return [n for n in names if n not in excluded]


def prune_level(cfg: LotteryConfig, weights: dict[str, torch.Tensor], masks: M.Masks, output: str | None) -> M.Masks:
    """One IMP pruning step: remove the smallest-|w| surviving weights (per layer or globally)."""
    params = {n: weights[n] for n in masks}  # the prunable tensors only, not biases or norms
    s = scores.magnitude(params)
    if cfg.strategy == "layerwise":
        return pruning.prune_layerwise(s, masks, level_fractions(cfg, params, output))
    return pruning.prune_global(s, masks, cfg.prune_fraction, pruned_layers(cfg, params))


def n_levels(cfg: LotteryConfig, params: dict[str, torch.Tensor], output: str | None) -> int:
    """Levels to run: `levels`, or the first level whose sparsity reaches `target_sparsity`."""
    if cfg.target_sparsity is None:
        return cfg.levels
    sizes = {n: p.numel() for n, p in params.items()}
    if cfg.strategy == "layerwise":
        fr = {n: 0.0 for n in params} | level_fractions(cfg, params, output)
        ladder = pruning.ladder(sizes, fr, 200)
    else:  # global pruning removes the same total count per level whatever the layer
        sel = set(pruned_layers(cfg, params))
        kept_fixed = sum(v for n, v in sizes.items() if n not in sel)
        rem, total, ladder = sum(sizes[n] for n in sel), sum(sizes.values()), []
        for _ in range(201):
            ladder.append((rem + kept_fixed) / total)
            rem -= pruning.n_to_prune(rem, cfg.prune_fraction)
    for L, d in enumerate(ladder):
        if 1 - d >= cfg.target_sparsity - 1e-12:
            return L
    raise ConfigError(f"target_sparsity: {cfg.target_sparsity} is not reached in 200 levels "
                      f"with these pruning rates")


def save_masks(path: Path, masks: M.Masks) -> None:
    """Atomically save boolean masks (loadable with weights_only=True)."""
    with _atomic.atomic_open(path, "wb") as f:
        torch.save({n: m.clone() for n, m in masks.items()}, f)


def load_masks(path: Path) -> M.Masks:
    """Load masks saved by `save_masks`."""
    return torch.load(path, map_location="cpu", weights_only=True)


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """A finished run's trained weights."""
    return load_state(Path(run_dir) / "final.pt")["model"]


class Replicate:
    """One IMP trunk: seeds, folders and the levels of one replicate."""

    def __init__(self, cfg: LotteryConfig, trainer, root: Path, r: int, *, seed: int, data_seed: int,
                 log: Callable[[str], None] = lambda s: None):
        self.cfg, self.trainer, self.r = cfg, trainer, r
        self.root = Path(root) / f"replicate_{r}"
        self.seed, self.data_seed, self.log = seed, data_seed, log
        probe = trainer.build(seed)
        self.prunable_shapes = {n: p.detach() for n, p in trainer.prunable(probe).items()}
        self.output = trainer.output_layer(probe)

    def level_dir(self, L: int, branch: str = "") -> Path:
        return (self.root / branch if branch else self.root) / f"level_{L}"

    # ---- the trunk ----
    def masks(self, L: int) -> M.Masks:
        """The ticket's masks at level L (computed and saved on first use)."""
        path = self.level_dir(L) / "mask.pt"
        if path.exists():
            return load_masks(path)
        if L == 0:
            m = M.ones_masks(self.prunable_shapes)
        else:
            prev = self.level_dir(L - 1)
            if not (prev / "summary.json").exists():
                self.run_level(L - 1)
            m = prune_level(self.cfg, final_weights(prev), self.masks(L - 1), self.output)
        save_masks(path, m)
        return m

    def rewind_state(self) -> dict:
        """The saved state at the rewind point k (level 0's snapshot)."""
        path = self.level_dir(0) / f"snapshot_{self.cfg.rewind_iter}.pt"
        if not path.exists():
            self.run_level(0)
        return load_state(path)

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
        return Plan(self.trainer, self.level_dir(0), self.trainer.build(self.seed), masks,
                    snapshot_iters=tuple(sorted({0, k})), data_seed=self.data_seed, desc=desc)

    def train_from_rewind(self, run_dir: Path, masks: M.Masks, weights: dict | None, desc: str,
                          *, seed: int | None = None) -> dict:
        """Train (or load) one run from the rewind point: see `plan_rewind`."""
        if (run_dir / "summary.json").exists():
            return json.loads((run_dir / "summary.json").read_text())
        return execute([self.plan_rewind(run_dir, masks, weights, desc, seed=seed)])[0]

    def run_level(self, L: int) -> dict:
        """Train (or load) level L."""
        run_dir = self.level_dir(L)
        if (run_dir / "summary.json").exists():
            return json.loads((run_dir / "summary.json").read_text())
        plan = self.plan_level(L)
        self.log(plan.desc)
        return execute([plan])[0]

    def run(self, levels: int) -> list[dict]:
        """Run (or load) levels 0..levels of this replicate."""
        return [self.run_level(L) for L in range(levels + 1)]


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

    def key(self) -> tuple:
        """Plans with equal keys share a schedule, so they can train in lockstep."""
        return (self.start_iter, self.lr_offset, self.snapshot_iters, self.start_optimizer is None)

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


def replicate_seeds(train_cfg, r: int) -> tuple[int, int]:
    """(init seed, data seed) of replicate r: the configured seeds shifted by r."""
    return train_cfg.init_seed + r, train_cfg.data_seed + r


def lottery_levels(cfg: LotteryConfig, rep: Replicate) -> int:
    """Number of pruning levels this run asks for."""
    return n_levels(cfg, rep.prunable_shapes, rep.output)


__all__ = ["LotteryConfig", "LotteryRun", "CONTROLS", "Replicate", "Plan", "execute", "prune_level", "level_fractions", "n_levels",
           "save_masks", "load_masks", "final_weights", "replicate_seeds", "lottery_levels"]
