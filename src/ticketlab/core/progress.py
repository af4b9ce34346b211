"""Progress bars and log lines that share a terminal: the one tqdm wrapper of the package.

Every loop that shows progress asks `bar(...)` for one (or None when progress is off), and every
module logs to its own logger of the `ticketlab` hierarchy (`logging.getLogger(__name__)`):

    log = logging.getLogger(__name__)                     # in a module: ticketlab.engine.schedule, ...
    log.info("training %s", name)
    logging.getLogger("ticketlab").setLevel(logging.INFO)  # a library user: turn the messages on,
    logging.basicConfig()                                  # with any standard handler

The CLI calls `configure_logging` once (for one command: `cli_logging`): INFO lines on stderr,
written through `tqdm.write`, so a log line never lands on a bar's line. A library user keeps the
standard `logging` defaults: nothing is printed unless they configure it. Worker processes start
unconfigured; `worker_level` and `configure_worker` repeat the CLI's set-up in them, so that
messages logged there reach the terminal as the parent's do. `forwarding` serves the deprecated
`log=` callbacks of `ticketlab.api`.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Callable, Iterator

LOGGER = "ticketlab"


def bar(total: int | None, *, enabled: bool = True, initial: int = 0, desc: str = "", leave: bool = False,
        mininterval: float = 0.5, **kwargs):
    """A tqdm bar sized to the terminal, or None when `enabled` is false (callers test for None)."""
    if not enabled:
        return None
    from tqdm.auto import tqdm  # imported on first use: tqdm costs start-up time otherwise

    return tqdm(total=total, initial=initial, desc=desc or None, leave=leave, mininterval=mininterval,
                dynamic_ncols=True, **kwargs)


class _TqdmHandler(logging.Handler):
    """Writes records with `tqdm.write`, which prints above any live bar instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # a log line must never break a run
            self.handleError(record)

    def __init__(self, stream):
        super().__init__()
        self.stream = stream


def configure_logging(*, quiet: bool = False, debug: bool = False, stream=None) -> logging.Logger:
    """Attach one handler to the `ticketlab` logger: INFO lines (WARNING only with `quiet`, DEBUG
    with `debug`) on stderr, printed through the progress bars. Idempotent."""
    return _configure(logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO, stream)


def _configure(level: int, stream=None) -> logging.Logger:
    import sys

    log = logging.getLogger(LOGGER)
    for h in [h for h in log.handlers if isinstance(h, _TqdmHandler)]:
        log.removeHandler(h)
    handler = _TqdmHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False
    return log


@contextlib.contextmanager
def _restored() -> Iterator[logging.Logger]:
    """The `ticketlab` logger's handlers, level and propagation put back as they were on exit."""
    log = logging.getLogger(LOGGER)
    saved = list(log.handlers), log.level, log.propagate
    try:
        yield log
    finally:
        log.handlers[:] = saved[0]
        log.setLevel(saved[1])
        log.propagate = saved[2]


@contextlib.contextmanager
def cli_logging(*, quiet: bool = False) -> Iterator[logging.Logger]:
    """`configure_logging` for one CLI command, undone after it (`main` may run in-process: tests)."""
    with _restored():
        yield configure_logging(quiet=quiet)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Only WARNING and above from the `ticketlab` loggers while it lasts: runs that were always
    silent (a sweep's trials) stay silent under a configured CLI."""
    with _restored() as log:
        if log.getEffectiveLevel() < logging.WARNING:
            log.setLevel(logging.WARNING)
        yield


class _CallbackHandler(logging.Handler):
    """Hands each record's message to a callable taking one string (its exceptions propagate, as before)."""

    def __init__(self, callback: Callable[[str], None]):
        super().__init__(logging.INFO)
        self.callback = callback

    def emit(self, record: logging.LogRecord) -> None:
        self.callback(record.getMessage())


@contextlib.contextmanager
def forwarding(callback: Callable[[str], None] | None) -> Iterator[None]:
    """While it lasts, `callback` receives the `ticketlab` loggers' INFO (and higher) messages of
    this process: the deprecated `log=` of `ticketlab.api`. A no-op when `callback` is None."""
    if callback is None:
        yield
        return
    with _restored() as logger:
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
        logger.addHandler(_CallbackHandler(callback))
        yield


def worker_level() -> int | None:
    """The level a worker process should show the `ticketlab` messages at: this process's, when
    the CLI configured it here (`configure_logging`); None when nothing here prints them."""
    log = logging.getLogger(LOGGER)
    return log.getEffectiveLevel() if any(isinstance(h, _TqdmHandler) for h in log.handlers) else None


def configure_worker(level: int | None) -> None:
    """In a worker process: the CLI's set-up at `level` (from the parent's `worker_level`), on this
    process's stderr. Nothing when `level` is None or this process is already configured."""
    log = logging.getLogger(LOGGER)
    if level is not None and not any(isinstance(h, _TqdmHandler) for h in log.handlers):
        _configure(level)


__all__ = ["bar", "configure_logging", "cli_logging", "quiet", "forwarding", "worker_level", "configure_worker",
           "LOGGER"]
