"""Dynamic sparse training on MNIST: the method × sparsity × distribution grid of issue #5.

Runs every (method, sparsity, distribution) point as a trial of a `ticketlab sweep` of kind
"sparse" (`ticketlab.api.sparse_train` per point, replicates stacked where the model allows, points
spread over `--workers` processes), then writes the accuracy table (`results-<model>.md`, `.csv`) and
the plots (accuracy against sparsity, mask churn) next to this file. Every run lives in the store,
so an interrupted grid resumes where it stopped and a finished one only re-draws.

    TICKETLAB_DATA=../shared/data OMP_NUM_THREADS=1 python benchmarks/dst_mnist/run.py \
        --model lenet300_100 --store /work/bench/dst --epochs 10 --seeds 3
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
METHODS = ("static", "set", "snfs", "rigl", "gmp", "snip")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lenet300_100")
    ap.add_argument("--store", required=True)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--sparsities", default="0.8,0.9,0.95,0.98")
    ap.add_argument("--distributions", default="erk,uniform")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--update-interval", type=int, default=100)
    ap.add_argument("--workers", type=int, default=1, help="points trained at once, one process each")
    a = ap.parse_args()

    from ticketlab import api
    from ticketlab.reports.sparse_plots import accuracy_table, plot_churn, plot_sparse_accuracy, sparse_rows
    from ticketlab.experiments.sparse_training import SparseConfig
    from ticketlab.sweep import Trial, run_sweep
    from ticketlab.training.loop import TrainConfig

    api.set_threads(1)
    # SGD + Nesterov momentum, L2 1e-4, batch 100, cosine decay: the official RigL MNIST recipe
    # (§1.3 of sparse_training.md) shortened from 200 epochs to `epochs`.
    train = TrainConfig(dataset="mnist", model=a.model, optimizer="sgd", lr=a.lr, momentum=0.9, nesterov=True,
                        weight_decay=1e-4, schedule="cosine", epochs=a.epochs, batch_size=100, eval_every=550)
    points = [SparseConfig(method="dense")]
    for s in (float(x) for x in a.sparsities.split(",")):
        for d in a.distributions.split(","):
            for m in a.methods.split(","):
                points.append(SparseConfig(method=m, sparsity=s, distribution=d, update_interval=a.update_interval,
                                           saliency_scope="distribution"))
    trials = [Trial(i, "sparse", (train, p), {"method": p.method, "sparsity": p.sparsity,
                                               "distribution": p.distribution}) for i, p in enumerate(points)]
    t0 = time.time()
    rows = run_sweep(trials, backend="process" if a.workers > 1 else "inline", workers=a.workers,
                     store=a.store, data_dir=a.data_dir, replicates=a.seeds, retries=0)
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        raise SystemExit(f"{len(failed)} points failed, e.g. {failed[0]['overrides']}: {failed[0]['error']}")
    exps = [r["experiment"] for r in rows]
    print(f"grid done in {time.time() - t0:.0f} s")

    table = accuracy_table(sparse_rows(exps))
    out = HERE / f"results-{a.model}"
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)
    plot_sparse_accuracy(exps, HERE / f"accuracy-{a.model}")
    plot_churn([e for e, p in zip(exps, points) if p.method in ("set", "snfs", "rigl", "gmp")
                and p.sparsity == 0.9 and p.distribution == "erk"], HERE / f"churn-{a.model}")
    # the table: one row per (sparsity, distribution), one column per method (final test accuracy, %)
    cols = ["dense", *a.methods.split(",")]
    lines = ["| sparsity | distribution | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    by = {(t["method"], t["distribution"], t["sparsity"]): t for t in table}
    dense = next(t for t in table if t["method"] == "dense")
    for s in (float(x) for x in a.sparsities.split(",")):
        for d in a.distributions.split(","):
            cells = [f"{dense['mean']:.2f} ± {dense['std']:.2f}"]
            for m in cols[1:]:
                t = by.get((m, d, s))
                cells.append(f"{t['mean']:.2f} ± {t['std']:.2f}" if t else "")
            lines.append(f"| {100 * s:g}% | {d} | " + " | ".join(cells) + " |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
