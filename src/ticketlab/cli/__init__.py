"""Floor 9, the command line: `ticketlab COMMAND`. See `ticketlab.cli.commands`.

`main` is the console script's entry point. Before it imports the commands (and with them torch,
≈1.5 s), it starts the workers' forkserver for a command that will train on worker processes, so the
server's own imports run on another core meanwhile (`ticketlab.engine.forkserver`; issue #16).
"""

from __future__ import annotations

import os
import sys

# the commands that train on worker processes by default (one per core, capped at the runs at once)
FORKING = ("lottery", "demo", "transfer")


def will_fork(argv: list[str]) -> bool:
    """Whether the command line `argv` (without the program name) will likely start worker processes:
    one of `FORKING`, no `--workers 1`, no help, and more than one CPU. A guess from the words alone
    (a config file may still say one worker): a wrong yes costs an idle core a few seconds of imports."""
    if not argv or argv[0] not in FORKING or any(a in ("-h", "--help") for a in argv):
        return False
    for i, a in enumerate(argv):
        if a.startswith("--workers="):
            return a.split("=", 1)[1].strip() != "1"
        if a == "--workers" and i + 1 < len(argv):
            return argv[i + 1].strip() != "1"
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    return cpus > 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ticketlab` console script (`ticketlab.cli.commands.main`, after starting the
    forkserver early where `will_fork`)."""
    if will_fork(sys.argv[1:] if argv is None else argv):
        from ticketlab.engine.forkserver import prestart
        prestart()
    from ticketlab.cli.commands import main as run
    return run(argv)


__all__ = ["main", "will_fork", "FORKING"]
