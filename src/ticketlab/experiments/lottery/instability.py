"""Linear mode connectivity and instability of lottery tickets.

Frankle, Dziugaite, Roy & Carbin 2020, "Linear Mode Connectivity and the Lottery Ticket
Hypothesis" (arXiv 1912.05671); docs/lottery.md §8. For a network (dense, or an
IMP subnetwork with its mask) and a rewind point k:

1. take θk, the weights at iteration k of the dense run (level 0);
2. train two copies from θk to the end with the same mask and different SGD noise
   (data order, and the dropout stream, which is seeded from the data seed);
3. evaluate the test error E along the linear path θ(α) = (1 − α)·θ1 + α·θ2, α ∈ [0, 1];
4. instability = max_α E(θ(α)) − (E(θ1) + E(θ2)) / 2. The network is "stable" at k when this
   is near zero (the paper's threshold: about 2 %).

The mask is the experiment's ticket at `level`, found with the experiment's own `rewind_iter`;
only the starting point θk varies with k. (The paper finds one IMP mask per k: for that,
run one lottery experiment per k, with `rewind_iter=k`, and measure each at its own k.)
Level 0 is the dense network, which gives the paper's instability-of-dense-networks curve.

θk is the level-0 snapshot `replicate_<r>/level_0/snapshot_<k>.pt` when the lottery run saved
one (k = 0 and k = its rewind_iter). For any other k it is reproduced, bit for bit: the loop
is deterministic (data order, learning rate and the dropout RNG are functions of the
iteration and the seeds), so level 0 is re-run from θ0 with `snapshot_iters=[k]` and a hook
that stops it just after that snapshot is written. Training a shorter run (`iterations=k`)
instead would not be exact: cosine decay depends on the run's total length, and `epochs`
sets it too. Only the snapshot is kept. The re-run is checked against what the trunk recorded
on the way (its evaluation rows up to k, exactly, and any snapshot before k, bit for bit); a
reproduction that differs (e.g. a trunk trained stacked with other models, which agrees with a
single run only to float rounding) is refused unless `allow_inexact`, and flagged in the result.

Storage, inside the experiment folder (cached and resumable like the trunk):

    replicate_<r>/instability/rewind_<k>/snapshot_<k>.pt          a reproduced θk (check.json: its check)
    replicate_<r>/instability/level_<L>/k_<k>/data_seed_<s>/     one trained copy (a normal run folder)
    replicate_<r>/instability/level_<L>/k_<k>/instability.json   the result
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from ticketlab.core import config as C, integrity, masks as M
from ticketlab.core.errors import ConfigError, TicketlabError
from ticketlab.experiments.lottery.trunk import LotteryConfig, Replicate, stored_lottery, final_weights, load_masks, replicate_seeds
from ticketlab.training import device as _device, precision as _precision
from ticketlab.training.loop import RunOptions, TrainConfig, evaluate, fit, load_state
from ticketlab.training.rundir import read_metrics, read_json

log = logging.getLogger(__name__)


# ---- the path between two weight sets ----------------------------------------------------------

def interpolate(state_a: dict, state_b: dict, alpha: float) -> dict:
    """(1 − alpha)·a + alpha·b for every float tensor of two state dicts.

    Non-float entries (e.g. BatchNorm's `num_batches_tracked`) are taken from `a`. At alpha 0
    and 1 the result is a copy of `a` or `b`, exactly. BatchNorm running statistics are
    interpolated like weights. Entries pruned (zero) in both stay zero.
    """
    if state_a.keys() != state_b.keys():
        diff = sorted(set(state_a) ^ set(state_b))
        raise ValueError(f"the two states have different entries: {', '.join(diff)}")
    out = {}
    for n, a in state_a.items():
        b = state_b[n]
        if a.shape != b.shape:
            raise ValueError(f"{n!r} has shapes {tuple(a.shape)} and {tuple(b.shape)}")
        if not a.is_floating_point():
            out[n] = a.clone()
        elif alpha == 0:
            out[n] = a.clone()
        elif alpha == 1:
            out[n] = b.clone()
        else:
            out[n] = torch.lerp(a, b.to(a.dtype), float(alpha))
    return out


def path_alphas(points: int) -> list[float]:
    """`points` evenly spaced values of α in [0, 1], endpoints included exactly."""
    if isinstance(points, bool) or not isinstance(points, int) or points < 3:
        raise ConfigError(f"points: got {points!r}, expected an integer >= 3 (the two endpoints and at least "
                          "one between; 11 by default)")
    return [i / (points - 1) for i in range(points)]


def error_along_path(build_model: Callable[[], nn.Module], state_a: dict, state_b: dict,
                     x: torch.Tensor, y: torch.Tensor, points: int = 11) -> list[float]:
    """Test error (1 − accuracy) of the interpolated network at `points` evenly spaced α in [0, 1]."""
    alphas = path_alphas(points)
    dev = _device.resolve(None)  # this process's device: the path is evaluated where runs train
    model = build_model().to(dev)
    x, y = _device.to_device(x, dev), _device.to_device(y, dev)
    errors = []
    for a in alphas:
        model.load_state_dict(interpolate(state_a, state_b, a))
        _, acc = evaluate(model, x, y)
        errors.append(1.0 - acc)
    return errors


def instability_from_errors(errors: Sequence[float]) -> float:
    """max over the path of the error, minus the mean of the two endpoint errors."""
    if len(errors) < 2:
        raise ValueError(f"need the errors at both endpoints at least, got {len(errors)} value(s)")
    return max(errors) - (errors[0] + errors[-1]) / 2


# ---- the rewind point θk -----------------------------------------------------------------------

class _Stop(Exception):
    """Ends a reproduction run once its snapshot is written."""


class _StopAt:
    """Training hook: stop at iteration k. `after_backward(k)` runs on the step *after* the
    loop saved snapshot_<k>.pt, before the optimizer moves the weights again."""

    def __init__(self, k: int):
        self.k = k

    def after_backward(self, it: int) -> None:
        if it >= self.k:
            raise _Stop


def _rows(path: Path) -> dict[int, dict]:
    return {r["iter"]: r for r in read_metrics(path)}


def _same_tensors(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same_tensors(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same_tensors(x, y) for x, y in zip(a, b))
    if torch.is_tensor(a):
        return torch.is_tensor(b) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    return a == b


def reproduce_rewind_point(rep: Replicate, k: int, run_dir: Path) -> tuple[Path, dict]:
    """Re-run level 0 of replicate `rep` from θ0 up to iteration k, in `run_dir`.

    Returns (path of `run_dir/snapshot_<k>.pt`, check). The check compares the re-run with
    what the trunk recorded on the way: every evaluation row of level 0's metrics.jsonl up to
    k (train/val/test loss and accuracy, as floats, exactly) and every trunk snapshot at
    0 < j <= k (all tensors, bit for bit): {"evals", "snapshots", "exact", "mismatch"}.
    `exact` is None when the trunk recorded nothing in (0, k] to compare with. The check is
    saved as `check.json` beside the snapshot; both are reused on later calls.

    Needs a `ClassifyTrainer` (the `Trainer` protocol's `fit` takes no hooks).
    """
    run_dir = Path(run_dir)
    out, check_path = run_dir / f"snapshot_{k}.pt", run_dir / "check.json"
    if out.exists() and check_path.exists():
        return out, read_json(check_path)
    trainer = rep.trainer
    if not 0 <= k <= trainer.total_iterations:
        raise ConfigError(f"rewind_iter: got {k}, expected 0..{trainer.total_iterations} (the run length)")
    trunk = rep.level_dir(0)
    theta0 = trunk / "snapshot_0.pt"
    if not theta0.exists():
        raise TicketlabError(f"{theta0} is missing: level 0 of replicate {rep.r} has not been trained")
    known = sorted(j for j in (int(p.stem.split("_")[1]) for p in trunk.glob("snapshot_*.pt")) if 0 < j <= k)
    masks = rep.masks(0)  # level 0's all-true masks, enforced exactly as in the trunk
    model = rep.start(load_state(theta0)["model"], masks)
    # the trunk's level-0 config (`Replicate.plan_level(0)`); only the stop differs. Checkpoints at
    # every evaluation make the loop write its metrics rows, compared with the trunk's below.
    cfg = dataclasses.replace(trainer.cfg, data_seed=rep.data_seed)
    options = RunOptions(progress=False, desc=f"rep {rep.r} θ{k}", checkpoint_every=cfg.eval_every)
    try:
        fit(model, trainer.data, cfg, run_dir, masks=masks, prunable=trainer.prunable(model),
            snapshot_iters=[*known, k], hooks=[_StopAt(k)], options=options)
    except _Stop:
        pass
    if not out.exists():  # cannot happen unless the loop's snapshot contract changes
        raise RuntimeError(f"reproducing θ{k} wrote no {out}")

    mine, theirs = _rows(run_dir / "metrics.jsonl"), _rows(trunk / "metrics.jsonl")
    evals = sorted(i for i in mine if i <= k and i in theirs)
    mismatch = [f"eval at iteration {i}" for i in evals if mine[i] != theirs[i]]
    mismatch += [f"snapshot_{j}.pt" for j in known
                 if not _same_tensors(load_state(run_dir / f"snapshot_{j}.pt"), load_state(trunk / f"snapshot_{j}.pt"))]
    check = {"evals": len(evals), "snapshots": known, "mismatch": mismatch,
             "exact": (not mismatch) if (evals or known) else None}
    # keep the snapshot only (metrics, checkpoints, known snapshots); the checkpoints first, so that a kill
    # in the middle never leaves a resume point past a snapshot already gone
    for p in sorted(run_dir.iterdir(), key=lambda p: not p.name.startswith("checkpoint")):
        if p != out and p.is_file() and p.name != integrity.MANIFEST:
            integrity.forget(p)  # and its manifest entry: the snapshot's stays checked
    integrity.write_json(check_path, check)
    return out, check


def rewind_point(rep: Replicate, k: int, *, allow_inexact: bool = False) -> tuple[dict, dict]:
    """(θk as a saved state, provenance): the trunk's level-0 snapshot if present, else a
    reproduction under `replicate_<r>/instability/rewind_<k>/` (made on first use).

    A reproduction that provably differs from the trunk's records raises a TicketlabError
    unless `allow_inexact`; the provenance dict says which ({"source", "check"})."""
    trunk = rep.level_dir(0) / f"snapshot_{k}.pt"
    if trunk.exists():
        return load_state(trunk), {"source": "level_0"}
    path, check = reproduce_rewind_point(rep, k, rep.root / "instability" / f"rewind_{k}")
    if check["exact"] is False and not allow_inexact:
        summary = rep.level_dir(0) / "summary.json"
        stacked = read_json(summary).get("trained_with", 1) if summary.exists() else 1
        why = (f"level 0 was trained stacked with {stacked} models, which agrees with a single run only to "
               f"float rounding" if stacked > 1 else "the trunk was trained differently from its recorded config")
        raise TicketlabError(
            f"θ{k} of replicate {rep.r} cannot be reproduced exactly ({', '.join(check['mismatch'][:3])} "
            f"differ; {why}). For exact rewind points, train the lottery's level 0 alone (stack=1), or "
            f"allow an inexact θ{k} (allow_inexact / --allow-inexact): the check is recorded in instability.json")
    return load_state(path), {"source": "reproduced", "check": check}


class _Rewound(Replicate):
    """A replicate whose rewind point is a given state θk, so `train_from_rewind` (the trunk's
    own logic: masks, optimizer and schedule rewinding) trains the copies."""

    def __init__(self, *args, state: dict, **kwargs):
        super().__init__(*args, **kwargs)
        self._state = state

    def rewind_state(self) -> dict:
        return self._state


# ---- the experiment-level driver ---------------------------------------------------------------

def load_configs(exp_path: str | Path) -> tuple[object, LotteryConfig]:
    """The (task recipe, lottery) configs of a lottery experiment folder, from its config.json:
    the recipe is a `TrainConfig` for classification, else the config of the task it names."""
    from ticketlab.engine.tasks import get_task
    path = Path(exp_path) / "config.json"
    if not path.exists():
        raise TicketlabError(f"{exp_path} is not an experiment folder (no config.json)")
    body = read_json(path)
    if body.get("kind") != "lottery":
        raise TicketlabError(f"{exp_path} is a {body.get('kind')!r} experiment; a lottery one is needed")
    cfg = body["config"]
    task = get_task(cfg.get("task", "classify"))
    return (C.from_dict(task.config, cfg["train"], source=str(path)),
            stored_lottery(cfg["lottery"], source=str(path)))


def experiment_task(exp_path: str | Path) -> str:
    """The task name of a lottery experiment folder (`classify` for folders that predate tasks)."""
    body = read_json(Path(exp_path) / "config.json")
    return body.get("config", {}).get("task", "classify")


def open_replicate(exp_path: str | Path, replicate: int = 0, *, data=None, data_dir=None, progress: bool = False,
                   checkpoint_every: int = 1000, rewind_iter: int | None = None) -> Replicate:
    """Replicate `replicate` of a lottery experiment folder, with its trainer and seeds as
    `ticketlab.api.lottery` made them (`rewind_iter` overrides the experiment's, e.g. for θk).
    `data` (classification only) reuses an already loaded dataset."""
    from ticketlab.engine.tasks import get_task
    from ticketlab.domains.classify import ClassifyTrainer

    train_cfg, lot_cfg = load_configs(exp_path)
    if rewind_iter is not None:
        lot_cfg = dataclasses.replace(lot_cfg, rewind_iter=rewind_iter)
    seed, data_seed = replicate_seeds(train_cfg, replicate)
    cfg_r = dataclasses.replace(train_cfg, init_seed=seed, data_seed=data_seed)
    task = experiment_task(exp_path)
    if task == "classify":
        trainer = ClassifyTrainer(cfg_r, data, data_dir=data_dir, progress=progress, checkpoint_every=checkpoint_every)
    else:
        trainer = get_task(task).make_trainer(cfg_r, data_dir=data_dir, progress=progress,
                                              checkpoint_every=checkpoint_every)
    return Replicate(lot_cfg, trainer, Path(exp_path), replicate, seed=seed, data_seed=data_seed)


def instability_dir(exp_path: str | Path, replicate: int, level: int, rewind_iter: int) -> Path:
    """Folder of one instability measurement (copies and instability.json)."""
    return Path(exp_path) / f"replicate_{replicate}" / "instability" / f"level_{level}" / f"k_{rewind_iter}"


def instability(exp_path: str | Path, *, level: int, rewind_iter: int, replicate: int = 0, points: int = 11,
                data_seeds: tuple[int, int] = (1000, 1001), data=None, data_dir=None,
                progress: bool = False, checkpoint_every: int = 1000, allow_inexact: bool = False) -> dict:
    """Instability of the ticket at `level` of replicate `replicate`, rewound to `rewind_iter` (k).

    Trains two copies from θk (cached), evaluates the test error at `points` α along the linear
    path between their final weights, writes `instability.json` and returns its content:
    {level, rewind_iter, replicate, density, alphas, errors, instability, endpoint_errors,
    data_seeds, points, rewind_source, rewind_check, mask_rewind_iter, copies}. A stored result with
    the same `points` and `data_seeds` is returned without any computation. `data` (a loaded
    `ticketlab.data.Dataset`) saves reloading the dataset across calls. θk is reproduced when
    the trunk did not save it (see `rewind_point`; `allow_inexact` accepts a reproduction that
    differs from the trunk's records, flagged in `rewind_check`).
    """
    from ticketlab.engine.store import Experiment

    exp_path = Path(exp_path)
    _, lot_cfg = load_configs(exp_path)
    trained_in = read_json(exp_path / "config.json").get("precision", _precision.DEFAULT)
    if _precision.current() != trained_in:  # θk is checked against the trunk's records, in its arithmetic
        raise ConfigError(f"precision: got {_precision.current()!r}, but {exp_path.name} was trained in "
                          f"{trained_in!r}; measure its instability with --precision {trained_in}")
    if isinstance(points, bool) or not isinstance(points, int) or points < 3:
        raise ConfigError(f"points: got {points!r}, expected an integer >= 3")
    seeds = [int(s) for s in data_seeds]
    if len(seeds) != 2 or seeds[0] == seeds[1] or min(seeds) < 0:
        raise ConfigError(f"data_seeds: got {tuple(data_seeds)!r}, expected two different non-negative seeds")
    for name, v in (("level", level), ("rewind_iter", rewind_iter), ("replicate", replicate)):
        if v < 0:
            raise ConfigError(f"{name}: got {v}, expected an integer >= 0")
    out_dir = instability_dir(exp_path, replicate, level, rewind_iter)
    out_path = out_dir / "instability.json"
    if out_path.exists():
        cached = read_json(out_path)
        if cached.get("points") == points and cached.get("data_seeds") == seeds:
            return cached

    mask_path = exp_path / f"replicate_{replicate}" / f"level_{level}" / "mask.pt"
    if not mask_path.exists():
        raise TicketlabError(f"{exp_path.name}: replicate {replicate} has no level {level} ({mask_path} is "
                             f"missing); run the lottery with more levels / replicates first")
    trunk = open_replicate(exp_path, replicate, data=data, data_dir=data_dir, progress=progress,
                           checkpoint_every=checkpoint_every, rewind_iter=rewind_iter)
    trainer, seed, cfg_k = trunk.trainer, trunk.seed, trunk.cfg
    if rewind_iter > trainer.total_iterations:
        raise ConfigError(f"rewind_iter: got {rewind_iter}, expected at most the run length "
                          f"({trainer.total_iterations} iterations)")
    masks = load_masks(mask_path)

    with Experiment(exp_path).lock(f"instability-replicate_{replicate}", wait=True):
        state, origin = rewind_point(trunk, rewind_iter, allow_inexact=allow_inexact)
        finals, copies = [], []
        for s in seeds:
            run_dir = out_dir / f"data_seed_{s}"
            desc = f"rep {replicate} level {level} k={rewind_iter} copy data_seed={s}"
            log.info("%s", desc)
            rep = _Rewound(cfg_k, trainer, exp_path, replicate, seed=seed, data_seed=s, state=state)
            summary = rep.train_from_rewind(run_dir, masks, None, desc)
            finals.append(final_weights(run_dir))
            copies.append({"data_seed": s, "run": str(run_dir.relative_to(exp_path)),
                           "final_test_acc": summary["final"]["test_acc"],
                           "es_test_acc": summary["early_stop"]["test_acc"]})
        errors = error_along_path(lambda: trainer.build(seed), finals[0], finals[1],
                                  trainer.data.test.x, trainer.data.test.y, points)
        result = {"level": level, "rewind_iter": rewind_iter, "replicate": replicate,
                  "density": M.density(masks), "alphas": path_alphas(points), "errors": errors,
                  "instability": instability_from_errors(errors), "endpoint_errors": [errors[0], errors[-1]],
                  "data_seeds": seeds, "points": points, "rewind_source": origin["source"],
                  "rewind_check": origin.get("check"),
                  "mask_rewind_iter": lot_cfg.rewind_iter, "copies": copies}
        integrity.write_json(out_path, result)
    return result


def instability_rows(exp_path: str | Path) -> list[dict]:
    """Every stored instability result of an experiment, by (level, rewind_iter, replicate)."""
    rows = [read_json(p)
            for p in Path(exp_path).glob("replicate_*/instability/level_*/k_*/instability.json")]
    return sorted(rows, key=lambda r: (r["level"], r["rewind_iter"], r["replicate"]))


__all__ = ["interpolate", "path_alphas", "error_along_path", "instability_from_errors", "reproduce_rewind_point",
           "rewind_point", "load_configs", "open_replicate", "instability_dir", "instability", "instability_rows"]
