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
  (for dropout), written atomically and loaded with `torch.load(weights_only=True)`.

Pruning methods act through two hooks: `after_backward(it)` (e.g. mask gradients,
capture a dense gradient) and `after_step(it)` (re-zero weights, update masks).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F

from ticketlab import _atomic
from ticketlab.config import param
from ticketlab.masks import MaskEnforcer
from ticketlab.schedules import lr_factor

Hook = Callable[[int], None]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines one supervised training run."""

    dataset: str = param("mnist1d", "dataset name (see `ticketlab data ls`)")
    val_size: int | None = param(None, "validation examples held out of train (None: the dataset's default)", min=0)
    split_seed: int = param(0, "seed of the train/validation split", min=0)
    train_fraction: float = param(1.0, "fraction of the training split to use", min=1e-6, max=1.0)
    model: str = param("mlp", "model name (see `ticketlab models`)")
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

    def __post_init__(self):
        if self.optimizer in ("adam", "adamw") and len(self.betas) != 2:
            from ticketlab.errors import ConfigError
            raise ConfigError(f"betas: got {self.betas!r}, expected two numbers")


def total_iterations(cfg: TrainConfig, n_train: int) -> int:
    """Run length in iterations: `epochs × ceil(n_train / batch_size)` when epochs is set."""
    if cfg.epochs is not None:
        return cfg.epochs * math.ceil(n_train / cfg.batch_size)
    return int(cfg.iterations)


def make_optimizer(cfg: TrainConfig, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov, L2 weight decay), Adam (L2) or AdamW (decoupled decay)."""
    params = list(params)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    # foreach=False: at LeNet size the multi-tensor path is no faster, and the single-tensor
    # path keeps results identical between one model and the batched runner.
    return cls(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, foreach=False)


def batch_indices(n: int, batch_size: int, data_seed: int, it: int, _cache: dict = {}) -> torch.Tensor:
    """Indices of the minibatch at iteration `it`: epoch-wise reshuffled, a pure function of `it`.

    The last partial batch of an epoch is dropped (every step sees `batch_size` examples).
    """
    per_epoch = n // batch_size
    epoch, pos = divmod(it, per_epoch)
    key = (n, data_seed, epoch)
    perm = _cache.get(key)
    if perm is None:
        g = torch.Generator().manual_seed(data_seed * 1_000_003 + epoch)
        perm = torch.randperm(n, generator=g)
        _cache.clear()  # one epoch at a time is enough
        _cache[key] = perm
    return perm[pos * batch_size:(pos + 1) * batch_size]


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 2000) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of `model` on (x, y), in eval mode."""
    was_training = model.training
    model.eval()
    loss, correct = 0.0, 0
    for i in range(0, len(x), batch):
        out = model(x[i:i + batch])
        loss += float(F.cross_entropy(out, y[i:i + batch], reduction="sum"))
        correct += int((out.argmax(1) == y[i:i + batch]).sum())
    model.train(was_training)
    n = max(len(x), 1)
    return loss / n, correct / n


def early_stopping(rows: Sequence[dict]) -> dict:
    """The row at minimum validation loss (first on ties): LTH's early-stopping iteration."""
    best = min(rows, key=lambda r: (r["val_loss"], r["iter"]))
    return {"iter": best["iter"], "val_loss": best["val_loss"], "val_acc": best["val_acc"],
            "test_loss": best["test_loss"], "test_acc": best["test_acc"]}


# ---- checkpoints -----------------------------------------------------------------

def save_state(path: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
               iteration: int, masks: dict | None = None, **extra) -> None:
    """Atomically write a checkpoint: weights, masks, optimizer state, iteration, RNG state.

    `extra` holds further plain values (floats, ints, tensors), e.g. the elapsed time.
    """
    state = {"iteration": iteration, "model": model.state_dict(),
             "masks": dict(masks or {}), "rng": torch.get_rng_state(), **extra}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    with _atomic.atomic_open(path, "wb") as f:
        torch.save(state, f)


