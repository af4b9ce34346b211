"""Ticket transfer across datasets and optimizers.

Morcos, Yu, Paganini & Tian 2019, "One ticket to win them all: generalizing lottery ticket
initializations across datasets and optimizers" (NeurIPS 2019, arXiv 1906.02773), §3–4;
docs/transfer.md §2. A ticket found by IMP on a *source* (dataset S,
optimizer O_S) is trained on a *target* (dataset T, optimizer O_T with its own hyper-parameters):

1. take the mask m_L of level L of a source lottery experiment and its rewind point θk (θ0 when
   k = 0), replicate r by replicate r;
2. the target network starts at θk ⊙ m_L. The output layer follows `output_layer`:
   - `keep`: the source's weights and mask (only with the same number of classes);
   - `reinit_sparse`: fresh weights (the target replicate's own init) under a random mask with the
     ticket's output-layer density (the paper re-initialises the output layer when the class count
     changes; the density it used is NOT FOUND, we keep the ticket's);
   - `dense`: fresh weights, unpruned;
   - `auto` (default): `keep` when the class counts match, else `reinit_sparse`.
   Every other parameter must have the same shape in the source and the target model (same
   architecture, same input shape), else a TicketlabError names the input shapes;
3. train with the target's recipe: the source's TrainConfig with the target's overrides (dataset,
   train_fraction, optimizer, lr, momentum, iterations, ...; never model, model_args or init), a
   fresh optimizer (the optimizer may differ), the target's data order (data_seed + r), from
   iteration 0 (`start="zero"`, the paper's full target schedule) or from k (`start="rewind"`,
   like the source's own levels and open_lth's `retrain` branch);
4. compare on the same target, level by level, with the controls:
   - `random`: the paper's random ticket: a random mask with the transferred ticket's per-layer
     counts and a fresh init (not LTH's reinit, which keeps the mask);
   - `own`: the ticket IMP finds on the target itself with the target's recipe and the source's
     pruning recipe: a lottery experiment (`ticketlab.api.lottery`), linked, never duplicated;
   - `dense`: the dense network trained on the target (level 0 of that lottery experiment).

Storage. A transfer experiment is `transfer-<hash>`, the hash covering the source experiment's
name (its own config hash), the resolved target TrainConfig and the output/start policies:

    transfer-<hash>/config.json                       {source, target, transfer}
    transfer-<hash>/transfer.json                     links: source path, own lottery, random tickets
    transfer-<hash>/replicate_<r>/level_<L>/          the transferred ticket (mask.pt, metrics.jsonl, ...)

A random ticket depends only on the target recipe, the schedule start and the per-layer counts,
not on the source, so random tickets live in a shared experiment that every transfer onto the same
target reuses (with layerwise pruning, tickets of every source have the same counts at a level):

    random_ticket-<hash>/counts_<key>/counts.json             per-layer kept counts of the ticket
    random_ticket-<hash>/counts_<key>/replicate_<r>/random_<d>/   one random ticket (a run folder)

Levels, replicates and controls are run shape: asking for more later trains only what is new; an
interrupted run resumes from its checkpoints.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ticketlab.core import config as C, integrity, masks as M, pruning, scores
from ticketlab.engine import results, schedule
from ticketlab.core.errors import ConfigError, TicketlabError
from ticketlab.experiments.lottery.trunk import (LotteryConfig, stored_lottery, Plan, RunKey, execute, load_masks, prune, replicate_seeds,
                                                save_masks)
from ticketlab.core.seeds import derive_seed
from ticketlab.experiments.lottery import replay
from ticketlab.engine.store import Experiment, Store
from ticketlab.training.loop import TrainConfig, load_state
from ticketlab.training.rundir import RunDir, read_json

log = logging.getLogger(__name__)

CONTROLS = ("random", "own", "dense")
OUTPUT_POLICIES = ("auto", "keep", "reinit_sparse", "dense")
FIXED = ("model", "model_args", "init")  # the ticket's architecture: a target cannot change it


@dataclass(frozen=True)
class TransferConfig(C.Config):
    """What to transfer and how. The source and target are resolved into the experiment's identity
    (`TransferRun`): the source by its folder name, the target as a full TrainConfig."""

    source: str = C.param("", "the source lottery experiment: folder name, path or unique hash prefix",
                          hashed=False, flag=False)
    target: dict = dataclasses.field(default_factory=dict, metadata=dict(
        help="the target's training recipe: TrainConfig keys that differ from the source's "
             "(dataset, train_fraction, optimizer, lr, momentum, iterations, ...)", hashed=False, flag=False))
    output_layer: str = C.param("auto", "output layer: keep the source's, re-initialise it under a random mask "
                                "of the ticket's output density (reinit_sparse), or re-initialise it dense; "
                                "auto: keep if the class counts match, else reinit_sparse", choices=OUTPUT_POLICIES)
    start: str = C.param("zero", "where the target schedule starts: zero (the full target recipe, Morcos et al.) "
                         "or rewind (at the source's rewind iteration k, as its own levels)", choices=("zero", "rewind"))
    # ---- run shape ----
    levels: tuple[int, ...] = C.param((), "source levels to transfer (empty: every level the source finished)",
                                      min=0, hashed=False)
    replicates: int | None = C.param(None, "replicates (source replicate r -> target seeds + r; None: all the "
                                     "source has)", min=1, hashed=False)
    controls: tuple[str, ...] = C.param(CONTROLS, "controls on the target: " + ", ".join(CONTROLS), choices=CONTROLS,
                                        hashed=False)
    control_draws: int = C.param(1, "random tickets per level and replicate", min=1, hashed=False)


@dataclass(frozen=True)
class TransferRun:
    """A transfer experiment's identity."""

    source: str          # the source experiment's folder name, lottery-<hash>
    target: TrainConfig  # the resolved target recipe
    transfer: TransferConfig


