"""Would a compiled masked Adam step close the mask-cost gap on the CPU? (issue #16, "a masked fused step")

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/speed/compiled_masked_adam.py [--rounds 7] [--steps 2000]

LeNet-300-100's three weight matrices at 21 % density, their gradients, and Adam's moments, stepped three
ways in interleaved rounds, one thread:
- `dense`: torch's fused Adam (`torch._fused_adam_`, what ticketlab's loop uses), no mask;
- `masked`: the gradients multiplied by float masks (one `_foreach_mul_`, ticketlab's pass), then the same
  fused Adam;
- `compiled`: the mask and the whole Adam update written as one function and compiled by
  `torch.compile` (inductor's C++ code on the CPU: the "masked fused step" the issue suggests).
Prints the medians of µs per step and the compile time. A micro-benchmark: the tensors stay warm in the
cache between steps, which a training step does not allow (benchmarks/speed/README.md, mask cost).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=2000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    shapes = [(300, 784), (100, 300), (10, 100)]
    ps = [torch.randn(s, generator=g) * 0.05 for s in shapes]
    gs = [torch.randn(s, generator=g) for s in shapes]
    ms = [(torch.rand(s, generator=g) < 0.21).float() for s in shapes]
    for p, m in zip(ps, ms):
        p.mul_(m)
    ea, es = [torch.zeros(s) for s in shapes], [torch.zeros(s) for s in shapes]
    steps = [torch.tensor(0.0) for _ in shapes]

    def eager(mask: bool) -> None:
        if mask:
            torch._foreach_mul_(gs, ms)
        torch._fused_adam_(ps, gs, ea, es, [], steps, lr=1e-3, beta1=0.9, beta2=0.999, weight_decay=0.0,
                           eps=1e-8, amsgrad=False, maximize=False)

    def masked_adam(ps, gs, ms, ea, es, step, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
        bc1, bc2 = 1 - b1 ** step, 1 - b2 ** step
        for p, gr, m, a, s in zip(ps, gs, ms, ea, es):
            gr = gr * m
            a.mul_(b1).add_(gr, alpha=1 - b1)
            s.mul_(b2).addcmul_(gr, gr, value=1 - b2)
            p.sub_(lr / bc1 * a / ((s / bc2).sqrt() + eps))

    t0 = time.perf_counter()
    compiled = torch.compile(masked_adam, fullgraph=True)
    step = torch.tensor(1.0)
    compiled(ps, gs, ms, ea, es, step)
    compile_s = time.perf_counter() - t0

    def per_step(fn) -> float:
        t = time.perf_counter()
        for _ in range(args.steps):
            fn()
        return (time.perf_counter() - t) / args.steps * 1e6

    ways = {"dense (fused Adam)": lambda: eager(False), "masked (mask pass + fused Adam)": lambda: eager(True),
            "compiled (mask and Adam in one function)": lambda: compiled(ps, gs, ms, ea, es, step)}
    times = {k: [] for k in ways}
    for _ in range(args.rounds):
        for k, fn in ways.items():
            times[k].append(per_step(fn))
    print(f"torch {torch.__version__}; compile {compile_s:.1f} s; medians of {args.rounds} rounds of {args.steps} steps")
    print("| step | µs |\n|---|---|")
    for k, v in times.items():
        print(f"| {k} | {statistics.median(v):.1f} |")


if __name__ == "__main__":
    main()
