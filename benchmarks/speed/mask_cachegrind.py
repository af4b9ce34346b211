"""Where the mask cost goes, without hardware counters: one LeNet-300-100 `fit` on MNIST, dense or masked
(21 % density), of N steps, to run under valgrind's cachegrind (simulated caches, no timing noise).

The per-step difference of two lengths cancels start-up, data loading and the evaluations:

    for v in dense masked; do for n in 10 60; do
      OMP_NUM_THREADS=1 valgrind --tool=cachegrind --cache-sim=yes --cachegrind-out-file=/tmp/cg.$v.$n \\
        python benchmarks/speed/mask_cachegrind.py $v $n > /tmp/cg.$v.$n.log 2>&1 &
    done; done   # 4 runs, ≈17 min on 2 cores; then (X at 60 − X at 10) / 50 per counter

This machine's VM exposes no hardware performance counters (`perf` sees software events only).
"""

import sys
import tempfile

import torch

from ticketlab.data import load_dataset
from ticketlab.models import create_model, prunable_parameters
from ticketlab.training.loop import RunOptions, TrainConfig, fit

torch.set_num_threads(1)
variant, steps = sys.argv[1], int(sys.argv[2])
data = load_dataset("mnist")
cfg = TrainConfig(dataset="mnist", model="lenet300_100", optimizer="adam", lr=1.2e-3, batch_size=60,
                  iterations=steps, eval_every=steps)
model = create_model("lenet300_100", input_shape=data.input_shape, num_classes=10, seed=0)
g = torch.Generator().manual_seed(0)
masks = ({n: torch.rand(p.shape, generator=g) < 0.21 for n, p in prunable_parameters(model).items()}
         if variant == "masked" else None)
with tempfile.TemporaryDirectory() as d:
    fit(model, data, cfg, d, masks=masks, prunable=prunable_parameters(model),
        options=RunOptions(progress=False, checkpoint_every=10**9))