@dataclass(frozen=True)
class RandomTicketRun:
    """The identity of the random tickets of one target: recipe and schedule start."""

    target: TrainConfig
    start_iter: int = 0
    lr_offset: int = 0


# ---- sources and targets ---------------------------------------------------------------------

def load_source(exp_path: str | Path) -> tuple[TrainConfig, LotteryConfig]:
    """The (training, lottery) configs of a source lottery experiment folder."""
    path = Path(exp_path) / "config.json"
    body = read_json(path) if path.exists() else {}
    if body.get("kind") != "lottery":
        raise TicketlabError(f"{exp_path}: a transfer source must be a lottery experiment, "
                             f"got {body.get('kind', 'no config.json')!r}")
    cfg = body["config"]
    if cfg.get("task", "classify") != "classify":
        raise TicketlabError(f"{exp_path}: a {cfg['task']!r} lottery; transfer across datasets and optimizers "
                             f"is implemented for classification lotteries")
    return (C.from_dict(TrainConfig, cfg["train"], source=str(path)),
            stored_lottery(cfg["lottery"], source=str(path)))


def resolve_target(source: TrainConfig, overrides: dict) -> TrainConfig:
    """The target recipe: the source's TrainConfig with `overrides` (coerced and validated)."""
    fixed = [k for k in overrides if k in FIXED and overrides[k] != getattr(source, k)]
    if fixed:
        raise ConfigError(f"target.{fixed[0]}: a transferred ticket keeps the source's architecture "
                          f"({fixed[0]}={getattr(source, fixed[0])!r}); only the data and the training recipe change")
    return C.from_dict(TrainConfig, {**C.to_dict(source), **overrides}, source="target")


