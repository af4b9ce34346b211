"""What some tests need beyond the core install: optional packages (the extras) and the real data.
On a developer's machine a missing one skips the test with the reason; under CI (``CI`` set), which
installs every extra and points TICKETLAB_DATA at the real data, it fails the test, so that nothing CI
should check is skipped there unseen (as tests/test_integrations.py does for the frameworks)."""

from __future__ import annotations

import importlib
import os

import pytest

IN_CI = bool(os.environ.get("CI"))


def package(name: str):
    """The module `name`: imported, or a skip (a failure under CI) naming what is missing."""
    if IN_CI:
        return importlib.import_module(name)
    return pytest.importorskip(name)


def data(present: bool, reason: str) -> None:
    """Go on when `present`; otherwise a skip with `reason` (a failure under CI)."""
    if not present:
        if IN_CI:
            pytest.fail(f"{reason}; CI runs with the real data")
        pytest.skip(reason)
