"""The device runs train on: its name, its check, and moving data, states and RNG to and from it.

A device name is `auto` (CUDA when available, else the CPU), `cpu`, `cuda`, `cuda:N` or `mps`
(issue 16, "Speed on every device"; docs/performance.md). Like the torch thread count it is a
setting of the process: the run functions of `ticketlab.api` apply `RunOptions.device` with `use`,
the scheduler repeats it in its worker processes (`ticketlab.engine.schedule`), and the training
loop trains on `resolve(current())` unless its own options name a device. The device never enters
an experiment's hash: a study may be resumed on another device.

What stays where, and why:
- the data order comes from CPU generators (`ticketlab.training.loop.batch_indices`), so the batches
  are the same on every device and CPU results stay bit-identical; only the indices move;
- a small dataset moves to the device once, as whole tensors (`to_device` caches the copy);
- what is drawn or built on the CPU each step (a batch of indices, a padded batch of sentences) goes
  up without the host waiting for the device (`upload`: through pinned memory on CUDA);
- state files hold CPU tensors (`cpu_state`) and load onto any device;
- the CUDA RNG state is saved beside the CPU one (`rng_state` / `set_rng_state`), so a resume on
  the device it ran on is exact.
"""

from __future__ import annotations

import re
import weakref

import torch

from ticketlab.core.errors import ConfigError

NAMES = "auto, cpu, cuda, cuda:N, mps"
_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
_current = "auto"


def check(name) -> str:
    """`name` if it is a device this machine has; a ConfigError naming the value otherwise."""
    if not isinstance(name, str) or not _PATTERN.match(name):
        raise ConfigError(f"device: got {name!r}, expected one of {NAMES}")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device: got {name!r}, but CUDA is not available on this machine; "
                              "use auto or cpu")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device: got {name!r}, but this machine has {torch.cuda.device_count()} CUDA "
                              "device(s)")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"device: got {name!r}, but MPS is not available on this machine; use auto or cpu")
    return name


def resolve(name: str | torch.device | None = None) -> torch.device:
    """The torch device of a name (None: this process's `current()`); `auto` is CUDA when available."""
    if isinstance(name, torch.device):
        return name
    name = check(name if name is not None else _current)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def use(name: str) -> None:
    """Make `name` the device of the runs this process trains (checked first)."""
    global _current
    _current = check(name)


def current() -> str:
    """The device name this process trains on (`auto` until `use` is called)."""
    return _current


def describe(dev: torch.device) -> str:
    """What a run's summary records as `trained_on`: "cpu", or "cuda:0 (NVIDIA H100 ...)"."""
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return str(dev)


_moved: dict[tuple[int, str], tuple[weakref.ref, torch.Tensor]] = {}


def to_device(t: torch.Tensor, dev: torch.device) -> torch.Tensor:
    """`t` on `dev`, copied once per (tensor, device) while `t` lives: the runs of a study share one
    copy of the dataset on the GPU, with no per-batch host-to-device copies. On its own device, `t`."""
    if t.device == dev or (dev.index is None and t.device.type == dev.type):
        return t
    key = (id(t), str(dev))
    hit = _moved.get(key)
    if hit is not None and hit[0]() is t:
        return hit[1]
    moved = t.to(dev)
    _moved[key] = (weakref.ref(t, lambda _, k=key: _moved.pop(k, None)), moved)
    return moved


def reads_are_free(dev: torch.device) -> bool:
    """Whether a training loop may read a value of the step (the loss, for the running mean and the
    divergence check) every step on `dev`: on the CPU it costs nothing; on an accelerator each read
    waits for the device, so the loops sum on the device and read at evaluations and checkpoints."""
    return dev.type == "cpu"


def upload(t: torch.Tensor, dev: torch.device) -> torch.Tensor:
    """A CPU tensor made this step (a batch), copied to `dev` without making the host wait: on CUDA a
    copy from pageable memory waits for the device to finish its queued work, a copy from pinned
    memory with `non_blocking` does not (torch keeps the pinned block until the copy is done).
    Elsewhere a plain `.to(dev)`."""
    if dev.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(dev, non_blocking=True)
    return t.to(dev)


def cpu_state(obj):
    """`obj` (nested dicts, lists, tuples of tensors and plain values) with every tensor on the CPU:
    what a state file holds, so that it loads on any machine. CPU tensors are returned as they are."""
    if torch.is_tensor(obj):
        return obj if obj.device.type == "cpu" else obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: cpu_state(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(cpu_state(v) for v in obj)
    return obj


def rng_state(state=None) -> dict:
    """The RNG states a resume needs beyond torch's CPU one, when CUDA is in use in this process
    (empty otherwise, so CPU state files do not change): the CUDA RNG state of the GPU that `state`'s
    tensors (a run's weights) live on, else of the current GPU. Each GPU has its own generator, and a
    run on `cuda:1` draws its dropout from cuda:1's, whichever GPU is current."""
    if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
        return {}
    return {"cuda_rng": torch.cuda.get_rng_state(cuda_device_of(state) or "cuda")}


def cuda_device_of(obj) -> torch.device | None:
    """The device of the first CUDA tensor in `obj` (nested dicts, lists, tuples), None when it has none."""
    if torch.is_tensor(obj):
        return obj.device if obj.device.type == "cuda" else None
    values = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple)) else ()
    for v in values:
        dev = cuda_device_of(v)
        if dev is not None:
            return dev
    return None


def set_rng_state(state: dict, dev: torch.device) -> None:
    """Restore the CUDA RNG state of a state file when the run resumes on CUDA (a file written on
    another device has none, and the CPU state alone is restored)."""
    if dev.type == "cuda" and "cuda_rng" in state:
        torch.cuda.set_rng_state(state["cuda_rng"], dev)


def for_worker(name: str, slot: int, n_gpus: int | None = None) -> str:
    """The device of the worker in `slot` (0, 1, ...: the groups that run at once each hold one) for the
    process setting `name`: with `cuda` (or `auto` on a CUDA machine) and several GPUs, `cuda:slot % n_gpus`,
    so N workers on N GPUs each take their own (issue 16, *Several GPUs*); an explicit `cuda:N`, the CPU,
    MPS or a single GPU: `name` unchanged. `n_gpus`: default `torch.cuda.device_count()`."""
    if name not in ("cuda", "auto") or not torch.cuda.is_available():
        return name
    n = torch.cuda.device_count() if n_gpus is None else n_gpus
    return name if n <= 1 else f"cuda:{slot % n}"


def ray_resources(name: str) -> dict:
    """What a Ray trial asks its cluster for under the device setting `name`: one CPU, and one GPU when
    the trial trains on CUDA (Ray then makes that GPU the trial's only visible `cuda` device). `auto`
    asks for a GPU when this machine has CUDA, the best guess a driver has about its cluster."""
    gpu = name.startswith("cuda") or (name == "auto" and torch.cuda.is_available())
    return {"num_cpus": 1, "num_gpus": 1 if gpu else 0}


__all__ = ["NAMES", "check", "resolve", "use", "current", "describe", "to_device", "cpu_state", "rng_state",
           "set_rng_state", "for_worker", "ray_resources"]
