"""What `ticketlab.masks.enforce` and `ticketlab.sparsify` cost in your own loop (issue 15).

The same plain PyTorch loop (zero_grad, forward, cross-entropy, backward, `optimizer.step()`, Adam:
torch's default single-tensor CPU implementation, and `fused=True`) runs three ways on the same model, data and batches:
- plain: nothing attached (dense);
- enforce: `ticketlab.masks.enforce(model, optimizer, masks)` with random masks at 80 % sparsity on
  every Linear weight (a gradient hook per masked tensor, masking again before the step, re-zeroing
  after it);
- sparsify: `ticketlab.sparsify(model, optimizer, RigL(update_interval=100), 0.8)`, the mask updates
  included (every 100 steps; RigL skips the optimizer step on those, as the official code does).
The tensors stay dense, so the ratios are the cost of keeping the masks, not a sparse speed-up.

Models: LeNet-300-100 (batch 60) on MNIST (from $TICKETLAB_DATA, else random inputs of the same shape),
and a tiny BERT-like encoder built from torch.nn (2 layers, width 64, 4 heads, feed-forward 128, 32
tokens, batch 32; a classifier on the mean token). Variants run in interleaved rounds, the order
alternating each round; each figure is the median over rounds of the per-round ratio to plain, for
wall time (`perf_counter`) and for this process's CPU time (`process_time`), so slow drift in
machine load cancels (docs/performance.md §0). One torch thread.

    OMP_NUM_THREADS=1 TICKETLAB_DATA=/work/shared/data python benchmarks/byo/run.py --steps 300 --bert-steps 100 --rounds 7
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import ticketlab
from ticketlab.core.errors import DataError
from ticketlab.core.targets import prunable
from ticketlab.data import load_dataset
from ticketlab.models import create_model

HERE = Path(__file__).resolve().parent


class TinyBert(nn.Module):
    """A BERT-like encoder classifier: token + position embeddings, post-norm encoder layers, mean pool."""

    def __init__(self, vocab=1000, length=32, width=64, heads=4, ff=128, layers=2, classes=2):
        super().__init__()
        self.tokens = nn.Embedding(vocab, width)
        self.positions = nn.Embedding(length, width)
        layer = nn.TransformerEncoderLayer(width, heads, ff, dropout=0.0, activation="gelu", batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        h = self.tokens(x) + self.positions.weight[: x.shape[1]]
        return self.head(self.encoder(h).mean(1))


def lenet_data(n: int = 6000):
    try:
        ds = load_dataset("mnist", os.environ.get("TICKETLAB_DATA"))
        return ds.train.x[:n], ds.train.y[:n], "MNIST"
    except DataError:
        g = torch.Generator().manual_seed(0)
        return torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g), "synthetic"


def bert_data(n: int = 4096, length: int = 32):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 1000, (n, length), generator=g)
    return x, (x[:, 0] < 500).long(), "synthetic tokens"


def make(name: str):
    if name == "lenet300_100":
        return create_model("lenet300_100", input_shape=(1, 28, 28), num_classes=10, seed=0)
    torch.manual_seed(0)
    return TinyBert()


def train(name: str, variant: str, data, steps: int, batch: int, fused: bool) -> tuple[float, float]:
    """(wall s, CPU s) of `steps` training steps of `variant`."""
    x, y = data
    model = make(name)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused)
    if variant == "enforce":
        g = torch.Generator().manual_seed(1)
        masks = {n: torch.rand(p.shape, generator=g) >= 0.8 for n, p in prunable(model).items()}
        ticketlab.masks.enforce(model, opt, masks)
    elif variant == "sparsify":
        ticketlab.sparsify(model, opt, ticketlab.RigL(update_interval=100, end_step=steps), 0.8,
                           distribution="uniform")
    order = torch.randint(0, len(y), (steps, batch), generator=torch.Generator().manual_seed(2))
    w0, c0 = time.perf_counter(), time.process_time()
    for idx in order:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    return time.perf_counter() - w0, time.process_time() - c0


def measure(name: str, data, steps: int, rounds: int, batch: int, fused: bool) -> dict:
    variants = ("plain", "enforce", "sparsify")
    train(name, "plain", data, min(steps, 50), batch, fused)  # warm-up
    wall = {v: [] for v in variants}
    cpu = {v: [] for v in variants}
    for r in range(rounds):
        for v in (variants if r % 2 == 0 else variants[::-1]):
            w, c = train(name, v, data, steps, batch, fused)
            wall[v].append(w)
            cpu[v].append(c)
    ratio = lambda t, v: statistics.median(a / b for a, b in zip(t[v], t["plain"]))
    return {"steps": steps, "rounds": rounds, "batch": batch,
            "ms_per_step": {v: 1000 * statistics.median(wall[v]) / steps for v in variants},
            "wall": {v: ratio(wall, v) for v in variants[1:]},
            "cpu": {v: ratio(cpu, v) for v in variants[1:]},
            "wall_range": {v: [min(a / b for a, b in zip(wall[v], wall["plain"])),
                               max(a / b for a, b in zip(wall[v], wall["plain"]))] for v in variants[1:]}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300, help="LeNet-300-100 steps per variant per round")
    ap.add_argument("--bert-steps", type=int, default=100, help="tiny-BERT steps per variant per round")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", default=str(HERE / "results.json"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    load = os.getloadavg()
    results = {}
    for name, (x, y, source), steps, batch in (("lenet300_100", lenet_data(), a.steps, 60),
                                               ("tiny_bert", bert_data(), a.bert_steps, 32)):
        for opt in ("adam", "adam-fused"):
            results[f"{name} {opt}"] = {"data": source, **measure(name, (x, y), steps, a.rounds, batch,
                                                                   fused=opt == "adam-fused")}
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "python": platform.python_version(),
            "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "loadavg_start": load, "loadavg_end": os.getloadavg()}
    Path(a.out).write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print(f"{'model':25} {'data':16} {'plain ms/step':>13} {'enforce wall':>12} {'enforce cpu':>11} "
          f"{'sparsify wall':>13} {'sparsify cpu':>12}")
    for m, r in results.items():
        print(f"{m:25} {r['data']:16} {r['ms_per_step']['plain']:13.2f} {r['wall']['enforce']:12.3f} "
              f"{r['cpu']['enforce']:11.3f} {r['wall']['sparsify']:13.3f} {r['cpu']['sparsify']:12.3f}")
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
