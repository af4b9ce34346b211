"""Datasets that need no download: MNIST-1D (generated) and scikit-learn's 8x8 digits (bundled).

* MNIST-1D: S. Greydanus, "Scaling down Deep Learning", arXiv:2011.14439 (2020);
  https://github.com/greydanus/mnist1d. `mnist1d.data.make_dataset(get_dataset_args())` rebuilds
  the reference dataset offline and deterministically (seed 42): 4000 train / 1000 test signals of
  length 40, already centred and scaled to unit std by the generator. We never call
  `mnist1d.data.get_dataset`, which downloads a pickle from GitHub by default.
* digits: the UCI "Optical Recognition of Handwritten Digits" test set (Alpaydin & Kaynak 1998) as
  bundled by scikit-learn (`sklearn.datasets.load_digits`): 1797 images 8x8, values 0..16. It has
  no official test split; `digits_arrays` makes a fixed stratified 80/20 one (see there).
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
from importlib import metadata
from pathlib import Path

import numpy as np

from ticketlab.core import atomic as _atomic

_MNIST1D_KEYS = ("x", "y", "x_test", "y_test")


def _readonly(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    # The arrays are cached and shared: make accidental in-place edits fail loudly.
    for a in arrays:
        a.setflags(write=False)
    return arrays


@functools.lru_cache(maxsize=1)
def _generate_mnist1d() -> tuple[np.ndarray, ...]:
    from mnist1d.data import get_dataset_args, make_dataset  # slow import (matplotlib): lazy

    # make_dataset reseeds the global `random` and `np.random` generators; restore them so loading
    # a dataset never changes the caller's random streams.
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        d = make_dataset(get_dataset_args())
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return _readonly(*(np.ascontiguousarray(d[k]) for k in _MNIST1D_KEYS))


# The cache name of each mnist1d release seen, so that reading the cache does not import
# mnist1d.data, which imports matplotlib.pyplot and scipy (about 1 s of start-up); a release not
# listed computes its name (tests/test_startup.py checks the entry of the installed release).
_KNOWN_CACHE_NAMES = {"0.0.2.post1": "mnist1d-2f6772126b5519ec.npz"}


def _mnist1d_cache_name() -> str:
    # Keyed by the generator's version and arguments, so an upgrade never serves stale arrays.
    known = _KNOWN_CACHE_NAMES.get(metadata.version("mnist1d"))
    return known or _computed_cache_name()


def _computed_cache_name() -> str:
    from mnist1d.data import get_dataset_args

    args = json.dumps(get_dataset_args(as_dict=True), sort_keys=True)
    key = hashlib.sha256(f"{metadata.version('mnist1d')}\n{args}".encode()).hexdigest()[:16]
    return f"mnist1d-{key}.npz"


_mnist1d_memory: tuple[np.ndarray, ...] | None = None


def mnist1d_arrays(cache_dir: Path | None = None, write_cache: bool = True) -> tuple[np.ndarray, ...]:
    """Return MNIST-1D as read-only (x [4000,40] float64, y [4000] int64, x_test [1000,40], y_test [1000]).

    Generation takes a few seconds, so the arrays are kept per process and, when `cache_dir` is
    given, in an .npz there: read if present (allow_pickle=False; an unreadable file is ignored),
    written atomically after generating when `write_cache` (failures to write are ignored).
    """
    global _mnist1d_memory
    if _mnist1d_memory is not None:
        return _mnist1d_memory
    path = Path(cache_dir) / _mnist1d_cache_name() if cache_dir is not None else None
    arrays = None
    if path is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = tuple(z[k] for k in _MNIST1D_KEYS)
            if [a.shape for a in arrays] != [(4000, 40), (4000,), (1000, 40), (1000,)]:
                arrays = None
        except (OSError, ValueError, KeyError, EOFError):
            arrays = None
    if arrays is None:
        arrays = _generate_mnist1d()
        if path is not None and write_cache:
            try:
                with _atomic.atomic_open(path, "wb") as f:
                    np.savez(f, **dict(zip(_MNIST1D_KEYS, arrays)))
            except OSError:
                pass  # a read-only data dir (e.g. a shared one) just means no disk cache
    _mnist1d_memory = _readonly(*arrays)
    return _mnist1d_memory


DIGITS_SEED = 0
DIGITS_TEST_FRACTION = 0.2


@functools.lru_cache(maxsize=1)
def digits_arrays() -> tuple[np.ndarray, ...]:
    """Return digits as read-only (x_train [1438,1,8,8] float64 in 0..16, y_train, x_test [359,...], y_test).

    The test split is stratified: within each class, in the order of
    `np.random.RandomState(0).permutation(1797)` (a stream NumPy guarantees never to change),
    the first round(20%) examples go to test. So the split is the same on every machine and version.
    """
    from sklearn.datasets import load_digits  # slow import: lazy

    x, y = load_digits(return_X_y=True)
    n = len(y)
    perm = np.random.RandomState(DIGITS_SEED).permutation(n)
    order = perm[np.argsort(y[perm], kind="stable")]  # grouped by class, random within a class
    counts = np.bincount(y)
    rank = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)  # position within its class
    is_test = np.zeros(n, dtype=bool)
    is_test[order[rank < np.repeat(np.round(counts * DIGITS_TEST_FRACTION), counts)]] = True
    x = x.reshape(n, 1, 8, 8)
    return _readonly(x[~is_test], y[~is_test], x[is_test], y[is_test])


def _clear_caches() -> None:
    """Forget the in-process caches (for tests)."""
    global _mnist1d_memory
    _mnist1d_memory = None
    digits_arrays.cache_clear()

