"""The run folder: the one place where a training run's files are written and read back.

Every training loop of ticketlab (classification, language, RL, teacher–student) keeps its run in a
folder of the same layout (docs/rl_nlp.md §5), so the lottery engine, the store, the tables, the
plots and the report read any run alike:

    metrics.jsonl      one JSON row per evaluation; "iter" is the iteration
    snapshot_<k>.pt    the state before the step at iteration k (θ0 and the rewind points θk)
    checkpoint.pt      the resume state, every checkpoint interval; deleted when the run finishes
    checkpoint.prev.pt the resume state before it, kept until the next one (see `resume_group`)
    final.pt           the state at the end
    summary.json       written last: its presence marks the run done

A state file is a dict of plain values and tensors: "iteration", "rng" (torch's RNG state, for
dropout) and what the loop puts there ("model", "masks", "optimizer", "hooks", ...). It loads with
`torch.load(weights_only=True)`. Every file is written atomically (`ticketlab.core.atomic`): an
interrupted write leaves the previous file, never half of one. Every file is also recorded in the
folder's `manifest.json` (sha256 and size, `ticketlab.core.integrity`) and checked on every read:
a damaged file raises a one-line `DamagedError` naming it, never a wrong result or a traceback. Stores written before the keys were
unified (the teacher–student loop wrote "step") stay readable: `load_state` and `read_metrics`
rename "step" to the canonical key.

The early-stopping row is chosen after training on validation data, never on test data
(Frankle & Carbin 2019, App. C), and never at the run's untrained start: `early_stopping`. Every
summary with an early-stopping row says whether the run converged (`converged`, docs/lottery.md §7).
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
from pathlib import Path
from typing import Sequence

import torch

from ticketlab.core import integrity
from ticketlab.core.errors import DamagedError
from ticketlab.training import device as _device

ITER = "iter"            # the iteration of a metrics row
ITERATION = "iteration"  # the iteration of a state file
OLD_ITER = "step"        # what the teacher–student loop wrote for both, before ITER / ITERATION

CHECKPOINT, METRICS, FINAL, SUMMARY = "checkpoint.pt", "metrics.jsonl", "final.pt", "summary.json"
PREVIOUS = "checkpoint.prev.pt"  # the checkpoint before the last: a group's common resume point
AT_START = "at_start"    # marks an early-stopping row that is the run's untrained start (`early_stopping`)
# A run converged when its early-stopping iteration lies before this fraction of the run, measured
# from its start (iteration 0 or the rewind point) to its end. A best validation score in the last
# fifth means the curve was still improving when training stopped (issue 18: under-trained dense
# baselines at 4,000 iterations on Fashion-MNIST stopped at their last evaluations): see `converged`.
CONVERGED_BEFORE = 0.8

log = logging.getLogger(__name__)


def snapshot_name(k: int) -> str:
    """The file of the state before the step at iteration `k`."""
    return f"snapshot_{k}.pt"


# ---- files ------------------------------------------------------------------------------

def save_file(path: str | Path, obj) -> None:
    """Atomically `torch.save` a dict of plain values and tensors (loadable with weights_only),
    recorded in its folder's manifest. Tensors are written as CPU tensors, loadable on any device."""
    buf = io.BytesIO()
    torch.save(_device.cpu_state(obj), buf)
    integrity.write_bytes(path, buf.getvalue())


def load_file(path: str | Path) -> dict:
    """Load a file written by `save_file`, checked against its folder's manifest, without unpickling
    arbitrary objects (`weights_only=True`). DamagedError when it is damaged or not such a file."""
    data = integrity.read_bytes(path)
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, a pickle of other objects, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        first = first if len(first) <= 100 else first[:100].rsplit(" ", 1)[0] + " …"
        raise DamagedError(f"{path}: not a readable ticketlab state file ({first}); {integrity.ADVICE}") from None
    if not isinstance(obj, dict):
        raise DamagedError(f"{path}: expected a dict of tensors, found a {type(obj).__name__}; {integrity.ADVICE}")
    return obj


