"""The sparse-training experiment: train a network sparse from scratch (or prune it gradually).

One experiment = a training recipe (`TrainConfig`) + a `SparseConfig`: the method (dense, static, SET,
SNFS, RigL, GMP, or a pruning-at-init baseline SNIP / GraSP / SynFlow trained with its fixed mask), the
target sparsity and how it is spread over the layers (uniform / ER / ERK, first/last-layer policy),
and the drop-and-grow schedule, and what becomes of the optimizer state of inactive weights (`grow_state`:
"zero", the official RigL, or "keep", the state tracks the dense gradient; `ticketlab.methods.sparse.updater`).
`run` trains R replicates (replicate r: init and data seeds + r as in
`ticketlab.experiments.lottery.trunk.replicate_seeds`, mask seed + r) on the shared loop (`ticketlab.training.loop.fit`), or
stacked `stack` at a time where the model stacks on the run's device (`fit_many` with the ensemble
`ticketlab.training.stacked_conv.family` gives: Linear chains anywhere, conv nets through vmap on an
accelerator; issue 16); each model's masks and draws are those it would get alone. `run_points`
runs several experiments on one training recipe (the points of a sparse sweep) with their runs in
shared stacks, grouped by `stack_key` (one method and schedule per stack; sparsities, distributions,
layer policies and seeds may differ by run).

Store layout (``<store>/sparse-<hash>/``; the hash covers both configs, not the run shape):

    replicate_<r>/metrics.jsonl, summary.json, final.pt   the run (`fit`); final.pt holds the sparse
                                                          state under "hooks" (masks, step, history):
                                                          this replicate's own, also when stacked (stores
                                                          before session 9 hold the group's there)
    replicate_<r>/checkpoint.pt                           while running: resume point, with the masks,
                                                          the step counter and the schedule position
    replicate_<r>/churn.jsonl                             one row per mask update (below)
    replicate_<r>/masks.pt                                the final boolean masks, every prunable layer
    replicate_<r>/sparsity.json                           per-layer targets, counts, achieved sparsity
    replicate_<r>/group.json                              the replicates trained together with r
                                                          ("members"), and where the stack spanned
                                                          points, all its runs in order ("stack":
                                                          [[experiment folder, replicate], ...])

Mask churn: the fraction of connections changed by an update,
churn = (dropped + grown) / (nnz before + nnz after) over all masked layers, counting only real
changes (a connection dropped and regrown at once is no change). For drop-and-grow methods it is
the fraction of active connections replaced; for GMP, dropped / (2·nnz − dropped).

Schedule in steps: RigL/SET/SNFS update every `update_interval` steps from step 0 (an update step, as
in the official code) to ⌊end_fraction · T⌋; GMP prunes from ⌊gmp_begin · T⌋ to ⌊gmp_end · T⌋ every
`gmp_frequency` steps; T = the run length in iterations.

One vocabulary: a method's hyper-parameters are the fields of its class in
`ticketlab.methods.sparse.METHODS` (help, range, fractions of training resolved by `Method.resolve`).
`SparseConfig` stays the experiment's stored and hashed identity (its names, defaults and units are
those of existing stores); each of its method fields is declared with `method_field`, which takes
the help and range of the method's own field and records which field of which classes it sets, so
`method_config` builds the method from it and `ticketlab sparse-train --method NAME` shows that
method's flags.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from ticketlab.core import config as C, distributions, integrity
from ticketlab.core.config import Config, param
from ticketlab.core.errors import ConfigError
from ticketlab.methods.saliency import SNIP, GraSP, PruneAtInit, SynFlow
from ticketlab.methods.sparse import GMP, METHODS, SET, SNFS, Dense, Static
from ticketlab.methods.sparse.updater import GROW_STATES
from ticketlab.engine import results, schedule
from ticketlab.training import device as _device
from ticketlab.training.loop import RunOptions, TrainConfig, early_stopping, load_state, total_iterations
from ticketlab.training import timing
from ticketlab.training.rundir import RunDir, read_json, summary_converged

PRUNE_AT_INIT = tuple(n for n, c in METHODS.items() if issubclass(c, PruneAtInit))
DISTRIBUTIONS = ("uniform", "er", "erk")


def method_field(owners: type | tuple[type, ...], name: str, default, *, help: str | None = None):
    """A `SparseConfig` field that sets field `name` of the method classes `owners` (and their subclasses).

    Its help, choices and range are that field's; its default is this config's own (part of the
    stored identity). The help names the registered methods it applies to.
    """
    owners = owners if isinstance(owners, tuple) else (owners,)
    meta = owners[0].__dataclass_fields__[name].metadata
    users = ", ".join(n for n, c in METHODS.items() if issubclass(c, owners))
    return param(default, f"{help or meta['help']} ({users})", choices=meta["choices"], min=meta["min"],
                 max=meta["max"], sets=(owners, name))


@dataclass(frozen=True)
class SparseConfig(Config):
    """What sparse training to run. The training recipe is a separate `TrainConfig`."""

    method: str = param("rigl", "sparse-training method (`ticketlab sparse-train --method NAME --help` shows "
                                "its flags)", choices=METHODS)
    sparsity: float = param(0.9, "target fraction of zero weights over the masked layers", min=0.0, max=0.9999)
    distribution: str = param("erk", "how the sparsity is spread over layers", choices=DISTRIBUTIONS)
    dense_first: bool = param(False, "keep the first prunable layer dense (outside the sparsity budget)")
    dense_last: bool = param(False, "keep the output layer dense (outside the sparsity budget)")
    erk_power_scale: float = param(1.0, "ERK: exponent of the raw density score (0: uniform)", min=0.0)
    # ---- the method's own fields (`method_field`: help and range from the method class) ----
    update_interval: int = method_field(SET, "update_interval", 100)
    drop_fraction: float = method_field(SET, "drop_fraction", 0.3)
    drop_fraction_decay: str = method_field(SET, "drop_fraction_decay", "cosine")
    end_fraction: float = method_field(SET, "end_fraction", 0.75)
    skip_step: bool | None = method_field(SET, "skip_step", None, help="skip the optimizer step on update steps "
                                          "(default: the official choice, yes for RigL, no for SET/SNFS)")
    snfs_momentum: float = method_field(SNFS, "momentum", 0.9)
    gmp_begin: float = method_field(GMP, "begin_fraction", 0.1)
    gmp_end: float = method_field(GMP, "end_fraction", 0.75)
    gmp_frequency: int = method_field(GMP, "frequency", 100)
    saliency_scope: str = method_field(PruneAtInit, "scope", "global")
    saliency_batch: int = method_field((SNIP, GraSP), "batch", 100)
    synflow_iterations: int = method_field(SynFlow, "iterations", 100)
    grasp_temperature: float = method_field(GraSP, "temperature", 200.0)
    seed: int = param(0, "seed of the random masks and random growth (replicate r: seed + r)", min=0)
    grow_state: str = param("zero", "optimizer state of inactive weights: zero (masked gradients; dropped and "
                            "grown weights' state zeroed, the official RigL) or keep (the state tracks the dense "
                            "gradient and survives drop and grow; the weights stay zero; "
                            "ticketlab.methods.sparse.updater)", choices=GROW_STATES, hashed="unless_default")

    def check(self):
        if self.gmp_begin > self.gmp_end:
            raise ConfigError(f"gmp_begin: got {self.gmp_begin}, expected <= gmp_end ({self.gmp_end})")


@dataclass(frozen=True)
class SparseRun:
    """A sparse-training experiment's identity: the training recipe and the sparse config."""

    train: TrainConfig
    sparse: SparseConfig


