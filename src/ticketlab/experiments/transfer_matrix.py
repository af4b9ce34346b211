"""A transfer matrix: tickets of several sources trained on several targets, as one run.

Morcos et al. 2019 (§4, Figs. 2–4) train the tickets of every source dataset and optimizer on every
target. A matrix file (TOML; see examples/transfer_matrix.toml) names training *recipes* and the
(source, target) pairs to run:

    [base]                  # TrainConfig and LotteryConfig keys shared by every recipe (flat, or in
    model = "lenet300_100"  #   [base.train] / [base.lottery]); the lottery keys are the pruning recipe
    prune_fraction = 0.2
    replicates = 3
    [transfer]              # TransferConfig keys: levels, controls, output_layer, start, control_draws
    levels = [4, 8, 12]
    [recipes.mnist_adam]    # one table per recipe: TrainConfig keys that differ from [base]
    dataset = "mnist"
    [matrix]
    sources = ["mnist_adam", "fmnist_adam"]    # every (source, target) with source != target,
    targets = ["mnist_adam", "fmnist_adam"]    #   plus any explicit pairs:
    pairs = [["mnist_sgd", "mnist_adam"]]
    [sweep]                 # optional run options (ticketlab.engine.options.RunOptions: workers, stack,
    workers = 2             #   ...), as in a sweep file; arguments and flags override them

Running it (`ticketlab transfer --matrix FILE`, `ticketlab.api.transfer(matrix=FILE)`) first runs the
lottery of every recipe used as a source, and of every target when its own ticket or dense network is
a control (`ticketlab.api.lottery`: one experiment per recipe, shared by all pairs), then every
transfer (`ticketlab.experiments.transfer.run`). Everything lands in the store as if run by hand, so finished
work is skipped and interrupted work resumes.

Reading a matrix back without training (`stored_transfers`): a summary of a run in progress must not
start the runs it lacks, as `run_matrix` would. `paired` compares the transferred ticket with its controls
replicate by replicate (source replicate r and its controls share the target's seeds + r), which is
tighter than comparing two means when the replicates differ more than the branches do (issue #18).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

from ticketlab.core import config as C
from ticketlab.core.errors import ConfigError
from ticketlab.engine.options import RunOptions
from ticketlab.experiments.lottery.trunk import LotteryConfig
from ticketlab.training.loop import TrainConfig
from ticketlab.experiments.transfer import TransferConfig, describe, target_overrides, transfer_rows
from ticketlab.engine import results
from ticketlab.training.rundir import read_json

log = logging.getLogger(__name__)

TABLES = ("base", "transfer", "recipes", "matrix", "sweep")  # [sweep]: run options, see `run_options`


@dataclass(frozen=True)
class Matrix:
    """A parsed matrix file."""

    recipes: dict            # name -> TrainConfig
    lottery: LotteryConfig   # the pruning recipe (and the lotteries' run shape)
    transfer: TransferConfig  # without source and target
    pairs: tuple             # ((source name, target name), ...)


def load_matrix(path: str | Path) -> Matrix:
    """Read and check a matrix file; every problem is a ConfigError naming the key and the file."""
    path = Path(path)
    doc = C.load_toml(path)
    unknown = sorted(set(doc) - set(TABLES))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in {path}; a matrix file has [{'], ['.join(TABLES)}]")
    base = doc.get("base", {})
    train_keys, lot_keys = set(C.field_names(TrainConfig)), set(C.field_names(LotteryConfig))
    flat = {k: v for k, v in base.items() if not (k in ("train", "lottery") and isinstance(v, dict))}
    train = {**{k: v for k, v in flat.items() if k in train_keys}, **base.get("train", {})}
    lot = {**{k: v for k, v in flat.items() if k in lot_keys}, **base.get("lottery", {})}
    stray = sorted(set(flat) - train_keys - lot_keys)
    if stray:
        raise ConfigError(f"unknown key {stray[0]!r} in [base] of {path}; keys of `ticketlab lottery` go there")
    lottery = C.from_dict(LotteryConfig, lot, source=str(path))
    tr = dict(doc.get("transfer", {}))
    for k in ("source", "target"):
        if k in tr:
            raise ConfigError(f"{k!r} in [transfer] of {path}: sources and targets are recipes named in [matrix]")
    transfer = C.from_dict(TransferConfig, tr, source=f"[transfer] of {path}")
    recipes = {}
    for name, over in doc.get("recipes", {}).items():
        if not isinstance(over, dict):
            raise ConfigError(f"recipes.{name} in {path}: expected a table of TrainConfig keys")
        recipes[name] = C.from_dict(TrainConfig, {**train, **over}, source=f"[recipes.{name}] of {path}")
    mx = doc.get("matrix", {})
    bad = sorted(set(mx) - {"sources", "targets", "pairs"})
    if bad:
        raise ConfigError(f"unknown key {bad[0]!r} in [matrix] of {path}; known: sources, targets, pairs")
    pairs = [(s, t) for s in mx.get("sources", []) for t in mx.get("targets", []) if s != t]
    for p in mx.get("pairs", []):
        if not (isinstance(p, list) and len(p) == 2):
            raise ConfigError(f"pairs in [matrix] of {path}: got {p!r}, expected [source, target]")
        pairs.append(tuple(p))
    pairs = list(dict.fromkeys(pairs))
    for s, t in pairs:
        for name in (s, t):
            if name not in recipes:
                raise ConfigError(f"[matrix] of {path} names recipe {name!r}, which has no [recipes.{name}] "
                                  f"table; recipes: {', '.join(recipes) or 'none'}")
    if not pairs:
        raise ConfigError(f"{path}: the matrix has no (source, target) pair; give sources and targets, or pairs")
    return Matrix(recipes, lottery, transfer, tuple(pairs))


def run_options(path: str | Path) -> RunOptions:
    """The run options of a matrix file's [sweep] table (all defaults when it has none)."""
    table = C.load_toml(path).get("sweep", {})
    if not isinstance(table, dict):
        raise ConfigError(f"sweep: got {table!r} in {path}, expected a table [sweep] of run options")
    return RunOptions.from_table(table, source=f"[sweep] of {path}")


