"""The worker processes' forkserver: what it preloads, and starting it early.

`ticketlab.engine.parallel`'s process backend forks its workers from a *forkserver* that has imported
`PRELOAD` once (docs/performance.md §2), so no worker pays for those imports itself. The server's
imports take ≈2.7 s of one core on this machine (torch, ticketlab, and `torch._dynamo`, which torch
imports at the first fused Adam step). Started when the first job is submitted, they delay the first
worker by that much. `prestart` starts the server at once instead, so that its imports run on another
core while this process imports, loads data and builds its run graph (issue #16).

This module imports neither torch nor the rest of ticketlab, so the command line can call `prestart`
before its own imports (`ticketlab.cli.main`).
"""

from __future__ import annotations

import multiprocessing
import os

# What the forkserver imports once for every worker it forks: ticketlab (and torch), and the
# compiler module that torch.optim imports at the first fused Adam step (≈1.1 s of CPU per worker
# otherwise; docs/performance.md §2).
PRELOAD = ("ticketlab.api", "torch._dynamo")


def context():
    """The multiprocessing context of the process backend: the forkserver with `PRELOAD` where the
    platform has one, else spawn."""
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        # imported once in the server, inherited by every worker; "__main__" as in the default
        # list, so jobs defined in the caller's script (guarded by `if __name__ == "__main__"`) load.
        ctx.set_forkserver_preload(["__main__", *PRELOAD])
    return ctx


def cpu_count() -> int:
    """CPUs this process may use (its affinity mask where the OS has one). Here, torch-free, so that the
    command line can tell before its imports whether workers will start."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def prestart() -> None:
    """Start the forkserver now (its imports run in the background); the process backend's first
    workers then fork from a server that is ready. Returns at once; a no-op where workers spawn, and
    where the server already runs."""
    if context().get_start_method() == "forkserver":
        from multiprocessing import forkserver
        forkserver.ensure_running()


__all__ = ["PRELOAD", "context", "cpu_count", "prestart"]