# --- building blocks ---------------------------------------------------------------------------------

def method_fields(method: str) -> list[str]:
    """The `SparseConfig` fields that set a field of the method called `method`."""
    cls = METHODS[method]
    return [f.name for f in dataclasses.fields(SparseConfig) if "sets" in f.metadata
            and issubclass(cls, f.metadata["sets"][0])]


def method_config(cfg: SparseConfig):
    """The `METHODS` class of `cfg.method` built from the fields of `cfg` that set it (a field left
    at None keeps the class's default); fractions of training are not resolved yet."""
    kw = {}
    for name in method_fields(cfg.method):
        value = getattr(cfg, name)
        if value is not None:
            kw[SparseConfig.__dataclass_fields__[name].metadata["sets"][1]] = value
    return METHODS[cfg.method](**kw)


def make_method(cfg: SparseConfig, total: int):
    """The `ticketlab.methods.sparse` method of `cfg` for a run of `total` steps (None for dense)."""
    m = method_config(cfg)
    if isinstance(m, Dense):
        return None
    if isinstance(m, PruneAtInit):  # the one-shot mask trains fixed
        return Static()
    return m.resolve(total)


def dense_policy(cfg: SparseConfig, model: torch.nn.Module) -> list[str]:
    """The layers the first/last-layer policy keeps dense."""
    from ticketlab.models import output_layer_name, prunable_parameters
    names = list(prunable_parameters(model))
    return distributions.dense_layers(names, dense_first=cfg.dense_first, dense_last=cfg.dense_last,
                                      last=output_layer_name(model) if cfg.dense_last else None)


