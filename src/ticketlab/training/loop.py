"""One training loop for supervised classification, with checkpoints, resume and hooks.

The protocol follows LTH (Frankle & Carbin 2019, App. C and G.1): train for a fixed
number of iterations, evaluate validation and test every `eval_every` iterations, and
find the early-stopping iteration *after* training as the iteration of minimum
validation loss; report test accuracy there.

What makes a run reproducible and resumable, bit for bit:
- the model is initialised from `init_seed`, the data order comes from `data_seed`:
  the permutation of epoch e is drawn from a generator seeded by (data_seed, e), so the
  batch of any iteration is a pure function of the iteration;
- the learning rate is a pure function of the iteration (`schedules.lr_factor`);
- a checkpoint holds the weights, masks, optimizer state, iteration and RNG states
  (for dropout), written atomically and loaded with `torch.load(weights_only=True)`: the run
  folder's files are written and read by `ticketlab.training.rundir`, shared by every domain's loop.

The run trains on one device (`ticketlab.training.device`): the model, masks, optimizer state and
the data (moved once, whole) live there; the data order is drawn on the CPU, so every device sees
the same batches and CPU results do not change; state files hold CPU tensors. The summary records
the device as `trained_on`.

Pruning methods act through hooks: objects with any of
- `attach(optimizer, params)`: called once the optimizer exists (and any saved state is loaded),
  with the trained parameters by name (stacked [R, ...] when R models train together); a method
  that works through `optimizer.register_step_pre_hook`/`post_hook` registers them here;
- `after_backward(it)` (e.g. mask gradients, capture a dense gradient) and `after_step(it)`;
- `state_dict()` / `load_state_dict(state)`: the hook's state (e.g. dynamic masks, a schedule
  position), saved in every checkpoint, snapshot and final state under "hooks", and restored
  on resume, so an interrupted run continues exactly. A hook of R stacked models may split it
  (`replica_state_dicts()`, one per run, and `join_states(states)`), so that each run saves its
  own share and not the group's.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F

from ticketlab.training import denormals, device as _device, optim, precision as _precision, rundir, timing
from ticketlab.training.rundir import RunDir, load_state, read_metrics, save_state, write_metrics  # noqa: F401 (the old names)
from ticketlab.core.progress import bar as progress_bar
from ticketlab.core.config import Config, param
from ticketlab.core.errors import ConfigError
from ticketlab.data import files
from ticketlab.training.stacked import Single
from ticketlab.core.masks import MaskEnforcer
from ticketlab.core.schedules import lr_factor
from ticketlab.core.seeds import stream_seed

Hook = Callable[[int], None]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig(Config):
    """Everything that defines one supervised training run."""

    dataset: str = param("mnist1d", "dataset name (see `ticketlab data ls`), or a .npz / .safetensors file "
                         "(x_train, y_train, x_test, y_test[, x_val, y_val]), recorded with its sha256")
    val_size: int | None = param(None, "validation examples held out of train (None: the dataset's default)", min=0)
    split_seed: int = param(0, "seed of the train/validation split", min=0)
    train_fraction: float = param(1.0, "fraction of the training split to use", min=1e-6, max=1.0)
    model: str = param("mlp", "model name (see `ticketlab models`), or package.module:factory returning an "
                       "nn.Module (its keyword arguments from model_args)")
    model_args: dict = dataclasses.field(default_factory=dict, metadata=dict(
        help="extra model arguments, as a TOML table or JSON object, e.g. '{\"widths\": [100, 100]}'"))
    init: str | None = param(None, "weight init: the model's default, or glorot_normal / kaiming_normal / torch",
                             choices=(None, "glorot_normal", "kaiming_normal", "torch"))
    optimizer: str = param("adam", "optimizer", choices=("sgd", "adam", "adamw"))
    lr: float = param(1.2e-3, "base learning rate", min=0.0)
    momentum: float = param(0.0, "SGD momentum", min=0.0, max=1.0)
    nesterov: bool = param(False, "Nesterov momentum (SGD)")
    weight_decay: float = param(0.0, "weight decay (L2 for sgd/adam, decoupled for adamw)", min=0.0)
    betas: tuple[float, ...] = param((0.9, 0.999), "Adam betas", min=0.0, max=1.0)
    schedule: str = param("constant", "learning-rate schedule", choices=("constant", "multistep", "cosine"))
    milestones: tuple[int, ...] = param((), "multistep: iterations at which the rate is multiplied by gamma", min=0)
    gamma: float = param(0.1, "multistep factor", min=0.0)
    warmup_iters: int = param(0, "linear warmup length in iterations", min=0)
    iterations: int | None = param(3000, "training length in iterations (or set epochs)", min=1)
    epochs: int | None = param(None, "training length in epochs; overrides iterations", min=1)
    batch_size: int = param(100, "minibatch size", min=1)
    eval_every: int = param(100, "evaluate validation and test every N iterations", min=1)
    init_seed: int = param(0, "seed of the weight initialisation", min=0)
    data_seed: int = param(0, "seed of the data order (separate from the init seed)", min=0)

    def check(self):
        if self.optimizer in ("adam", "adamw") and len(self.betas) != 2:
            raise ConfigError(f"betas: got {self.betas!r}, expected two numbers")
        if files.is_file_dataset(self.dataset):  # the file's content is part of the experiment's identity
            object.__setattr__(self, "dataset", files.pin(self.dataset))


def total_iterations(cfg: TrainConfig, n_train: int) -> int:
    """Run length in iterations: `epochs × ceil(n_train / batch_size)` when epochs is set."""
    if cfg.epochs is not None:
        return cfg.epochs * math.ceil(n_train / cfg.batch_size)
    return int(cfg.iterations)


def make_optimizer(cfg: TrainConfig, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov, L2 weight decay), Adam (L2) or AdamW (decoupled decay)."""
    return optim.make_optimizer(cfg.optimizer, params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                                weight_decay=cfg.weight_decay, betas=cfg.betas)


