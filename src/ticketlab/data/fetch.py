"""Download a dataset's original files from their canonical mirrors, verified before they appear.

Mirrors (see `_checksums.MIRRORS`): MNIST (LeCun et al.) from the PyTorch S3 copy, then
yann.lecun.com; Fashion-MNIST (Xiao et al. 2017) from Zalando's S3 site; KMNIST (Clanuwat et al. 2018)
from ROIS-DS CODH; CIFAR-10 (Krizhevsky 2009) from the University of Toronto.

Each file streams into a temporary file in the destination folder; it is renamed onto its final
name only after its size and checksum pass, so an interrupted, truncated or corrupt download
never looks complete. Failures delete the temporary file.
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from http.client import HTTPException
from pathlib import Path

from ticketlab.core import atomic
from ticketlab.data import _checksums
from ticketlab.data.registry import get_info, resolve_data_dir
from ticketlab.core.errors import DataError
from ticketlab.core.progress import bar as progress_bar

_CHUNK = 1 << 20
_TIMEOUT = 60  # seconds without data before a mirror is given up


def _download(url: str, dest: Path, spec: _checksums.FileSpec, name: str, progress: bool) -> None:
    """Fetch `url` into `dest` atomically; raise DataError (leaving nothing behind) on any failure."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            req = urllib.request.Request(url, headers={"User-Agent": "ticketlab"})
            try:
                with urllib.request.urlopen(req, timeout=_TIMEOUT) as resp:
                    length = resp.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                    bar = progress_bar(total, enabled=progress, desc=dest.name, unit="B", unit_scale=True,
                                       mininterval=0.1)
                    received = 0
                    try:
                        while chunk := resp.read(_CHUNK):
                            f.write(chunk)
                            received += len(chunk)
                            if bar is not None:
                                bar.update(len(chunk))
                    finally:
                        if bar is not None:
                            bar.close()
            except HTTPException as e:  # e.g. IncompleteRead: the server closed the connection early
                raise DataError(f"{url}: download of {dest.name} interrupted ({type(e).__name__}: {e})") from None
            except (urllib.error.URLError, OSError) as e:
                raise DataError(f"{url}: cannot download {dest.name} ({e})") from None
            if total is not None and received != total:
                raise DataError(f"{url}: download of {dest.name} truncated: expected {total} bytes, received {received}")
            f.flush()
            os.fsync(f.fileno())
        try:
            _checksums.read_verified(Path(tmp), spec, name)
        except DataError:
            actual = _checksums.md5_bytes(Path(tmp).read_bytes())
            raw = f" (or gunzipped md5 {spec.raw_md5})" if spec.raw_md5 else ""
            raise DataError(f"{url}: downloaded {dest.name} fails its checksum: md5 {actual}, "
                            f"expected {spec.md5}{raw}; not saved") from None
        os.replace(tmp, dest)
    except BaseException:
        atomic.discard(tmp)
        raise


def fetch(name: str, data_dir=None, *, base_url: str | None = None, progress: bool = False) -> list[Path]:
    """Download dataset `name`'s files into `resolve_data_dir(data_dir)/name`; return the paths downloaded.

    Files already present that pass their checksum are skipped (a present file that fails is
    downloaded again). Each file is tried from each mirror in order; `base_url` (the URL of a
    folder holding the files under their usual names, http or https) replaces the mirrors. If
    every mirror fails, `DataError` names the file, each URL and its failure (e.g. expected vs
    actual md5, or expected vs received size). Generated datasets (mnist1d, digits) need no
    files: fetch returns []. `progress` shows a tqdm bar per file on stderr.
    """
    info = get_info(name)
    if info.generated:
        return []
    mirrors = (base_url,) if base_url is not None else _checksums.MIRRORS[info.name]
    for m in mirrors:
        if urllib.parse.urlsplit(m).scheme not in ("http", "https"):
            raise DataError(f"mirror URL must be http:// or https://, got {m!r}")
    folder = resolve_data_dir(data_dir) / info.name
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create {folder}: {e}") from None
    downloaded = []
    for spec in _checksums.FILES[info.name]:
        dest = folder / spec.name
        if dest.is_file():
            try:
                _checksums.read_verified(dest, spec, info.name)
                continue
            except DataError:
                pass  # present but bad: replace it
        failures = []
        for mirror in mirrors:
            try:
                _download(mirror.rstrip("/") + "/" + spec.name, dest, spec, info.name, progress)
                break
            except DataError as e:
                failures.append(str(e))
        else:
            raise DataError(f"could not fetch {dest}: " + "; ".join(failures))
        downloaded.append(dest)
    return downloaded