def target_recipes(cfg: TransferConfig, store=None) -> list[TrainConfig]:
    """The recipe the runs of transfer `cfg` train with, as a list for the stacking calibration: its
    source lottery's, with `cfg.target` applied (what `prepare` resolves, without checking data or
    writing anything). Empty when the source does not resolve: the transfer itself then says why."""
    try:
        src_train, _ = load_source(Store(store).get(cfg.source).path)
        return [resolve_target(src_train, cfg.target)]
    except TicketlabError:
        return []


def target_overrides(source: TrainConfig, target: TrainConfig) -> dict:
    """The TrainConfig keys whose values differ between source and target (JSON values)."""
    a, b = C.to_dict(source), C.to_dict(target)
    return {k: b[k] for k in b if a[k] != b[k]}


def load_data(cfg: TrainConfig, data_dir=None):
    """A training config's dataset, from the classification domain's per-process cache, so that a
    source and a target on the same dataset share one copy."""
    from ticketlab.domains.classify import dataset_of
    return dataset_of(cfg, data_dir)


def output_keys(state: dict, output: str) -> list[str]:
    """The state-dict entries of the output layer (its weight `output` and its bias)."""
    prefix = output.rsplit(".", 1)[0] + "."
    return [k for k in state if k.startswith(prefix)]


def check_compatible(src_model, tgt_model, output: str, *, reinit_output: bool, src_cfg: TrainConfig,
                     tgt_cfg: TrainConfig, src_shape, tgt_shape) -> None:
    """Raise a TicketlabError unless every parameter of the ticket (but a re-initialised output layer)
    has the same shape in the target model."""
    a, b = src_model.state_dict(), tgt_model.state_dict()
    skip = set(output_keys(a, output)) if reinit_output else set()
    for n in a:
        if n in skip:
            continue
        if n not in b or a[n].shape != b[n].shape:
            got = tuple(b[n].shape) if n in b else "absent"
            raise TicketlabError(
                f"input shape mismatch: the ticket was found on {src_cfg.dataset} (inputs {tuple(src_shape)}), the "
                f"target {tgt_cfg.dataset} has inputs {tuple(tgt_shape)}: {n} is {tuple(a[n].shape)} in the ticket "
                f"but {got} in the target model; transfer between datasets of the same input shape "
                f"(e.g. mnist <-> fashion-mnist)")


def resolve_output_policy(policy: str, src_classes: int, tgt_classes: int) -> str:
    """`auto` -> keep or reinit_sparse; `keep` across a class-count change is an error."""
    same = src_classes == tgt_classes
    if policy == "auto":
        return "keep" if same else "reinit_sparse"
    if policy == "keep" and not same:
        raise ConfigError(f"output_layer: 'keep' needs the same number of classes, but the source has "
                          f"{src_classes} and the target {tgt_classes}; use reinit_sparse or dense")
    return policy


