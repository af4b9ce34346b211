"""The same LTH protocol twice: through the public `ticketlab.IMP` in a plain loop, and through
`ticketlab lottery` (issue 15, "the path that users take is the path that the experiments take").

Frankle & Carbin 2019 (LTH) §2 on LeNet-300-100 / MNIST: Adam 1.2e-3, batch 60, layerwise pruning
(20 % per level, the output layer 10 %), reset to θ0; level 0 and 3 pruning levels, with the
training shortened from LTH's 50,000 iterations per level to `--iterations` (default 10,000) so that
both runs fit a few minutes on 2 shared cores. docs/lottery.md §1–2.

1. `ticketlab.api.lottery` (what the `ticketlab lottery` command calls) runs the experiment into a
   temporary store.
2. A plain PyTorch loop (zero_grad, forward, cross-entropy, backward, `optimizer.step()`) trains the
   same model on the same batches, with `ticketlab.IMP` attached: `imp.prune(); imp.rewind()`
   between levels.
Per level it counts the mask tensors that are equal (`torch.equal`) to the store's `mask.pt`, and
the trained weight tensors equal to the store's `final.pt`.

    OMP_NUM_THREADS=1 TICKETLAB_DATA=/work/shared/data PYTHONPATH=src \\
        python benchmarks/byo/agreement.py --iterations 10000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import ticketlab
from ticketlab import api
from ticketlab.domains.classify import make_trainer
from ticketlab.experiments.lottery.trunk import LotteryConfig, final_weights, load_masks
from ticketlab.training.loop import TrainConfig, batch_indices, make_optimizer

HERE = Path(__file__).resolve().parent


def plain_loop(train: TrainConfig, cfg: LotteryConfig, check) -> None:
    """IMP in a user's loop: `check(level, model, imp)` runs after each level is trained."""
    trainer = make_trainer(train)
    x, y = trainer.data.train.x, trainer.data.train.y
    model = trainer.build(train.init_seed)
    opt = make_optimizer(train, model.parameters())
    imp = ticketlab.IMP.from_config(cfg).attach(model, opt)
    for level in range(cfg.levels + 1):
        start = cfg.rewind_iter if level else 0
        # ticketlab's loop seeds torch at each run's start (for dropout; LeNet-300-100 has none)
        torch.manual_seed(train.data_seed * 7919 + train.init_seed + start)
        model.train()
        for it in range(start, train.iterations):
            opt.zero_grad(set_to_none=True)
            idx = batch_indices(len(x), train.batch_size, train.data_seed, it)
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        check(level, model, imp)
        if level < cfg.levels:
            imp.prune()
            imp.rewind()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iterations", type=int, default=10000, help="training iterations per level")
    ap.add_argument("--levels", type=int, default=3, help="pruning levels after the dense level 0")
    ap.add_argument("--out", default=str(HERE / "agreement.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)

    train = TrainConfig(dataset="mnist", model="lenet300_100", optimizer="adam", lr=1.2e-3, batch_size=60,
                        iterations=args.iterations, eval_every=args.iterations)
    cfg = LotteryConfig(levels=args.levels)
    with tempfile.TemporaryDirectory() as store:
        t0 = time.perf_counter()
        res = api.lottery(train, cfg, store=store, progress=False)
        t_cli = time.perf_counter() - t0
        rep = Path(store) / Path(res["experiment"]).name / "replicate_0"
        rows = []

        def check(level, model, imp):
            saved = load_masks(rep / f"level_{level}" / "mask.pt")
            trained = final_weights(rep / f"level_{level}")
            weights = {n: p.detach() for n, p in model.state_dict().items()}
            rows.append({
                "level": level,
                "density_%": round(100 * ticketlab.masks.density(imp.masks), 2),
                "masks_equal": sum(torch.equal(imp.masks[n], m) for n, m in saved.items()),
                "masks": len(saved),
                "weights_equal": sum(torch.equal(weights[n], w) for n, w in trained.items()),
                "weights": len(trained),
            })
            print("level {level}: {density_%:6.2f} % left, masks equal {masks_equal}/{masks}, "
                  "trained weights equal {weights_equal}/{weights}".format(**rows[-1]), flush=True)

        t0 = time.perf_counter()
        plain_loop(train, cfg, check)
        t_imp = time.perf_counter() - t0
    print(f"ticketlab lottery: {t_cli:.1f} s; IMP in a plain loop: {t_imp:.1f} s")
    Path(args.out).write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "iterations": args.iterations,
        "levels": args.levels, "rows": rows, "seconds": {"lottery": round(t_cli, 1), "imp_plain": round(t_imp, 1)},
        "machine": {"cpus": os.cpu_count(), "load_avg": os.getloadavg(), "python": platform.python_version(),
                    "torch": torch.__version__},
    }, indent=1) + "\n")


if __name__ == "__main__":
    main()
