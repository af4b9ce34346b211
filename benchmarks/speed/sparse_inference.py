"""Sparse inference speed: `ticketlab.engine.export.SparseModel` (CSR) against the masked dense model.

Speed-up = dense time ÷ sparse time, forward only under `torch.inference_mode()`, 1 thread, random
unstructured masks with exactly the given sparsity in every layer:

- ``lenet300_100``: the whole LeNet-300-100 (784-300-100-10, ReLU), `sparse_from_dense` against
  the same network with its pruned weights zeroed (dense MKL GEMM);
- ``linear4096``: one 4096×4096 linear layer with bias.

Two dense baselines: ``dense`` is the masked model as users run it (``model(x)``, one module call per
layer); ``dense_fn`` is the same computation as bare ``F.linear``/``relu`` calls, with no module
overhead. `SparseModel` runs sequential networks without module calls either (see
`ticketlab.engine.export._make_plan`), so ``speedup`` (dense ÷ sparse) is what a user gains and
``speedup_fn`` (dense_fn ÷ sparse) the part that is due to the sparse kernels alone. On the 4096²
layer the two coincide; at LeNet size and batch 1 module-call overhead is a large part of the time.

Method (../shared/reference/performance.md §0): per case, dense and sparse run in interleaved
rounds (the order alternating each round), each a block of calls of ≈`block_s` seconds after a
warm-up; the speed-up is the median of the per-round ratios, so slow drift in machine load cancels.
A round in which this process got less than 85% of a core (another process held it) is retried
once; ``contended_rounds`` counts the rounds still contended after that. The machine is shared and
noisy: compare ratios, not absolute times.

    python benchmarks/speed/sparse_inference.py [--rounds N] [--json out.json]

`measure(rounds=...)` returns the figures as a dict (for `make bench`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from ticketlab.engine.export import sparse_from_dense
from ticketlab.models import create_model, prunable_parameters

SPARSITIES = (0.90, 0.95, 0.98, 0.99)
BATCHES = (1, 64)


def exact_mask(shape, sparsity: float, g: torch.Generator) -> torch.Tensor:
    """A boolean mask of `shape` keeping exactly round(numel × (1 - sparsity)) random entries."""
    n = 1
    for s in shape:
        n *= s
    keep = torch.zeros(n, dtype=torch.bool)
    keep[torch.randperm(n, generator=g)[:round(n * (1 - sparsity))]] = True
    return keep.reshape(shape)


def _masked(model: nn.Module, sparsity: float, seed: int) -> tuple[nn.Module, dict]:
    g = torch.Generator().manual_seed(seed)
    masks = {n: exact_mask(p.shape, sparsity, g) for n, p in prunable_parameters(model).items()}
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in masks:
                p.mul_(masks[n])
    return model.eval(), masks


def lenet(sparsity: float, seed: int = 0):
    """(masked dense LeNet-300-100, the same as bare calls, its SparseModel, input shape)."""
    dense, masks = _masked(create_model("lenet300_100", input_shape=(1, 28, 28), num_classes=10, seed=seed),
                           sparsity, seed)
    (w1, b1), (w2, b2), (w3, b3) = [(m.weight, m.bias) for m in (dense.fc1, dense.fc2, dense.fc3)]

    def dense_fn(x):
        return F.linear(torch.relu(F.linear(torch.relu(F.linear(x.flatten(1), w1, b1)), w2, b2)), w3, b3)

    return dense, dense_fn, sparse_from_dense(dense, masks), (1, 28, 28)


def linear4096(sparsity: float, seed: int = 0):
    """(masked dense 4096×4096 layer, the same as a bare call, its SparseModel, input shape)."""
    torch.manual_seed(seed)
    layer = nn.Sequential(nn.Linear(4096, 4096))
    with torch.no_grad():
        layer[0].bias.normal_()
    dense, masks = _masked(layer, sparsity, seed)
    w, b = layer[0].weight, layer[0].bias
    return dense, (lambda x: F.linear(x, w, b)), sparse_from_dense(dense, masks), (4096,)


CASES = {"lenet300_100": lenet, "linear4096": linear4096}


def _block(f, x, n: int) -> tuple[float, float]:
    """(wall seconds per call, fraction of a core this process got) over n calls."""
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        f(x)
    wall = time.perf_counter() - t0
    return wall / n, (time.process_time() - c0) / wall if wall > 0 else 1.0


def _compare(variants: dict, x, rounds: int, block_s: float) -> dict:
    with torch.inference_mode():
        ref = variants["dense"](x)
        for k, f in variants.items():
            out = f(x)
            if not torch.allclose(out, ref, atol=1e-4, rtol=1e-4):
                raise AssertionError(f"{k} output differs from dense by {(out - ref).abs().max():.3g}")
            _block(f, x, 3)  # warm-up
        per_call = min(_block(f, x, 3)[0] for f in variants.values())
        n = max(1, round(block_s / max(per_call, 1e-7)))
        times = {k: [] for k in variants}
        retried = contended = 0
        for r in range(rounds):
            order = list(variants) if r % 2 == 0 else list(reversed(variants))
            for attempt in range(2):  # one retry at most: the run time must stay bounded
                got = {k: _block(variants[k], x, n) for k in order}
                if min(share for _, share in got.values()) >= 0.85:
                    break
                retried += attempt == 0
            else:
                contended += 1
            for k, (t, _) in got.items():
                times[k].append(t)
    ratios = [d / s for d, s in zip(times["dense"], times["sparse"])]
    ratios_fn = [d / s for d, s in zip(times["dense_fn"], times["sparse"])]
    return {**{f"{k}_us": 1e6 * statistics.median(v) for k, v in times.items()},
            "speedup": statistics.median(ratios), "speedup_min": min(ratios), "speedup_max": max(ratios),
            "speedup_fn": statistics.median(ratios_fn), "calls_per_block": n, "retried_rounds": retried,
            "contended_rounds": contended}


def measure(rounds: int = 9, *, sparsities=SPARSITIES, batches=BATCHES, cases=tuple(CASES),
            block_s: float = 0.03, threads: int = 1, seed: int = 0) -> dict:
    """Speed-ups of the sparse export over the masked dense model; see the module docstring."""
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    rows = []
    t0 = time.perf_counter()
    try:
        for case in cases:
            for s in sparsities:
                dense, dense_fn, sparse, shape = CASES[case](s, seed)
                variants = {"dense": dense, "dense_fn": dense_fn, "sparse": sparse}
                for b in batches:
                    x = torch.randn(b, *shape, generator=torch.Generator().manual_seed(b))
                    rows.append({"case": case, "sparsity": s, "batch": b,
                                 **_compare(variants, x, rounds, block_s)})
                del dense, dense_fn, sparse, variants
    finally:
        torch.set_num_threads(old_threads)
    return {"benchmark": "sparse_inference", "threads": threads, "rounds": rounds, "block_s": block_s,
            "torch": torch.__version__, "wall_s": round(time.perf_counter() - t0, 1), "results": rows}


def table(result: dict) -> str:
    lines = [f"{'case':<14}{'sparsity':>9}{'batch':>6}{'dense µs':>11}{'dense_fn µs':>13}{'sparse µs':>11}"
             f"{'speed-up':>10}{'(min–max)':>14}{'vs dense_fn':>13}"]
    for r in result["results"]:
        lines.append(f"{r['case']:<14}{100 * r['sparsity']:>8.0f}%{r['batch']:>6}{r['dense_us']:>11.1f}"
                     f"{r['dense_fn_us']:>13.1f}{r['sparse_us']:>11.1f}{r['speedup']:>9.2f}x"
                     f"{r['speedup_min']:>7.2f}–{r['speedup_max']:<6.2f}{r['speedup_fn']:>9.2f}x")
    contended = sum(r["contended_rounds"] for r in result["results"])
    total = result["rounds"] * len(result["results"])
    lines.append(f"({result['threads']} thread, {result['rounds']} interleaved rounds, medians; "
                 f"{contended}/{total} rounds contended; {result['wall_s']} s)")
    return "\n".join(lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9, help="interleaved rounds per case (default 9)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--block", type=float, default=0.03, help="seconds per timed block (default 0.03)")
    ap.add_argument("--json", default=None, metavar="OUT.json", help="also write the figures as JSON")
    a = ap.parse_args()
    res = measure(a.rounds, block_s=a.block, threads=a.threads)
    print(table(res))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
