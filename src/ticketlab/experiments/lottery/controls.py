"""Lottery-ticket controls: branches off an IMP trunk, each stored beside it.

LTH (Frankle & Carbin 2019) §2, App. B and E; open_lth's branches. Each control is a
small function of (replicate, level, draw) that trains a network compared against the
ticket at the same level:

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

Folders: `replicate_<r>/<control>_<draw>/level_<L>/` for random controls,
`replicate_<r>/<control>/level_<L>/` for deterministic ones.
"""

from __future__ import annotations

import json

from ticketlab.core import masks as M, pruning, scores
from ticketlab.core.seeds import derive_seed
from ticketlab.experiments.lottery.trunk import (Plan, Replicate, execute, final_weights, load_masks, prune_level,
                               pruned_layers, save_masks)

RANDOM = ("reinit", "random_mask", "random_mask_global")


def branch_name(control: str, draw: int) -> str:
    """Folder name of a control branch."""
    return f"{control}_{draw}" if control in RANDOM else control


def control_seed(rep: Replicate, control: str, level: int, draw: int) -> int:
    """A 32-bit seed for a random control, stable across processes (`ticketlab.core.seeds`)."""
    return derive_seed(rep.seed, rep.r, control, level, draw, bits=32)


def control_masks(rep: Replicate, control: str, level: int, draw: int = 0) -> M.Masks:
    """The masks a control trains with at `level` (saved beside its run)."""
    run_dir = rep.level_dir(level, branch_name(control, draw))
    path = run_dir / "mask.pt"
    if path.exists():
        return load_masks(path)
    ticket = rep.masks(level)
    layers = pruned_layers(rep.cfg, rep.prunable_shapes)
    if control == "reinit":
        m = ticket
    elif control == "random_mask":
        m = pruning.random_mask_like(ticket, control_seed(rep, control, level, draw), "layerwise", layers)
    elif control == "random_mask_global":
        m = pruning.random_mask_like(ticket, control_seed(rep, control, level, draw), "global", layers)
    elif control == "oneshot":
        dense = final_weights(rep.level_dir(0)) if (rep.level_dir(0) / "summary.json").exists() else None
        if dense is None:
            rep.run_level(0)
            dense = final_weights(rep.level_dir(0))
        s = scores.magnitude({n: dense[n] for n in ticket})
        full = M.ones_masks(ticket)
        if rep.cfg.strategy == "layerwise":
            m = pruning.prune_to_density(s, full, M.layer_density(ticket))
        else:
            kept, total = M.count({n: ticket[n] for n in layers})
            m = pruning.prune_to_density(s, full, kept / total, layers)
    elif control == "continued":
        if level == 1:
            prev_w, prev_m = final_weights(rep.level_dir(0)), rep.masks(0)
        else:
            prev_dir = rep.level_dir(level - 1, "continued")
            run_control(rep, "continued", level - 1)
            prev_w, prev_m = final_weights(prev_dir), load_masks(prev_dir / "mask.pt")
        m = prune_level(rep.cfg, prev_w, prev_m, rep.output)
    else:
        raise ValueError(f"unknown control {control!r}")
    save_masks(path, m)
    return m


def plan_control(rep: Replicate, control: str, level: int, draw: int = 0) -> Plan:
    """The run of one control branch at one level, ready to train."""
    run_dir = rep.level_dir(level, branch_name(control, draw))
    m = control_masks(rep, control, level, draw)
    desc = f"rep {rep.r} {branch_name(control, draw)} level {level}"
    if control == "reinit":
        seed = control_seed(rep, control, level, draw)
        fresh = rep.trainer.build(seed).state_dict()
        return rep.plan_rewind(run_dir, m, fresh, desc, seed=seed)
    if control == "continued":
        prev = rep.level_dir(0) if level == 1 else rep.level_dir(level - 1, "continued")
        # a fresh optimizer and the full schedule again, from the trained weights: no reset
        return Plan(rep.trainer, run_dir, rep.start(final_weights(prev), m), m, data_seed=rep.data_seed, desc=desc)
    return rep.plan_rewind(run_dir, m, None, desc)


def run_control(rep: Replicate, control: str, level: int, draw: int = 0) -> dict:
    """Train (or load) one control branch at one level (cached and resumable like the trunk)."""
    run_dir = rep.level_dir(level, branch_name(control, draw))
    if (run_dir / "summary.json").exists():
        return json.loads((run_dir / "summary.json").read_text())
    plan = plan_control(rep, control, level, draw)
    rep.log(plan.desc)
    return execute([plan])[0]
