"""Start-up cost of the CLI (issue 17, "Start-up"): `ticketlab train --iterations 1` on MNIST-1D
(a tiny MLP, the dataset cache warm, a fresh store each time) against `python -c "import torch"`,
medians of N runs, wall and CPU (user + system) time of the child process.

    python benchmarks/startup/run.py [N]      # prints one table; run it on a quiet machine
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 7
TRAIN = ["-m", "ticketlab", "train", "--iterations", "1", "--eval-every", "1", "--model-args",
         '{"widths": [16]}', "--quiet"]


def timed(args: list[str]) -> tuple[float, float]:
    """(wall s, CPU s) of one run of `python args`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env_store = os.path.join(tmp, "store")
        timed(TRAIN + ["--store", env_store])  # warm the dataset cache and the OS file cache
        rows = {}
        for name, args in (("import torch", ["-c", "import torch"]),
                           ("ticketlab train --iterations 1", None)):
            runs = []
            for i in range(N):
                a = args or TRAIN + ["--store", os.path.join(tmp, f"s{i}")]
                runs.append(timed(a))
            rows[name] = (statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))
    print(f"load average (1 min, at the end): {os.getloadavg()[0]:.2f}; N = {N}; python {sys.version.split()[0]}")
    print(f"{'command':34s} {'wall s':>8s} {'CPU s':>8s}")
    for name, (w, c) in rows.items():
        print(f"{name:34s} {w:8.2f} {c:8.2f}")
    (tw, tc), (cw, cc) = rows.values()
    print(f"{'ticketlab over import torch':34s} {cw - tw:8.2f} {cc - tc:8.2f}")


if __name__ == "__main__":
    main()
