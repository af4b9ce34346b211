"""The results store: one folder per experiment, named by the hash of its canonical config.

Layout (open_lth's scheme, with JSON hashing and a schema version, see `config.py`):

    <store>/<kind>-<hash12>/config.json     the resolved config: every field, defaults included
    <store>/<kind>-<hash12>/...             the experiment's runs (metrics.jsonl, checkpoints, summary.json)

Identical experiments land in one folder, so finished work is found and skipped. Every
file is written atomically (`atomic`) and recorded with its sha256 in its folder's manifest.json
(`integrity`), and an experiment is run under an exclusive lock
file, so two processes writing *different* experiments into one store never interfere,
and two processes asked to run the *same* one do not both write it.

The store root: the `--store` flag, then `TICKETLAB_STORE`, then `./ticketlab-results`.
"""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ticketlab.core import integrity
from ticketlab.core.config import SCHEMA_VERSION, config_hash, to_dict
from ticketlab.core.errors import DamagedError, TicketlabError
from ticketlab.training import precision as _precision
from ticketlab.training.rundir import read_json


def resolve_store(root: str | os.PathLike | None = None) -> Path:
    """The store root: the argument, then $TICKETLAB_STORE, then ./ticketlab-results."""
    if root is not None:
        return Path(root)
    return Path(os.environ.get("TICKETLAB_STORE", "ticketlab-results"))


@dataclass(frozen=True)
class Experiment:
    """A folder in the store holding one experiment."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def kind(self) -> str:
        return self.name.rsplit("-", 1)[0]

    @property
    def config(self) -> dict:
        """The saved resolved config (all fields)."""
        body = read_json(self.path / "config.json")
        if not isinstance(body, dict) or not isinstance(body.get("config"), dict):
            raise DamagedError(f"{self.path / 'config.json'}: expected an object with a \"config\" object; "
                               f"{integrity.ADVICE}")
        return body["config"]

    @contextmanager
    def lock(self, part: str = "", *, wait: bool = False) -> Iterator[None]:
        """Hold an exclusive lock on this experiment (or on one part of it, e.g. a replicate).

        Without `wait`, another holder makes it fail fast with a TicketlabError; with it, block
        until the holder is done. Locks are released when the process dies, even by SIGKILL.
        """
        fd = os.open(self.path / f".lock{'-' + part if part else ''}", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                what = f"{part} of " if part else ""
                raise TicketlabError(f"{self.path}: another process is running {what}this experiment") from None
            yield
        finally:
            os.close(fd)  # closing releases the lock


# run-shape lists where empty means "all" (lottery's control_levels: controls at every level)
_EMPTY_MEANS_ALL = ("control_levels",)


def _count(x) -> bool:
    """An integer run-shape value (an int or an int subclass such as lottery's default levels), not a bool."""
    return isinstance(x, int) and not isinstance(x, bool)


def stored_shape(old: dict, new: dict, identity: dict) -> dict:
    """The config to record after a call with config `new` on an experiment recorded as `old`: the
    run shape of what is stored, not of the last call. Run-shape fields (those not in `identity`)
    grow: integers (levels, replicates, draws) take the larger value, lists (controls, levels at
    which they ran) the union; any other field takes the new value."""
    out = dict(new)
    for k, v in new.items():
        o = old.get(k)
        if isinstance(v, dict) and isinstance(o, dict):
            out[k] = stored_shape(o, v, identity.get(k) if isinstance(identity.get(k), dict) else {})
        elif k in identity:
            continue
        elif _count(v) and _count(o):
            out[k] = max(o, v)
        elif isinstance(v, list) and isinstance(o, list):
            if k in _EMPTY_MEANS_ALL and (not o or not v):
                out[k] = []
            else:
                union = o + [x for x in v if x not in o]
                out[k] = sorted(union) if all(type(x) is int for x in union) else union
    return out


def _write_config(path: Path, body: dict) -> None:
    """Atomically write config.json (indented, key-sorted), recorded in the folder's manifest."""
    integrity.write_text(path, json.dumps(body, indent=2, sort_keys=True) + "\n")


class Store:
    """A results store rooted at a folder."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = resolve_store(root)
        if self.root.exists() and not self.root.is_dir():
            raise TicketlabError(f"store {self.root}: a file, expected a folder (give --store, or "
                                 "$TICKETLAB_STORE, a folder)")

    def experiment(self, kind: str, cfg) -> Experiment:
        """The experiment folder for (kind, cfg), created with its config.json if new. A run in a
        precision other than fp32 has its own folder (`ticketlab.training.precision.identity`),
        recorded in config.json as `precision`."""
        extra = _precision.identity()
        key = config_hash(kind, cfg, extra)
        path = self.root / f"{kind}-{key}"
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # a parent that is a file, a read-only or missing mount, ...
            raise TicketlabError(f"store {self.root}: cannot create {path.name} there ({e.strerror or e}); "
                                 "give --store a folder this user can write to") from None
        cfg_path = path / "config.json"
        body = {"kind": kind, "schema": SCHEMA_VERSION, "hash": key, "config": to_dict(cfg),
                "identity": to_dict(cfg, all_fields=False), **extra}
        if not cfg_path.exists():
            _write_config(cfg_path, body)
        else:
            old = read_json(cfg_path)
            if old.get("identity") != body["identity"]:
                raise TicketlabError(f"{cfg_path}: hash collision with a different config")
            body["config"] = stored_shape(old.get("config", {}), body["config"], body["identity"])
            if old != body:  # run-shape fields (levels, replicates, controls) may grow, never shrink
                _write_config(cfg_path, body)
        return Experiment(path)

    def existing(self) -> "Store":
        """This store, if its folder exists; else a one-line error naming it (a mistyped --store
        must not read as an empty or a healthy store)."""
        if not self.root.is_dir():
            raise TicketlabError(f"no store at {self.root}: give --store (or $TICKETLAB_STORE) a folder "
                                 f"that experiments were run into")
        return self

    def list(self) -> list[Experiment]:
        """All experiments in the store, by name."""
        if not self.root.exists():
            return []
        return [Experiment(p) for p in sorted(self.root.iterdir())
                if p.is_dir() and (p / "config.json").exists()]

    def get(self, ref: str) -> Experiment:
        """An experiment by folder name, path, or a unique prefix of its name or hash."""
        p = Path(ref)
        if (p / "config.json").exists():
            return Experiment(p)
        hits = [e for e in self.list()
                if e.name == ref or e.name.startswith(ref) or e.name.split("-")[-1].startswith(ref)]
        if len(hits) == 1:
            return hits[0]
        if not hits:
            raise TicketlabError(f"no experiment {ref!r} in store {self.root}")
        raise TicketlabError(f"{ref!r} is ambiguous in {self.root}: " + ", ".join(e.name for e in hits))
