"""Parse the IDX file format of MNIST-style datasets into numpy arrays, without per-example loops.

Format (LeCun et al., http://yann.lecun.com/exdb/mnist/, "FILE FORMATS"): two zero bytes, one
type code byte, one byte giving the number of dimensions d, then d big-endian uint32 sizes, then
the data in row-major order, big-endian. MNIST, Fashion-MNIST (Xiao et al. 2017) and KMNIST
(Clanuwat et al. 2018) all use type 0x08 (unsigned byte) for both images and labels.
"""

from __future__ import annotations

import numpy as np

from ticketlab.core.errors import DataError

# IDX type code -> numpy dtype (big-endian as the format specifies).
_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def parse_idx(content: bytes, ndim: int, where: str = "<bytes>") -> np.ndarray:
    """Return the array stored in IDX `content`, which must have `ndim` dimensions.

    The result is a read-only view of `content` (np.frombuffer). A bad magic number, an
    unexpected number of dimensions or a size that disagrees with the header raises `DataError`
    naming `where`.
    """
    if len(content) < 4 or content[0] != 0 or content[1] != 0 or content[2] not in _TYPES:
        raise DataError(f"{where}: not an IDX file (bad magic number {content[:4].hex() or 'empty'})")
    if content[3] != ndim:
        raise DataError(f"{where}: IDX file has {content[3]} dimensions, expected {ndim}")
    header = 4 + 4 * ndim
    if len(content) < header:
        raise DataError(f"{where}: IDX header truncated ({len(content)} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(content, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_TYPES[content[2]])
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(content) != expected:
        raise DataError(f"{where}: IDX size mismatch: header {dims} needs {expected} bytes, file has {len(content)}")
    return np.frombuffer(content, dtype=dtype, offset=header).reshape(dims)
