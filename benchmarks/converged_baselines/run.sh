#!/usr/bin/env bash
# Issue #18, point 1: how much of a ticket's margin comes from baselines cut short?
# LeNet-300-100 on Fashion-MNIST, the LTH recipe (Adam 1.2e-3, batch 60) at 4,000 iterations, 3 replicates,
# 12 levels (layerwise 20 %, output 10 %), reinit and random-mask controls at levels 4, 8 and 12, run twice:
# at the recipe's length, and with the dense level 0 and the controls trained 3x longer (--baseline-length 3;
# IMP still prunes from level 0's weights at 4,000 iterations, so the tickets are the same in both).
# Usage: bash benchmarks/converged_baselines/run.sh [STORE]   (resumable; TICKETLAB_DATA must hold fashion-mnist)
set -euo pipefail
STORE=${1:-/tmp/bench-converged}
export OMP_NUM_THREADS=1 TICKETLAB_DATA=${TICKETLAB_DATA:-../shared/data}
COMMON=(--store "$STORE" --dataset fashion-mnist --model lenet300_100 --optimizer adam --lr 1.2e-3
        --batch-size 60 --iterations 4000 --eval-every 200 --levels 12 --replicates 3
        --controls reinit,random_mask --control-levels 4,8,12 --workers 2 --quiet)
for length in 1 3; do
  /usr/bin/time -f "baseline-length $length: %e s wall, %U s user, %S s sys" \
    ticketlab lottery "${COMMON[@]}" --baseline-length "$length"
done
