"""Tests of ticketlab.data: checksums, IDX / CIFAR parsing, splits, data-dir precedence, fetch over loopback.

Synthetic files are built in tmp_path with the checksum table monkeypatched; tests of the real files
use TICKETLAB_DATA or <repo>/../shared/data and skip when it is absent. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import random
import socket
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import requires
from ticketlab.data import (Dataset, Split, dataset_status, fetch, list_datasets, load_dataset,
                            resolve_data_dir)
from ticketlab.data import _checksums, cifar, generated
from ticketlab.data._checksums import IDX_NAMES, FileSpec
from ticketlab.data.idx import parse_idx
from ticketlab.core.errors import DataError, TicketlabError

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def idx_bytes(arr: np.ndarray) -> bytes:
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    return bytes([0, 0, 0x08, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes() + arr.tobytes()


def synthetic_idx(n_train: int = 20, n_test: int = 10, seed: int = 0) -> dict[str, bytes]:
    """Raw IDX content of a tiny MNIST; each train image carries its index in its first two pixels."""
    rng = np.random.default_rng(seed)
    x_train = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    x_train[:, 0, 0], x_train[:, 0, 1] = np.arange(n_train) % 256, np.arange(n_train) // 256
    arrays = (x_train, np.arange(n_train) % 10, rng.integers(0, 256, (n_test, 28, 28)), np.arange(n_test) % 10)
    return {name: idx_bytes(a) for name, a in zip(IDX_NAMES, arrays)}


def gz(raw: bytes, level: int = 9, mtime: int = 0) -> bytes:
    return gzip.compress(raw, compresslevel=level, mtime=mtime)


def patch_specs(monkeypatch, raw: dict[str, bytes], dataset: str = "mnist", raw_md5: bool = True) -> dict[str, bytes]:
    """Make the gzip of each raw file canonical for `dataset`; return the gz bytes by file name."""
    gzs = {n: gz(r) for n, r in raw.items()}
    specs = tuple(FileSpec(n, md5(gzs[n]), md5(raw[n]) if raw_md5 else None) for n in IDX_NAMES)
    monkeypatch.setitem(_checksums.FILES, dataset, specs)
    return gzs


@pytest.fixture
def fake_mnist(tmp_path, monkeypatch):
    """A data dir whose mnist/ holds 20 train / 10 test synthetic images matching the (patched) table."""
    raw = synthetic_idx()
    gzs = patch_specs(monkeypatch, raw)
    folder = tmp_path / "mnist"
    folder.mkdir()
    for n, b in gzs.items():
        (folder / n).write_bytes(b)
    return SimpleNamespace(root=tmp_path, folder=folder, raw=raw, gz=gzs)


def train_indices(split: Split) -> list[int]:
    pix = torch.round((split.x[:, 0, 0, :2] * MNIST_STD + MNIST_MEAN) * 255).long()
    return (pix[:, 0] + 256 * pix[:, 1]).tolist()


def real_data_dir() -> Path:
    env = os.environ.get("TICKETLAB_DATA")
    root = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    requires.data((root / "mnist").is_dir(), f"real data not found at {root} (set TICKETLAB_DATA)")
    return root


# --- registry and data dir -------------------------------------------------------------------------

def test_list_datasets():
    assert list_datasets() == ["cifar10", "digits", "fashion-mnist", "kmnist", "mnist", "mnist1d"]


def test_unknown_name_lists_known_names(tmp_path):
    for call in (load_dataset, dataset_status, fetch):
        with pytest.raises(DataError, match="unknown dataset 'imagenet'.*fashion-mnist.*mnist1d"):
            call("imagenet", tmp_path)
    assert issubclass(DataError, TicketlabError)


def test_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TICKETLAB_DATA", raising=False)
    assert resolve_data_dir() == tmp_path / "home" / ".cache" / "ticketlab"
    monkeypatch.setenv("TICKETLAB_DATA", str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir(str(tmp_path / "arg")) == tmp_path / "arg"


# --- checksums and file errors ---------------------------------------------------------------------

def test_load_synthetic_idx_with_canonical_md5(fake_mnist):
    ds = load_dataset("mnist", fake_mnist.root, val_size=5)
    assert isinstance(ds, Dataset) and ds.name == "mnist" and ds.num_classes == 10
    assert ds.input_shape == (1, 28, 28)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (15, 5, 10)
    assert ds.train.x.dtype == torch.float32 and ds.train.y.dtype == torch.int64
    assert ds.test.x.shape == (10, 1, 28, 28)
    test_raw = np.frombuffer(fake_mnist.raw["t10k-images-idx3-ubyte.gz"], np.uint8, offset=16).reshape(10, 1, 28, 28)
    expected = (torch.from_numpy(test_raw.astype(np.float32)) / 255 - MNIST_MEAN) / MNIST_STD
    torch.testing.assert_close(ds.test.x, expected)
    assert ds.test.y.tolist() == [i % 10 for i in range(10)]


def test_regzipped_file_accepted_by_raw_md5(fake_mnist, monkeypatch):
    name = "train-images-idx3-ubyte.gz"
    regz = gz(fake_mnist.raw[name], level=1, mtime=12345)  # same content, different gzip bytes
    assert md5(regz) != md5(fake_mnist.gz[name])
    (fake_mnist.folder / name).write_bytes(regz)
    assert len(load_dataset("mnist", fake_mnist.root, val_size=5).train) == 15
    assert dataset_status("mnist", fake_mnist.root)["verified"]
    # Without a known raw md5 the same file is rejected.
    monkeypatch.setitem(_checksums.FILES, "mnist",
                        tuple(FileSpec(s.name, s.md5) for s in _checksums.FILES["mnist"]))
    with pytest.raises(DataError, match=f"{name} fails its checksum.*expected md5 {md5(fake_mnist.gz[name])}"):
        load_dataset("mnist", fake_mnist.root, val_size=5)


def test_missing_file(fake_mnist):
    (fake_mnist.folder / "t10k-labels-idx1-ubyte.gz").unlink()
    expected_md5 = md5(fake_mnist.gz["t10k-labels-idx1-ubyte.gz"])
    with pytest.raises(DataError, match=rf"t10k-labels-idx1-ubyte.gz is missing \(expected md5 {expected_md5}\)"
                                        r".*ticketlab data fetch mnist.*ossci-datasets"):
        load_dataset("mnist", fake_mnist.root)
    status = dataset_status("mnist", fake_mnist.root)
    assert not status["present"] and not status["verified"] and "t10k-labels" in status["problem"]
    assert [f["present"] for f in status["files"]] == [True, True, True, False]


@pytest.mark.parametrize("raw_md5", [True, False])
def test_truncated_gz_is_a_data_error(fake_mnist, monkeypatch, raw_md5):
    if not raw_md5:
        patch_specs(monkeypatch, fake_mnist.raw, raw_md5=False)
    name = "train-images-idx3-ubyte.gz"
    (fake_mnist.folder / name).write_bytes(fake_mnist.gz[name][: len(fake_mnist.gz[name]) // 2])
    with pytest.raises(DataError, match=f"{name} fails its checksum.*expected md5 {md5(fake_mnist.gz[name])}"):
        load_dataset("mnist", fake_mnist.root, val_size=5)
    assert not dataset_status("mnist", fake_mnist.root)["verified"]


def test_corrupt_bytes_fail_the_checksum(fake_mnist):
    name = "train-labels-idx1-ubyte.gz"
    data = bytearray(fake_mnist.gz[name])
    data[len(data) // 2] ^= 0xFF
    (fake_mnist.folder / name).write_bytes(bytes(data))
    with pytest.raises(DataError, match=f"{name} fails its checksum: md5 {md5(bytes(data))}, "
                                        f"expected md5 {md5(fake_mnist.gz[name])}"):
        load_dataset("mnist", fake_mnist.root, val_size=5)


@pytest.mark.parametrize("mutate, message", [
    (lambda r: b"\x00\x00\x08\x07" + r[4:], "dimensions"),
    (lambda r: b"PK\x03\x04" + r[4:], "bad magic number"),
    (lambda r: r[:-1], "size mismatch"),
])
def test_bad_idx_content_with_valid_checksum(fake_mnist, monkeypatch, mutate, message):
    raw = dict(fake_mnist.raw)
    raw["train-images-idx3-ubyte.gz"] = mutate(raw["train-images-idx3-ubyte.gz"])
    gzs = patch_specs(monkeypatch, raw)  # the table vouches for the bad file: parsing must still catch it
    (fake_mnist.folder / "train-images-idx3-ubyte.gz").write_bytes(gzs["train-images-idx3-ubyte.gz"])
    with pytest.raises(DataError, match=f"train-images-idx3-ubyte.gz.*{message}"):
        load_dataset("mnist", fake_mnist.root, val_size=5)


def test_parse_idx():
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(parse_idx(idx_bytes(arr), 3), arr)
    for bad in (b"", b"\x00\x00\x08", b"\x00\x00\x08\x03\x00"):
        with pytest.raises(DataError):
            parse_idx(bad, 3)


def test_images_and_labels_count_mismatch(fake_mnist, monkeypatch):
    raw = dict(fake_mnist.raw, **{"train-labels-idx1-ubyte.gz": idx_bytes(np.zeros(19))})
    gzs = patch_specs(monkeypatch, raw)
    (fake_mnist.folder / "train-labels-idx1-ubyte.gz").write_bytes(gzs["train-labels-idx1-ubyte.gz"])
    with pytest.raises(DataError, match="do not match labels"):
        load_dataset("mnist", fake_mnist.root, val_size=5)


# --- splits ----------------------------------------------------------------------------------------

def test_val_split_disjoint_deterministic_and_seeded(tmp_path, monkeypatch):
    raw = synthetic_idx(n_train=300)
    for n, b in patch_specs(monkeypatch, raw).items():
        (tmp_path / "mnist").mkdir(exist_ok=True)
        (tmp_path / "mnist" / n).write_bytes(b)
    a = load_dataset("mnist", tmp_path, val_size=50, split_seed=1)
    tr, va = train_indices(a.train), train_indices(a.val)
    assert len(va) == 50 and not set(tr) & set(va) and sorted(tr + va) == list(range(300))
    # The documented contract: the first val_size of torch.randperm under manual_seed(split_seed).
    assert va == sorted(torch.randperm(300, generator=torch.Generator().manual_seed(1))[:50].tolist())
    b = load_dataset("mnist", tmp_path, val_size=50, split_seed=1)
    assert torch.equal(a.val.x, b.val.x) and torch.equal(a.train.y, b.train.y)
    assert set(train_indices(load_dataset("mnist", tmp_path, val_size=50, split_seed=2).val)) != set(va)
    # train_fraction: a seeded subset of the remaining train split, nested across fractions.
    small = train_indices(load_dataset("mnist", tmp_path, val_size=50, split_seed=1, train_fraction=0.1).train)
    bigger = train_indices(load_dataset("mnist", tmp_path, val_size=50, split_seed=1, train_fraction=0.2).train)
    assert len(small) == 25 and len(bigger) == 50
    assert set(small) <= set(bigger) <= set(tr)
    assert len(load_dataset("mnist", tmp_path, val_size=0).val) == 0


@pytest.mark.parametrize("kwargs, message", [
    (dict(val_size=-1), r"val_size must be in \[0, 20\)"),
    (dict(val_size=20), r"val_size must be in \[0, 20\)"),
    (dict(val_size=2.5), "val_size must be an integer"),
    (dict(train_fraction=0), r"train_fraction must be a number in \(0, 1\]"),
    (dict(train_fraction=1.5), r"train_fraction must be a number in \(0, 1\]"),
    (dict(train_fraction=float("nan")), "train_fraction"),
    (dict(val_size=5, train_fraction=0.01), "keeps no training example"),
    (dict(split_seed="0"), "split_seed must be an integer"),
])
def test_bad_split_arguments(fake_mnist, kwargs, message):
    with pytest.raises(DataError, match=message):
        load_dataset("mnist", fake_mnist.root, **kwargs)


# --- generated datasets ----------------------------------------------------------------------------

def test_mnist1d_generated_cached_and_rng_neutral(tmp_path, monkeypatch):
    monkeypatch.setenv("TICKETLAB_CACHE", str(tmp_path / "cache"))
    generated._clear_caches()
    generated._generate_mnist1d.cache_clear()
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    states = random.getstate(), np.random.get_state()[1].copy()
    ds = load_dataset("mnist1d", tmp_path)
    assert random.getstate() == states[0] and np.array_equal(np.random.get_state()[1], states[1])
    assert (len(ds.train), len(ds.val), len(ds.test)) == (3500, 500, 1000)
    assert ds.input_shape == (40,) and ds.num_classes == 10 and ds.train.x.shape == (3500, 40)
    assert ds.train.x.dtype == torch.float32 and ds.test.y.dtype == torch.int64
    assert set(ds.test.y.tolist()) == set(range(10))
    assert abs(ds.train.x.mean().item()) < 0.05 and abs(ds.train.x.std().item() - 1) < 0.05
    # A disk cache was written atomically in the cache folder (not the data dir) and serves a fresh process.
    (cache,) = (tmp_path / "cache" / "mnist1d").glob("mnist1d-*.npz")
    assert not (tmp_path / "mnist1d").exists()
    generated._clear_caches()
    monkeypatch.setattr(generated, "_generate_mnist1d", lambda: pytest.fail("should read the disk cache"))
    again = load_dataset("mnist1d", tmp_path)
    assert torch.equal(again.test.x, ds.test.x) and torch.equal(again.train.y, ds.train.y)
    assert dataset_status("mnist1d", tmp_path)["verified"] and fetch("mnist1d", tmp_path) == []


def test_mnist1d_cache_never_written_to_missing_or_read_only_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("TICKETLAB_CACHE", str(tmp_path / "cache"))
    generated._clear_caches()  # the generator's own lru_cache stays warm: this is fast
    ds = load_dataset("mnist1d", tmp_path / "typo", val_size=100, train_fraction=0.5)
    assert (len(ds.train), len(ds.val)) == (1950, 100) and not (tmp_path / "typo").exists()
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o555)  # no write bit: left alone even when running as root
    try:
        generated._clear_caches()
        load_dataset("mnist1d", shared)
        assert list(shared.iterdir()) == []
    finally:
        shared.chmod(0o755)


def _listing(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*"))


def test_a_read_only_data_folder_is_never_written(tmp_path, monkeypatch):
    """Caches go to $TICKETLAB_CACHE; the data folder (here writable, as root may write anywhere)
    is left byte for byte as it was, even by a whole `train` run on a generated dataset."""
    from ticketlab import api
    from ticketlab.training.loop import TrainConfig
    data = tmp_path / "data"
    (data / "mnist1d").mkdir(parents=True)
    (data / "mnist1d" / "README").write_text("shared")
    monkeypatch.setenv("TICKETLAB_DATA", str(data))
    monkeypatch.setenv("TICKETLAB_CACHE", str(tmp_path / "cache"))
    before = _listing(data)
    generated._clear_caches()
    api.train(TrainConfig(dataset="mnist1d", model="mlp", iterations=10, eval_every=10), store=tmp_path / "s",
              progress=False)
    assert _listing(data) == before
    assert list((tmp_path / "cache" / "mnist1d").glob("mnist1d-*.npz"))


def test_digits():
    ds = load_dataset("digits")
    assert (len(ds.train), len(ds.val), len(ds.test)) == (1238, 200, 359)
    assert ds.input_shape == (1, 8, 8) and ds.train.x.shape == (1238, 1, 8, 8)
    assert ds.train.x.dtype == torch.float32 and ds.train.y.dtype == torch.int64
    x = torch.cat([ds.train.x, ds.val.x])  # the constants were computed on the full train split
    assert abs(x.mean().item()) < 1e-3 and abs(x.std().item() - 1) < 1e-3
    assert torch.bincount(ds.test.y).tolist() == [36, 36, 35, 37, 36, 36, 36, 36, 35, 36]  # stratified 20%
    assert torch.equal(load_dataset("digits").test.x, ds.test.x)


# --- CIFAR-10 --------------------------------------------------------------------------------------

def cifar_tarball(n: int = 4, batches: dict[str, bytes] | None = None) -> bytes:
    rng = np.random.default_rng(0)
    members = {}
    for i, m in enumerate((*cifar.BATCHES, cifar.TEST_BATCH)):
        d = {b"batch_label": m.encode(), b"labels": [(i + j) % 10 for j in range(n)],
             b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"x.png"] * n}
        members[m] = pickle.dumps(d, protocol=2)
    members.update(batches or {})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for m, data in members.items():
            info = tarfile.TarInfo(m)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def install_cifar(root: Path, monkeypatch, tarball: bytes) -> None:
    (root / "cifar10").mkdir(parents=True, exist_ok=True)
    (root / "cifar10" / "cifar-10-python.tar.gz").write_bytes(tarball)
    monkeypatch.setitem(_checksums.FILES, "cifar10", (FileSpec("cifar-10-python.tar.gz", md5(tarball), gzipped=False),))


def test_cifar10_from_synthetic_tarball(tmp_path, monkeypatch):
    tarball = cifar_tarball()
    install_cifar(tmp_path, monkeypatch, tarball)
    ds = load_dataset("cifar10", tmp_path, val_size=2)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (18, 2, 4)
    assert ds.input_shape == (3, 32, 32) and ds.test.x.shape == (4, 3, 32, 32)
    with tarfile.open(fileobj=io.BytesIO(tarball)) as tar:
        d = pickle.loads(tar.extractfile(cifar.TEST_BATCH).read())
    raw = torch.from_numpy(d[b"data"].reshape(4, 3, 32, 32).astype(np.float32)) / 255
    mean, std = torch.tensor([0.4914, 0.4822, 0.4465]), torch.tensor([0.2470, 0.2435, 0.2616])
    torch.testing.assert_close(ds.test.x, (raw - mean[:, None, None]) / std[:, None, None])
    assert ds.test.y.tolist() == d[b"labels"]
    assert dataset_status("cifar10", tmp_path)["verified"]
    (tmp_path / "cifar10" / "cifar-10-python.tar.gz").write_bytes(tarball[:-100])
    with pytest.raises(DataError, match="cifar-10-python.tar.gz fails its checksum"):
        load_dataset("cifar10", tmp_path, val_size=2)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_cifar_batch_any_pickle_protocol(protocol):
    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    x, y = cifar.load_batch(pickle.dumps({b"data": data, b"labels": [3, 4]}, protocol=protocol), "batch")
    assert x.shape == (2, 3, 32, 32) and np.array_equal(x.reshape(2, -1), data) and y.tolist() == [3, 4]


def test_cifar10_refuses_non_numpy_pickles(tmp_path, monkeypatch):
    evil = b"cos\nsystem\n(S'echo pwned'\ntR."  # protocol 0: os.system("echo pwned")
    with pytest.raises(DataError, match="refusing to unpickle os.system"):
        cifar.load_batch(evil, "batch")
    with pytest.raises(DataError, match="refusing to unpickle _codecs.encode with encoding 'rot13'"):
        cifar.load_batch(b"c_codecs\nencode\n(Vabc\nVrot13\ntR.", "batch")
    install_cifar(tmp_path, monkeypatch, cifar_tarball(batches={cifar.TEST_BATCH: evil}))
    with pytest.raises(DataError, match="test_batch: refusing to unpickle os.system"):
        load_dataset("cifar10", tmp_path, val_size=2)
    install_cifar(tmp_path, monkeypatch, b"not a tarball")
    with pytest.raises(DataError, match="not a complete CIFAR-10 python tarball"):
        load_dataset("cifar10", tmp_path, val_size=2)


# --- fetch over a loopback HTTP server -------------------------------------------------------------

@pytest.fixture
def server(monkeypatch):
    """An HTTP server on 127.0.0.1 serving `state.files` (name -> bytes), logging request paths."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    state = SimpleNamespace(files={}, content_length={}, requests=[])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            state.requests.append(self.path)
            folder, _, name = self.path.rpartition("/")
            if folder != "/mnist" or name not in state.files:
                self.send_error(404)
                return
            body = state.files[name]
            self.send_response(200)
            self.send_header("Content-Length", str(state.content_length.get(name, len(body))))
            self.end_headers()
            self.wfile.write(body)  # HTTP/1.0: the connection closes after the body

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/mnist/"
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_fetch_downloads_verifies_and_skips_present_files(server, tmp_path, monkeypatch, capsys):
    server.files = patch_specs(monkeypatch, synthetic_idx())
    paths = fetch("mnist", tmp_path, base_url=server.url, progress=True)
    assert paths == [tmp_path / "mnist" / n for n in IDX_NAMES]
    assert sorted(os.listdir(tmp_path / "mnist")) == sorted(IDX_NAMES)  # no temp files left
    assert len(load_dataset("mnist", tmp_path, val_size=5).train) == 15
    assert dataset_status("mnist", tmp_path)["verified"]
    assert len(server.requests) == 4
    assert fetch("mnist", tmp_path, base_url=server.url) == [] and len(server.requests) == 4
    # A present but corrupt file is downloaded again; the good ones are not.
    (tmp_path / "mnist" / IDX_NAMES[3]).write_bytes(b"junk")
    assert fetch("mnist", tmp_path, base_url=server.url) == [tmp_path / "mnist" / IDX_NAMES[3]]
    assert len(server.requests) == 5


