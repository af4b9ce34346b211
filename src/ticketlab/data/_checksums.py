"""Canonical checksums and mirrors of the downloadable datasets, and the one file-acceptance rule.

The md5 values are the ones torchvision publishes for the original downloads:

* MNIST: Y. LeCun, C. Cortes, C. J. C. Burges, "The MNIST database of handwritten digits",
  http://yann.lecun.com/exdb/mnist/ (LeCun et al. 1998).
* Fashion-MNIST: H. Xiao, K. Rasul, R. Vollgraf, "Fashion-MNIST: a Novel Image Dataset for
  Benchmarking Machine Learning Algorithms", arXiv:1708.07747 (2017).
* KMNIST: T. Clanuwat et al., "Deep Learning for Classical Japanese Literature", arXiv:1812.01718 (2018).
* CIFAR-10: A. Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", tech. report (2009).

For MNIST and Fashion-MNIST we also know the md5 of the *decompressed* IDX content. A file is
accepted when its own md5 is the canonical one, OR when it gunzips to content with the known raw
md5: a re-gzipped copy (other gzip header / compression level) holds the very same data.

`FILES` and `MIRRORS` are looked up at call time, so tests (or a user with a private mirror) can
replace an entry (e.g. `monkeypatch.setitem(FILES, "mnist", ...)`).
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path

from ticketlab.core.errors import DataError


@dataclass(frozen=True)
class FileSpec:
    """One file of a dataset: its name in the dataset folder and how to recognise a good copy."""

    name: str
    md5: str  # md5 of the file as downloaded from the canonical mirror
    raw_md5: str | None = None  # md5 of the gunzipped content, when known
    gzipped: bool = True  # a plain .gz to decompress after checking (False for the CIFAR tarball)


IDX_NAMES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def _idx(md5s: tuple[str, ...], raw: tuple[str | None, ...] = (None,) * 4) -> tuple[FileSpec, ...]:
    return tuple(FileSpec(n, m, r) for n, m, r in zip(IDX_NAMES, md5s, raw))


FILES: dict[str, tuple[FileSpec, ...]] = {
    "mnist": _idx(
        ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
         "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c"),
        ("6bbc9ace898e44ae57da46a324031adb", "a25bea736e30d166cdddb491f175f624",
         "2646ac647ad5339dbf082846283269ea", "27ae3e4e09519cfbb04c329615203637"),
    ),
    "fashion-mnist": _idx(
        ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
         "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310"),
        ("f4a8712d7a061bf5bd6d2ca38dc4d50a", "9018921c3c673c538a1fc5bad174d6f9",
         "8181f5470baa50b63fa0f6fddb340f0a", "15d484375f8d13e6eb1aabb0c3f46965"),
    ),
    "kmnist": _idx(
        ("bdb82020997e1d708af4cf47b453dcf7", "e144d726b3acfaa3e44228e80efcd344",
         "5c965bf0a639b31b8f53240b1b52f4d7", "7320c461ea6c1c855c0b718fb2a4b134"),
    ),
    "cifar10": (FileSpec("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", gzipped=False),),
}

# Tried in order by `fetch`; each is the folder URL that holds the files under their own names.
MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    "kmnist": ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
    "cifar10": ("https://www.cs.toronto.edu/~kriz/",),
}


def md5_bytes(data: bytes) -> str:
    """Hex md5 of `data`."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def file_url(name: str, spec: FileSpec) -> str:
    """The first canonical mirror's URL for `spec` (used in error messages)."""
    return MIRRORS[name][0].rstrip("/") + "/" + spec.name


def how_to_get(name: str, spec: FileSpec) -> str:
    """The advice an error about dataset `name`'s file `spec` ends with: the fetch command and the URL."""
    return f"get it with `ticketlab data fetch {name}` or from {file_url(name, spec)}"


def _expected(spec: FileSpec) -> str:
    return f"md5 {spec.md5}" + (f" (or gunzipped md5 {spec.raw_md5})" if spec.raw_md5 else "")


def read_verified(path: Path, spec: FileSpec, name: str) -> bytes:
    """Read `path`, check it against `spec` and return its content (gunzipped when `spec.gzipped`).

    The file is read once and decompressed at most once. Any missing, truncated or corrupt file
    raises `DataError` naming the path, the expected checksum and how to get a good copy.
    """
    return check(read(path, spec, name), path, spec, name)


def read(path: Path, spec: FileSpec, name: str) -> bytes:
    """The bytes of `path`, unchecked; DataError naming the file if it is missing or unreadable."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path} is missing (expected {_expected(spec)}); {how_to_get(name, spec)}") from None
    except OSError as e:
        raise DataError(f"cannot read {path}: {e}") from None


def check(data: bytes, path: Path, spec: FileSpec, name: str) -> bytes:
    """`data` (read from `path`) checked against `spec`, gunzipped when `spec.gzipped`: the rule of
    `read_verified`, for a caller that has the bytes already."""
    actual = md5_bytes(data)
    if actual == spec.md5:
        if not spec.gzipped:
            return data
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:  # only if the checksum table itself is wrong
            raise DataError(f"{path} matches md5 {spec.md5} but does not gunzip: {e}") from None
    bad = (f"{path} fails its checksum: md5 {actual}, expected {_expected(spec)}; the file is "
           f"truncated, corrupt or not the original: delete it and {how_to_get(name, spec)}")
    if not (spec.gzipped and spec.raw_md5):
        raise DataError(bad)
    try:
        content = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{bad} (gunzip failed: {e})") from None
    if md5_bytes(content) != spec.raw_md5:
        raise DataError(bad)
    return content