def load_tensors(path: str | Path) -> dict:
    """`load_file` of a dict of tensors only (mask.pt); DamagedError when it holds anything else."""
    obj = load_file(path)
    if not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DamagedError(f"{path}: expected a dict of tensors, found other values; {integrity.ADVICE}")
    return obj


def load_state(path: str | Path) -> dict:
    """Load a state file without unpickling arbitrary objects (`weights_only=True`), checked against
    its folder's manifest (`load_file`).

    A run state written with the old "step" key reads with "iteration" instead.
    """
    state = load_file(path)
    if OLD_ITER in state and ITERATION not in state:
        state = {(ITERATION if k == OLD_ITER else k): v for k, v in state.items()}
    return state


def save_state(path: str | Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
               iteration: int, masks: dict | None = None, **extra) -> None:
    """Atomically write a network's state: weights, masks, optimizer state, iteration, RNG state.

    `extra` holds further plain values (floats, ints, tensors), e.g. the elapsed time.
    """
    path = Path(path)
    RunDir(path.parent).save(path.name, iteration, model=model.state_dict(), masks=dict(masks or {}),
                             optimizer=optimizer.state_dict() if optimizer is not None else None, **extra)


def read_metrics(path: str | Path, upto: int | None = None) -> list[dict]:
    """The rows of a metrics.jsonl (none if it is missing), up to iteration `upto` when given
    (a resumed run drops the rows after its checkpoint). An old "step" key reads as "iter"."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for n, line in enumerate(integrity.read_bytes(path).decode(errors="replace").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError:
                raise DamagedError(f"{path}: line {n} is not a JSON row (cut by an interrupted write?); "
                                   f"{integrity.ADVICE}") from None
    rows = [{(ITER if k == OLD_ITER else k): v for k, v in r.items()} if OLD_ITER in r and ITER not in r else r
            for r in rows]
    return rows if upto is None else [r for r in rows if r[ITER] <= upto]


def write_metrics(path: str | Path, rows: Sequence[dict]) -> None:
    """Atomically write a metrics.jsonl, one JSON row per evaluation (recorded in the manifest)."""
    integrity.write_text(path, "".join(strict_json(r) + "\n" for r in rows))


def early_stopping(rows: Sequence[dict], metric: str, *, higher_is_better: bool = False,
                   select_from: int = 0) -> dict:
    """The row with the best `metric` (lowest, or highest with `higher_is_better`), the first on
    ties: the early-stopping point, when `metric` is measured on validation data. Only rows at
    iteration `select_from` or later are candidates: a run whose network takes its final form only
    there (GMP reaches its sparsity at the end of its pruning schedule) is never judged before.

    The run's first row (iteration 0, or the rewind point) evaluates the network before any
    training, so it is never chosen: an untrained network must not stand for a trained one
    (issue 18; an RL ticket's reported return was its rewound weights'). Rows whose `metric` is null
    (after a divergence) are skipped. A run with no usable row after its start returns its first
    row marked `AT_START: True`, with a warning, never silently."""
    rows = list(rows)
    start = min(r[ITER] for r in rows)
    select_from = min(select_from, max(r[ITER] for r in rows))  # the run's last evaluation always counts
    trained = [r for r in rows if r[ITER] > start and r[ITER] >= select_from and r.get(metric) is not None]
    if not trained:
        log.warning("early stopping: no evaluation after the run's start (iteration %d) has a %s; the "
                    "start, before any training, is reported and marked %r", start, metric, AT_START)
        first = min(rows, key=lambda r: r[ITER])
        return {**first, AT_START: True}
    if higher_is_better:
        return max(trained, key=lambda r: (r[metric], -r[ITER]))
    return min(trained, key=lambda r: (r[metric], r[ITER]))


def converged(es_iter: int, start: int, end: int, *, at_start: bool = False) -> bool | None:
    """Whether a run converged: its early-stopping iteration lies before `CONVERGED_BEFORE` (80 %) of
    the run from `start` to `end`. A run chosen at its untrained start (`at_start`) did not; a run
    of no length has no answer (None)."""
    if end <= start:
        return None
    return not at_start and es_iter - start < CONVERGED_BEFORE * (end - start)


def summary_converged(summary: dict, rows: Sequence[dict] = ()) -> bool | None:
    """A run summary's convergence: its `converged` field, or for a summary written before the field
    existed, computed from its early-stopping row and its run's start and end (`start_iter`,
    `iterations`; else the first and last metrics `rows`). None when it cannot be told (no
    early-stopping row: teacher–student runs) or the run diverged (counted apart)."""
    if "converged" in summary:
        return summary["converged"]
    es = summary.get("early_stop")
    if not es or summary.get("diverged"):
        return None
    its = [r[ITER] for r in rows]
    start = summary.get("start_iter", min(its) if its else None)
    if start is not None and summary.get("select_from", 0) > start:  # judged only from there (GMP)
        start = summary["select_from"]
    end = summary.get("iterations", max(its) if its else None)
    if start is None or end is None:
        return None
    return converged(es[ITER], start, end, at_start=bool(es.get(AT_START)))


def finite(obj):
    """`obj` with every NaN or infinite float replaced by None (JSON's null), recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def strict_json(obj, **kw) -> str:
    """Strict JSON (RFC 8259: no bare NaN or Infinity): a non-finite metric is written as null; a
    diverged run says so in its summary (`"diverged"`, `ticketlab.training.loop`)."""
    return json.dumps(finite(obj), allow_nan=False, **kw)


def read_json(path: str | Path) -> dict:
    """A JSON file of the store (summary.json, config.json), checked against its folder's manifest."""
    try:
        return json.loads(integrity.read_bytes(path))
    except ValueError as e:
        raise DamagedError(f"{path}: not valid JSON ({e}); {integrity.ADVICE}") from None


# ---- one run ----------------------------------------------------------------------------

class RunDir:
    """One run's folder: its states, metrics rows, summary, and the checks a resume makes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def create(self) -> "RunDir":
        """Make the folder, and remove the temp files an earlier, killed run left in it."""
        self.path.mkdir(parents=True, exist_ok=True)
        integrity.remove_strays(self.path)
        return self

    def done(self) -> bool:
        """Whether the run has finished (its summary.json exists)."""
        return (self.path / SUMMARY).exists()

    def summary(self) -> dict:
        """The finished run's summary.json, checked against the manifest and, for a file the manifest
        does not cover (an old store, or a deleted manifest), its shape: an object whose rows
        (`final`, `early_stop`) are objects. A DamagedError names it otherwise."""
        s = read_json(self.path / SUMMARY)
        bad = ("not a JSON object" if not isinstance(s, dict) else
               next((f"its {k!r} is {type(s[k]).__name__}, expected an object" for k in ("final", "early_stop")
                     if k in s and s[k] is not None and not isinstance(s[k], dict)), None))
        if bad:
            raise DamagedError(f"{self.path / SUMMARY}: not a run summary ({bad}); {integrity.ADVICE}")
        return s

    # ---- state files ----
    def save(self, name: str, iteration: int, **state) -> None:
        """Atomically write state file `name`: `state` (None values left out), the iteration and
        torch's RNG state."""
        state = {k: v for k, v in state.items() if v is not None}
        body = {ITERATION: int(iteration), **_device.cpu_state(state),  # CPU tensors: loadable on any device
                "rng": torch.get_rng_state(), **_device.rng_state(state)}  # the run's GPU's RNG, on CUDA
        save_file(self.path / name, body)

    def load(self, name: str) -> dict:
        """State file `name` of this run, checked against the manifest (`load_state`)."""
        return load_state(self.path / name)

    def damaged(self) -> list[tuple[Path, str]]:
        """The files of this run that fail its manifest: `integrity.damaged`."""
        return integrity.damaged(self.path)

    def checkpoint_iter(self) -> int | None:
        """The iteration of the run's checkpoint, None when it has none."""
        ckpt = self.path / CHECKPOINT
        return int(load_state(ckpt)[ITERATION]) if ckpt.exists() else None

    # ---- metrics ----
    def read_metrics(self, upto: int | None = None) -> list[dict]:
        """The run's metrics rows, up to iteration `upto` when given (`read_metrics`)."""
        return read_metrics(self.path / METRICS, upto)

    def write_metrics(self, rows: Sequence[dict]) -> None:
        """Atomically rewrite the run's metrics.jsonl with `rows` (`write_metrics`)."""
        write_metrics(self.path / METRICS, rows)

    # ---- the protocol ----
    def resume(self, masks: dict | None = None) -> tuple[dict, list[dict]] | None:
        """(checkpoint state, metrics rows up to it) of an interrupted run; None for a new one.

        The state is checkpoint.pt's (or checkpoint.prev.pt's, in a folder where only that one is
        left). Raises ValueError when the checkpoint was trained under other `masks` than this run's.
        """
        name = next((n for n in (CHECKPOINT, PREVIOUS) if (self.path / n).exists()), None)
        return None if name is None else self._resumed(name, load_state(self.path / name), masks)

    def _resumed(self, name: str, state: dict, masks: dict | None) -> tuple[dict, list[dict]]:
        saved = state.get("masks", {})
        if masks and (set(saved) != set(masks)
                      or any(not torch.equal(saved[n], masks[n].to(saved[n].device)) for n in masks)):
            raise ValueError(f"{self.path / name}: the checkpoint's masks differ from this run's masks")
        return state, self.read_metrics(int(state[ITERATION]))

    def resume_points(self, names: Sequence[str] = (CHECKPOINT, PREVIOUS)) -> dict[int, tuple[str, dict]]:
        """The states this run can resume from, by iteration: {iteration: (file name, state)}, from the
        files `names` that exist, the first one named winning an iteration both hold (checkpoint.pt,
        the newest, before checkpoint.prev.pt)."""
        out = {}
        for name in names:
            if (self.path / name).exists():
                state = load_state(self.path / name)
                out.setdefault(int(state[ITERATION]), (name, state))
        return out

    def checkpoint(self, rows: Sequence[dict], iteration: int, **state) -> None:
        """Write the resume point: the metrics rows so far, then checkpoint.pt, the one before it
        set aside as checkpoint.prev.pt (so that a group whose runs were stopped between two of their
        checkpoint writes still has a resume point in common: `resume_group`)."""
        self.write_metrics(rows)
        if (self.path / CHECKPOINT).exists():  # kept in place until the new one replaces it atomically
            integrity.keep(self.path / CHECKPOINT, self.path / PREVIOUS)
        self.save(CHECKPOINT, iteration, **state)

    def finish(self, rows: Sequence[dict], summary: dict, *, drop: bool = True) -> dict:
        """Mark the run done: the metrics rows, summary.json (last), then drop the checkpoints.

        `drop=False` keeps them: a stack finishes its runs in two passes, every summary first, then
        every run's `drop_checkpoints`, so that a stop between two runs' summaries leaves every run
        its checkpoint and the whole stack resumes (`finished`). A summary with an early-stopping row
        gets its `converged` field here (added to `summary` in place, so a caller that returns its
        own dict returns it too): every domain's run reports it alike (`summary_converged`)."""
        if "early_stop" in summary and "converged" not in summary:
            summary["converged"] = summary_converged(summary, rows)
        self.write_metrics(rows)
        integrity.write_text(self.path / SUMMARY, strict_json(summary, indent=2, sort_keys=True) + "\n")
        if drop:
            self.drop_checkpoints()
        return summary

    def drop_checkpoints(self) -> None:
        """Delete the run's resume states (checkpoint.pt, checkpoint.prev.pt), once it is done."""
        integrity.forget(self.path / CHECKPOINT)
        integrity.forget(self.path / PREVIOUS)

    def has_checkpoint(self) -> bool:
        """Whether the run has a resume state."""
        return (self.path / CHECKPOINT).exists() or (self.path / PREVIOUS).exists()


# ---- a group of runs trained together ---------------------------------------------------

def finished(runs: Sequence[RunDir], who: str) -> list[dict] | None:
    """The summaries when every run of a group is done (a checkpoint left by a stop between its last
    passes is dropped); None when none is, or when a stop came between two runs' summaries (every run
    still has its checkpoint: the whole group resumes, and its done runs are finished again, the same);
    ValueError when some are done and the others cannot resume with them."""
    done = [r.done() for r in runs]
    if all(done):
        for r in runs:
            if r.has_checkpoint():
                r.drop_checkpoints()
        return [r.summary() for r in runs]
    if any(done):
        if all(r.has_checkpoint() for r in runs):
            return None
        raise ValueError(f"{who}: some runs of the group are finished and others are not; group them apart")
    return None


def resume_group(runs: Sequence[RunDir], who: str, masks: Sequence[dict | None] | None = None
                 ) -> tuple[list[dict], list[list[dict]]] | None:
    """`RunDir.resume` for runs trained as one computation: the latest iteration every run can resume
    from, or None when the group starts afresh.

    The group writes its runs' checkpoints one after the other, so a run stopped between two of those
    writes leaves some runs one checkpoint ahead; each keeps the one before (`RunDir.checkpoint`),
    and the group resumes from that, the rows after it dropped. A run ahead is rolled back to it
    (its checkpoint.pt becomes that state again), so that the next checkpoint sets the shared one
    aside and a second stop at the same place still finds it. Runs that share no resume point (a
    stop between the group's first writes, or a store from before checkpoint.prev.pt) start the
    group afresh: their checkpoints are dropped, with a warning."""
    points = [r.resume_points((CHECKPOINT,)) for r in runs]  # the usual case: one iteration, no more to read
    if not all(len(p) == 1 for p in points) or len({next(iter(p)) for p in points}) > 1:
        for r, p in zip(runs, points):  # the states before: read only now, each file once
            p.update({i: v for i, v in r.resume_points((PREVIOUS,)).items() if i not in p})
    if not any(points):
        return None
    common = set(points[0]).intersection(*points[1:])
    if not common:
        at = ", ".join(f"{_short(r, runs)}: {sorted(p) or 'none'}" for r, p in zip(runs, points))
        log.warning("%s: the runs trained together have no checkpoint in common (%s); they start again from "
                    "the beginning", who, at)
        for r in runs:
            r.drop_checkpoints()
        return None
    it = max(common)
    for r, p in zip(runs, points):
        if p[it][0] == PREVIOUS:  # ahead: back to the shared state (on disk at `it` throughout)
            integrity.keep(r.path / PREVIOUS, r.path / CHECKPOINT)
    resumed = [r._resumed(CHECKPOINT, p[it][1], m) for r, m, p in zip(runs, masks or [None] * len(runs), points)]
    return [s for s, _ in resumed], [rows for _, rows in resumed]


def _short(run: RunDir, runs: Sequence[RunDir]) -> str:
    """A run's folder as the group's message names it: relative to the folder the group shares."""
    base = Path(os.path.commonpath([str(r.path) for r in runs]))
    return str(run.path.relative_to(base.parent if base == run.path else base))


__all__ = ["RunDir", "early_stopping", "finished", "resume_group", "load_state", "load_file", "load_tensors", "save_state", "save_file",
           "read_json", "strict_json", "finite",
           "read_metrics", "write_metrics", "snapshot_name", "ITER", "ITERATION", "CHECKPOINT", "PREVIOUS", "METRICS",
           "FINAL", "SUMMARY", "AT_START", "CONVERGED_BEFORE", "converged", "summary_converged"]