def layer_sparsities(cfg: SparseConfig, model: torch.nn.Module) -> dict[str, float]:
    """Target sparsity of every prunable layer of `model` under `cfg`'s distribution and policy."""
    from ticketlab.models import prunable_parameters
    shapes = {n: tuple(p.shape) for n, p in prunable_parameters(model).items()}
    kw = {"power_scale": cfg.erk_power_scale} if cfg.distribution == "erk" else {}
    return distributions.sparsities(cfg.distribution, shapes, cfg.sparsity, dense=dense_policy(cfg, model), **kw)


def saliency_batch(data, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` training examples drawn from (seed): the batch SNIP and GraSP score on."""
    from ticketlab.core.scores import name_seed
    g = torch.Generator().manual_seed(name_seed(seed, "saliency-batch"))
    idx = torch.randperm(len(data.train.x), generator=g)[:min(n, len(data.train.x))]
    return data.train.x[idx], data.train.y[idx]


def init_masks(cfg: SparseConfig, model: torch.nn.Module, data, data_seed: int) -> dict[str, torch.Tensor] | None:
    """One-shot pruning-at-init masks of `model` for SNIP / GraSP / SynFlow (None for other methods)."""
    m = method_config(cfg)
    if not isinstance(m, PruneAtInit):
        return None
    x, y = (None, None) if m.data_free else saliency_batch(data, m.batch, data_seed)
    # scored on this process's device (issue 16), where the run will train; the masks come back
    # on the model's own device, as the rest of its state
    dev, home = _device.resolve(None), next(model.parameters()).device
    model.to(dev)
    try:
        masks = m.masks(model, cfg.sparsity, x=x, y=y, input_shape=data.input_shape, distribution=cfg.distribution,
                        dense=dense_policy(cfg, model))
    finally:
        model.to(home)
    return {n: mk.to(home) for n, mk in masks.items()}


# --- the experiment ------------------------------------------------------------------------------------

def _rep_dir(exp_path: Path, r: int) -> Path:
    return Path(exp_path) / f"replicate_{r}"


@dataclass(frozen=True)
class _Point:
    """One sparse-training experiment of `run_points`: its index, config and folder."""

    index: int
    cfg: SparseConfig
    path: Path


def stack_key(cfg: SparseConfig, total: int) -> str:
    """What the runs of one stack share, whatever their points: the method with its schedule resolved
    for `total` steps (one `Updater` drives the stack), the optimizer state rule, and whether the masks
    come from pruning at init. Sparsity, distribution, layer policy and seed may differ by run."""
    m = method_config(cfg)
    return repr((make_method(cfg, total), cfg.grow_state, isinstance(m, PruneAtInit)))


def _groups(points: Sequence[_Point], replicates: int, stack: int, total: int) -> list[list[schedule.Node]]:
    """The runs (point, replicate) to train together: interrupted groups as they were (group.json),
    so that each resumes in the stack it started in, then the pending ones in stacks of `stack`, runs
    sharing a `stack_key` (points in the order given, replicates in order: for one point, its
    replicates in stacks of `stack`, as before points could share)."""
    def node(i: int, r: int) -> schedule.Node:
        cfg = points[i].cfg
        return schedule.Node((i, r), _rep_dir(points[i].path, r), (i, r), stack=stack_key(cfg, total),
                             name=f"{cfg.method} {cfg.sparsity:g}/r{r}")

    pending = [(i, r) for i in range(len(points)) for r in range(replicates)
               if not (_rep_dir(points[i].path, r) / "summary.json").exists()]
    waiting = set(pending)
    folder = {p.path.name: p.index for p in points}
    groups, seen = [], set()
    for i, r in pending:
        d = _rep_dir(points[i].path, r)
        if (i, r) in seen or not (d / "checkpoint.pt").exists() or not (d / "group.json").exists():
            continue
        g = read_json(d / "group.json")
        # "stack": the whole group, in order, where it spanned points; else "members", this point's replicates
        members = ([(folder[f], m) for f, m in g["stack"] if f in folder] if "stack" in g
                   else [(i, m) for m in g["members"]])
        members = [k for k in members if k in waiting and k not in seen]
        groups.append([node(*k) for k in members])
        seen.update(members)
    return groups + schedule.groups([node(*k) for k in pending if k not in seen], stack)


def run(train_cfg: TrainConfig, sparse_cfg: SparseConfig, *, store=None, data_dir=None, progress: bool = True,
        replicates: int = 1, stack: int = 1, checkpoint_every: int = 1000, hooks: Sequence[object] = (),
        data=None) -> dict:
    """Run (or resume, or extend to more replicates) a sparse-training experiment (`ticketlab sparse-train`).

    - `replicates`: replicate r uses init_seed + r, data_seed + r and mask seed + r.
    - `stack`: train up to `stack` replicates as one batched computation where the model stacks on this
      process's device (`ticketlab.training.stacked_conv.family`: MLPs and LeNet-300-100 anywhere,
      Conv-2/4/6 on an accelerator); other models train one at a time.
    - `hooks`: extra `fit` hooks (e.g. to stop a run); `data`: a loaded dataset (default: load it).
    Returns {"experiment": folder, "rows": one per replicate, "aggregate": mean ± std over replicates}.
    """
    return run_points(train_cfg, [sparse_cfg], store=store, data_dir=data_dir, progress=progress,
                      replicates=replicates, stack=stack, checkpoint_every=checkpoint_every, hooks=hooks,
                      data=data)[0]


def run_points(train_cfg: TrainConfig, sparse_cfgs: Sequence[SparseConfig], *, store=None, data_dir=None,
               progress: bool = True, replicates: int = 1, stack: int = 1, checkpoint_every: int = 1000,
               hooks: Sequence[object] = (), data=None) -> list[dict]:
    """Several sparse-training experiments on one training recipe (the points of a sparse sweep:
    sparsities, distributions, layer policies, seeds, methods), each as `run` would run it, with the
    runs of different points sharing stacks (issue 16): runs whose `stack_key` is equal (the same
    method and schedule) train as one batched computation, up to `stack` at a time, each model at its
    own sparsity (`ticketlab.methods.sparse.Updater` with one sparsity dict per model), exactly as it
    would train alone up to float rounding. Returns one `run` result per point, in order.
    """
    from ticketlab.data import load_dataset
    from ticketlab.training.stacked_conv import family
    from ticketlab.models import create_model
    from ticketlab.engine.store import Store

    for name, v in (("replicates", replicates), ("stack", stack)):
        if v < 1:
            raise ConfigError(f"{name}: got {v}, expected an integer >= 1")
    if not sparse_cfgs:
        raise ConfigError("run_points: no sparse configs given")
    if data is None:
        data = load_dataset(train_cfg.dataset, data_dir, val_size=train_cfg.val_size,
                            split_seed=train_cfg.split_seed, train_fraction=train_cfg.train_fraction)

    def build(seed: int) -> torch.nn.Module:
        return create_model(train_cfg.model, input_shape=data.input_shape, num_classes=data.num_classes,
                            seed=seed, init=train_cfg.init, **train_cfg.model_args)

    probe = build(train_cfg.init_seed)  # a bad model name or option fails before the store is touched
    for cfg in sparse_cfgs:
        layer_sparsities(cfg, probe)
    exps = [Store(store).experiment("sparse", SparseRun(train_cfg, cfg)) for cfg in sparse_cfgs]
    if len({e.path for e in exps}) != len(exps):
        raise ConfigError("run_points: two sparse configs are the same experiment")
    points = [_Point(i, cfg, e.path) for i, (cfg, e) in enumerate(zip(sparse_cfgs, exps))]
    total = total_iterations(train_cfg, len(data.train))
    with contextlib.ExitStack() as held:
        for e in sorted(exps, key=lambda e: str(e.path)):  # one order in every process: no deadlock
            held.enter_context(e.lock())
        can_stack = stack > 1 and family(probe, _device.resolve()) is not None
        groups = _groups(points, replicates, stack if can_stack else 1, total)
        schedule.run(groups, lambda group: _train_group(  # in this process: `data`, `build` and `hooks` stay here
            points, group, train_cfg, data, build, total, progress=progress,
            checkpoint_every=checkpoint_every, hooks=hooks))
        for p in points:
            for r in range(replicates):
                if not (_rep_dir(p.path, r) / "sparsity.json").exists():
                    _write_outputs(p.path, r, train_cfg, p.cfg, build)
    out = []
    for p in points:
        rows = [replicate_row(p.path, r) for r in range(replicates)]
        out.append({"experiment": str(p.path), "rows": rows, "aggregate": aggregate_replicates(rows)})
    return out


def _train_group(points: Sequence[_Point], group: list[tuple[int, int]], train_cfg: TrainConfig, data, build,
                 total: int, *, progress: bool, checkpoint_every: int, hooks: Sequence[object]) -> None:
    from ticketlab.training.stacked_conv import family
    from ticketlab.experiments.lottery.trunk import replicate_seeds
    from ticketlab.models import prunable_parameters
    from ticketlab.methods.sparse import Updater
    from ticketlab.training.loop import Run, fit, fit_many

    spans = len({i for i, _ in group}) > 1
    for i, r in group:
        d = _rep_dir(points[i].path, r)
        d.mkdir(parents=True, exist_ok=True)
        integrity.write_json(d / "group.json", {"members": [m for j, m in group if j == i],
                                                **({"stack": [[points[j].path.name, m] for j, m in group]}
                                                   if spans else {})})
    cfgs = [points[i].cfg for i, _ in group]
    reps = [r for _, r in group]
    seeds = [replicate_seeds(train_cfg, r) for r in reps]
    models = [build(init_seed) for init_seed, _ in seeds]
    masks0 = [init_masks(c, m, data, ds) for c, m, (_, ds) in zip(cfgs, models, seeds)]
    method = make_method(cfgs[0], total)  # one for the group: its runs share `stack_key`
    select_from = 0 if method is None else method.final_from()  # GMP: judged only once fully sparse
    runs = (" ".join(f"{c.sparsity:g}/r{r}" for c, r in zip(cfgs, reps)) if spans
            else f"{cfgs[0].sparsity:g} rep {','.join(map(str, reps))}")
    options = RunOptions(progress=progress, checkpoint_every=checkpoint_every, desc=f"{cfgs[0].method} {runs}")
    mask_seeds = [c.seed + r for c, r in zip(cfgs, reps)]
    targets = [layer_sparsities(c, models[0]) for c in cfgs]
    if len(group) == 1:
        r, (init_seed, data_seed) = reps[0], seeds[0]
        updater = None if method is None else Updater(method, None if masks0[0] is not None else targets[0],
                                                      masks=masks0[0], seed=mask_seeds[0],
                                                      grow_state=cfgs[0].grow_state)
        cfg_r = dataclasses.replace(train_cfg, init_seed=init_seed, data_seed=data_seed)
        fit(models[0], data, cfg_r, _rep_dir(points[group[0][0]].path, r), prunable=prunable_parameters(models[0]),
            hooks=([updater] if updater else []) + list(hooks), options=options, select_from=select_from)
        return
    ens = family(models[0], _device.resolve())(models)
    updater = None
    if method is not None:
        stacked = None
        if masks0[0] is not None:  # pruning at init: every run of the group has its masks (`stack_key`)
            stacked = {n: torch.stack([m[n] for m in masks0]) for n in masks0[0]}
        updater = Updater(method, None if stacked is not None else targets, masks=stacked, seed=mask_seeds,
                          grow_state=cfgs[0].grow_state)
    runs = [Run(_rep_dir(points[i].path, r), model=m, data_seed=ds) for (i, r), m, (_, ds) in zip(group, models, seeds)]
    fit_many(runs, data, train_cfg, ens, hooks=([updater] if updater else []) + list(hooks), options=options,
             select_from=select_from)


def churn_rows(state: dict, row: int = 0) -> list[dict]:
    """Per-update churn of model `row` of a saved `Updater` state (see the module docstring)."""
    out = []
    for h in state.get("history", []):
        dropped = sum(v[row] for v in h["dropped"].values())
        grown = sum(v[row] for v in h["grown"].values())
        after = sum(h["nnz"].values())
        before = after + dropped - grown
        layers = {}
        for n in h["nnz"]:
            a = h["nnz"][n]
            b = a + h["dropped"][n][row] - h["grown"][n][row]
            layers[n] = (h["dropped"][n][row] + h["grown"][n][row]) / (a + b) if a + b else 0.0
        churn = (dropped + grown) / (before + after) if before + after else 0.0
        out.append({"step": h["step"], "drop_fraction": h["drop_fraction"], "churn": churn, "dropped": dropped,
                    "grown": grown, "nnz": after, "layers": layers})
    return out


def _write_outputs(exp_path: Path, r: int, train_cfg: TrainConfig, cfg: SparseConfig, build) -> None:
    """churn.jsonl, masks.pt and sparsity.json of a finished replicate, from its final.pt."""
    from ticketlab.experiments.lottery.trunk import replicate_seeds, save_masks
    from ticketlab.models import prunable_parameters
    d = _rep_dir(exp_path, r)
    final = load_state(d / "final.pt")
    hook_states = final.get("hooks") or []
    state = hook_states[0] if hook_states and isinstance(hook_states[0], dict) and "masks" in hook_states[0] else None
    probe = build(replicate_seeds(train_cfg, r)[0])
    shapes = {n: tuple(p.shape) for n, p in prunable_parameters(probe).items()}
    masks = {n: torch.ones(s, dtype=torch.bool) for n, s in shapes.items()}
    churn = []
    if state is not None:
        seeds = list(state["seeds"])  # one seed; the group's in stores written before the split
        row = seeds.index(cfg.seed + r)
        stacked = len(seeds) > 1
        for n, m in state["masks"].items():
            masks[n] = (m[row] if stacked else m).clone()
        churn = churn_rows(state, row)
    save_masks(d / "masks.pt", masks)
    integrity.write_text(d / "churn.jsonl", "".join(json.dumps(c) + "\n" for c in churn))
    if cfg.method == "dense":
        targets = {n: 0.0 for n in shapes}
    elif issubclass(METHODS[cfg.method], PruneAtInit) and cfg.saliency_scope == "global":  # per-layer counts follow the scores
        targets = {n: (0.0 if n in dense_policy(cfg, probe) else None) for n in shapes}
    else:
        targets = layer_sparsities(cfg, probe)
    kept = {n: int(m.sum()) for n, m in masks.items()}
    numel = {n: math.prod(s) for n, s in shapes.items()}
    integrity.write_json(d / "sparsity.json", {
        "target": cfg.sparsity if cfg.method != "dense" else 0.0,
        "achieved": 1.0 - sum(kept.values()) / sum(numel.values()),
        "layers": {n: {"target": targets.get(n, 0.0), "numel": numel[n], "nnz": kept[n],
                       "sparsity": 1.0 - kept[n] / numel[n]} for n in shapes},
    })


def early_stop_sparse(run_dir: Path, s: dict, config: dict) -> dict:
    """The summary `s` of a replicate, with its early stopping judged only from the iteration at which
    the network has its final sparsity (`Method.final_from`; issue #18). Summaries written since
    record `select_from` and are returned as they are; a GMP summary from before had its early
    stopping chosen over the whole run, possibly on a denser network, and is re-judged from its
    metrics rows (`converged` with it)."""
    if "select_from" in s or s.get("diverged"):
        return s
    cfg = C.from_dict(SparseConfig, config["sparse"])
    method = make_method(cfg, s["iterations"])
    start = s.get("start_iter", 0)
    if method is None or method.final_from() <= start:
        return s
    rows = RunDir(run_dir).read_metrics()
    s = {**s, "early_stop": early_stopping(rows, method.final_from()), "select_from": method.final_from()}
    s.pop("converged", None)
    return {**s, "converged": summary_converged(s, rows)}


def replicate_row(exp_path: Path, r: int) -> dict:
    """One result row of a finished replicate."""
    d = _rep_dir(exp_path, r)
    config = read_json(Path(exp_path) / "config.json")["config"]
    s = early_stop_sparse(d, read_json(d / "summary.json"), config)
    sp = read_json(d / "sparsity.json")
    cfg = config["sparse"]
    churn = [json.loads(line) for line in (d / "churn.jsonl").read_text().splitlines() if line.strip()]
    return {"replicate": r, "method": cfg["method"], "distribution": cfg["distribution"], "sparsity": sp["target"],
            "achieved_sparsity": sp["achieved"], "es_iter": s["early_stop"]["iter"],
            "es_test_acc": s["early_stop"]["test_acc"], "final_test_acc": s["final"]["test_acc"],
            "best_test_acc": s["best_test_acc"], **timing.read(s), **results.outcome(d, s), "updates": len(churn),
            "mean_churn": statistics.fmean(c["churn"] for c in churn) if churn else None, "path": str(d)}


# Not best_test_acc: it is the best evaluation on the test set, selected on the test set and so not a
# valid estimate (issue #18); it stays in each row, under its own name, for readers of old results.
AGG_METRICS = ("achieved_sparsity", "es_test_acc", "final_test_acc", "stack_wall_time_s")


def aggregate_replicates(rows: list[dict]) -> dict:
    """Mean and sample std of each metric over the replicates."""
    out = {"n": len(rows), "n_unconverged": sum(1 for row in rows if row.get("converged") is False)}
    for k in AGG_METRICS:
        vals = [row[k] for row in rows]
        out[k] = statistics.fmean(vals) if vals else None
        out[k + "_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return out


aggregate = aggregate_replicates  # the old name, kept for one release (`engine.results.aggregate` is per branch, level)


__all__ = ["SparseConfig", "SparseRun", "METHODS", "PRUNE_AT_INIT", "run", "make_method", "method_config",
           "method_fields", "method_field", "layer_sparsities",
           "dense_policy", "init_masks", "churn_rows", "replicate_row", "aggregate_replicates"]
