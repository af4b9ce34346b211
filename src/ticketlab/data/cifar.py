"""Read CIFAR-10 from the original python tarball, with a restricted unpickler.

Source: A. Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009;
https://www.cs.toronto.edu/~kriz/cifar.html. `cifar-10-python.tar.gz` holds
`cifar-10-batches-py/data_batch_1..5` and `test_batch`: Python 2 pickles of a dict with
b"data" (10000 x 3072 uint8, each row the 1024 red, then green, then blue pixels of a 32x32
image, row-major) and b"labels" (a list of ints 0..9).

Unpickling runs arbitrary code in general, so the pickles are read by an Unpickler that only
resolves the few numpy globals an ndarray needs and refuses everything else with `DataError`.
Members are read straight from the archive in memory; nothing is extracted to disk.
"""

from __future__ import annotations

import io
import pickle
import tarfile

import numpy as np

from ticketlab.core.errors import DataError

try:  # numpy >= 2 keeps the implementation in numpy._core; numpy.core is a deprecated alias
    from numpy._core import multiarray as _multiarray, numeric as _numeric
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _multiarray, numeric as _numeric

_ALLOWED = {}
for _mod in ("numpy.core", "numpy._core"):
    _ALLOWED[(f"{_mod}.multiarray", "_reconstruct")] = _multiarray._reconstruct
    if hasattr(_numeric, "_frombuffer"):  # protocol-5 pickles of arrays
        _ALLOWED[(f"{_mod}.numeric", "_frombuffer")] = _numeric._frombuffer
_ALLOWED[("numpy", "ndarray")] = np.ndarray
_ALLOWED[("numpy", "dtype")] = np.dtype


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(text, "latin1"): allow just that.
    if encoding not in ("latin1", "latin-1"):
        raise DataError(f"refusing to unpickle _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1", errors)


_ALLOWED[("_codecs", "encode")] = _latin1_encode

BATCHES = tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "cifar-10-batches-py/test_batch"


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise DataError(f"refusing to unpickle {module}.{name}: CIFAR-10 batches hold only numpy arrays") from None


def load_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Unpickle one CIFAR-10 batch safely; return images [N,3,32,32] uint8 and labels [N] int64."""
    try:
        d = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
        x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        y = np.asarray(d[b"labels"], dtype=np.int64)
    except DataError as e:
        raise DataError(f"{where}: {e}") from None
    except Exception as e:  # a malformed pickle can raise almost anything
        raise DataError(f"{where}: not a CIFAR-10 batch ({type(e).__name__}: {e})") from None
    if len(x) != len(y):
        raise DataError(f"{where}: {len(x)} images but {len(y)} labels")
    return x, y


def load_tarball(content: bytes, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (x_train, y_train, x_test, y_test) from the bytes of `cifar-10-python.tar.gz`."""
    try:
        with tarfile.open(fileobj=io.BytesIO(content), mode="r:gz") as tar:
            raw = {m: tar.extractfile(m).read() for m in (*BATCHES, TEST_BATCH)}
    except (tarfile.TarError, KeyError, AttributeError, OSError, EOFError) as e:
        raise DataError(f"{where}: not a complete CIFAR-10 python tarball ({type(e).__name__}: {e})") from None
    train = [load_batch(raw[m], f"{where}:{m}") for m in BATCHES]
    x_test, y_test = load_batch(raw[TEST_BATCH], f"{where}:{TEST_BATCH}")
    return np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]), x_test, y_test
