"""Issue #18's re-measurement of dst_mnist: RigL against GMP at 20 epochs, and RigL under Adam.

LeNet-300-100 on MNIST, 3 seeds per point (stacked), one `ticketlab sweep` of kind "sparse" (each point is
`ticketlab.api.sparse_train`, the code path of `ticketlab sparse-train`). Two groups of points:

- **length** (issue #18: "RigL against GMP with a training length within 10x of the paper's"): dense,
  static, RigL and GMP at 90 % and 98 % ERK, with the benchmark's SGD recipe (README: Nesterov 0.9,
  lr 0.1 cosine, L2 1e-4, batch 100) for `--epochs` (20 = 1/10 of the RigL MNIST recipe's 200);
- **optimizer** ("does Adam blunt RigL?"): at 98 % ERK, RigL, SET and static under Adam (lr 1e-3
  cosine, L2 1e-4, batch 100, same length; not tuned), RigL under Adam with `grow_state="keep"` (the
  optimizer state of inactive weights tracks the dense gradient and survives drop and grow:
  `ticketlab.methods.sparse.updater`), SET under SGD, and dense under Adam. RigL, static and dense
  under SGD come from the first group. The reading is the margin RigL − static (and SET − static)
  under each optimizer.
- **RigL 2x**: RigL at 98 % ERK, SGD, for 2 × `--epochs` (the paper's "RigL 2x" against pruning at 1x).

Points run in the order below (most needed first); the store resumes, so an interrupted run picks
up where it stopped. The table is written by `summarise18.py` from the store.

    OMP_NUM_THREADS=1 TICKETLAB_DATA=../shared/data nice -n 5 python benchmarks/dst_mnist/run18.py \
        --store /work/bench/dst/i18 --epochs 20 --seeds 3
"""

from __future__ import annotations

import argparse
import dataclasses
import time


def points(epochs: int):
    """[(group, label, TrainConfig, SparseConfig)] in run order."""
    from ticketlab.experiments.sparse_training import SparseConfig
    from ticketlab.training.loop import TrainConfig

    common = dict(dataset="mnist", model="lenet300_100", weight_decay=1e-4, schedule="cosine", epochs=epochs,
                  batch_size=100, eval_every=550)
    sgd = TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, **common)
    adam = TrainConfig(optimizer="adam", lr=1e-3, **common)

    def sp(method, s, **kw):
        return SparseConfig(method=method, sparsity=s, distribution="erk", saliency_scope="distribution", **kw)

    return [
        ("length", "dense sgd", sgd, SparseConfig(method="dense")),
        ("length", "rigl sgd 98", sgd, sp("rigl", 0.98)),
        ("length", "gmp sgd 98", sgd, sp("gmp", 0.98)),
        ("length", "static sgd 98", sgd, sp("static", 0.98)),
        ("optimizer", "rigl adam zero 98", adam, sp("rigl", 0.98)),
        ("optimizer", "rigl adam keep 98", adam, sp("rigl", 0.98, grow_state="keep")),
        ("optimizer", "static adam 98", adam, sp("static", 0.98)),
        ("length", "rigl sgd 90", sgd, sp("rigl", 0.9)),
        ("length", "gmp sgd 90", sgd, sp("gmp", 0.9)),
        ("length", "static sgd 90", sgd, sp("static", 0.9)),
        ("optimizer", "set sgd 98", sgd, sp("set", 0.98)),
        ("optimizer", "set adam 98", adam, sp("set", 0.98)),
        ("optimizer", "dense adam", adam, SparseConfig(method="dense")),
        # RigL paper Fig. 2: RigL matches pruning only with longer training (RigL 2x, 5x); 2x here
        ("length", "rigl sgd 98 2x", dataclasses.replace(sgd, epochs=2 * epochs), sp("rigl", 0.98)),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated labels to run (default: all, in order)")
    a = ap.parse_args()

    from ticketlab import api
    from ticketlab.sweep import Trial, run_sweep

    api.set_threads(1)
    pts = points(a.epochs)
    if a.only:
        want = set(a.only.split(","))
        pts = [p for p in pts if p[1] in want]
    t0 = time.time()
    for i, (group, label, train, sparse) in enumerate(pts):
        # one point per sweep call, so that each finished point is reported (and timed) as it ends
        rows = run_sweep([Trial(i, "sparse", (train, sparse), {"label": label})], backend="inline", workers=1,
                         store=a.store, data_dir=a.data_dir, replicates=a.seeds, retries=0)
        r = rows[0]
        if r["status"] == "failed":
            raise SystemExit(f"{label} failed: {r['error']}")
        print(f"{label}: {r['experiment']} ({time.time() - t0:.0f} s so far)", flush=True)


if __name__ == "__main__":
    main()
