"""Test session setup: derived caches (the MNIST-1D arrays, tokenizers) go to a temporary cache
folder, never to the user's ~/.cache nor to TICKETLAB_DATA (which CI points at a read-only,
shared folder). Subprocesses the tests start inherit it, and the stacking calibration is off
(`ticketlab.engine.calibrate`)."""

import os
import shutil
import tempfile

_CACHE = None


def pytest_configure(config):
    global _CACHE
    _CACHE = tempfile.mkdtemp(prefix="ticketlab-test-cache-")
    os.environ["TICKETLAB_CACHE"] = _CACHE
    # the stack never depends on a timing in tests (tests/test_calibrate.py turns it back on)
    os.environ["TICKETLAB_CALIBRATION"] = "off"


def pytest_unconfigure(config):
    if _CACHE:
        shutil.rmtree(_CACHE, ignore_errors=True)
