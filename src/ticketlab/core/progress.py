"""Progress bars and log lines that share a terminal: the one tqdm wrapper of the package.

Every loop that shows progress asks `bar(...)` for one (or None when progress is off), and the
`ticketlab` logger writes through `tqdm.write`, so a log line never lands on a bar's line. The CLI
calls `configure_logging` once; a library user keeps the standard `logging` defaults (nothing is
printed unless they configure it).
"""

from __future__ import annotations

import logging

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
    import sys

    log = logging.getLogger(LOGGER)
    for h in [h for h in log.handlers if isinstance(h, _TqdmHandler)]:
        log.removeHandler(h)
    handler = _TqdmHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO)
    log.propagate = False
    return log


__all__ = ["bar", "configure_logging", "LOGGER"]
