"""Load a dataset into memory as normalised tensors, with a seeded validation split; report file status.

Sources: MNIST (LeCun et al. 1998), Fashion-MNIST (Xiao et al. 2017), KMNIST (Clanuwat et al. 2018)
from their IDX files; CIFAR-10 (Krizhevsky 2009) from its python tarball; MNIST-1D (Greydanus 2020)
and scikit-learn's digits without any file. Every file is checked against its checksum on every
load (see `_checksums.read_verified`); the arrays parsed from verified files are cached
(`ticketlab.data.parsed`). A path to a .npz / .safetensors file is your own dataset
(`ticketlab.data.files`).
"""

from __future__ import annotations

import math
import os
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import torch

from ticketlab.data import _checksums, cifar, files, generated, parsed
from ticketlab.data.idx import parse_idx
from ticketlab.data.registry import Dataset, DatasetInfo, Split, get_info, resolve_cache_dir, resolve_data_dir
from ticketlab.core.errors import DataError


def _require_present(name: str, folder: Path) -> list[tuple[Path, _checksums.FileSpec]]:
    # Check every file exists before hashing any, so a missing file is reported at once.
    files = [(folder / s.name, s) for s in _checksums.FILES[name]]
    for path, spec in files:
        if not path.is_file():
            raise DataError(f"{path} is missing (expected md5 {spec.md5}); {_checksums.how_to_get(name, spec)}")
    return files


def _load_idx(name: str, folder: Path, num_classes: int) -> tuple[np.ndarray, ...]:
    files = _require_present(name, folder)
    return parsed.load(name, files, lambda contents: _parse_idx(folder, num_classes, files, contents))


def _parse_idx(folder: Path, num_classes: int, files, contents: list[bytes]) -> tuple[np.ndarray, ...]:
    arrays = {spec.name: parse_idx(content, 3 if "images" in spec.name else 1, str(path))
              for (path, spec), content in zip(files, contents)}
    out = []
    for split in ("train", "t10k"):
        x, y = arrays[f"{split}-images-idx3-ubyte.gz"], arrays[f"{split}-labels-idx1-ubyte.gz"]
        if x.shape[0] != y.shape[0] or x.shape[1:] != (28, 28):
            raise DataError(f"{folder}: {split} images {x.shape} do not match labels {y.shape} (expected [N,28,28] and [N])")
        out += [x.reshape(-1, 1, 28, 28), y]
    _check_labels(folder, num_classes, out[1], out[3])
    return tuple(out)


def _load_cifar(folder: Path) -> tuple[np.ndarray, ...]:
    ((path, spec),) = files = _require_present("cifar10", folder)
    return parsed.load("cifar10", files, lambda contents: _parse_cifar(path, contents[0]))


def _parse_cifar(path: Path, content: bytes) -> tuple[np.ndarray, ...]:
    out = cifar.load_tarball(content, str(path))
    _check_labels(path, 10, out[1], out[3])
    return out


def _check_labels(where, num_classes: int, *labels: np.ndarray) -> None:
    for y in labels:
        if y.size and (int(y.min()) < 0 or int(y.max()) >= num_classes):
            raise DataError(f"{where}: labels outside 0..{num_classes - 1}")


def _raw_arrays(info: DatasetInfo, root: Path) -> tuple[np.ndarray, ...]:
    """(x_train, y_train, x_test, y_test) as stored, before scaling; may be read-only views."""
    if info.kind == "idx":
        return _load_idx(info.name, root / info.name, info.num_classes)
    if info.kind == "cifar":
        return _load_cifar(root / info.name)
    if info.kind == "mnist1d":
        # generated, not downloaded: its disk cache goes to the cache folder, never the data folder
        return generated.mnist1d_arrays(resolve_cache_dir() / "mnist1d")
    return generated.digits_arrays()


