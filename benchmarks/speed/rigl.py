"""RigL's mask update, amortised at ΔT = 100, as a share of training time (issue #5's cost goal).

`ticketlab.methods.sparse.bench.update_cost` times training steps and update steps of one model in the same
process (medians over steps); the share is update time / (100 × step time). Goals: ≤ 3 % for
LeNet-300-100 (MNIST shape, batch 60) and ≤ 0.5 % for a ResNet-scale model (resnet20 on CIFAR
shape, batch 128). 90 % sparsity, uniform, α = 0.3 (performance.md §6).

    python benchmarks/speed/rigl.py [--quick]
"""

from __future__ import annotations

import argparse
import json

from ticketlab.methods.sparse.bench import update_cost

CASES = (("lenet300_100", (1, 28, 28), 60, "<= 0.03"), ("resnet20", (3, 32, 32), 128, "<= 0.005"))


def measure(quick: bool = False) -> list[dict]:
    """One row per model: {label, ratio (update share of training time at ΔT=100), goal, detail}."""
    rows = []
    for model, shape, batch, goal in CASES:
        r = update_cost(model, input_shape=shape, batch=batch, updates=3 if quick else 10,
                        interval=5 if quick else 10)
        rows.append({"label": f"RigL update amortised at ΔT=100, {model} batch {batch} (share of training time)",
                     "ratio": r["overhead"], "goal": goal, "detail": r})
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    print(json.dumps(measure(ap.parse_args().quick), indent=2))
