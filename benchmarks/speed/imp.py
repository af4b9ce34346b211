"""End-to-end speed of an IMP study: `ticketlab lottery`'s defaults against one process, one model at a time.

The same small lottery study (LeNet-300-100 on MNIST, Adam 1.2e-3, batch 60, `--levels` levels, a
random-reinit control at every level) is run from an empty store, for 1 and for 3 replicates, with:

- serial:   `--workers 1 --stack 1`, the baseline;
- defaults: no `--workers` nor `--stack`: what a user gets (workers capped at the runs that can go at
            once, stacking where this machine's calibration says it wins, `ticketlab.engine.calibrate`);
- ceiling:  (3 replicates only) two copies of `serial` started at once, each in its own store. 2 × serial ÷
            this time is what 2 cores give independent one-at-a-time work (the bound; issue #16: 1.88×);
- stacked:  (with `--stacked`) `--stack 8`, workers as the defaults: what the defaults do where the
            calibration says stacking wins, so the calibration's verdict can be checked on the whole study.

Goals (issue #16): defaults never slower than serial, for 1 and for 3 replicates; ≥ 1.8× for the study.
Variants alternate in rounds (order reversed each round); each figure is the median over rounds of the
per-round ratio. Wall time includes everything a user waits for (start-up, data loading, evaluation,
checkpoints). CPU time is that of the whole process tree (the command, the forkserver and its workers):
this process makes itself their subreaper (Linux `prctl(PR_SET_CHILD_SUBREAPER)`) so that the workers,
children of the forkserver, are reaped here and counted by `getrusage(RUSAGE_CHILDREN)`.

The calibration and the parsed-MNIST cache live in a cache folder of this benchmark, made once, before
the rounds (`--cache`; default a temporary folder), so every timed run finds them, as a user's second run does.

    python benchmarks/speed/imp.py --rounds 3 --iterations 1000 --levels 2
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from stats import ci95  # benchmarks/speed/stats.py (numpy only: this process imports no torch)

VARIANTS = {"serial": ["--workers", "1", "--stack", "1"], "defaults": [], "stacked": ["--stack", "8"]}
REPLICATES = (1, 3)
_PR_SET_CHILD_SUBREAPER = 36


def _command(store: str, flags: list[str], replicates: int, iterations: int, levels: int,
             data_dir: str | None) -> list[str]:
    cmd = [sys.executable, "-m", "ticketlab", "lottery", "--store", store, "--quiet",
           "--dataset", "mnist", "--model", "lenet300_100", "--optimizer", "adam", "--lr", "1.2e-3",
           "--batch-size", "60", "--iterations", str(iterations), "--eval-every", str(max(1, iterations // 2)),
           "--levels", str(levels), "--replicates", str(replicates), "--controls", "reinit", *flags]
    return cmd + (["--data-dir", data_dir] if data_dir else [])


def _subreaper() -> bool:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _reap(timeout: float = 30.0) -> None:
    """Wait for the adopted descendants (the forkserver and its workers) to exit, reaping them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.02)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_once(cmd_for, copies: int = 1, env: dict | None = None) -> tuple[float, float]:
    """(wall s, CPU s of the whole process tree) of `copies` identical studies started at once."""
    stores = [tempfile.mkdtemp(prefix="imp-bench-") for _ in range(copies)]
    c0, t0 = _cpu(), time.perf_counter()
    errs = [tempfile.TemporaryFile() for _ in stores]
    procs = [subprocess.Popen(cmd_for(s), stdout=subprocess.DEVNULL, stderr=e, env=env) for s, e in zip(stores, errs)]
    failed = [p.wait() != 0 for p in procs]
    wall = time.perf_counter() - t0
    _reap()
    for s in stores:
        shutil.rmtree(s, ignore_errors=True)
    for bad, e in zip(failed, errs):
        e.seek(0)
        if bad:
            raise RuntimeError(f"an IMP benchmark study failed: {' '.join(cmd_for('STORE'))}\n{e.read().decode()[-3000:]}")
    return wall, _cpu() - c0


