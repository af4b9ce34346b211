"""Generator seeds derived from what they are for, the same in every process and on every platform.

A random control, a random-growth draw or a random ticket needs a seed that depends only on its
purpose (a base seed and names: replicate, control, level, draw, layer), never on Python's salted
`hash()` nor on the order in which runs happen to execute (open_lth seeds its random-pruning
controls from the replicate and level in the same spirit; LTH App. B).

- `derive_seed(*parts, bits=...)`: the low `bits` bits of the little-endian SHA-256 of the parts
  joined by ":". Every name-derived seed of the package comes from it: `core.scores.name_seed`
  (63 bits), the lottery controls' `control_seed` and the transfer's random tickets (32 bits: the
  first 4 bytes of the digest, as they were drawn before this module existed).
- `stream_seed(seed, stream)`: ``seed * 1_000_003 + stream``, the cheap seed of numbered streams
  (the data order of epoch e, the teacher-student purposes). It is not a hash, and stays what it
  was so that stored runs reproduce bit for bit.
- `seeded(seed)`: torch's global RNGs seeded inside a block and given back as they were after it
  (model initialisation from a seed, the reinit control), the CUDA devices' included.
"""

from __future__ import annotations

import contextlib
import hashlib
import operator

import torch


def derive_seed(*parts, bits: int = 63) -> int:
    """A `bits`-bit seed (1 <= bits <= 64) from `parts` (ints and strings, joined by ":" through `str`).

    >>> derive_seed(0, "fc1.weight")
    4022590910196729911
    >>> derive_seed(0, 0, "reinit", 1, 0, bits=32)
    3596021391
    """
    if not 1 <= bits <= 64:
        raise ValueError(f"bits: got {bits}, expected 1 to 64")
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << bits) - 1)


def stream_seed(seed: int, stream: int) -> int:
    """The seed of numbered stream `stream` of base seed `seed`: ``seed * 1_000_003 + stream``."""
    return operator.index(seed) * 1_000_003 + operator.index(stream)


@contextlib.contextmanager
def seeded(seed: int):
    """Run the block under ``torch.manual_seed(seed)``, leaving torch's global RNG states as they were
    after it: the CPU's, and every CUDA device's once CUDA is initialised (``torch.manual_seed`` seeds
    them too, so a training loop's dropout stream on the GPU would otherwise restart from `seed`)."""
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield


__all__ = ["derive_seed", "stream_seed", "seeded"]
