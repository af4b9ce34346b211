"""`ticketlab verify`: check a whole store against its manifests, list every damaged artifact with
the results derived from it, and (`repair`) remove them so that the next run recomputes them.

What derives from what follows IMP's order (Frankle & Carbin 2019 §2; the store's layout in
`ticketlab.experiments.lottery.trunk` and `ticketlab.experiments.transfer`):

- a trunk run (`replicate_<r>/level_<L>`): level L+1's mask is pruned from level L's trained
  weights, and every later run rewinds to level 0's snapshot θk, so every run of replicate r at a
  level >= L (trunk and controls) derives from it, and so do the transfer runs of replicate r at
  levels >= L of every transfer experiment whose source it is;
- a control run (`replicate_<r>/<branch>/level_<L>`): its own branch's levels >= L (a
  `continued` chain trains from the level below);
- instability results under `replicate_<r>/instability/level_<L>` are among those levels' runs;
  another folder of a lottery or transfer experiment: that folder;
- any other run folder: itself and the folders below it; a file at an experiment's top
  (config.json, a `train` run) is the whole experiment.

Repair deletes them all, so the store never mixes two histories (issue 17 of this repo). It
appends what it removed, with the stack each run trained in (`trained_with` and its members,
`stack`), to `<store>/repairs.jsonl`; the lottery's next run re-forms that stack to recompute the
run bit-identically (`ticketlab.experiments.lottery.replay`).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ticketlab.core import atomic as _atomic
from ticketlab.core import integrity
from ticketlab.core.errors import DamagedError
from ticketlab.engine.store import Experiment, Store
from ticketlab.training.rundir import RunDir, load_file, load_tensors, read_json, read_metrics

_LEVEL = re.compile(r"^level_(\d+)$")
_REPLICATE = re.compile(r"^replicate_(\d+)$")
_CHAINED = ("lottery", "transfer")  # kinds whose runs derive from one another level by level


@dataclass
class Damage:
    """One damaged file, and the run folders derived from it (its own run's first)."""

    experiment: Path
    file: Path
    problem: str
    derived: list[Path] = field(default_factory=list)

    def row(self) -> dict:
        root = self.experiment.parent
        return {"experiment": self.experiment.name, "file": str(self.file.relative_to(self.experiment)),
                "problem": self.problem, "derived": [str(p.relative_to(root)) for p in self.derived]}


def _unrecorded_problem(path: Path) -> str | None:
    """Why a file with no manifest entry cannot be read back (None when it reads)."""
    try:
        if path.name == "mask.pt":
            load_tensors(path)
        elif path.suffix == ".pt":
            load_file(path)
        elif path.suffix == ".jsonl":
            read_metrics(path)
        elif path.name == "summary.json":
            RunDir(path.parent).summary()  # valid JSON of another shape is damage too
        elif path.suffix == ".json":
            read_json(path)
    except DamagedError as e:
        return str(e).split(f"{path}: ", 1)[-1].split("; run `ticketlab verify`")[0]
    return None


def damaged_files(exp: Path) -> list[tuple[Path, str]]:
    """The damaged files of an experiment folder: those failing their manifest, and those with no
    entry (a store written before manifests) that cannot be read back."""
    out = []
    checked = (exp / integrity.MANIFEST).exists()  # written with manifests: every run folder has one
    for folder in [exp, *sorted(p for p in exp.rglob("*") if p.is_dir())]:
        bad = integrity.damaged(folder)
        if checked and not (folder / integrity.MANIFEST).exists() and any(
                (folder / f).exists() for f in _RUN_FILES):
            bad = [(folder / integrity.MANIFEST, "missing: this run's files cannot be checked")]
        out += bad
        try:
            recorded = set(integrity.read_manifest(folder))
        except DamagedError:
            recorded = set()
        for f in sorted(folder.iterdir()):
            if (f.is_file() and not f.name.startswith(".") and f.name not in recorded
                    and f.name != integrity.MANIFEST and all(f != p for p, _ in bad)):
                problem = _unrecorded_problem(f)
                if problem:
                    out.append((f, problem))
    return out


_RUN_FILES = ("summary.json", "checkpoint.pt", "checkpoint.prev.pt", "mask.pt", "final.pt")  # what makes a folder a run's


def _level_of(parts: tuple[str, ...]) -> tuple[int, int, str] | None:
    """(replicate, level, branch) of a path inside a lottery-like experiment, None elsewhere."""
    if not parts or not _REPLICATE.match(parts[0]):
        return None
    for i, p in enumerate(parts[1:], 1):
        m = _LEVEL.match(p)
        if m:
            return int(parts[0].split("_")[1]), int(m.group(1)), "/".join(parts[1:i])
    return None


def _levels_from(rep_dir: Path, L: int, branch: str | None) -> list[Path]:
    """The level folders of a replicate at levels >= L: of `branch` ("" the trunk), or of every
    branch when None."""
    out = []
    for d in sorted(rep_dir.glob("**/level_*")):
        m = _LEVEL.match(d.name)
        b = str(d.parent.relative_to(rep_dir)) if d.parent != rep_dir else ""
        if m and int(m.group(1)) >= L and (branch is None or b == branch):
            out.append(d)
    return sorted(out, key=lambda d: (int(d.name.split("_")[1]), str(d)))


def _transfers_of(store: Store, source: Path) -> list[Path]:
    """The transfer experiments whose source is the lottery experiment `source`."""
    out = []
    for e in store.list():
        link = e.path / "transfer.json"
        if e.kind == "transfer" and link.exists():
            try:
                if json.loads(link.read_text()).get("source") == source.name:
                    out.append(e.path)
            except ValueError:
                continue
    return out


def derived(store: Store, exp: Path, file: Path) -> list[Path]:
    """The run folders derived from `file` of experiment `exp` (see the module docstring)."""
    parts = file.relative_to(exp).parts
    if len(parts) == 1:
        return [exp]
    kind = exp.name.rsplit("-", 1)[0]
    at = _level_of(parts[:-1]) if kind in _CHAINED else None
    if at is None:  # a lottery's other folders (instability's reproduced rewind points): that folder
        return [file.parent] if kind in _CHAINED else [exp / parts[0]]
    r, L, branch = at
    rep = exp / f"replicate_{r}"
    if branch:
        return _levels_from(rep, L, branch)
    out = _levels_from(rep, L, None)
    if kind == "lottery":
        for t in _transfers_of(store, exp):
            out += _levels_from(t / f"replicate_{r}", L, None)
    return out


def verify(refs=(), *, store=None) -> list[Damage]:
    """Every damaged file of the experiments `refs` (every experiment when empty), with what derives from it."""
    st = Store(store)
    exps = [st.get(r) for r in refs] if refs else st.list()
    out = []
    for e in exps:
        for f, problem in damaged_files(e.path):
            out.append(Damage(e.path, f, problem, derived(st, e.path, f)))
    if not refs and st.root.is_dir():  # an experiment whose config.json is gone: `ls` no longer lists it
        for p in sorted(st.root.iterdir()):
            if p.is_dir() and (p / integrity.MANIFEST).exists() and not (p / "config.json").exists():
                out.append(Damage(p, p / "config.json", "missing: the experiment's config is lost and `ls` "
                                  "skips it; restore config.json or remove the folder"))  # nothing to recompute
    return out


def lost(store=None) -> list[tuple[Path, str]]:
    """The deleted files that make `ls` skip or miscount something: (folder, one line) for each
    experiment folder whose config.json is gone and each run whose recorded summary.json is gone.
    Cheap (manifests only, no hashing); `verify` gives the full list."""
    st = Store(store)
    out = []
    for p in sorted(st.root.iterdir()) if st.root.is_dir() else ():
        if not p.is_dir() or not (p / integrity.MANIFEST).exists():
            continue
        if not (p / "config.json").exists():
            out.append((p, f"{p}: config.json is missing (deleted?), so this experiment is not listed; "
                           f"run `ticketlab verify` to see what is damaged"))
            continue
        for man in sorted(p.rglob(integrity.MANIFEST)):
            try:
                recorded = integrity.read_manifest(man.parent)
            except DamagedError:
                continue  # verify names a damaged manifest
            if "summary.json" in recorded and not (man.parent / "summary.json").exists():
                out.append((man.parent, f"{man.parent}: summary.json is missing (deleted?), so this run is not "
                                        f"counted; run `ticketlab verify --repair`, then the same command again"))
    return out


def _stack_of(run: Path) -> dict:
    """What the run's summary says of the stack it trained in (`trained_with`, `stack`), for the log."""
    # read without the manifest check on purpose: the summary may be the damaged file itself
    try:
        s = json.loads((run / "summary.json").read_text())
        return {"trained_with": s.get("trained_with"), **({"stack": s["stack"]} if s.get("stack") else {})}
    except (OSError, ValueError, AttributeError, TypeError):
        return {"trained_with": None}


def repair(damage: list[Damage], *, store=None) -> list[Path]:
    """Delete every damaged run and everything derived from it (under each experiment's lock), and
    record it in `<store>/repairs.jsonl`. Returns the removed folders; rerunning the same commands
    recomputes them."""
    st = Store(store)
    removed: list[Path] = []
    entries: list[dict] = []
    try:
        for d in damage:
            if not d.experiment.exists():  # removed whole by an earlier damage
                continue
            with Experiment(d.experiment).lock():
                for run in d.derived:
                    if run.exists() and run not in removed:
                        exp = next((p for p in run.parents if (p / "config.json").exists()), d.experiment)
                        entries.append({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "removed": str(run),
                                        "experiment": exp.name, "run": run.relative_to(exp).as_posix(),
                                        "because": f"{d.file}: {d.problem}", **_stack_of(run)})
                        shutil.rmtree(run)
                        removed.append(run)
    finally:  # one append of every removal, also when a later one fails
        if entries:
            log = st.root / "repairs.jsonl"
            old = log.read_text() if log.exists() else ""
            _atomic.write_text(log, old + "".join(json.dumps(e) + "\n" for e in entries))
    return removed


__all__ = ["Damage", "damaged_files", "derived", "verify", "repair", "lost"]