def _split(x: np.ndarray, y: np.ndarray, info: DatasetInfo) -> Split:
    # astype copies, so the cached / read-only source arrays are never modified.
    xt = torch.from_numpy(x.astype(np.float32))
    if info.scale != 1.0:
        xt.div_(info.scale)
    shape = (1, -1) + (1,) * (xt.dim() - 2) if len(info.mean) > 1 else ()
    mean = torch.tensor(info.mean, dtype=torch.float32).reshape(shape)
    std = torch.tensor(info.std, dtype=torch.float32).reshape(shape)
    xt.sub_(mean).div_(std)
    return Split(xt, torch.from_numpy(y.astype(np.int64)))


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, *, val_size: int | None = None,
                 split_seed: int = 0, train_fraction: float = 1.0) -> Dataset:
    """Load dataset `name` (one of `list_datasets()`) from `resolve_data_dir(data_dir)`.

    The validation split (`val_size` examples; None = the dataset's default, 5000 for the image
    datasets as in the LTH paper, 500 for mnist1d, 200 for digits) is held out of the original
    training split by `torch.randperm` under `torch.Generator().manual_seed(split_seed)`: disjoint
    from train, and the same for the same seed. `train_fraction` < 1 keeps that fraction of the
    remaining training examples, the first ones of the same seeded permutation (so a 10% subset is
    contained in the 20% one). Indices within each split are kept in their original order.

    `name` may also be a .npz / .safetensors file (`ticketlab.data.files`): its inputs are used as they
    are (no normalisation); its x_val / y_val, if present, are the validation split (then `val_size`
    must be None), else `val_size` (default: a tenth) is held out of x_train as above.

    Raises `DataError` for an unknown name, a missing / corrupt file, `train_fraction` outside
    (0, 1] or `val_size` outside [0, number of training examples).
    """
    own = None
    if files.is_file_dataset(name):
        own, classes = files.load_arrays(name)
        info = DatasetInfo(name, kind="file", num_classes=classes, input_shape=tuple(own["x_train"].shape[1:]),
                           default_val_size=0 if "x_val" in own else len(own["y_train"]) // 10, scale=1.0,
                           mean=(0.0,), std=(1.0,))
        if "x_val" in own and val_size is not None:
            raise DataError(f"val_size: got {val_size!r}, but {name.split('#')[0]} brings its own x_val/y_val; "
                            f"expected None")
    else:
        info = get_info(name)
    if isinstance(train_fraction, bool) or not isinstance(train_fraction, Real) or not 0 < train_fraction <= 1:
        raise DataError(f"train_fraction must be a number in (0, 1], got {train_fraction!r}")
    if val_size is not None and (isinstance(val_size, bool) or not isinstance(val_size, Integral)):
        raise DataError(f"val_size must be an integer, got {val_size!r}")
    if isinstance(split_seed, bool) or not isinstance(split_seed, Integral):
        raise DataError(f"split_seed must be an integer, got {split_seed!r}")

    if own is None:
        x_train, y_train, x_test, y_test = _raw_arrays(info, resolve_data_dir(data_dir))
    else:
        x_train, y_train, x_test, y_test = (own[k] for k in files.REQUIRED)
    n = len(y_train)
    val_size = info.default_val_size if val_size is None else int(val_size)
    if not 0 <= val_size < n:
        raise DataError(f"val_size must be in [0, {n}) for {name} ({n} training examples), got {val_size}")
    n_keep = math.floor(train_fraction * (n - val_size) + 0.5)
    if n_keep < 1:
        raise DataError(f"train_fraction={train_fraction} keeps no training example of {n - val_size}; "
                        f"use a value in ({1 / (n - val_size):.3g}, 1]")

    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(split_seed)))
    val_idx = perm[:val_size].sort().values.numpy()
    train_idx = perm[val_size:val_size + n_keep].sort().values.numpy()
    return Dataset(
        name=info.name,
        train=_split(x_train[train_idx], y_train[train_idx], info),
        val=_split(x_train[val_idx], y_train[val_idx], info) if own is None or "x_val" not in own
        else _split(own["x_val"], own["y_val"], info),
        test=_split(x_test, y_test, info),
        num_classes=info.num_classes,
        input_shape=info.input_shape,
    )


def dataset_status(name: str, data_dir: str | os.PathLike | None = None) -> dict:
    """Whether dataset `name`'s files are present and pass their checksums (for `ticketlab data ls`).

    Returns {"name", "present", "verified", "files", "problem"}: `files` has one dict per file
    {"name", "path", "present", "verified", "md5", "problem"}; `problem` is the first file's
    problem (None if all is well). Generated datasets (mnist1d, digits) have no files and are
    always present and verified. Each present file is read and hashed in full.
    """
    info = get_info(name)
    if info.generated:
        return {"name": info.name, "present": True, "verified": True, "files": [], "problem": None}
    folder = resolve_data_dir(data_dir) / info.name
    files = []
    for spec in _checksums.FILES[info.name]:
        path = folder / spec.name
        entry = {"name": spec.name, "path": str(path), "present": path.is_file(), "verified": False,
                 "md5": spec.md5, "problem": None}
        if not entry["present"]:
            entry["problem"] = f"{path} is missing; {_checksums.how_to_get(info.name, spec)}"
        else:
            try:
                _checksums.read_verified(path, spec, info.name)
                entry["verified"] = True
            except DataError as e:
                entry["problem"] = str(e)
        files.append(entry)
    problems = [f["problem"] for f in files if f["problem"]]
    return {"name": info.name, "present": all(f["present"] for f in files),
            "verified": all(f["verified"] for f in files), "files": files,
            "problem": problems[0] if problems else None}
