"""The integrity manifest: each stored file's sha256 and size, checked on every read.

Every folder the store writes artifacts into (a run folder, an experiment folder) holds a
`manifest.json` mapping file names to `{"sha256", "size"}`. `write_bytes` records a file there,
`read_bytes` checks it, so a mask or checkpoint damaged on disk (zeroed bytes, truncation) is
refused with one line instead of being read as valid (issue 17 of this repo, "A store you can
trust"; the store's layout: docs/rl_nlp.md §5).

Crash safety: a file is written atomically (`atomic`), then the manifest is rewritten atomically.
When a file is *re*written (a checkpoint, metrics.jsonl), its old entry is dropped first, so a
kill between the two writes leaves the file unchecked, never a false alarm. A file with no entry
(a folder written before the manifest existed) is read unchecked: old stores stay readable.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ticketlab.core import atomic as _atomic
from ticketlab.core.errors import DamagedError

MANIFEST = "manifest.json"
# what a user does about a damaged file: verify lists it and the results derived from it
ADVICE = "run `ticketlab verify` to list it and the results derived from it, and `ticketlab verify --repair` to recompute them"


def entry(data: bytes) -> dict:
    """The manifest entry of a file's content."""
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def read_manifest(folder: str | os.PathLike) -> dict:
    """The folder's manifest ({} when it has none)."""
    path = Path(folder) / MANIFEST
    try:
        body = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (ValueError, UnicodeDecodeError) as e:
        raise DamagedError(f"{path}: not a valid manifest ({e}); {ADVICE}") from None
    if not isinstance(body, dict) or not all(isinstance(v, dict) for v in body.values()):
        raise DamagedError(f"{path}: not a valid manifest (expected an object of file entries); {ADVICE}")
    return body


@contextmanager
def _locked(folder: Path) -> Iterator[dict]:
    """The folder's manifest, under an exclusive lock on the folder; written back on exit."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        man = read_manifest(folder)
        before = dict(man)
        yield man
        if man != before:
            _atomic.write_json(folder / MANIFEST, man)
    finally:
        os.close(fd)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Atomically write `data` to `path` and record its sha256 and size in the folder's manifest."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.parent) as man:
        if path.name in man:  # a kill before the new entry is written leaves the file unchecked
            del man[path.name]
    with _atomic.atomic_open(path, "wb") as f:
        f.write(data)
    with _locked(path.parent) as man:
        man[path.name] = entry(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """`write_bytes` of UTF-8 text."""
    write_bytes(path, text.encode())


def write_json(path: str | os.PathLike, obj) -> None:
    """`write_text` of `obj` as indented, key-sorted JSON (the format of `atomic.write_json`)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def check(path: str | os.PathLike, data: bytes) -> None:
    """DamagedError when `data`, read from `path`, differs from the manifest's entry for it."""
    path = Path(path)
    want = read_manifest(path.parent).get(path.name)
    if want is None:
        return
    got = entry(data)
    if got != {k: want.get(k) for k in got}:
        raise DamagedError(
            f"{path} is damaged: expected {want.get('size')} bytes with sha256 {str(want.get('sha256'))[:16]}… "
            f"(its folder's {MANIFEST}), found {got['size']} bytes with sha256 {got['sha256'][:16]}…; {ADVICE}")


def read_bytes(path: str | os.PathLike) -> bytes:
    """The content of `path`, checked against its folder's manifest; a missing file is a
    DamagedError naming it (a store's reader asks only for files the store wrote)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise DamagedError(f"{path}: missing; {ADVICE}") from None
    check(path, data)
    return data


def keep(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Make `dst` (in the same folder; replaced) a copy of `src`, which stays where it is, with its
    manifest entry: a hard link where the file system has them, else a copy, renamed onto `dst`
    atomically. `dst`'s entry is dropped before and written after, so a kill in between leaves it
    unchecked, never a false alarm."""
    src, dst = Path(src), Path(dst)
    with _locked(src.parent) as man:
        want = man.get(src.name)
        man.pop(dst.name, None)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}-keep.tmp")  # a stray one is removed like any temp file
    tmp.unlink(missing_ok=True)
    if not (dst.exists() and os.path.samefile(src, dst)):  # already one file (after a rollback): nothing to do
        try:
            os.link(src, tmp)
        except OSError:  # no hard links here (some network or FAT file systems)
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)  # (a rename onto another link of the same file would leave tmp behind)
    if want is not None:
        with _locked(src.parent) as man:
            man[dst.name] = want


def forget(path: str | os.PathLike) -> None:
    """Delete `path` (if there) and its manifest entry."""
    path = Path(path)
    if not path.parent.is_dir():
        return
    with _locked(path.parent) as man:  # the entry goes first: a kill in between leaves an unlisted
        man.pop(path.name, None)         # file (harmless), never a listed missing one ("damaged")
    path.unlink(missing_ok=True)


def damaged(folder: str | os.PathLike) -> list[tuple[Path, str]]:
    """The files of `folder` that fail the manifest: (path, why) for each, [] when all check out."""
    folder = Path(folder)
    try:
        man = read_manifest(folder)
    except DamagedError as e:
        return [(folder / MANIFEST, str(e))]
    out = []
    for name, want in sorted(man.items()):
        p = folder / name
        if not p.exists():
            out.append((p, "missing"))
            continue
        got = entry(p.read_bytes())
        if got != {k: want.get(k) for k in got}:
            out.append((p, f"expected {want.get('size')} bytes, sha256 {str(want.get('sha256'))[:16]}…; "
                           f"found {got['size']} bytes, sha256 {got['sha256'][:16]}…"))
    return out


_WRITER = re.compile(r"\.(\d+)-[^.]*\.tmp$")  # `atomic.atomic_open`'s temp name: .<name>.<pid>-<random>.tmp


def _writer_alive(tmp: Path) -> bool:
    """Whether the process that is writing `tmp` still runs (False for a name without a pid)."""
    m = _WRITER.search(tmp.name)
    if m is None:
        return False
    try:
        os.kill(int(m.group(1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # a process we may not signal is still a live process
    return True


def remove_strays(folder: str | os.PathLike) -> list[Path]:
    """Remove the temp files an interrupted write left in `folder` (`.*.tmp`, `*.part`), but not
    those of a write in progress in a live process: two workers may write into one folder at once
    (the mask of a level, by its ticket's and its control's workers)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    strays = [p for p in (*folder.glob(".*.tmp"), *folder.glob("*.part")) if p.is_file() and not _writer_alive(p)]
    for p in strays:
        _atomic.discard(p)
    return strays
