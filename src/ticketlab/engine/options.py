"""Run options: how an experiment runs (processes, stacking, threads, progress, checkpoints,
device), never what it is.

One frozen dataclass, `RunOptions`, for every run command: the command line generates its run
flags from its fields (`ticketlab.cli.common.run_flags`), every `ticketlab.api` run function takes
one (`options=`; the older keyword arguments `workers=`, `stack=`, ... build it), and a sweep file's
`[sweep]` table holds the same fields (`ticketlab.sweep`). No field enters an experiment's hash.

Results do not depend on `workers`, `threads`, `progress`, `checkpoint_every` or `device`. They
depend on `stack` only by float rounding: runs trained as one stacked computation agree with runs
trained alone to rounding, not bit for bit (docs/performance.md §4, tests/test_ensemble.py). That is
why each kind keeps the stack it was measured with, and `None` means "the kind's default":

    field             None means
    stack             3 (demo), 8 (lottery, transfer, sparse; docs/performance.md §2: 8 stacked models per
                      process ≈ 1.9× one at a time), 16 (teacher_student), 1 (train)
    checkpoint_every  1000 iterations; 5000 steps for teacher_student
    workers           where the caller owns its process (the `ticketlab` command, a sweep's
                      dispatcher): one per core, capped at the runs that can train at once
                      (`own_process=True`). In a Python caller's process: 1, every run in that
                      process, as the API always did; worker processes would see none of the
                      caller's run-time registrations (datasets, corpora) or patches, and would
                      import its script again.
    threads           on the command line, 1 torch thread (docs/performance.md §2); in a Python
                      caller's process, its own setting, left alone

`device`: `auto` (CUDA when available, else the CPU; the same default on the command line and in
the API), `cpu`, `cuda`, `cuda:N` or `mps`; checked against this machine when the options are made
(`ticketlab.training.device`). Each run records the device it used as `trained_on` in its summary.

`precision` (`fp32`, `bf16`, `tf32`; `ticketlab.training.precision`) changes results, so although it
is no config field, a run in bf16 or tf32 goes to another store folder than the fp32 run of the same
config: the store adds it to the experiment's key when it is not fp32, and every fp32 key stays as
it was. `deterministic` (`ticketlab.training.determinism`) changes no result on the CPU and stays
out of every key. Runs record both in their summary.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ticketlab.core import config as C
from ticketlab.core.config import param
from ticketlab.core.errors import ConfigError
from ticketlab.engine.parallel import cpu_count
from ticketlab.training import device as _device, precision as _precision

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")  # the forms a device name takes

# each kind's measured defaults for the fields whose None means "the kind's"
KIND_DEFAULTS = {
    "train": dict(stack=1, checkpoint_every=1000),
    "lottery": dict(stack=8, checkpoint_every=1000),
    "sparse": dict(stack=8, checkpoint_every=1000),
    "transfer": dict(stack=8, checkpoint_every=1000),
    "teacher_student": dict(stack=16, checkpoint_every=5000),
    # `ticketlab demo`: 2 stacks of 3 per level, the grouping its recorded table was trained with
    # (benchmarks/demo_mnist1d/README.md), whatever the number of workers
    "demo": dict(stack=3, checkpoint_every=1000),
}
# with one worker, a lottery level trains as one stack (issue #18, point 6) of up to this many runs:
# a memory bound, not a speed one (64 LeNet-300-100s with Adam's state hold about 270 MB)
MAX_STACK = 64
DEFAULT = dict(stack=1, checkpoint_every=1000)  # a kind not measured yet: one run at a time


@dataclass(frozen=True)
class RunOptions:
    """How to run an experiment; see the module docstring for what None means per field."""

    workers: int | None = param(None, "worker processes, one torch thread each (1: this process)", min=1,
                                hashed=False)
    stack: int | None = param(None, "runs of a stackable model trained as one batched computation (1: off)", min=1,
                              hashed=False)
    threads: int | None = param(None, "torch threads in this process", min=1, hashed=False)
    progress: bool = param(True, "progress bars and log lines", hashed=False)
    checkpoint_every: int | None = param(None, "iterations (steps) between resumable checkpoints", min=1,
                                         hashed=False)
    device: str = param("auto", f"the device runs train on: {_device.NAMES}", hashed=False)
    precision: str = param("fp32", "arithmetic: fp32 (reproduction), bf16 (autocast), tf32 (CUDA matmuls; "
                           "no-op on the CPU)", hashed=False)
    deterministic: bool = param(False, "deterministic kernels only (torch.use_deterministic_algorithms; on CUDA "
                                "also CUBLAS_WORKSPACE_CONFIG=:4096:8)", hashed=False)

    def __post_init__(self):
        for f in ("workers", "stack", "threads", "checkpoint_every"):
            v = getattr(self, f)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                raise ConfigError(f"{f}: got {v!r}, expected an integer >= 1")
        for f in ("progress", "deterministic"):
            if not isinstance(getattr(self, f), bool):
                raise ConfigError(f"{f}: got {getattr(self, f)!r}, expected true or false")
        _device.check(self.device)
        _precision.check(self.precision)
        C.validate(self)

    @classmethod
    def build(cls, options: "RunOptions | None" = None, **given) -> "RunOptions":
        """`options` (default: all defaults) with the keyword arguments that are not None
        replacing its fields: how the API's older keywords (`workers=`, `stack=`, ...) apply."""
        base = options if options is not None else cls()
        if not isinstance(base, RunOptions):
            raise ConfigError(f"options: got {type(base).__name__}, expected a RunOptions")
        changes = {k: v for k, v in given.items() if v is not None}
        return dataclasses.replace(base, **changes) if changes else base

    @classmethod
    def from_table(cls, values: dict, source: str = "") -> "RunOptions":
        """From a TOML table (a sweep file's `[sweep]`); unknown keys and bad values raise a
        ConfigError naming the key and `source`."""
        return C.from_dict(cls, values, source=source)

    def resolved(self, kind: str, runs: int | None = None, *, own_process: bool = False) -> "RunOptions":
        """Every None filled for `kind` (KIND_DEFAULTS; a kind not listed: stack 1, checkpoints every
        1000). Default workers: with `own_process` (the caller owns its process), one per core, capped
        at `runs` (the runs that can train at once) when known; otherwise 1. Default stack for a
        lottery on one worker: all `runs` at once (up to MAX_STACK), so that a level is not cut into
        stacks trained one after another. Threads stay as given."""
        d = KIND_DEFAULTS.get(kind, DEFAULT)
        workers = self.workers
        if workers is None:
            workers = 1 if not own_process else max(1, min(cpu_count(), runs or cpu_count()))
        stack = self.stack or d["stack"]
        if self.stack is None and kind == "lottery" and workers == 1 and runs:
            stack = max(stack, min(runs, MAX_STACK))
        return dataclasses.replace(self, workers=workers, stack=stack,
                                   checkpoint_every=self.checkpoint_every or d["checkpoint_every"])


def fields() -> list[str]:
    """The field names of RunOptions (the keys of a `[sweep]` table that are run options)."""
    return C.field_names(RunOptions)


__all__ = ["RunOptions", "KIND_DEFAULTS", "DEFAULT", "MAX_STACK", "DEVICES", "fields"]
