"""The arithmetic precision runs train in: `fp32` (the default, for reproduction), `bf16` (autocast on
the device) or `tf32` (TF32 matmuls and convolutions on CUDA).

Issue 16 ("Speed on every device", *Precision*; docs/architecture/gpu.md). Like the device, it is a
setting of the process (`use` / `current`): `ticketlab.api` applies `RunOptions.precision`, the
scheduler repeats it in its worker processes. What each mode does:

- `bf16`: the forward pass (and the loss) runs under `torch.autocast(device, torch.bfloat16)`, on the
  CPU too. Parameters, gradients, optimizer state and masks stay fp32, so a pruned weight stays
  exactly zero.
- `tf32`: `torch.backends.cuda.matmul.allow_tf32` and `torch.backends.cudnn.allow_tf32`. On the CPU
  and MPS it changes nothing (those flags are read by CUDA kernels only).

Precision changes results, so a run in another precision must never be found in an fp32 run's
folder: `identity()` joins the store's experiment key when the precision is not fp32
(`ticketlab.engine.store`), the way a `hashed="unless_default"` field does, so every fp32 hash
stays what it was. Each run records its precision in its summary.
"""

from __future__ import annotations

import contextlib

import torch

from ticketlab.core.errors import ConfigError

NAMES = ("fp32", "bf16", "tf32")
DEFAULT = "fp32"
_current = DEFAULT


def check(name) -> str:
    """`name` if it is a precision; a one-line ConfigError naming the value otherwise."""
    if name not in NAMES:
        raise ConfigError(f"precision: got {name!r}, expected one of {', '.join(NAMES)}")
    return name


def use(name: str) -> None:
    """Make `name` the precision of the runs this process trains. Entering tf32 turns the CUDA TF32
    flags on, leaving it turns them off (so a later fp32 run in the same process is true fp32); while
    tf32 is never asked for, the flags stay as torch or the caller set them."""
    global _current
    check(name)
    if (name == "tf32") != (_current == "tf32"):
        torch.backends.cuda.matmul.allow_tf32 = name == "tf32"
        torch.backends.cudnn.allow_tf32 = name == "tf32"
    _current = name


def current() -> str:
    """The precision this process trains in (`fp32` until `use` is called)."""
    return _current


def autocast(dev: torch.device):
    """The context the forward pass and loss run in on `dev`: bf16 autocast for `bf16`, else nothing."""
    if _current != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(dev.type, dtype=torch.bfloat16)


def identity() -> dict:
    """What joins an experiment's store key: nothing for fp32 (stored hashes stay put), else the name."""
    return {} if _current == DEFAULT else {"precision": _current}


def summary() -> dict:
    """What a run's summary records of its arithmetic: the precision, and whether deterministic
    algorithms were on (`ticketlab.training.determinism`)."""
    return {"precision": _current, "deterministic": torch.are_deterministic_algorithms_enabled()}


__all__ = ["NAMES", "DEFAULT", "check", "use", "current", "autocast", "identity", "summary"]
