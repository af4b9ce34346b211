"""Atomic file writes: write to a temporary file in the same folder, fsync, rename.

A reader never sees a half-written file: it sees the old content or the new one.
Two processes writing different files into one folder never collide, because each
temporary name is unique (mkstemp).
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from ticketlab.core.errors import TicketlabError

# mkstemp creates files 0600; give the final file the mode a plain open() would (0666 & ~umask).
_UMASK = os.umask(0)
os.umask(_UMASK)

def check_out(path: str | os.PathLike, *, folder: bool, what: str = "--out") -> Path:
    """`path` as a place to write: a folder (`folder`) or a file, checked before any work is done.
    A TicketlabError naming `what` when a file is where a folder must be, or a folder where the file
    goes, or when an existing parent is a file."""
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        raise TicketlabError(f"{what} {path}: a {'file' if folder else 'folder'}, expected "
                             f"{'a folder' if folder else 'the path of a file to write'}")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise TicketlabError(f"{what} {path}: {parent} is a file, so nothing can be written under it")
    return path


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside `path`; on clean exit, fsync it and rename it onto `path`.

    On an exception the temporary file is removed and `path` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the writer's pid in the name: `integrity.remove_strays` leaves a live process's write alone
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        discard(tmp)
        raise


def discard(path: str | os.PathLike) -> None:
    """Remove a temporary file if it is still there (after a failed or interrupted write)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write `text` (UTF-8) to `path`."""
    with atomic_open(path, "w") as f:
        f.write(text)


def write_json(path: str | os.PathLike, obj) -> None:
    """Atomically write `obj` as indented, key-sorted JSON to `path`."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
