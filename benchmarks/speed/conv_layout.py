"""Conv nets: a LeNet-5 training step with channels-last input against plain NCHW, one thread.

Asks whether the training loop should convert a conv net's input batches to channels-last
(oneDNN's NHWC kernels). The same SGD step (batch 100, MNIST shape, Caffe LeNet-5, two identical
nets) with the input as is and converted, in interleaved rounds; the speed-up is the median ratio.
Quiet machine, 2026-11-25: 0.99 (55.0 vs 56.4 ms per step), so the loop keeps NCHW.

    python benchmarks/speed/conv_layout.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from ticketlab.models import create_model


def measure(rounds: int = 7, steps: int = 20) -> dict:
    torch.set_num_threads(1)
    x, y = torch.randn(100, 1, 28, 28), torch.randint(0, 10, (100,))
    inputs = {"nchw": x, "channels_last": x.contiguous(memory_format=torch.channels_last)}
    nets = {k: create_model("lenet5", input_shape=(1, 28, 28), num_classes=10, seed=0) for k in inputs}
    opts = {k: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for k, m in nets.items()}

    def block(k):
        t = time.perf_counter()
        for _ in range(steps):
            opts[k].zero_grad()
            F.cross_entropy(nets[k](inputs[k]), y).backward()
            opts[k].step()
        return (time.perf_counter() - t) / steps * 1000

    for k in inputs:
        block(k)  # warm-up
    ms = {k: [] for k in inputs}
    for r in range(rounds):
        for k in (list(inputs) if r % 2 == 0 else list(inputs)[::-1]):
            ms[k].append(block(k))
    return {"ms_per_step": {k: statistics.median(v) for k, v in ms.items()},
            "speedup": statistics.median(a / b for a, b in zip(ms["nchw"], ms["channels_last"]))}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    print(json.dumps(measure(ap.parse_args().rounds), indent=2))