def counts_key(masks: M.Masks) -> str:
    """12 hex digits naming a ticket's per-layer kept counts (names, shapes, counts)."""
    body = json.dumps(_counts(masks), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()[:12]


def _counts(masks: M.Masks) -> dict:
    return {n: {"shape": list(m.shape), "kept": int(m.sum())} for n, m in masks.items()}


def _seed(*parts) -> int:
    """A 32-bit seed from its parts, stable across processes (`ticketlab.core.seeds`)."""
    return derive_seed(*parts, bits=32)


# ---- the experiment --------------------------------------------------------------------------

@dataclass(frozen=True)
class TransferSpec:
    """Everything a worker needs to rebuild a transfer experiment's runs (picklable)."""

    source_path: str
    target: TrainConfig
    transfer: TransferConfig   # levels and replicates resolved
    output_policy: str
    exp_path: str
    random_path: str
    data_dir: str | None
    checkpoint_every: int
    progress: bool = False


@dataclass(frozen=True)
class TransferNode(RunKey):
    """One run of the transfer graph (the key and payload of its `ticketlab.engine.schedule.Node`):
    the transferred ticket (control None) or a random ticket at a level."""


Spec, Task = TransferSpec, TransferNode  # the old names, kept for one release


class Transfer:
    """Replicate r of a transfer: the source replicate's ticket and the target's trainer and seeds."""

    def __init__(self, spec: TransferSpec, r: int):
        from ticketlab.experiments.lottery.instability import open_replicate
        from ticketlab.domains.classify import ClassifyTrainer
        self.spec, self.r = spec, r
        src_train, _ = load_source(spec.source_path)
        self.src = open_replicate(spec.source_path, r, data=load_data(src_train, spec.data_dir))
        t = spec.target
        self.seed, self.data_seed = replicate_seeds(t, r)
        self.trainer = ClassifyTrainer(dataclasses.replace(t, init_seed=self.seed, data_seed=self.data_seed),
                                       load_data(t, spec.data_dir), progress=spec.progress,
                                       checkpoint_every=spec.checkpoint_every)
        k = self.src.cfg.rewind_iter
        if spec.transfer.start == "zero":
            self.start_iter, self.lr_offset = 0, 0
        else:
            self.start_iter, self.lr_offset = k, (0 if self.src.cfg.rewind_schedule else k)
        if self.start_iter > self.trainer.total_iterations:
            raise ConfigError(f"start: the source rewinds to iteration {k}, beyond the target's run length "
                              f"({self.trainer.total_iterations} iterations); use start=zero")

    def run_dir(self, t: TransferNode) -> Path:
        if t.control is None:
            return Path(self.spec.exp_path) / f"replicate_{self.r}" / f"level_{t.level}"
        return self.random_root(t.level) / f"replicate_{self.r}" / f"random_{t.draw}"

    # ---- the transferred ticket ----
    def source_state(self) -> dict:
        """θk of the source replicate (level 0's snapshot)."""
        path = self.src.level_dir(0) / f"snapshot_{self.src.cfg.rewind_iter}.pt"
        if not path.exists():
            raise TicketlabError(f"{path} is missing: level 0 of source replicate {self.r} has not reached its "
                                 f"rewind point; run the source lottery first")
        return load_state(path)["model"]

    def source_masks(self, L: int) -> M.Masks:
        """The source ticket's mask at level L: saved, or pruned from level L−1's trained weights."""
        have = (self.src.level_dir(L) / "mask.pt").exists() or L == 0 or (
            self.src.level_dir(L - 1) / "summary.json").exists()
        if not have:
            raise TicketlabError(f"{Path(self.spec.source_path).name}: replicate {self.r} has no level {L} "
                                 f"(level {L - 1} is not finished); run the source lottery with more levels")
        prune(self.src, L)  # the source's own IMP step: saved there, as its next level would
        return self.src.masks(L)

    def masks(self, L: int) -> M.Masks:
        """The transferred ticket's masks at level L (saved in its run folder on first use)."""
        path = self.run_dir(TransferNode(self.r, L)) / "mask.pt"
        if path.exists():
            return load_masks(path)
        src = self.source_masks(L)
        out = self.src.output
        policy = self.spec.output_policy
        m = dict(src)
        if policy != "keep":
            probe = self.trainer.build(self.seed)
            ones = {out: torch.ones_like(self.trainer.prunable(probe)[out], dtype=torch.bool)}
            if policy == "dense":
                m[out] = ones[out]
            else:  # a random mask at the ticket's output density; nested across levels (one score draw)
                density = float(src[out].sum()) / src[out].numel()
                s = scores.random_scores(ones, _seed("transfer-output", self.seed), dtype=torch.float64)
                m[out] = pruning.prune_to_density(s, ones, {out: density})[out]
        save_masks(path, m)
        return m

    def start_weights(self) -> dict:
        """θk of the source, with a fresh output layer (the target replicate's init) unless kept."""
        state = dict(self.source_state())
        if self.spec.output_policy != "keep":
            fresh = self.trainer.build(self.seed).state_dict()
            for n in output_keys(fresh, self.src.output):
                state[n] = fresh[n]
        return state

    # ---- the random ticket ----
    def random_root(self, L: int) -> Path:
        return Path(self.spec.random_path) / f"counts_{counts_key(self.masks(L))}"

    def random_masks(self, L: int, d: int) -> tuple[M.Masks, int]:
        """(masks, init seed) of a random ticket: the transferred ticket's per-layer counts at random."""
        root = self.random_root(L)
        if not (root / "counts.json").exists():
            integrity.write_json(root / "counts.json", _counts(self.masks(L)))
        key = root.name
        init_seed = _seed("random-ticket-init", key, self.seed, d)
        path = self.run_dir(TransferNode(self.r, L, "random", d)) / "mask.pt"
        if path.exists():
            return load_masks(path), init_seed
        m = pruning.random_mask_like(self.masks(L), _seed("random-ticket-mask", key, self.seed, d), "layerwise")
        save_masks(path, m)
        return m, init_seed

    # ---- plans ----
    def plan(self, t: TransferNode) -> Plan:
        """The run of a task, ready to train (or to stack with others)."""
        if t.control is None:
            masks, weights, seed = self.masks(t.level), self.start_weights(), self.seed
            desc = f"rep {self.r} transfer level {t.level} ({100 * M.density(masks):.1f}% left)"
        else:
            masks, seed = self.random_masks(t.level, t.draw)
            weights = None
            desc = f"rep {self.r} random ticket {t.draw} level {t.level}"
        model = self.trainer.build(seed)
        if weights is not None:
            model.load_state_dict(weights)
        M.apply_masks(self.trainer.prunable(model), masks)
        return Plan(self.trainer, self.run_dir(t), model, masks, start_iter=self.start_iter,
                    lr_offset=self.lr_offset, snapshot_iters=(self.start_iter,), data_seed=self.data_seed, desc=desc)


def _resume_point(run_dir: Path):
    ckpt = run_dir / "checkpoint.pt"
    return int(load_state(ckpt)["iteration"]) if ckpt.exists() else None


def run_tasks(spec: TransferSpec, tasks: list[TransferNode]) -> list[TransferNode]:
    """Train one group of tasks in this process, as one stack when they can (runs already finished
    are skipped; runs interrupted at different points train apart, so each resumes exactly)."""
    reps: dict[int, Transfer] = {}
    by_point: dict = {}
    for t in tasks:
        rep = reps.get(t.r) or reps.setdefault(t.r, Transfer(spec, t.r))
        d = rep.run_dir(t)
        if not (d / "summary.json").exists():
            by_point.setdefault(_resume_point(d), []).append(rep.plan(t))
    for plans in by_point.values():
        execute(plans, stack=len(plans))
    return tasks


def groups(tasks: list[TransferNode], stack: int) -> list[list[TransferNode]]:
    """The runs that train together: every run of a transfer experiment (transferred tickets and
    random tickets, at every level) shares the target's schedule, so they are split into balanced
    stacks of at most `stack`, by (level, control, draw, replicate). A fixed function of the tasks,
    so which runs share a stack (and so the float rounding) does not depend on timing."""
    return [[n.payload for n in g] for g in _stacks(tasks, stack, lambda t: "")]


def _stacks(tasks: list[TransferNode], stack: int,
            run_dir: Callable[[TransferNode], Path | str]) -> list[list[schedule.Node]]:
    order = sorted(tasks, key=lambda t: (t.level, t.control or "", t.draw, t.r))
    nodes = [schedule.Node(t, run_dir(t), t, stack="target", name=_name(t)) for t in order]
    return schedule.groups(nodes, stack, even=True)


def source_replicates(source_path: Path, rewind_iter: int) -> int:
    """How many replicates of the source (0, 1, ...) have their rewind point saved."""
    r = 0
    while (source_path / f"replicate_{r}" / "level_0" / f"snapshot_{rewind_iter}.pt").exists():
        r += 1
    return r


def finished_levels(source_path: Path, replicates: int) -> list[int]:
    """The levels finished in every one of the first `replicates` replicates of the source."""
    levels, L = [], 0
    while all((source_path / f"replicate_{r}" / f"level_{L}" / "summary.json").exists() for r in range(replicates)):
        levels.append(L)
        L += 1
    return levels


def prepare(cfg: TransferConfig, *, store=None, data_dir=None, checkpoint_every: int = 1000,
            progress: bool = False) -> tuple[TransferSpec, TrainConfig, LotteryConfig]:
    """Resolve and check a transfer before anything is written: the source, the target recipe, the
    output policy, input-shape compatibility, levels and replicates. Returns (spec, source training
    config, source lottery config); the experiment folders are created here, once all checks pass."""
    from ticketlab.models import create_model, output_layer_name
    if not cfg.source:
        raise ConfigError("source: give the source lottery experiment (folder name, path or hash prefix)")
    src = Store(store).get(cfg.source)
    src_train, src_lot = load_source(src.path)
    target = resolve_target(src_train, cfg.target)
    src_data, tgt_data = load_data(src_train, data_dir), load_data(target, data_dir)
    policy = resolve_output_policy(cfg.output_layer, src_data.num_classes, tgt_data.num_classes)
    with torch.device("meta"):  # shapes only: no allocation, no init
        a = create_model(src_train.model, input_shape=src_data.input_shape, num_classes=src_data.num_classes,
                         init=src_train.init, **src_train.model_args)
        b = create_model(target.model, input_shape=tgt_data.input_shape, num_classes=tgt_data.num_classes,
                         init=target.init, **target.model_args)
    check_compatible(a, b, output_layer_name(a), reinit_output=policy != "keep", src_cfg=src_train,
                     tgt_cfg=target, src_shape=src_data.input_shape, tgt_shape=tgt_data.input_shape)

    n_src = source_replicates(src.path, src_lot.rewind_iter)
    if n_src == 0:
        raise TicketlabError(f"{src.name}: no replicate has trained level 0; run the source lottery first")
    reps = cfg.replicates or n_src
    if reps > n_src:
        raise TicketlabError(f"replicates: got {reps}, but {src.name} has {n_src}; run the source lottery with "
                             f"--replicates {reps}")
    levels = tuple(sorted(set(cfg.levels))) or tuple(finished_levels(src.path, reps))
    for L in levels:  # every mask must come from the source without training it
        for r in range(reps):
            rep_dir = src.path / f"replicate_{r}"
            if not ((rep_dir / f"level_{L}" / "mask.pt").exists() or L == 0
                    or (rep_dir / f"level_{L - 1}" / "summary.json").exists()):
                raise TicketlabError(f"{src.name}: replicate {r} cannot give level {L} (level {L - 1} is not "
                                     f"finished); run the source lottery with --levels {L} --replicates {reps}")
    resolved = dataclasses.replace(cfg, source=src.name, target=target_overrides(src_train, target),
                                   levels=levels, replicates=reps)
    st = Store(store)
    exp = st.experiment("transfer", TransferRun(src.name, target, resolved))
    k = src_lot.rewind_iter if cfg.start == "rewind" else 0
    rnd = st.experiment("random_ticket", RandomTicketRun(target, k, k if cfg.start == "rewind"
                                                         and not src_lot.rewind_schedule else 0))
    spec = TransferSpec(str(src.path.absolute()), target, resolved, policy, str(exp.path), str(rnd.path),
                None if data_dir is None else str(data_dir), checkpoint_every, progress)
    return spec, src_train, src_lot


def graph(spec: TransferSpec) -> list[TransferNode]:
    """Every run of the transfer experiment: transferred tickets, then random tickets (levels >= 1)."""
    cfg = spec.transfer
    tasks = [TransferNode(r, L) for L in cfg.levels for r in range(cfg.replicates)]
    if "random" in cfg.controls:
        tasks += [TransferNode(r, L, "random", d) for L in cfg.levels if L > 0
                  for r in range(cfg.replicates) for d in range(cfg.control_draws)]
    return tasks


def own_lottery(spec: TransferSpec, src_lot: LotteryConfig) -> LotteryConfig | None:
    """The lottery config of the target's own ticket (same pruning recipe, levels up to the deepest
    transferred one), or None when neither `own` nor `dense` is asked for."""
    cfg = spec.transfer
    if not {"own", "dense"} & set(cfg.controls):
        return None
    levels = max(cfg.levels, default=0) if "own" in cfg.controls else 0
    return dataclasses.replace(src_lot, levels=levels, target_sparsity=None, replicates=cfg.replicates,
                               controls=(), control_draws=1, control_levels=())


def run(cfg: TransferConfig, *, store=None, data_dir=None, progress: bool = True,
        checkpoint_every: int = 1000, workers: int = 1, stack: int = 8) -> dict:
    """Run (or extend, or resume) a transfer experiment with its controls (`ticketlab transfer`).

    Returns {"experiment", "source", "own", "random", "rows", "aggregate"}: rows in the format of
    `ticketlab.engine.results` with branches transfer, random, own and dense."""
    from ticketlab.experiments.lottery.runner import run_lottery
    spec, _, src_lot = prepare(cfg, store=store, data_dir=data_dir, checkpoint_every=checkpoint_every,
                               progress=progress and workers <= 1)
    exp, rnd = Experiment(Path(spec.exp_path)), Experiment(Path(spec.random_path))
    own_cfg = own_lottery(spec, src_lot)
    own = None
    if own_cfg is not None:
        log.info("the target's own ticket: lottery on %s with %s", spec.target.dataset, spec.target.optimizer)
        own = run_lottery(spec.target, own_cfg, store=store, data_dir=data_dir, progress=progress,
                          checkpoint_every=checkpoint_every, workers=workers, stack=stack)["experiment"]
    links = {"source": Path(spec.source_path).name, "source_path": spec.source_path,
             "own": Path(own).name if own else None, "own_path": str(Path(own).absolute()) if own else None,
             "random": rnd.name, "random_path": str(rnd.path.absolute()), "output_layer": spec.output_policy,
             "levels": list(spec.transfer.levels), "replicates": spec.transfer.replicates,
             "controls": list(spec.transfer.controls)}
    with exp.lock():
        integrity.write_json(exp.path / "transfer.json", links)
        with rnd.lock(wait=True):
            _run_graph(spec, workers=workers, stack=stack, progress=progress)
            for e in (exp, rnd):  # transfer runs are not replayed: a recompute after a repair is marked
                replay.mark_recomputed(e.path)
    rows = transfer_rows(exp.path)
    return {"experiment": str(exp.path), "source": links["source"], "own": links["own"], "random": rnd.name,
            "rows": rows, "aggregate": results.aggregate(rows)}


def _run_graph(spec: TransferSpec, *, workers: int, stack: int, progress: bool) -> None:
    reps: dict[int, Transfer] = {}

    def run_dir(t: TransferNode) -> Path:
        return (reps.get(t.r) or reps.setdefault(t.r, Transfer(spec, t.r))).run_dir(t)

    schedule.run(_stacks(graph(spec), stack, run_dir), functools.partial(run_tasks, spec), workers=workers,
                 progress=progress)


def _name(t: TransferNode) -> str:
    return f"r{t.r}/{'random_' + str(t.draw) + '/' if t.control else ''}L{t.level}"


# ---- results --------------------------------------------------------------------------------

def links(exp_path: str | Path) -> dict:
    """A transfer experiment's transfer.json: the linked source, own lottery and random tickets."""
    path = Path(exp_path) / "transfer.json"
    if not path.exists():
        raise TicketlabError(f"{exp_path} is not a transfer experiment that has run (no transfer.json)")
    return read_json(path)


def _summary_row(run_dir: Path, **fields) -> dict:
    """A random ticket's row, with the fields `results.run_rows` gives a lottery's runs: without
    `diverged` and `converged`, `results.aggregate` would average a diverged random ticket and never
    mark an unconverged one (issue #18)."""
    s = RunDir(run_dir).summary()
    return {**fields, "density": M.density(load_masks(run_dir / "mask.pt")), **results.summary_metrics(s),
            **results.outcome(run_dir, s), "path": str(run_dir)}


def transfer_rows(exp_path: str | Path) -> list[dict]:
    """One row per finished run, in `ticketlab.engine.results`' format (so `results.aggregate` applies):
    branch `transfer` (the transferred tickets), `random` (random tickets at the same per-layer
    counts), `own` (the target's own tickets, levels >= 1) and `dense` (its level 0)."""
    exp_path = Path(exp_path)
    info = links(exp_path)
    levels, reps = set(info["levels"]), info["replicates"]
    rows = []
    for row in results.run_rows(exp_path):
        if row["level"] in levels and row["replicate"] < reps:
            rows.append({**row, "branch": "transfer"})
    rnd = Path(info["random_path"])
    for r in range(reps):
        for L in sorted(levels):
            mask = exp_path / f"replicate_{r}" / f"level_{L}" / "mask.pt"
            if L == 0 or not mask.exists():
                continue
            base = rnd / f"counts_{counts_key(load_masks(mask))}" / f"replicate_{r}"
            for d_dir in sorted(base.glob("random_*")):
                if (d_dir / "summary.json").exists():
                    rows.append(_summary_row(d_dir, replicate=r, branch="random",
                                             draw=int(d_dir.name.split("_")[1]), level=L))
    if info.get("own_path") and Path(info["own_path"]).exists():
        top = max(levels, default=0)
        for row in results.run_rows(info["own_path"]):
            if row["branch"] == "ticket" and row["replicate"] < reps and row["level"] <= top:
                branch = "dense" if row["level"] == 0 else "own"
                if branch in info["controls"]:
                    rows.append({**row, "branch": branch})
    order = {b: i for i, b in enumerate(("transfer", "random", "own", "dense"))}
    return sorted(rows, key=lambda x: (order.get(x["branch"], 9), x["level"], x["replicate"], x["draw"]))


def describe(train: dict | TrainConfig) -> str:
    """A short name of a training recipe: dataset (and fraction), optimizer and learning rate."""
    t = C.to_dict(train) if dataclasses.is_dataclass(train) else train
    frac = t.get("train_fraction", 1.0)
    data = t["dataset"] + (f" {100 * frac:.3g}%" if frac < 1 else "")
    return f"{data}, {t['optimizer']} {t['lr']:g}"


def experiment_info(exp_path: str | Path) -> dict:
    """Source and target of a transfer experiment: names, recipes and short labels."""
    exp_path = Path(exp_path)
    body = read_json(exp_path / "config.json")
    if body.get("kind") != "transfer":
        raise TicketlabError(f"{exp_path} is a {body.get('kind')!r} experiment, not a transfer one")
    info = links(exp_path)
    src_train = read_json(Path(info["source_path"]) / "config.json")["config"]["train"]
    target = body["config"]["target"]
    return {"experiment": exp_path.name, "source": info["source"], "own": info.get("own"),
            "source_train": src_train, "target_train": target, "source_label": describe(src_train),
            "target_label": describe(target), "target_key": C.config_hash("train", C.from_dict(TrainConfig, target))}


__all__ = ["TransferConfig", "TransferRun", "RandomTicketRun", "CONTROLS", "OUTPUT_POLICIES", "load_source",
           "resolve_target", "target_overrides", "check_compatible", "resolve_output_policy", "counts_key",
           "Transfer", "TransferNode", "TransferSpec", "prepare", "graph", "groups", "run_tasks", "own_lottery",
           "run", "links", "transfer_rows", "describe", "experiment_info"]
