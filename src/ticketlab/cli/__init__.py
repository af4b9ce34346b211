"""Floor 9, the command line: `ticketlab COMMAND`. See `ticketlab.cli.commands`.

`main` is the console script's entry point. Before it imports the commands (and with them torch,
≈1.5 s), it starts the workers' forkserver for a command that will train on worker processes, so the
server's own imports run on another core meanwhile (`ticketlab.engine.forkserver`; issue #16).
"""

from __future__ import annotations

import sys

# the commands that train on worker processes by default (one per core, capped at the runs at once)
FORKING = ("lottery", "demo", "transfer")


def _flag(argv: list[str], name: str) -> str | None:
    """The value of `--name V` or `--name=V` in `argv` (the last one given), else None. As argparse,
    it takes an abbreviation (`--rep 3` for `--replicates 3`); one that argparse finds ambiguous
    fails the command anyway, so reading it here costs nothing."""
    value = None
    for i, a in enumerate(argv):
        word, eq, rest = a.partition("=")
        if not (word.startswith("--") and len(word) > 2 and name.startswith(word)):
            continue
        if eq:
            value = rest
        elif i + 1 < len(argv):
            value = argv[i + 1]
    return value


def _one_chain(argv: list[str]) -> bool:
    """Whether a `lottery` command line trains one run at a time: one replicate, no controls, and no
    config file that could say otherwise. Its width (`api.lottery_width`) is then 1, so the default
    is one worker, this process, and a forkserver started for it would only compete for the core."""
    if _flag(argv, "--config") is not None:
        return False  # the file may set replicates or controls; reading it is the command's job
    replicates = (_flag(argv, "--replicates") or "1").strip()
    controls = (_flag(argv, "--controls") or "").strip().strip("[](),' \"")
    return replicates == "1" and not controls


def will_fork(argv: list[str]) -> bool:
    """Whether the command line `argv` (without the program name) will likely start worker processes:
    one of `FORKING`, no `--workers 1`, no help, more than one CPU, and for a lottery more than one
    run at once (`_one_chain`) unless workers were asked for. A guess from the words alone (a config
    file may still say one worker): a wrong yes costs an idle core a few seconds of imports, and the
    command ≈2 % of its wall time (measured on the default lottery, 18.5 s against 18.1 s)."""
    if not argv or argv[0] not in FORKING or any(a in ("-h", "--help") for a in argv):
        return False
    workers = _flag(argv, "--workers")
    if workers is not None:
        return workers.strip() != "1"
    if argv[0] == "lottery" and _one_chain(argv):
        return False
    from ticketlab.engine.forkserver import cpu_count  # torch-free
    return cpu_count() > 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ticketlab` console script (`ticketlab.cli.commands.main`, after starting the
    forkserver early where `will_fork`)."""
    if will_fork(sys.argv[1:] if argv is None else argv):
        from ticketlab.engine.forkserver import prestart
        prestart()
    from ticketlab.cli.commands import main as run
    return run(argv)


__all__ = ["main", "will_fork", "FORKING"]
