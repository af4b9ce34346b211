"""What checking a state file against its manifest costs on every read (issue 17, the store's manifest).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/reliability/hashed_read.py [--rounds 21] [--reads 20]

Writes LeNet-300-100's weights as a run's `final.pt` (about 1 MB) through `RunDir.save`, then times, in
interleaved rounds: reading the file's bytes and checking its size and sha256 against the folder's
manifest (`integrity.read_bytes`), `torch.load` of the same file (weights only, from disk, no check),
and the store's whole read (`RunDir.load`: the checked read, then the load from those bytes). Prints
the medians of the per-read times (wall and CPU) over the rounds, and the ratio of the store's read to
the bare `torch.load`. Not a test: the machine is shared and noisy (benchmarks/reliability/README.md).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ticketlab.core import integrity
from ticketlab.models import create_model
from ticketlab.training.rundir import RunDir


def per_read(fn, reads: int) -> tuple[float, float]:
    """(wall s, CPU s) of one call of `fn`, averaged over `reads` calls."""
    w, c = time.perf_counter(), time.process_time()
    for _ in range(reads):
        fn()
    return (time.perf_counter() - w) / reads, (time.process_time() - c) / reads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--reads", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = create_model("lenet300_100", input_shape=(1, 28, 28), num_classes=10, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        rd = RunDir(Path(tmp)).create()
        rd.save("final.pt", 0, model=model.state_dict())
        path = Path(tmp) / "final.pt"
        ways = {"checked read (bytes + sha256)": lambda: integrity.read_bytes(path),
                "torch.load (no check)": lambda: torch.load(path, weights_only=True),
                "RunDir.load (checked read + load)": lambda: rd.load("final.pt")}
        for fn in ways.values():  # warm the page cache and torch's loader
            fn()
        times = {k: [] for k in ways}
        for _ in range(args.rounds):
            for k, fn in ways.items():
                times[k].append(per_read(fn, args.reads))
        print(f"final.pt: {path.stat().st_size:,} bytes; {args.rounds} rounds of {args.reads} reads; "
              f"torch {torch.__version__}")
        print("| read | wall ms | CPU ms |\n|---|---|---|")
        med = {}
        for k, v in times.items():
            med[k] = statistics.median(w for w, _ in v), statistics.median(c for _, c in v)
            print(f"| {k} | {med[k][0] * 1e3:.2f} | {med[k][1] * 1e3:.2f} |")
        a, b = med["RunDir.load (checked read + load)"], med["torch.load (no check)"]
        print(f"store read ÷ torch.load: wall {a[0] / b[0]:.2f}, CPU {a[1] / b[1]:.2f}")


if __name__ == "__main__":
    main()
