"""The cache of parsed, verified datasets (`ticketlab.data.parsed`, issue #16): a hit gives the
same arrays without parsing; a damaged entry is rebuilt, never used; changed files never meet an
old entry; a corrupt file is still an error."""

from __future__ import annotations

import numpy as np
import pytest

from ticketlab.core.errors import DataError
from ticketlab.data import load, load_dataset, parsed

from test_data import fake_mnist  # noqa: F401  (the fixture)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("TICKETLAB_CACHE", str(folder))
    return folder / parsed.FOLDER


@pytest.fixture
def parses(monkeypatch):
    calls = []
    real = load._parse_idx
    monkeypatch.setattr(load, "_parse_idx", lambda *a: calls.append(1) or real(*a))
    return calls


def _arrays(fake):
    return load._load_idx("mnist", fake.folder, 10)


def test_a_second_load_reads_the_cache_and_gives_the_same_dataset(fake_mnist, cache, parses):  # noqa: F811
    first = load_dataset("mnist", fake_mnist.root, val_size=5)
    assert len(parses) == 1 and len(list(cache.glob("mnist-*.bin"))) == 1
    second = load_dataset("mnist", fake_mnist.root, val_size=5)
    assert len(parses) == 1  # not parsed again
    for a, b in ((first.train, second.train), (first.val, second.val), (first.test, second.test)):
        assert a.x.dtype == b.x.dtype and a.x.equal(b.x) and a.y.equal(b.y)


def test_a_damaged_entry_is_rebuilt_never_used(fake_mnist, cache, parses):  # noqa: F811
    good = _arrays(fake_mnist)
    (entry,) = cache.glob("mnist-*.bin")
    data = bytearray(entry.read_bytes())
    data[100] ^= 0xFF  # one flipped bit's worth of damage
    entry.write_bytes(bytes(data))
    again = _arrays(fake_mnist)
    assert len(parses) == 2 and all(np.array_equal(a, b) for a, b in zip(good, again))
    assert entry.read_bytes() != bytes(data)  # rewritten
    entry.write_bytes(entry.read_bytes()[:-7])  # truncated
    assert all(np.array_equal(a, b) for a, b in zip(good, _arrays(fake_mnist))) and len(parses) == 3
    entry.with_suffix(".json").write_text("{")  # its digest unreadable
    _arrays(fake_mnist)
    assert len(parses) == 4


def test_changed_files_never_meet_an_old_entry(fake_mnist, cache, parses):  # noqa: F811
    _arrays(fake_mnist)
    path = fake_mnist.folder / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-3])  # corrupt: fails its checksum as without a cache
    with pytest.raises(DataError, match="fails its checksum"):
        _arrays(fake_mnist)


def test_an_unwritable_cache_folder_only_means_no_cache(fake_mnist, tmp_path, monkeypatch, parses):  # noqa: F811
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("TICKETLAB_CACHE", str(blocker))
    a, b = _arrays(fake_mnist), _arrays(fake_mnist)
    assert len(parses) == 2 and all(np.array_equal(x, y) for x, y in zip(a, b))