def lottery_shape(m: Matrix) -> LotteryConfig:
    """The lotteries' run shape: deep enough for the deepest transferred level, the transfer's replicates."""
    cfg = m.lottery
    if m.transfer.levels:
        cfg = dataclasses.replace(cfg, levels=max(m.transfer.levels), target_sparsity=None)
    if m.transfer.replicates:
        cfg = dataclasses.replace(cfg, replicates=max(cfg.replicates, m.transfer.replicates))
    return cfg


def run_matrix(m: Matrix, *, store=None, data_dir=None, progress: bool = True,
               checkpoint_every: int = 1000, workers: int = 1, stack: int = 8) -> dict:
    """Run the matrix's lotteries, then its transfers. Returns {"lotteries": {recipe: folder},
    "transfers": [{"source", "target", "experiment", "aggregate"}]}."""
    from ticketlab.experiments.lottery.runner import run_lottery
    from ticketlab.experiments.transfer import run
    lot = lottery_shape(m)
    needed = [s for s, _ in m.pairs]
    if {"own", "dense"} & set(m.transfer.controls):
        needed += [t for _, t in m.pairs]
    lotteries = {}
    for name in dict.fromkeys(needed):
        log.info("lottery of recipe %s (%s)", name, describe(m.recipes[name]))
        lotteries[name] = run_lottery(m.recipes[name], lot, store=store, data_dir=data_dir, progress=progress,
                                      checkpoint_every=checkpoint_every, workers=workers,
                                      stack=stack)["experiment"]
    transfers = []
    for s, t in m.pairs:
        log.info("transfer %s -> %s", s, t)
        cfg = dataclasses.replace(m.transfer, source=lotteries[s],
                                  target=target_overrides(m.recipes[s], m.recipes[t]),
                                  replicates=m.transfer.replicates or lot.replicates)
        res = run(cfg, store=store, data_dir=data_dir, progress=progress,
                  checkpoint_every=checkpoint_every, workers=workers, stack=stack)
        transfers.append({"source": s, "target": t, "experiment": res["experiment"], "aggregate": res["aggregate"]})
    return {"lotteries": lotteries, "transfers": transfers}


def summary(transfers: list[dict], metric: str = "es_test_acc") -> list[dict]:
    """One row per (pair, level): weights remaining and `metric` (mean, std) of the transferred ticket,
    the random ticket, the target's own ticket and the dense network; gaps in percentage points."""
    rows = []
    for tr in transfers:
        agg = {(a["branch"], a["level"]): a for a in tr["aggregate"]}
        dense = agg.get(("dense", 0))
        for (branch, L), a in sorted(agg.items(), key=lambda kv: kv[0][1]):
            if branch != "transfer":
                continue
            row = {"source": tr["source"], "target": tr["target"], "level": L, "remaining_%": 100 * a["density"],
                   "n": a["n"]}
            for b, key in (("transfer", "transfer"), ("random", "random"), ("own", "own")):
                c = agg.get((b, L))
                row[f"{key}_acc_%"] = 100 * c[metric] if c else None
                row[f"{key}_std"] = 100 * c[metric + "_std"] if c else None
            row["dense_acc_%"] = 100 * dense[metric] if dense else None
            for b in ("random", "own"):
                row[f"gap_vs_{b}_pp"] = (row["transfer_acc_%"] - row[f"{b}_acc_%"]
                                         if row[f"{b}_acc_%"] is not None else None)
            rows.append(row)
    return rows