def load_state(path: Path) -> dict:
    """Load a checkpoint without unpickling arbitrary objects (`weights_only=True`)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def _read_metrics(path: Path, upto: int) -> list[dict]:
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["iter"] <= upto]


def _write_metrics(path: Path, rows: list[dict]) -> None:
    _atomic.write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


# ---- the loop --------------------------------------------------------------------

@dataclass
class RunOptions:
    """How to run (not what): never part of an experiment's identity."""

    checkpoint_every: int = 1000  # iterations; rounded up to a multiple of eval_every
    progress: bool = True
    desc: str = "train"
    tensorboard: Path | None = None


def fit(model: torch.nn.Module, data, cfg: TrainConfig, run_dir: Path, *,
        masks: dict[str, torch.Tensor] | None = None, prunable: dict | None = None,
        start_iter: int = 0, start_optimizer: dict | None = None, lr_offset: int = 0,
        snapshot_iters: Sequence[int] = (), hooks: Sequence[object] = (),
        options: RunOptions | None = None) -> dict:
    """Train `model` on `data` (a `ticketlab.data.Dataset`) from `start_iter` to the end.

    - `run_dir` receives `metrics.jsonl` (one row per evaluation), `checkpoint.pt` (for
      resume), `snapshot_<k>.pt` for each k in `snapshot_iters` (rewind points, taken before
      the step at iteration k), and finally `summary.json`, whose presence marks the run done.
      A finished run is not re-run: its summary is returned. An interrupted one resumes from
      its last checkpoint.
    - `masks` (bool, keyed like `prunable`, the model's prunable parameters) are enforced: see
      `ticketlab.masks.MaskEnforcer`.
    - `start_iter`/`start_optimizer` start a run mid-schedule (late rewinding): data order and
      learning rate continue from that iteration; optimizer state is restored if given.
      `lr_offset` shifts the schedule: the rate at iteration it is that of it - lr_offset
      (a rewound run that restarts its schedule instead of fast-forwarding it).
    - `hooks`: objects with optional `after_backward(it)` / `after_step(it)` methods.
    Returns the summary dict.
    """
    options = options or RunOptions()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    summary_path = run_dir / "summary.json"
    if summary_path.exists():
        return json.loads(summary_path.read_text())

    total = total_iterations(cfg, len(data.train))
    if not 0 <= start_iter <= total:
        raise ValueError(f"start_iter {start_iter} outside [0, {total}]")
    optimizer = make_optimizer(cfg, model.parameters())
    if start_optimizer is not None:
        optimizer.load_state_dict(start_optimizer)

    enforcer = None
    if masks:
        enforcer = MaskEnforcer(prunable, masks)
    ckpt_path = run_dir / "checkpoint.pt"
    metrics_path = run_dir / "metrics.jsonl"
    it = start_iter
    elapsed = 0.0
    if ckpt_path.exists():  # resume
        state = load_state(ckpt_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        it = int(state["iteration"])
        elapsed = float(state.get("elapsed", 0.0))
        if masks:
            saved = state["masks"]
            if set(saved) != set(masks) or any(not torch.equal(saved[n], masks[n]) for n in masks):
                raise ValueError(f"{ckpt_path}: the checkpoint's masks differ from this run's masks")
        rows = _read_metrics(metrics_path, it)
    else:
        torch.manual_seed(cfg.data_seed * 7919 + cfg.init_seed + start_iter)
        rows = []
    if enforcer is not None:
        enforcer.install(optimizer)

    after_backward = [h.after_backward for h in ([enforcer] if enforcer else []) + list(hooks)
                      if hasattr(h, "after_backward")]
    after_step = [h.after_step for h in ([enforcer] if enforcer else []) + list(hooks)
                  if hasattr(h, "after_step")]
    snapshot_iters = sorted(set(k for k in snapshot_iters if it <= k <= total))
    ckpt_every = max(cfg.eval_every, math.ceil(options.checkpoint_every / cfg.eval_every) * cfg.eval_every)
    lr_kw = dict(schedule=cfg.schedule, total=total, milestones=cfg.milestones, gamma=cfg.gamma,
                 warmup_iters=cfg.warmup_iters)
    constant_lr = cfg.schedule == "constant" and cfg.warmup_iters == 0
    x_train, y_train = data.train.x, data.train.y
    n_train = len(x_train)
    if n_train < cfg.batch_size:
        raise ValueError(f"batch_size {cfg.batch_size} exceeds the training set ({n_train})")

    writer = _tensorboard(options.tensorboard)
    bar = _progress(options, total, it)
    model.train()
    running = torch.zeros(())
    n_running = 0
    t0 = time.perf_counter()

    def record(i: int) -> None:
        nonlocal running, n_running
        val_loss, val_acc = evaluate(model, data.val.x, data.val.y)
        test_loss, test_acc = evaluate(model, data.test.x, data.test.y)
        row = {"iter": i, "train_loss": float(running) / n_running if n_running else None,
               "val_loss": val_loss, "val_acc": val_acc, "test_loss": test_loss, "test_acc": test_acc}
        rows.append(row)
        running, n_running = torch.zeros(()), 0
        if writer is not None:
            for k, v in row.items():
                if k != "iter" and v is not None:
                    writer.add_scalar(k, v, i)
        if bar is not None:
            bar.set_postfix(val_acc=f"{val_acc:.4f}", test_acc=f"{test_acc:.4f}", refresh=False)

    if not rows and it % cfg.eval_every == 0:
        record(it)
    for k in snapshot_iters:
        if k == it:
            save_state(run_dir / f"snapshot_{k}.pt", model=model, optimizer=optimizer, iteration=k, masks=masks)
    # The base rate comes from the config: a loaded optimizer state carries the *scheduled*
    # rate of the iteration it was saved at.
    base_lrs = [cfg.lr for _ in optimizer.param_groups]
    for g in optimizer.param_groups:
        g["lr"] = cfg.lr
    # ALGO: the hot loop. Keep it free of per-example Python and host syncs.
    while it < total:
        if not constant_lr:
            f = lr_factor(it - lr_offset, **lr_kw)
            for g, lr in zip(optimizer.param_groups, base_lrs):
                g["lr"] = lr * f
        idx = batch_indices(n_train, cfg.batch_size, cfg.data_seed, it)
        xb, yb = x_train[idx], y_train[idx]
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        for h in after_backward:
            h(it)
        optimizer.step()
        for h in after_step:
            h(it)
        running += loss.detach()
        n_running += 1
        it += 1
        if bar is not None:
            bar.update(1)
        if it % cfg.eval_every == 0 or it == total:
            record(it)
            if it % ckpt_every == 0 and it < total:
                _write_metrics(metrics_path, rows)
                save_state(ckpt_path, model=model, optimizer=optimizer, iteration=it, masks=masks,
                           elapsed=elapsed + time.perf_counter() - t0)
        if it in snapshot_iters:
            save_state(run_dir / f"snapshot_{it}.pt", model=model, optimizer=optimizer, iteration=it, masks=masks)
    if not constant_lr:
        for g, lr in zip(optimizer.param_groups, base_lrs):
            g["lr"] = lr
    if bar is not None:
        bar.close()
    if writer is not None:
        writer.close()
    wall = elapsed + time.perf_counter() - t0

    # Final state: weights and optimizer state (kept for rewinding / continued training).
    _write_metrics(metrics_path, rows)
    save_state(run_dir / "final.pt", model=model, optimizer=optimizer, iteration=it, masks=masks)
    summary = {"iterations": total, "start_iter": start_iter, "final": rows[-1],
               "early_stop": early_stopping(rows), "best_test_acc": max(r["test_acc"] for r in rows),
               "wall_time_s": wall}
    _atomic.write_json(summary_path, summary)
    if ckpt_path.exists():
        ckpt_path.unlink()
    return summary


def _progress(options: RunOptions, total: int, start: int):
    if not options.progress:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=start, desc=options.desc, leave=False, mininterval=0.5,
                dynamic_ncols=True)


def _tensorboard(logdir: Path | None):
    if logdir is None:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:  # tensorboard is an optional dependency
        from ticketlab.errors import ConfigError
        raise ConfigError(f"tensorboard: logging needs the tensorboard package ({e}); "
                          "pip install 'ticketlab[dev]'") from None
    return SummaryWriter(str(logdir))