def test_fetch_rejects_a_corrupt_download_and_leaves_nothing(server, tmp_path, monkeypatch):
    server.files = patch_specs(monkeypatch, synthetic_idx())
    good = server.files[IDX_NAMES[0]]
    server.files[IDX_NAMES[0]] = good[:100] + bytes([good[100] ^ 1]) + good[101:]
    with pytest.raises(DataError, match=f"{IDX_NAMES[0]}.*{server.url}{IDX_NAMES[0]}.*"
                                        f"md5 {md5(server.files[IDX_NAMES[0]])}, expected {md5(good)}"):
        fetch("mnist", tmp_path, base_url=server.url)
    assert os.listdir(tmp_path / "mnist") == []


def test_fetch_rejects_a_truncated_download_and_leaves_nothing(server, tmp_path, monkeypatch):
    server.files = patch_specs(monkeypatch, synthetic_idx())
    server.content_length[IDX_NAMES[0]] = len(server.files[IDX_NAMES[0]])
    server.files[IDX_NAMES[0]] = server.files[IDX_NAMES[0]][:-50]  # declares more than it sends
    with pytest.raises(DataError, match=f"{server.url}{IDX_NAMES[0]}.*(truncated|interrupted)"):
        fetch("mnist", tmp_path, base_url=server.url)
    assert os.listdir(tmp_path / "mnist") == []


