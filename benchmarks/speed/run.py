"""`make bench`: run the speed benchmarks and print and save one table of ratios.

Every figure is a ratio against a baseline measured in the same run (interleaved rounds,
medians), because the machine is shared and noisy. The table is written to
`benchmarks/speed/results-<date>.md` with the date and the machine.

    python benchmarks/speed/run.py [--quick]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}"


def imp_rows(im: dict, replicates) -> list[tuple]:
    rows = []
    for r in replicates:
        m = im[f"{r}_replicates"]
        rows.append((f"IMP study, {r} replicate(s), defaults vs `--workers 1 --stack 1`", "speed-up (wall)",
                     m["speedup"], ">= 1.8" if r == 3 else ">= 1.0"))
        rows.append((f"IMP study, {r} replicate(s), defaults vs `--workers 1 --stack 1`", "CPU ratio",
                     m["cpu_ratio"], ""))
        if "stacked_speedup" in m:
            rows.append((f"IMP study, {r} replicate(s), `--stack 8` vs `--workers 1 --stack 1`", "speed-up (wall)",
                         m["stacked_speedup"], ""))
            rows.append((f"IMP study, {r} replicate(s), `--stack 8` vs `--workers 1 --stack 1`", "CPU ratio",
                         m["stacked_cpu_ratio"], ""))
    rows.append(("two independent one-at-a-time studies at once (the 2-core bound)", "speed-up", im["ceiling"], ""))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds and iterations (a smoke run)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--only", choices=("loop", "imp"), help="only these measurements (a check of the script)")
    a = ap.parse_args()
    import imp as imp_bench
    import loop
    import sparse_inference
    rounds = 2 if a.quick else 7
    rows = []
    lo = im = sp = None
    if a.only in (None, "loop"):
        lo = loop.measure(iterations=300 if a.quick else 3000, rounds=rounds, data_dir=a.data_dir)
        rows.append(("training loop vs bare PyTorch (LeNet-300-100, Adam, batch 60)", "time ratio",
                     lo["loop_overhead"], "<= 1.10"))
        rows.append(("masked (21 % density) vs dense training", "time ratio", lo["mask_cost"], "<= 1.03"))
        rows.append(("masked (21 % density) vs dense training", "CPU ratio", lo["mask_cost_cpu"], "<= 1.03"))
    if a.only in (None, "imp"):
        # the protocol size (4 levels, a reinit control); `--stack 8` beside the defaults checks
        # the calibration's verdict on the whole study
        im = imp_bench.measure(rounds=1 if a.quick else 3, iterations=100 if a.quick else 2000,
                               levels=1 if a.quick else 4, data_dir=a.data_dir, stacked=True)
        rows += imp_rows(im, imp_bench.REPLICATES)
    if a.only is not None:  # a check of the script: printed, never written over the results
        print("\n".join(f"| {m} | {k} | {v:.3f} | {g} |" for m, k, v, g in rows))
        return
    sp = sparse_inference.measure(rounds=3 if a.quick else 9)
    for case in sp["results"]:
        goal = ">= 3.6" if (case["case"].startswith("lenet") and case["sparsity"] == 0.98 and case["batch"] == 64) \
            else ">= 14" if (case["sparsity"] == 0.98 and case["batch"] == 64) else ""
        rows.append((f"sparse vs dense inference: {case['case']}, {case['sparsity']:.0%}, batch {case['batch']}",
                     "speed-up", case["speedup"], goal))
    rigl = HERE / "rigl.py"
    if rigl.exists():
        import rigl as rigl_bench
        for case in rigl_bench.measure(quick=a.quick):
            rows.append((case["label"], "time ratio", case["ratio"], case.get("goal", "")))
    date = datetime.date.today().isoformat()
    lines = [f"# Speed benchmarks, {date}", "", f"Machine: {machine()}", "",
             f"Command: `make bench`{' (--quick)' if a.quick else ''}", "",
             "| measurement | kind | value | goal |", "|---|---|---|---|"]
    lines += [f"| {m} | {k} | {v:.3f} | {g} |" for m, k, v, g in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    (HERE / f"results-{date}.md").write_text(text)
    (HERE / f"results-{date}.json").write_text(json.dumps({"loop": lo, "imp": im, "sparse": sp}, indent=2, default=str))


if __name__ == "__main__":
    main()