def _permutation(n: int, data_seed: int, epoch: int) -> torch.Tensor:
    """The order of the `n` training examples in `epoch` for `data_seed`: a CPU generator, so that every
    device trains on the same batches."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(stream_seed(data_seed, epoch)))


def batch_indices(n: int, batch_size: int, data_seed: int, it: int, device: torch.device | None = None,
                  _cache: dict = {}) -> torch.Tensor:
    """Indices of the minibatch at iteration `it`: epoch-wise reshuffled, a pure function of `it`.

    The last partial batch of an epoch is dropped (every step sees `batch_size` examples).
    The current epoch's permutation is cached per (n, data_seed), at most 256 of them (a loop over more
    data orders at once takes `Batches`). The permutation is always drawn on the CPU (the same batches
    on every device); with `device`, it is moved there once per epoch.
    """
    per_epoch = n // batch_size
    epoch, pos = divmod(it, per_epoch)
    key = (n, data_seed) if device is None else (n, data_seed, str(device))
    cached = _cache.get(key)
    if cached is None or cached[0] != epoch:
        if len(_cache) > 256:
            _cache.clear()
        perm = _permutation(n, data_seed, epoch)
        cached = _cache[key] = (epoch, perm if device is None else perm.to(device))
    return cached[1][pos * batch_size:(pos + 1) * batch_size]


class Batches:
    """The minibatches of R runs that train in lockstep, each in its own data order: `batches(it)` is
    the [R, batch_size] index tensor whose row r equals `batch_indices(n, batch_size, seeds[r], it)`.

    The current epoch's R permutations are kept as one [R, n] tensor on `device` (moved there once per
    epoch), so a step costs one slice, a view, whatever R. Drawing each run's batch and stacking them
    cost R slices and a copy per step (0.43 ms at R = 256 here), and past 256 runs the shared cache of
    `batch_indices` was cleared within every step, so each step drew every permutation again (83 ms
    at R = 300, 134 ms at R = 512): the stacks a GPU's memory allows would have waited on the CPU.
    Memory: R × n × 8 bytes (225 MB at R = 512 on MNIST's 55,000), inside `stack_size.HEADROOM`.

    With a `device` (an accelerator: the loop passes None on the CPU), the next epoch's permutations
    are drawn on a CPU thread while the device trains this one: at R = 512 they take 343 ms here,
    0.37 ms of every step of an MNIST epoch, which a GPU step of a small model would otherwise wait
    for. The draws are the same either way (their generators are seeded by run and epoch); on the
    CPU, where the training uses the cores, they stay in the loop. `total`: the run's last iteration,
    past which no epoch is drawn ahead (None: always one ahead)."""

    def __init__(self, n: int, batch_size: int, seeds: Sequence[int], device: torch.device | None = None,
                 total: int | None = None):
        self.n, self.batch_size, self.seeds, self.device, self.total = n, batch_size, list(seeds), device, total
        self.per_epoch = n // batch_size
        self.epoch, self.perms = None, None
        self._next = None  # (epoch, Future of its [R, n] CPU permutations) being drawn on the thread

    def _draw(self, epoch: int) -> torch.Tensor:
        return torch.stack([_permutation(self.n, s, epoch) for s in self.seeds])  # [R, n], on the CPU

    def __call__(self, it: int) -> torch.Tensor:
        epoch, pos = divmod(it, self.per_epoch)
        if epoch != self.epoch:
            if self._next is not None and self._next[0] == epoch:
                perms = self._next[1].result()
            else:
                perms = self._draw(epoch)
            self.epoch, self.perms = epoch, perms if self.device is None else perms.to(self.device)
            self._next = None
            if self.device is not None and (self.total is None or (epoch + 1) * self.per_epoch < self.total):
                self._next = (epoch + 1, _prefetcher().submit(self._draw, epoch + 1))
        return self.perms[:, pos * self.batch_size:(pos + 1) * self.batch_size]


_PREFETCH: dict = {}  # pid -> the one thread of that process that draws next epochs (`Batches`)


def _prefetcher():
    # keyed by process: a process forked from one that had the thread has the executor but not its thread
    pid = os.getpid()
    if pid not in _PREFETCH:
        import concurrent.futures
        _PREFETCH.clear()
        _PREFETCH[pid] = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ticketlab-batches")
    return _PREFETCH[pid]


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 2000) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of `model` on (x, y), in eval mode: `evaluate_many` of one model."""
    return evaluate_many(Single(model, {}), x, y, batch)[0]


ES_COLUMNS = ("iter", "val_loss", "val_acc", "test_loss", "test_acc")  # the summary's early_stop row


def early_stopping(rows: Sequence[dict], select_from: int = 0) -> dict:
    """The row at minimum validation loss (first on ties), never the run's start nor a row before
    `select_from` (`rundir.early_stopping`): LTH's early-stopping iteration."""
    best = rundir.early_stopping(rows, "val_loss", select_from=select_from)
    return {k: best[k] for k in (*ES_COLUMNS, rundir.AT_START) if k in best}


# ---- the loop --------------------------------------------------------------------

@dataclass
class RunOptions:
    """How to run (not what): never part of an experiment's identity."""

    checkpoint_every: int = 1000  # iterations; rounded up to a multiple of eval_every
    progress: bool = True
    desc: str = "train"
    tensorboard: Path | None = None
    device: str | None = None  # None: this process's device (`ticketlab.training.device.current`)


def fit(model: torch.nn.Module, data, cfg: TrainConfig, run_dir: Path, *,
        masks: dict[str, torch.Tensor] | None = None, prunable: dict | None = None,
        start_iter: int = 0, start_optimizer: dict | None = None, lr_offset: int = 0,
        snapshot_iters: Sequence[int] = (), hooks: Sequence[object] = (),
        options: RunOptions | None = None, select_from: int = 0) -> dict:
    """Train `model` on `data` (a `ticketlab.data.Dataset`) from `start_iter` to the end.

    - `run_dir` receives `metrics.jsonl` (one row per evaluation), `checkpoint.pt` (for
      resume), `snapshot_<k>.pt` for each k in `snapshot_iters` (rewind points, taken before
      the step at iteration k), `final.pt`, and finally `summary.json`, whose presence marks
      the run done. A finished run is not re-run: its summary is returned. An interrupted one
      resumes from its last checkpoint.
    - `masks` (bool, keyed like `prunable`, the model's prunable parameters) are enforced: see
      `ticketlab.core.masks.MaskEnforcer`.
    - `start_iter`/`start_optimizer` start a run mid-schedule (late rewinding): data order and
      learning rate continue from that iteration; optimizer state is restored if given.
      `lr_offset` shifts the schedule: the rate at iteration it is that of it - lr_offset
      (a rewound run that restarts its schedule instead of fast-forwarding it).
    - `hooks`: objects with optional `attach`, `after_backward`, `after_step`, `state_dict`
      and `load_state_dict` methods (see the module docstring).
    - `select_from`: early stopping and convergence consider only evaluations from this iteration
      on, where the network takes its final form (a dense-to-sparse schedule's end); recorded in
      the summary when it is past the start.
    Returns the summary dict.
    """
    run = Run(run_dir, model=model, masks=masks, start_optimizer=start_optimizer)
    return fit_many([run], data, cfg, Single(model, prunable), start_iter=start_iter, lr_offset=lr_offset,
                    snapshot_iters=snapshot_iters, hooks=hooks, options=options, select_from=select_from)[0]


@dataclass
class Run:
    """One run of a group trained together: its folder, starting weights, masks, data order."""

    run_dir: Path
    model: torch.nn.Module | None = None  # starting weights (ignored when resuming)
    masks: dict | None = None
    start_optimizer: dict | None = None
    data_seed: int | None = None  # None: the config's
    name: str | None = None  # its name in the summary's `stack` record (the lottery: replicate_0/level_2)


def fit_many(runs: Sequence[Run], data, cfg: TrainConfig, ensemble, *, start_iter: int = 0,
             lr_offset: int = 0, snapshot_iters: Sequence[int] = (), hooks: Sequence[object] = (),
             options: RunOptions | None = None, select_from: int = 0) -> list[dict]:
    """Train several runs in lockstep as one computation (`ticketlab.training.stacked`); see `fit`.

    Every run writes its own folder exactly as `fit` would, so a run's checkpoint and results
    do not depend on whether it was trained alone or in a group. The runs share the config,
    the start iteration and the schedule; they differ in weights, masks, optimizer state and
    data order (`Run.data_seed`). All runs of a group must be at the same point: all new, all
    finished, or all with checkpoints at the same iteration. Subnormal floats are flushed to zero
    while they train (`ticketlab.training.denormals`).
    """
    with denormals.flushed() as flush:
        return _fit_many(runs, data, cfg, ensemble, start_iter=start_iter, lr_offset=lr_offset,
                         snapshot_iters=snapshot_iters, hooks=hooks, options=options, flush=flush,
                         select_from=select_from)


def _fit_many(runs: Sequence[Run], data, cfg: TrainConfig, ensemble, *, start_iter: int, lr_offset: int,
              snapshot_iters: Sequence[int], hooks: Sequence[object], options: RunOptions | None,
              flush: bool, select_from: int = 0) -> list[dict]:
    options = options or RunOptions()
    dirs = [RunDir(r.run_dir).create() for r in runs]
    summaries = rundir.finished(dirs, "fit_many")
    if summaries is not None:
        return summaries

    total = total_iterations(cfg, len(data.train))
    if not 0 <= start_iter <= total:
        raise ValueError(f"start_iter {start_iter} outside [0, {total}]")
    dev = _device.resolve(options.device)
    on = None if dev.type == "cpu" else dev  # where batch indices go (None: stay on the CPU)
    model = ensemble.module
    home = next(model.parameters()).device  # the caller's model goes back there at the end
    model.to(dev)
    x_train, y_train = _device.to_device(data.train.x, dev), _device.to_device(data.train.y, dev)
    x_val, y_val = _device.to_device(data.val.x, dev), _device.to_device(data.val.y, dev)
    x_test, y_test = _device.to_device(data.test.x, dev), _device.to_device(data.test.y, dev)
    n_train = len(x_train)
    if n_train < cfg.batch_size:
        raise ValueError(f"batch_size {cfg.batch_size} exceeds the training set ({n_train})")
    seeds = [cfg.data_seed if r.data_seed is None else r.data_seed for r in runs]
    masks = [r.masks for r in runs]
    R = len(runs)
    diverged: list[int | None] = [None] * R  # per run: the iteration whose loss was NaN or infinite

    optimizer = make_optimizer(cfg, ensemble.module.parameters())
    it, elapsed, cpu = start_iter, 0.0, 0.0
    resumed = rundir.resume_group(dirs, "fit_many", masks)
    if resumed is not None:
        states, rows = resumed
        it = int(states[0]["iteration"])
        ensemble.load_state_dicts([s["model"] for s in states])
        optimizer.load_state_dict(ensemble.stack_optimizer([s["optimizer"] for s in states]))
        torch.set_rng_state(states[0]["rng"])
        _device.set_rng_state(states[0], dev)
        elapsed, cpu = float(states[0].get("elapsed", 0.0)), float(states[0].get("cpu", 0.0))
        diverged = [s.get("diverged") for s in states]
    else:
        if any(r.model is not None and r.model is not ensemble.module for r in runs):
            ensemble.load_state_dicts([r.model.state_dict() for r in runs])
        starts = [r.start_optimizer for r in runs]
        if any(s is not None for s in starts):
            if any(s is None for s in starts):
                raise ValueError("fit_many: either every run of a group restores an optimizer state, or none")
            optimizer.load_state_dict(ensemble.stack_optimizer(starts))
        torch.manual_seed(seeds[0] * 7919 + cfg.init_seed + start_iter)
        rows = [[] for _ in runs]
    stacked_masks = {n: m.to(dev) for n, m in ensemble.stack_masks(masks).items()}
    enforcer = MaskEnforcer(ensemble.prunable(), stacked_masks) if stacked_masks else None
    if enforcer is not None:  # the step may be trusted to keep zeros when no other hook touches gradients
        enforcer.install(optimizer, trust_step=not any(hasattr(h, "after_backward") or hasattr(h, "attach")
                                                       for h in hooks))
    stateful = [h for h in hooks if hasattr(h, "state_dict")]
    if resumed is not None:
        for k, h in enumerate(stateful):
            saved = [s["hooks"][k] for s in states if k < len(s.get("hooks", []))]
            if saved:  # each run's own share where the hook splits its state, else the group's
                h.load_state_dict(h.join_states(saved) if hasattr(h, "join_states") else saved[0])
    for h in hooks:
        if hasattr(h, "attach"):
            h.attach(optimizer, ensemble.prunable())

    members = ([enforcer] if enforcer else []) + list(hooks)
    after_backward = [h.after_backward for h in members if hasattr(h, "after_backward")]
    after_step = [h.after_step for h in members if hasattr(h, "after_step")]
    snapshot_iters = sorted(set(k for k in snapshot_iters if it <= k <= total))
    ckpt_every = max(cfg.eval_every, math.ceil(options.checkpoint_every / cfg.eval_every) * cfg.eval_every)
    lr_kw = dict(schedule=cfg.schedule, total=total, milestones=cfg.milestones, gamma=cfg.gamma,
                 warmup_iters=cfg.warmup_iters)
    constant_lr = cfg.schedule == "constant" and cfg.warmup_iters == 0

    def run_states(**extra) -> list[dict]:
        """Each run's state: weights, masks, optimizer state, and the hooks' state (e.g. dynamic
        masks): each run's own share where a hook splits it (`replica_state_dicts`), else the group's."""
        shares = [h.replica_state_dicts() if hasattr(h, "replica_state_dicts") else [h.state_dict()] * R
                  for h in stateful]
        opt_states = ensemble.split_optimizer(optimizer.state_dict())
        return [dict(model=sd, masks=dict(m or {}), optimizer=os_, **extra,
                     **({"hooks": [sh[r] for sh in shares]} if stateful else {}),
                     **({"diverged": dv} if dv is not None else {}))  # kept across a resume
                for r, (sd, os_, m, dv) in enumerate(zip(ensemble.state_dicts(), opt_states, masks, diverged))]

    def save_all(name: str, i: int) -> None:
        for d, st in zip(dirs, run_states()):
            d.save(name, i, **st)

    writer = _tensorboard(options.tensorboard)
    bar = progress_bar(total, enabled=options.progress, initial=it, desc=options.desc)
    model.train()
    running = torch.zeros(R, device=dev)
    n_running = 0
    clock = timing.StackClock(elapsed, cpu)

    def record(i: int) -> None:
        nonlocal running, n_running
        if not check_each_step:  # a non-finite loss in the window makes the running sum non-finite
            diverge(i, running)
        val = evaluate_many(ensemble, x_val, y_val)
        test = evaluate_many(ensemble, x_test, y_test)
        for r in range(R):
            row = {"iter": i, "train_loss": float(running[r]) / n_running if n_running else None,
                   "val_loss": val[r][0], "val_acc": val[r][1], "test_loss": test[r][0], "test_acc": test[r][1]}
            if diverged[r] is not None:  # after a divergence the metrics are noise: null (strict JSON)
                row = {"iter": i, **{k: None for k in row if k != "iter"}}
            rows[r].append(row)
        running, n_running = torch.zeros(R, device=dev), 0
        if writer is not None:
            for k, v in rows[0][-1].items():
                if k != "iter" and v is not None:
                    writer.add_scalar(k, v, i)
        if bar is not None:
            bar.set_postfix(val_acc=f"{val[0][1]:.4f}", test_acc=f"{test[0][1]:.4f}", refresh=False)

    # Divergence (issue 17): a run whose training loss becomes NaN or infinite stops, and its summary
    # records `"diverged": {"iteration": N}`, N the 1-based step whose loss was not finite. On the CPU the
    # loss is checked every step (reading it costs no device sync); on an accelerator it is checked at
    # each evaluation, through the running sum, so the hot loop keeps free of host syncs.
    check_each_step = _device.reads_are_free(dev)

    def diverge(i: int, losses: torch.Tensor) -> None:
        bad = ~torch.isfinite(losses.detach().reshape(-1))
        if bad.any():
            for r in bad.nonzero().flatten().tolist():
                if diverged[r] is None:
                    diverged[r] = i
                    log.warning("%s: the training loss became %s at iteration %d: diverged", dirs[r].path,
                                float(losses.detach().reshape(-1)[r]), i)

    if not rows[0] and it % cfg.eval_every == 0:
        record(it)
    if it in snapshot_iters:
        save_all(rundir.snapshot_name(it), it)
    base_lrs = [cfg.lr for _ in optimizer.param_groups]
    for g in optimizer.param_groups:  # a loaded optimizer state carries a *scheduled* rate
        g["lr"] = cfg.lr
    single = R == 1
    batches = None if single else Batches(n_train, cfg.batch_size, seeds, on, total)
    # bf16: the forward pass and loss autocast; weights, grads, optimizer state and masks stay fp32
    autocast = _precision.autocast(dev)
    # ALGO: the hot loop. Keep it free of per-example Python and host syncs.
    while it < total:
        if not constant_lr:
            f = lr_factor(it - lr_offset, **lr_kw)
            for g, lr in zip(optimizer.param_groups, base_lrs):
                g["lr"] = lr * f
        optimizer.zero_grad(set_to_none=True)
        if single:  # one model: a plain step, no [1, B] views or loss sum (they cost ~3 % at LeNet size)
            idx = batch_indices(n_train, cfg.batch_size, seeds[0], it, on)
            with autocast:
                losses = ensemble.loss(x_train[idx], y_train[idx])
            losses.backward()
        else:  # each model its own data order: [R, B]
            idx = batches(it)
            with autocast:
                losses = ensemble.losses(x_train[idx], y_train[idx])  # [R]: each model's mean loss on its own batch
            losses.sum().backward()
        for h in after_backward:
            h(it)
        optimizer.step()
        for h in after_step:
            h(it)
        running += losses.detach()
        n_running += 1
        it += 1
        if bar is not None:
            bar.update(1)
        if check_each_step:
            diverge(it, losses)
        if all(d is not None for d in diverged):  # every run diverged: stop at once
            if not rows[0] or rows[0][-1]["iter"] != it:
                record(it)
            break
        if it % cfg.eval_every == 0 or it == total:
            record(it)
            if it % ckpt_every == 0 and it < total:
                for d, rs, st in zip(dirs, rows, run_states(elapsed=clock.wall(), cpu=clock.cpu())):
                    d.checkpoint(rs, it, **st)
        if it in snapshot_iters:
            save_all(rundir.snapshot_name(it), it)
    for g, lr in zip(optimizer.param_groups, base_lrs):
        g["lr"] = lr
    if bar is not None:
        bar.close()
    if writer is not None:
        writer.close()
    stack_time = clock.fields(R)  # the stack's, not a run's: its runs trained together

    save_all(rundir.FINAL, it)
    model.to(home)
    # the members of a stack, in order: a recompute re-forms it to be bit-identical (issue 17)
    names = [r.name for r in runs] if R > 1 and all(r.name for r in runs) else None
    trained_on = _device.describe(dev)
    summaries = [d.finish(rs, {"iterations": total, "start_iter": start_iter, "final": rs[-1],
                          "early_stop": early_stopping(rs, select_from),
                          **({"select_from": select_from} if select_from > start_iter else {}),
                          "best_test_acc": max((r["test_acc"] for r in rs if r["test_acc"] is not None), default=None),
                          "trained_with": R, **stack_time, "trained_on": trained_on, "flush_denormal": flush,
                          **_precision.summary(), **({"stack": names} if names else {}),
                          **({"diverged": {"iteration": dv}} if dv is not None else {})}, drop=False)
                 for d, rs, dv in zip(dirs, rows, diverged)]
    for d in dirs:  # only once every run is done (`rundir.finished`)
        d.drop_checkpoints()
    return summaries


@torch.no_grad()
def evaluate_many(ensemble, x: torch.Tensor, y: torch.Tensor, batch: int = 2000) -> list[tuple[float, float]]:
    """[(mean cross-entropy, accuracy)] per model of the ensemble, in eval mode."""
    model = ensemble.module
    was_training = model.training
    model.eval()
    R = ensemble.size
    loss = torch.zeros(R, dtype=torch.float64, device=x.device)
    correct = torch.zeros(R, dtype=torch.int64, device=x.device)
    for i in range(0, len(x), batch):
        with _precision.autocast(x.device):
            out = ensemble.logits(x[i:i + batch])  # [R, n, classes]
        out = out.float()  # bf16 logits: the loss and argmax in fp32, as the training loss
        yy = y[i:i + batch]
        loss += F.cross_entropy(out.transpose(1, 2), yy.expand(R, -1), reduction="none").sum(1).double()
        correct += (out.argmax(2) == yy).sum(1)
    model.train(was_training)
    loss, correct = loss.cpu(), correct.cpu()  # one transfer, not 2R
    n = max(len(x), 1)
    return [(float(loss[r]) / n, int(correct[r]) / n) for r in range(R)]


def _tensorboard(logdir: Path | None):
    if logdir is None:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:  # tensorboard is an optional dependency
        from ticketlab.core.errors import ConfigError
        raise ConfigError(f"tensorboard: logging needs the tensorboard package ({e}); "
                          "pip install 'ticketlab[dev]'") from None
    return SummaryWriter(str(logdir))