def test_fetch_http_errors_and_mirror_fallback(server, tmp_path, monkeypatch):
    server.files = patch_specs(monkeypatch, synthetic_idx())
    with pytest.raises(DataError, match="404"):
        fetch("mnist", tmp_path, base_url=server.url.replace("/mnist/", "/elsewhere/"))
    del server.files[IDX_NAMES[2]]
    with pytest.raises(DataError, match=f"could not fetch .*{IDX_NAMES[2]}.*404"):
        fetch("mnist", tmp_path, base_url=server.url)
    assert sorted(os.listdir(tmp_path / "mnist")) == sorted(IDX_NAMES[:2])  # earlier files kept
    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/"
    server.files = patch_specs(monkeypatch, synthetic_idx())
    monkeypatch.setitem(_checksums.MIRRORS, "mnist", (dead, server.url))
    assert fetch("mnist", tmp_path) == [tmp_path / "mnist" / n for n in IDX_NAMES[2:]]
    with pytest.raises(DataError, match="http:// or https://"):
        fetch("mnist", tmp_path, base_url="file:///etc/")


# --- the real files (skipped without them) ---------------------------------------------------------

def test_real_mnist():
    root = real_data_dir()
    ds = load_dataset("mnist", root)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (55000, 5000, 10000)
    assert ds.train.x.shape == (55000, 1, 28, 28)
    assert ds.train.y.min().item() == 0 and ds.train.y.max().item() == 9
    assert abs(ds.train.x.mean().item()) < 0.01 and abs(ds.train.x.std().item() - 1) < 0.01


def test_real_status_and_kmnist_missing_train_images():
    root = real_data_dir()
    assert dataset_status("mnist", root)["verified"]  # re-gzipped train images: the raw-md5 path
    if (root / "fashion-mnist").is_dir():
        assert dataset_status("fashion-mnist", root)["verified"]  # byte-identical: the canonical md5
    if not (root / "kmnist").is_dir() or (root / "kmnist" / IDX_NAMES[0]).exists():
        pytest.skip("needs the partial KMNIST folder (no train images)")
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz is missing.*bdb82020997e1d708af4cf47b453dcf7"):
        load_dataset("kmnist", root)
    status = dataset_status("kmnist", root)
    assert not status["present"] and "train-images-idx3-ubyte.gz" in status["problem"]
