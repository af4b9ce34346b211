"""The next epoch's data orders drawn on a thread (`ticketlab.training.loop.Batches` with a device),
measured on the CPU: a loop of R = 512 stacked runs whose step is a fixed amount of one-core work
(six 256² matmuls, about a small model's GPU step as the host sees it), over 3 MNIST epochs (916 steps
each), with the permutations drawn in the loop (device None, as on the CPU) or on the thread (a device
given: here the CPU itself stands in for the accelerator, so the draw can use the second core).

    OMP_NUM_THREADS=1 python benchmarks/speed/batches_prefetch.py --rounds 5

Prints the median wall and CPU time per step of each, over interleaved rounds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ticketlab.training.loop import Batches


def run(device, R: int = 512, n: int = 55_000, batch: int = 60, epochs: int = 3) -> tuple[float, float, int]:
    work = torch.randn(256, 256)
    batches = Batches(n, batch, range(R), device)
    steps = (n // batch) * epochs
    t0, c0 = time.perf_counter(), time.process_time()
    for it in range(steps):
        batches(it)
        for _ in range(6):
            work @ work
    return time.perf_counter() - t0, time.process_time() - c0, steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(1)
    got = {"in the loop": [], "on a thread": []}
    variants = [("in the loop", None), ("on a thread", torch.device("cpu"))]
    for r in range(a.rounds):
        for name, dev in (variants if r % 2 == 0 else variants[::-1]):
            got[name].append(run(dev))
    for name, v in got.items():
        steps = v[0][2]
        wall, cpu = statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)
        print(f"{name:12s} wall {wall:.2f} s ({1000 * wall / steps:.3f} ms a step), CPU {cpu:.2f} s")


if __name__ == "__main__":
    main()
