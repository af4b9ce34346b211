"""End-to-end speed of an IMP study on all cores: processes and stacking vs one model at a time.

The same small lottery study (LeNet-300-100 on MNIST, Adam 1.2e-3, batch 60, 4 replicates,
3 levels, random-reinit control at every level: 28 runs) is run from an empty store with:

- serial:   1 process, one model at a time (`--workers 1 --stack 1`), the baseline;
- procs:    2 worker processes, one model at a time;
- stacked:  1 process, compatible runs stacked (`--stack 8`);
- both:     2 worker processes with stacking (the default);
- ceiling:  two copies of `serial` started at once, each in its own store. 2 × serial ÷ this time
            is what 2 cores give independent one-at-a-time work on this machine (memory and cache
            contention included, no scheduling by ticketlab): the bound for `procs`.

Variants alternate in rounds (order reversed each round); the speed-up is the median over rounds of
serial time ÷ variant time. Wall time includes everything a user waits for (worker start-up, data
loading, evaluation, checkpoints).

    python benchmarks/speed/imp.py --rounds 3 --iterations 1000
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

VARIANTS = {"serial": (1, 1), "procs": (2, 1), "stacked": (1, 8), "both": (2, 8)}


def _command(store: str, workers: int, stack: int, iterations: int, data_dir: str | None) -> list[str]:
    cmd = [sys.executable, "-m", "ticketlab", "lottery", "--store", store, "--quiet",
           "--dataset", "mnist", "--model", "lenet300_100", "--optimizer", "adam", "--lr", "1.2e-3",
           "--batch-size", "60", "--iterations", str(iterations), "--eval-every", str(iterations // 2),
           "--levels", "3", "--replicates", "4", "--controls", "reinit",
           "--workers", str(workers), "--stack", str(stack)]
    if data_dir:
        cmd += ["--data-dir", data_dir]
    return cmd


def run_once(workers: int, stack: int, iterations: int, data_dir: str | None, copies: int = 1) -> float:
    """Wall time of `copies` identical studies started at once (each in a fresh store)."""
    stores = [tempfile.mkdtemp(prefix="imp-bench-") for _ in range(copies)]
    t0 = time.perf_counter()
    procs = [subprocess.Popen(_command(s, workers, stack, iterations, data_dir), stdout=subprocess.DEVNULL)
             for s in stores]
    if any(p.wait() != 0 for p in procs):
        raise RuntimeError("an IMP benchmark study failed")
    dt = time.perf_counter() - t0
    for s in stores:
        shutil.rmtree(s, ignore_errors=True)
    return dt


def measure(rounds: int = 3, iterations: int = 1000, data_dir: str | None = None) -> dict:
    """Median wall times and speed-ups over the serial baseline."""
    names = [*VARIANTS, "ceiling"]
    times = {k: [] for k in names}
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for k in order:
            times[k].append(run_once(1, 1, iterations, data_dir, copies=2) if k == "ceiling"
                            else run_once(*VARIANTS[k], iterations, data_dir))
    speedup = {k: statistics.median(s / v for s, v in zip(times["serial"], times[k])) for k in VARIANTS}
    speedup["ceiling"] = statistics.median(2 * s / v for s, v in zip(times["serial"], times["ceiling"]))
    return {"rounds": rounds, "iterations_per_level": iterations, "runs": 28,
            "median_s": {k: statistics.median(v) for k, v in times.items()}, "speedup_vs_serial": speedup}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--data-dir", default=None)
    a = ap.parse_args()
    print(json.dumps(measure(a.rounds, a.iterations, a.data_dir), indent=2))
