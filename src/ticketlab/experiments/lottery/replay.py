"""Recompute reproduces the original: a removed run is retrained in the stack it first trained in.

Runs trained as one stack (`ticketlab.training.stacked`) agree with the same runs trained alone
only to float rounding, and IMP amplifies that difference level by level (docs/architecture/store.md,
"Recompute semantics"). So when `ticketlab verify --repair` removes a run (`ticketlab.experiments.verify`),
its recompute must train in the same stack, with the same members in the same order:

- every stacked run's summary records its stack (`"stack"`: the members' folders relative to the
  experiment, in order; `ticketlab.training.loop.fit_many`), and the repair copies it into its
  entry of `<store>/repairs.jsonl`; when the summary itself was the damaged file, a surviving
  stack-mate's summary names the stack instead;
- the runner (`ticketlab.experiments.lottery.runner.run_tasks`) re-forms that stack: the removed
  members train for real, and the members still stored train again in a scratch folder
  (`<experiment>/.replay/`, removed once the stack is done), never overwriting their stored results.

Only runs named in the repairs log are looked up, so a normal run pays nothing. A removed run whose
stack is unknown (a summary from before this record, and no surviving stack-mate) is recomputed in
the stack the runner forms now, as before, and a warning says it may differ in the last bits.

Every recomputed run is marked (`mark_recomputed`): its summary gets `"recomputed": {"replayed":
true}` when it trained again in its original stack, `{"replayed": false}` when it could not (a
lottery run whose stack is unknown; transfer and teacher-student runs, which are not replayed) and
may differ from the original in the last bits. Everything derived from it was removed by the same
repair and is recomputed from it, so the store never mixes two histories either way.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterable

from ticketlab.core import integrity
from ticketlab.training.rundir import SUMMARY, read_json, strict_json

log = logging.getLogger(__name__)

SCRATCH = ".replay"  # under the experiment: replayed stack-mates train here, then it is removed


def removed_runs(exp: Path) -> dict[str, list[str] | None]:
    """The runs of experiment `exp` that a repair removed: {folder relative to exp: the stack's
    members recorded for it, or None}; the latest entry of each run wins."""
    path = Path(exp).parent / "repairs.jsonl"
    out: dict[str, list[str] | None] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        try:
            e = json.loads(line)
        except ValueError:  # a cut last line (a killed append): the entries before it still count
            continue
        if isinstance(e, dict) and e.get("experiment") == Path(exp).name and isinstance(e.get("run"), str):
            out[e["run"]] = e.get("stack") or None
    return out


def stack_from_mates(exp: Path, name: str) -> list[str] | None:
    """The stack run `name` trained in, as recorded by a stack-mate's surviving summary (None if none)."""
    for summary in sorted(Path(exp).glob("replicate_*/**/summary.json")):
        try:
            stack = json.loads(summary.read_text()).get("stack")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(stack, list) and name in stack:
            return stack
    return None


def original_stacks(exp: Path, pending: list[str], done) -> list[list[str]]:
    """The stacks to re-form for the `pending` runs (folders relative to `exp`): one list of members,
    in their original order, per stack that a removed pending run trained in. A stack is re-formed
    when each member is pending here or stored (`done(name)`); the pending runs it holds then train
    only in it."""
    removed = removed_runs(exp)
    stacks: list[list[str]] = []
    claimed: set[str] = set()
    for name in pending:
        if name not in removed or name in claimed:
            continue
        stack = removed[name] or stack_from_mates(exp, name)
        if not stack or len(stack) < 2:
            if stack is None:
                log.warning("%s/%s: the stack it first trained in is unknown; recomputed in the stack formed "
                            "now, it may differ from the original in the last bits", exp, name)
            continue
        if any(m in claimed or (m not in pending and not done(m)) for m in stack):
            log.warning("%s/%s: its original stack (%s) cannot be re-formed now; recomputed in the stack "
                        "formed now, it may differ from the original in the last bits", exp, name, ", ".join(stack))
            continue
        stacks.append(list(stack))
        claimed.update(stack)
    return stacks


RECOMPUTED = "recomputed"  # the summary key of a run recomputed after a repair


def mark_recomputed(exp: Path, names: Iterable[str] | None = None, replayed: Iterable[str] = ()) -> list[str]:
    """Mark the runs of `exp` (among `names`, its folders relative to `exp`, when given: the runs this
    process trained) that a repair removed and that have been recomputed since (a summary without the
    mark): `"recomputed": {"replayed": name in replayed}`. Returns the runs marked now."""
    replayed, marked = set(replayed), []
    removed = removed_runs(exp)
    for name in removed if names is None else [n for n in names if n in removed]:
        path = Path(exp) / name / SUMMARY
        if not path.exists():
            continue
        summary = read_json(path)
        if RECOMPUTED in summary:
            continue
        summary[RECOMPUTED] = {"replayed": name in replayed}
        integrity.write_text(path, strict_json(summary, indent=2, sort_keys=True) + "\n")
        if name not in replayed:
            log.warning("%s/%s: recomputed after a repair, not in its original stack: it may differ from "
                        "the original in the last bits (marked in its summary)", exp, name)
        marked.append(name)
    return marked


__all__ = ["SCRATCH", "RECOMPUTED", "removed_runs", "stack_from_mates", "original_stacks", "mark_recomputed"]
