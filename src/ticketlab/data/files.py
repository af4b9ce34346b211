"""Your own data: a classification dataset read from a `.npz` or `.safetensors` file (issue 15, piece 6;
docs/architecture/byo.md).

`--dataset path/to/data.npz` (or `.safetensors`) names a file holding the arrays `x_train`, `y_train`,
`x_test`, `y_test` and, optionally, `x_val`, `y_val`: inputs [N, *input_shape] of any real dtype (used
as float32, as they are: no normalisation), labels [N] of an integer dtype in [0, classes). The number
of classes is the largest label + 1. A `.npz` is read with `allow_pickle=False`, so a file can hold
only plain arrays, never code.

The file's identity is its content: a config names it as ``path#sha256=<hex>`` (`pin` adds the
checksum when the config is made), so the experiment hash tells two datasets apart, and loading a
file whose content no longer matches the recorded checksum is an error rather than a silent mix of
results.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np

from ticketlab.core.errors import DataError

SUFFIXES = (".npz", ".safetensors")
REQUIRED = ("x_train", "y_train", "x_test", "y_test")
OPTIONAL = ("x_val", "y_val")
_PIN = "#sha256="


def is_file_dataset(name: str) -> bool:
    """Whether the dataset `name` is a file (it ends in .npz or .safetensors, checksum aside)."""
    return isinstance(name, str) and name.split(_PIN)[0].endswith(SUFFIXES)


def _path(name: str) -> Path:
    path = Path(name.split(_PIN)[0]).expanduser()
    if not path.is_file():
        raise DataError(f"dataset file {path}: no such file (expected a .npz or .safetensors file)")
    return path


def sha256(path: Path) -> str:
    """The hex SHA-256 of the file at `path`, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def pin(name: str) -> str:
    """`name` with its file's sha256 recorded (``path#sha256=<hex>``); unchanged if already pinned."""
    if _PIN in name:
        return name
    return f"{name}{_PIN}{sha256(_path(name))}"


def _read(path: Path) -> dict[str, np.ndarray]:
    if path.suffix == ".safetensors":
        try:
            import safetensors  # noqa: F401  (imported only for this format)
        except ImportError:
            raise DataError(f"dataset file {path}: reading .safetensors needs `pip install safetensors`") from None
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        from safetensors.numpy import load_file
        return load_file(str(path))
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"dataset file {path}: unreadable ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    except Exception as e:  # safetensors raises its own SafetensorError
        raise DataError(f"dataset file {path}: unreadable ({type(e).__name__}: {str(e).splitlines()[0]})") from None


def load_arrays(name: str) -> tuple[dict[str, np.ndarray], int]:
    """The checked arrays of the file dataset `name` ({x_train, y_train, x_test, y_test[, x_val, y_val]})
    and its number of classes. Raises DataError naming the file for a missing file, a checksum that
    differs from the pinned one, a missing array or a wrong shape or dtype."""
    path = _path(name)
    if _PIN in name:
        want, got = name.split(_PIN)[1], sha256(path)
        if got != want:
            raise DataError(f"dataset file {path}: sha256 {got[:12]}… differs from {want[:12]}… recorded in "
                            f"the experiment's config (the file changed)")
    arrays = _read(path)
    missing = [k for k in REQUIRED if k not in arrays]
    if missing:
        raise DataError(f"dataset file {path}: missing array(s) {', '.join(missing)}; expected "
                        f"{', '.join(REQUIRED)} (optional {', '.join(OPTIONAL)})")
    if ("x_val" in arrays) != ("y_val" in arrays):
        raise DataError(f"dataset file {path}: x_val and y_val come together; found only one")
    splits = [s for s in ("train", "val", "test") if f"x_{s}" in arrays]
    shape = arrays["x_train"].shape[1:]
    for s in splits:
        x, y = arrays[f"x_{s}"], arrays[f"y_{s}"]
        if x.dtype.kind not in "biuf" or x.ndim < 2 or x.shape[1:] != shape:
            raise DataError(f"dataset file {path}: x_{s} has {x.dtype} {x.shape}, expected real numbers of "
                            f"shape [N, {', '.join(map(str, shape)) or '...'}]")
        if y.dtype.kind not in "iu" or y.ndim != 1 or len(y) != len(x):
            raise DataError(f"dataset file {path}: y_{s} has {y.dtype} {y.shape}, expected integer labels of "
                            f"shape [{len(x)}]")
        if len(y) and int(y.min()) < 0:
            raise DataError(f"dataset file {path}: y_{s} has label {int(y.min())}, expected labels >= 0")
    if len(arrays["y_train"]) == 0:
        raise DataError(f"dataset file {path}: x_train is empty")
    classes = 1 + max(int(arrays[f"y_{s}"].max()) for s in splits if len(arrays[f"y_{s}"]))
    return {k: arrays[k] for k in REQUIRED + OPTIONAL if k in arrays}, classes
