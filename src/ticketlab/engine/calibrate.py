"""Per-machine calibration: does stacking runs of an architecture beat one model at a time here?

Stacking trains R runs of one architecture as one batched computation (docs/performance.md §4).
Whether it pays depends on the model's size, the machine and the torch build: on a 2-core CPU it
won 1.07× for LeNet-300-100 in one process, and with two processes the defaults `--workers 2
--stack 8` used 5–22 % more CPU than `--workers 1 --stack 1` (issue #16, "On the CPU too"). So
the `ticketlab lottery` and `ticketlab sparse-train` commands stack by default only where a
measurement says stacking wins:

- `stacking_wins(arch, build, input_shape, device)` times `R` models stacked against the same `R`
  trained one after another (fused Adam, batch 60, CPU time per model-step, interleaved rounds,
  medians) and says whether stacked is at least `MARGIN` faster; about a second, once;
- the answer is cached in `$TICKETLAB_CACHE/calibration.json` (`registry.resolve_cache_dir`), one
  entry per architecture, device and torch version, with the times it rests on:

      {"mlp {\"widths\": [300, 100]} (1, 28, 28) -> 10 | cpu | torch 2.13.0+cpu":
          {"stack_wins": false, "stacked_ms": 0.41, "single_ms": 0.43, "models": 4, "measured": "..."}}

  Read it to see what was decided and why; delete the file (or one entry) to measure again, e.g.
  after a hardware change. A later torch version measures anew by itself (its own key).
- `--stack` given explicitly always wins over the calibration; so does a Python caller's `stack`
  (the API keeps its documented default, 8). `TICKETLAB_CALIBRATION=off` in the environment turns
  the calibration off (the kind's fixed default stack, as before it existed; the test suite does
  this, so that its results never depend on a timing).
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F

from ticketlab.core import atomic
from ticketlab.data.registry import resolve_cache_dir

log = logging.getLogger(__name__)

FILE = "calibration.json"
ENV = "TICKETLAB_CALIBRATION"  # "off": no calibration
MODELS, BATCH, STEPS, ROUNDS = 4, 60, 20, 3
MARGIN = 0.95  # stacked must cost at most this share of one-at-a-time to count as a win (noise guard)


def key(arch: str, device: str) -> str:
    """The cache key of one measurement: architecture, device and torch version."""
    return f"{arch} | {device} | torch {torch.__version__}"


def read() -> dict:
    """Every cached calibration entry ({} when there is none or the file is unreadable)."""
    try:
        entries = json.loads((resolve_cache_dir() / FILE).read_text())
        return entries if isinstance(entries, dict) else {}
    except (OSError, ValueError):
        return {}


def stacking_wins(arch: str, build: Callable[[int], torch.nn.Module], input_shape: tuple, device: str = "cpu") -> bool:
    """Whether stacked training of `arch` (`build(seed)` makes one model) beats one model at a time
    on `device`: the cached answer, else measured now and cached. Not stackable: False, unmeasured."""
    from ticketlab.training.stacked import stackable
    entries = read()
    k = key(arch, device)
    if k in entries and isinstance(entries[k].get("stack_wins"), bool):
        return entries[k]["stack_wins"]
    if not stackable(build(0)):
        return False
    stacked, single = measure(build, input_shape, device)
    wins = stacked <= MARGIN * single
    entries[k] = {"stack_wins": wins, "stacked_ms": round(1000 * stacked, 4), "single_ms": round(1000 * single, 4),
                  "models": MODELS, "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    log.info("calibration: stacking %s on %s: %.3f ms against %.3f ms per model-step (%s)", arch, device,
             1000 * stacked, 1000 * single, "stacks" if wins else "one at a time")
    try:
        path = resolve_cache_dir() / FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic.atomic_open(path, "w") as f:
            json.dump(entries, f, indent=1)
    except OSError as e:  # an unwritable cache folder: measured again next time
        log.debug("calibration not cached: %s", e)
    return wins


def measure(build: Callable[[int], torch.nn.Module], input_shape: tuple, device: str = "cpu") -> tuple[float, float]:
    """(stacked, one at a time): median CPU seconds per model-step of `MODELS` models, fused Adam."""
    from ticketlab.training.stacked import Stacked
    dev = torch.device(device)
    models = [build(s).to(dev) for s in range(MODELS)]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, *input_shape, generator=g).to(dev)
    classes = models[0](x[:1]).shape[-1]
    y = torch.randint(0, classes, (BATCH,), generator=g).to(dev)
    ens = Stacked(models)
    xs, ys = x.expand(MODELS, *x.shape), y.expand(MODELS, BATCH)
    stacked_opt = torch.optim.Adam(ens.module.parameters(), lr=1e-3, fused=True)
    opts = [torch.optim.Adam(m.parameters(), lr=1e-3, fused=True) for m in models]

    def stacked_step():
        stacked_opt.zero_grad(set_to_none=True)
        ens.losses(xs, ys).sum().backward()
        stacked_opt.step()

    def single_steps():
        for m, o in zip(models, opts):
            o.zero_grad(set_to_none=True)
            F.cross_entropy(m(x), y).backward()
            o.step()

    times = {stacked_step: [], single_steps: []}
    for fn in times:  # warm-up: first calls allocate
        fn()
    for r in range(ROUNDS):
        for fn in (list(times) if r % 2 == 0 else list(times)[::-1]):
            t = time.process_time()
            for _ in range(STEPS):
                fn()
            times[fn].append((time.process_time() - t) / (STEPS * MODELS))
    return statistics.median(times[stacked_step]), statistics.median(times[single_steps])


def for_config(train_cfg, device: str = "cpu") -> bool | None:
    """`stacking_wins` for a classification recipe (a `TrainConfig` of a registered dataset and model);
    None where there is nothing to measure (another task, a dataset file, a model that does not build)."""
    from ticketlab.data.registry import get_info
    from ticketlab.models import create_model
    if os.environ.get(ENV, "").lower() == "off":
        return None
    model, dataset = getattr(train_cfg, "model", None), getattr(train_cfg, "dataset", None)
    if not isinstance(model, str) or not isinstance(dataset, str) or ":" in model:
        return None
    try:
        info = get_info(dataset)
    except Exception:  # a file dataset, or an unknown name (the run itself reports it)
        return None
    args = dict(getattr(train_cfg, "model_args", {}) or {})

    def build(seed: int) -> torch.nn.Module:
        return create_model(model, input_shape=info.input_shape, num_classes=info.num_classes, seed=seed, **args)

    arch = f"{model} {json.dumps(args, sort_keys=True)} {tuple(info.input_shape)} -> {info.num_classes}"
    try:
        return stacking_wins(arch, build, tuple(info.input_shape), device)
    except Exception as e:  # a model that does not build is the run's error to report, not ours
        log.debug("no calibration for %s: %s", arch, e)
        return None


__all__ = ["stacking_wins", "measure", "for_config", "read", "key", "FILE", "ENV", "MARGIN"]
