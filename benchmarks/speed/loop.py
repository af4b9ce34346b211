"""Training-loop overhead vs a bare PyTorch loop, and mask cost vs dense, on LeNet-300-100 / MNIST.

Both ratios come from one process, with variants run in interleaved rounds (the order
alternating each round) and the median of per-round ratios reported, so slow drift in machine
load cancels (docs/performance.md §1). CPU time (`process_time`) is reported beside wall time.

- bare: the same model, optimizer (Adam 1.2e-3), batch (60) and data order, written as the
  shortest plain PyTorch loop, evaluating validation and test at the same iterations, with
  subnormals flushed to zero as `fit` does (otherwise the ratio would credit the loop with the
  FTZ speed-up, docs/performance.md §7b).
- ticketlab: `ticketlab.training.loop.fit` doing the same steps (progress bar off, as in scripts).
- masked: `fit` with boolean masks at 21 % density (LTH level 7), enforced on gradients,
  weights and optimizer state.

    python benchmarks/speed/loop.py --iterations 3000 --rounds 7
    python benchmarks/speed/loop.py --variants ticketlab,masked --iterations 1000 --rounds 41

Each ratio comes with a 95 % bootstrap interval of its median over the rounds (`*_ci95`: the rounds
resampled 10,000 times, seed 0), so a goal can be called met only where the interval lies below it,
missed only where it lies above, and unresolved by this machine's noise otherwise. The second command
measures only the mask cost, in many short rounds: more pairs narrow the interval faster than longer
runs, since the noise here is drift between runs more than within one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from stats import ci95  # benchmarks/speed/stats.py
from ticketlab.data import load_dataset
from ticketlab.models import create_model, prunable_parameters
from ticketlab.training import denormals
from ticketlab.training.loop import RunOptions, TrainConfig, batch_indices, evaluate, fit


def bare_loop(data, cfg: TrainConfig) -> None:
    with denormals.flushed():  # the same arithmetic as `fit` (docs/performance.md §7b)
        _bare_loop(data, cfg)


def _bare_loop(data, cfg: TrainConfig) -> None:
    model = create_model("lenet300_100", input_shape=data.input_shape, num_classes=10, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=True)  # as `ticketlab.training.loop.make_optimizer`
    x, y = data.train.x, data.train.y
    evaluate(model, data.val.x, data.val.y), evaluate(model, data.test.x, data.test.y)
    for it in range(cfg.iterations):
        idx = batch_indices(len(x), cfg.batch_size, cfg.data_seed, it)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
        if (it + 1) % cfg.eval_every == 0:
            evaluate(model, data.val.x, data.val.y), evaluate(model, data.test.x, data.test.y)


def ticketlab_loop(data, cfg: TrainConfig, masks=None) -> None:
    model = create_model("lenet300_100", input_shape=data.input_shape, num_classes=10, seed=0)
    with tempfile.TemporaryDirectory() as d:
        fit(model, data, cfg, d, masks=masks, prunable=prunable_parameters(model),
            options=RunOptions(progress=False, checkpoint_every=10**9))


def lth_masks(density: float = 0.21):
    g = torch.Generator().manual_seed(0)
    model = create_model("lenet300_100", input_shape=(1, 28, 28), num_classes=10, seed=0)
    return {n: torch.rand(p.shape, generator=g) < density for n, p in prunable_parameters(model).items()}


def measure(iterations: int = 3000, rounds: int = 7, eval_every: int = 1000, data_dir=None,
            variants_run=("bare", "ticketlab", "masked")) -> dict:
    """Median per-round ratios, with their 95 % bootstrap intervals: ticketlab/bare (loop overhead)
    and masked/ticketlab (mask cost), for the ratios whose two variants are in `variants_run`."""
    torch.set_num_threads(1)
    data = load_dataset("mnist", data_dir)
    cfg = TrainConfig(dataset="mnist", model="lenet300_100", optimizer="adam", lr=1.2e-3, batch_size=60,
                      iterations=iterations, eval_every=eval_every)
    masks = lth_masks()
    variants = {"bare": lambda: bare_loop(data, cfg), "ticketlab": lambda: ticketlab_loop(data, cfg),
                "masked": lambda: ticketlab_loop(data, cfg, masks)}
    variants = {k: v for k, v in variants.items() if k in variants_run}
    next(iter(variants.values()))()  # warm-up
    times = {k: [] for k in variants}
    cpu = {k: [] for k in variants}
    for r in range(rounds):
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        for k in order:
            t0, c0 = time.perf_counter(), time.process_time()
            variants[k]()
            times[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    out = {"iterations": iterations, "rounds": rounds, "eval_every": eval_every,
           "median_s": {k: statistics.median(v) for k, v in times.items()},
           "ms_per_iter": {k: 1000 * statistics.median(v) / iterations for k, v in times.items()}}
    for name, a, b, t in (("loop_overhead", "ticketlab", "bare", times), ("mask_cost", "masked", "ticketlab", times),
                          ("mask_cost_cpu", "masked", "ticketlab", cpu)):
        if a in t and b in t:
            ratios = [x / y for x, y in zip(t[a], t[b])]
            out[name], out[name + "_ci95"] = statistics.median(ratios), ci95(ratios)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--variants", default="bare,ticketlab,masked", help="which of bare, ticketlab, masked to run")
    a = ap.parse_args()
    print(json.dumps(measure(a.iterations, a.rounds, a.eval_every, a.data_dir, tuple(a.variants.split(","))),
                     indent=2))
