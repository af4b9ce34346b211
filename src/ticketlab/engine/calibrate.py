"""Per-machine calibration: does stacking runs of an architecture beat one model at a time here?

Stacking trains R runs of one architecture as one batched computation (docs/performance.md §4).
Whether it pays depends on the model's size, the machine and the torch build. On a 2-core CPU a
bare stacked LeNet-300-100 step measured anywhere from 0.83 to 1.02 of one model at a time from one
day to the next, while in the real training loop a stack of 3 cost the same per model as 3 single
runs (issue #16, "On the CPU too"; benchmarks/speed/README.md). So the commands stack by default
only where a measurement of the real loop says stacking clearly wins:

- `stacking_wins(arch, build, input_shape, device, recipe)` trains `MODELS` masked models
  (`ticketlab.training.loop.fit_many`, the loop every run trains in: its batch gathering, mask
  enforcement, divergence check and final save) on random inputs of the dataset's shape, once as one
  stack and once one after another, with the run's optimizer and batch size, in interleaved rounds,
  and says whether stacked costs at most `MARGIN` of one at a time per model-step (CPU time on the
  CPU; wall time with the device synchronised elsewhere). About 4 s on this CPU, once;
- `MARGIN` is 0.90, not break-even: a stack also costs the scheduler. Its runs start together, so a
  level waits for all of the level before it, and fewer, larger groups balance worse over the workers.
  Measured over a whole 4-level study on 2 cores, stacking at break-even was slower than not stacking
  (benchmarks/speed/README.md);
- the answer is cached in `$TICKETLAB_CACHE/calibration.json` (`registry.resolve_cache_dir`), one
  entry per architecture, recipe, device and torch version, with the times it rests on:

      {"lenet300_100 {} (1, 28, 28) -> 10 | adam, batch 60 | cpu | torch 2.13.0+cpu":
          {"stack_wins": false, "stacked_ms": 1.66, "single_ms": 1.62, "models": 3, "measured": "...",
           "method": "loop"}}

  Read it to see what was decided and why; delete the file (or one entry) to measure again, e.g.
  after a hardware change. A later torch version measures anew by itself (its own key).
- `options(opts, recipes)` is what the commands call (`lottery`, `sparse-train`, `transfer` and the
  trials of `sweep`): the run options with stack 1 where `stack` was not given and stacking does not
  win for some recipe. `--stack` given explicitly always wins over the calibration; so does a Python
  caller's `stack` (the API keeps its documented defaults, so its results never depend on a timing).
  `TICKETLAB_CALIBRATION=off` in the environment turns the calibration off (the kind's fixed default
  stack, as before it existed; the test suite does this for the same reason).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import statistics
import tempfile
import time
from typing import Callable, Iterable

import torch

from ticketlab.core import atomic
from ticketlab.data.registry import resolve_cache_dir

log = logging.getLogger(__name__)

FILE = "calibration.json"
ENV = "TICKETLAB_CALIBRATION"  # "off": no calibration
MODELS, STEPS, WARMUP, ROUNDS = 3, 100, 10, 3
MARGIN = 0.90  # stacked must cost at most this share of one at a time to count as a win (see above)
DENSITY = 0.5  # the masks of the measured runs: a mid-study IMP level


def key(arch: str, device: str, recipe=None) -> str:
    """The cache key of one measurement: architecture, recipe (optimizer, batch size; None: `measure`'s
    default, Adam at batch 60), device and torch version. Always with a recipe, so that no entry of the
    old bare-step calibration (whose keys had none) is ever read."""
    optimizer, batch = (recipe.optimizer, recipe.batch_size) if recipe is not None else ("adam", 60)
    return f"{arch} | {optimizer}, batch {batch} | {device} | torch {torch.__version__}"


def read() -> dict:
    """Every cached calibration entry ({} when there is none or the file is unreadable)."""
    try:
        entries = json.loads((resolve_cache_dir() / FILE).read_text())
        return entries if isinstance(entries, dict) else {}
    except (OSError, ValueError):
        return {}


def stacking_wins(arch: str, build: Callable[[int], torch.nn.Module], input_shape: tuple, device: str = "cpu",
                  recipe=None) -> bool:
    """Whether stacked training of `arch` (`build(seed)` makes one model) with `recipe` (a TrainConfig:
    its optimizer and batch size; None: Adam, batch 60) beats one model at a time on `device`: the cached
    answer, else measured now and cached. Not stackable there (`ticketlab.training.stacked_conv.family`:
    a conv net on the CPU, a model with batch norm): False, unmeasured."""
    from ticketlab.training.stacked_conv import family
    entries = read()
    k = key(arch, device, recipe)
    if k in entries and isinstance(entries[k].get("stack_wins"), bool):
        return entries[k]["stack_wins"]
    if family(build(0), device) is None:
        return False
    stacked, single = measure(build, input_shape, device, recipe)
    wins = stacked <= MARGIN * single
    entries = read()  # another process may have added entries meanwhile
    entries[k] = {"stack_wins": wins, "stacked_ms": round(1000 * stacked, 4), "single_ms": round(1000 * single, 4),
                  "models": MODELS, "method": "loop", "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
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


def measure(build: Callable[[int], torch.nn.Module], input_shape: tuple, device: str = "cpu",
            recipe=None, ensemble: type | None = None) -> tuple[float, float]:
    """(stacked, one at a time): median seconds per model-step of `MODELS` masked models trained by the
    real loop with `recipe`'s optimizer and batch size on random data (CPU time on the CPU, wall time on
    an accelerator, where the loop's final metric reads synchronise the device). The stack is the
    `ensemble` class (default: what the training uses there, `ticketlab.training.stacked_conv.family`)."""
    from ticketlab.data.registry import Dataset, Split
    from ticketlab.models import prunable_parameters
    from ticketlab.training.loop import RunOptions, Run, TrainConfig, fit_many
    from ticketlab.training.stacked import Single
    from ticketlab.training.stacked_conv import family
    base = recipe if recipe is not None else TrainConfig(optimizer="adam", batch_size=60)
    cfg = dataclasses.replace(base, epochs=None, schedule="constant", warmup_iters=0, milestones=())
    clock = time.process_time if torch.device(device).type == "cpu" else time.perf_counter
    g = torch.Generator().manual_seed(0)
    models = [build(s) for s in range(MODELS)]
    Stacked = ensemble or family(models[0], device)
    if Stacked is None:
        raise ValueError(f"{type(models[0]).__name__} does not stack on {device}")
    classes = models[0](torch.zeros(1, *input_shape)).shape[-1]

    def split(n: int) -> Split:  # x: [n, *input_shape], y: [n]
        return Split(torch.randn(n, *input_shape, generator=g), torch.randint(0, classes, (n,), generator=g))
    data = Dataset("calibration", split(16 * cfg.batch_size), split(cfg.batch_size), split(cfg.batch_size),
                   classes, tuple(input_shape))
    masks = [{n: torch.rand(p.shape, generator=g) < DENSITY for n, p in prunable_parameters(m).items()}
             for m in models]
    quiet = RunOptions(progress=False, device=device)
    folder = tempfile.mkdtemp(prefix="ticketlab-calibration-")
    made = iter(range(1 << 30))

    def fit(which: list[int], steps: int) -> float:
        runs = [Run(os.path.join(folder, str(next(made))), model=models[i], masks=masks[i], data_seed=i)
                for i in which]
        ens = Stacked([models[i] for i in which]) if len(which) > 1 else Single(models[which[0]])
        t = clock()
        fit_many(runs, data, dataclasses.replace(cfg, iterations=steps, eval_every=steps), ens, options=quiet)
        return clock() - t

    variants = {"stacked": lambda n: fit(list(range(MODELS)), n),
                "single": lambda n: sum(fit([i], n) for i in range(MODELS))}
    times = {v: [] for v in variants}
    try:
        for run in variants.values():  # warm-up: first calls allocate and import
            run(WARMUP)
        for r in range(ROUNDS):
            for v in (list(variants) if r % 2 == 0 else list(variants)[::-1]):
                times[v].append(variants[v](STEPS) / (STEPS * MODELS))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return statistics.median(times["stacked"]), statistics.median(times["single"])


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
        return stacking_wins(arch, build, tuple(info.input_shape), device, train_cfg)
    except Exception as e:  # a model that does not build is the run's error to report, not ours
        log.debug("no calibration for %s: %s", arch, e)
        return None


def options(opts, recipes: Iterable):
    """`opts` (a RunOptions) with stack 1 where `stack` was not given and stacking does not win on its
    device for one of `recipes` (the training configs whose runs may stack; unmeasurable ones are
    skipped); `opts` unchanged otherwise, and always when `stack` was given."""
    from ticketlab.training import device as _device
    if opts.stack is not None:
        return opts
    device = str(_device.resolve(opts.device))
    if any(for_config(r, device) is False for r in recipes):
        return dataclasses.replace(opts, stack=1)
    return opts


__all__ = ["stacking_wins", "measure", "for_config", "options", "read", "key", "FILE", "ENV", "MARGIN"]
