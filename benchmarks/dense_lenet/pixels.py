"""Does pixel standardisation explain the dense LeNet-300-100's early-stopping accuracy (issue 18)?

ticketlab standardises MNIST pixels (mean 0.1307, std 0.3081, as open_lth and torchvision recipes do);
the LTH paper's TensorFlow pipeline fed pixels in [0, 1]. This trains the LTH dense baseline (Adam
1.2e-3, batch 60, evaluation every 100, early stopping at minimum validation loss) both ways, with the
same seeds, and prints the early-stopping iteration and accuracy and the accuracy at the end.

    OMP_NUM_THREADS=1 python benchmarks/dense_lenet/pixels.py --variant standardised --store /tmp/pixels
    OMP_NUM_THREADS=1 python benchmarks/dense_lenet/pixels.py --variant unit --store /tmp/pixels
    OMP_NUM_THREADS=1 python benchmarks/dense_lenet/pixels.py --summary --store /tmp/pixels
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path

from ticketlab import api
from ticketlab.data import registry
from ticketlab.training.loop import TrainConfig

VARIANTS = {"standardised": ((0.1307,), (0.3081,)), "unit": ((0.0,), (1.0,))}  # (mean, std) after /255


def train(variant: str, store: Path, seeds: int, iterations: int) -> None:
    mean, std = VARIANTS[variant]
    # the registry's normalisation is applied after the parsed-array cache, so this changes only it
    registry.REGISTRY["mnist"] = dataclasses.replace(registry.REGISTRY["mnist"], mean=mean, std=std)
    for s in range(seeds):
        cfg = TrainConfig(dataset="mnist", model="lenet300_100", optimizer="adam", lr=1.2e-3, batch_size=60,
                          iterations=iterations, eval_every=100, init_seed=s, data_seed=s)
        api.train(cfg, store=store / variant, progress=False)


def summary(store: Path) -> None:
    print("| pixels | seeds | ES iteration | test acc at ES (%) | test acc at the end (%) |\n|---|---|---|---|---|")
    for variant in VARIANTS:
        runs = [json.loads(p.read_text()) for p in sorted((store / variant).glob("*/summary.json"))]
        es_it = [r["early_stop"]["iter"] for r in runs]
        es = [100 * r["early_stop"]["test_acc"] for r in runs]
        fin = [100 * r["final"]["test_acc"] for r in runs]
        f = lambda v, d=2: f"{statistics.mean(v):.{d}f} ± {statistics.stdev(v):.{d}f}" if len(v) > 1 else f"{v[0]:.{d}f}"
        print(f"| {variant} | {len(runs)} | {f(es_it, 0)} | {f(es)} | {f(fin)} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", choices=list(VARIANTS))
    ap.add_argument("--store", default="/tmp/pixels")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=10_000)
    ap.add_argument("--summary", action="store_true")
    a = ap.parse_args()
    if a.summary:
        summary(Path(a.store))
    else:
        train(a.variant, Path(a.store), a.seeds, a.iterations)


if __name__ == "__main__":
    main()