def _identity(cfg) -> dict:
    """A config's hashed fields as the store records them (JSON types), for comparing with config.json."""
    return json.loads(json.dumps(C.to_dict(cfg, all_fields=False)))


def stored_transfers(m: Matrix, store) -> list[dict]:
    """The matrix's transfers already in `store`, found by their recorded identities; nothing trains.

    Returns what `run_matrix` returns under "transfers" ({"source", "target", "experiment",
    "aggregate"}), in the matrix's pair order, for the pairs whose transfer has started (its
    transfer.json exists); a pair whose runs are not all finished has fewer rows (`aggregate`'s n).
    Runs in another precision than fp32 are separate experiments and are not matched."""
    root = Path(store)
    lot_id = _identity(m.lottery)
    recipe_ids = {name: _identity(cfg) for name, cfg in m.recipes.items()}
    sources: dict[str, str] = {}  # lottery folder name -> recipe name
    for cfg_path in sorted(root.glob("lottery-*/config.json")):
        body = read_json(cfg_path)
        ident = body.get("identity", {})
        if body.get("precision") or ident.get("lottery") != lot_id:
            continue
        for name, rid in recipe_ids.items():
            if ident.get("train") == rid:
                sources[cfg_path.parent.name] = name
    tr_id = _identity(m.transfer)
    found = {}
    for cfg_path in sorted(root.glob("transfer-*/config.json")):
        body = read_json(cfg_path)
        ident = body.get("identity", {})
        if body.get("precision") or ident.get("transfer") != tr_id or not (cfg_path.parent / "transfer.json").exists():
            continue
        src = sources.get(ident.get("source"))
        tgt = [name for name, rid in recipe_ids.items() if ident.get("target") == rid]
        for t in tgt:
            found[(src, t)] = cfg_path.parent
    out = []
    for s, t in m.pairs:
        if (s, t) in found:
            path = found[(s, t)]
            out.append({"source": s, "target": t, "experiment": str(path),
                        "aggregate": results.aggregate(transfer_rows(path))})
    return out


def per_replicate(exp_path, metric: str = "es_test_acc") -> dict:
    """{(branch, level): {replicate: value}} of a transfer experiment's finished runs; a random
    ticket's value is the mean over its draws; diverged runs are left out."""
    groups: dict = {}
    for row in transfer_rows(exp_path):
        if row.get("diverged") is None and row.get(metric) is not None:
            groups.setdefault((row["branch"], row["level"]), {}).setdefault(row["replicate"], []).append(row[metric])
    return {k: {r: sum(v) / len(v) for r, v in reps.items()} for k, reps in groups.items()}


def paired_stats(a: dict, b: dict) -> dict:
    """a − b over the replicates both have ({replicate: value} each): n, mean, sample std (0 when
    n = 1, None when n = 0) and wins (replicates where a > b)."""
    keys = sorted(set(a) & set(b))
    d = [a[r] - b[r] for r in keys]
    if not d:
        return {"n": 0, "mean": None, "std": None, "wins": 0}
    mean = sum(d) / len(d)
    std = math.sqrt(sum((x - mean) ** 2 for x in d) / (len(d) - 1)) if len(d) > 1 else 0.0
    return {"n": len(d), "mean": mean, "std": std, "wins": sum(1 for x in d if x > 0)}


def paired(transfers: list[dict], metric: str = "es_test_acc") -> list[dict]:
    """One row per (pair, level): the transferred ticket minus the random ticket and minus the
    target's own ticket, replicate by replicate (`paired_stats`, in the metric's units), and how
    many replicates the transferred ticket wins."""
    rows = []
    for tr in transfers:
        v = per_replicate(tr["experiment"], metric)
        for (branch, L), t in sorted(v.items(), key=lambda kv: kv[0][1]):
            if branch != "transfer":
                continue
            row = {"source": tr["source"], "target": tr["target"], "level": L}
            for control in ("random", "own"):
                st = paired_stats(t, v.get((control, L), {}))
                row.update({f"vs_{control}_{k}": x for k, x in st.items()})
            rows.append(row)
    return rows


__all__ = ["Matrix", "load_matrix", "run_options", "lottery_shape", "run_matrix", "summary", "stored_transfers",
           "per_replicate", "paired_stats", "paired"]