def measure(rounds: int = 3, iterations: int = 1000, levels: int = 2, data_dir: str | None = None,
            cache: str | None = None, replicates: tuple[int, ...] = REPLICATES, stacked: bool = False) -> dict:
    """Median wall and CPU times, and the ratios of the defaults (and with `stacked`, of `--stack 8`) to
    serial, per replicate count (`replicates`; the ceiling runs when 3 is among them)."""
    counted = _subreaper()
    own_cache = cache is None
    cache = cache or tempfile.mkdtemp(prefix="imp-bench-cache-")
    env = {**os.environ, "TICKETLAB_CACHE": cache, "OMP_NUM_THREADS": "1"}
    env.pop("TICKETLAB_CALIBRATION", None)
    try:
        run_once(lambda s: _command(s, [], 1, 10, 1, data_dir), env=env)  # calibration + data cache, untimed
        variants = [v for v in VARIANTS if v != "stacked" or stacked]
        names = [(r, v) for r in replicates for v in variants] + ([(3, "ceiling")] if 3 in replicates else [])
        times = {k: [] for k in names}
        for i in range(rounds):
            for r, v in (names if i % 2 == 0 else names[::-1]):
                flags = VARIANTS["serial" if v == "ceiling" else v]
                times[r, v].append(run_once(lambda s: _command(s, flags, r, iterations, levels, data_dir),
                                            copies=2 if v == "ceiling" else 1, env=env))
        out = {}
        for r in replicates:
            ser, dft = times[r, "serial"], times[r, "defaults"]
            out[f"{r}_replicates"] = {
                "median_wall_s": {v: statistics.median(w for w, _ in times[r, v]) for v in variants},
                "median_cpu_s": {v: statistics.median(c for _, c in times[r, v]) for v in variants},
                "speedup": statistics.median(s[0] / d[0] for s, d in zip(ser, dft)),  # wall: serial ÷ defaults
                "speedup_ci95": ci95(s[0] / d[0] for s, d in zip(ser, dft)),
                "cpu_ratio": statistics.median(d[1] / s[1] for s, d in zip(ser, dft)),  # CPU: defaults ÷ serial
            }
            if stacked:
                stk = times[r, "stacked"]
                out[f"{r}_replicates"].update(
                    stacked_speedup=statistics.median(s[0] / k[0] for s, k in zip(ser, stk)),
                    stacked_cpu_ratio=statistics.median(k[1] / s[1] for s, k in zip(ser, stk)))
            out[f"{r}_replicates"]["per_round"] = {v: [[round(w, 2), round(c, 2)] for w, c in times[r, v]]
                                                   for v in variants}  # [wall s, CPU s] in round order
        if 3 in replicates:
            out["ceiling"] = statistics.median(2 * s[0] / c[0] for s, c in zip(times[3, "serial"], times[3, "ceiling"]))
            out["ceiling_ci95"] = ci95(2 * s[0] / c[0] for s, c in zip(times[3, "serial"], times[3, "ceiling"]))
            # the defaults' share of the bound, round by round: what the defaults leave on the table
            out["of_ceiling_ci95"] = ci95((s[0] / d[0]) / (2 * s[0] / c[0]) for s, d, c in
                                          zip(times[3, "serial"], times[3, "defaults"], times[3, "ceiling"]))
            out["ceiling_per_round"] = [[round(w, 2), round(c, 2)] for w, c in times[3, "ceiling"]]
        calibration = os.path.join(cache, "calibration.json")
        return {"rounds": rounds, "iterations_per_level": iterations, "levels": levels, "cpu_counted": counted,
                "calibration": json.load(open(calibration)) if os.path.exists(calibration) else {}, **out}
    finally:
        if own_cache:
            shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--levels", type=int, default=2)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--replicates", default="1,3", help="replicate counts to measure, e.g. 3")
    ap.add_argument("--stacked", action="store_true", help="also time --stack 8 (what the defaults do where stacking wins)")
    ap.add_argument("--cache", default=None, help="cache folder for the calibration and parsed MNIST (default: a temporary one)")
    a = ap.parse_args()
    reps = tuple(int(r) for r in a.replicates.split(","))
    print(json.dumps(measure(a.rounds, a.iterations, a.levels, a.data_dir, a.cache, reps, a.stacked), indent=2))
