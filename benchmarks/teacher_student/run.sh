#!/usr/bin/env bash
# The teacher–student benchmark (benchmarks/teacher_student/README.md). One process, nice -n 5.
# Stores go outside the repo; tables and plots land beside this script.
set -euo pipefail
cd "$(dirname "$0")/../.."
TS="nice -n 5 .venv/bin/ticketlab teacher-student --quiet"
STORE=${STORE:-/work/bench/teacher_student/store}
OUT=benchmarks/teacher_student
export OMP_NUM_THREADS=1

part=${1:-all}

# 1. Two-layer (SS §6): d 100, teacher 10 nodes, 50 outputs, x ~ N(0, 1.5²), 10,000 training inputs,
#    student ×1/×2/×5/×10 with N(0, 0.005²) init, SGD lr 0.01 batch 16 on ½·squared error, 100,000 steps,
#    p ∈ {0, 1, 2}, 4 seeds each (48 runs, 12 stacked per over-realization); node pruning to 10 nodes
#    by fan-out norm, ticket and reinit retrained for 100,000 steps.
if [[ $part == all || $part == two ]]; then
  /usr/bin/time -v $TS --store $STORE --sweep multi=1,2,5,10 --sweep strength_decay=0,1,2 --seeds 4 \
    --init small --steps 100000 --log-every 2500 --prune --stack 48 --out $OUT/two_layer \
    > $OUT/two_layer/table.txt 2> $OUT/two_layer/time.txt
  # the authors' score (mean |fan-out|) on the same runs: a readout, no retraining
  $TS --store $STORE --sweep multi=1,2,5,10 --sweep strength_decay=0,1,2 --seeds 4 --init small \
    --steps 100000 --log-every 2500 --prune --prune-score mean_abs_fanout --no-prune-retrain \
    > $OUT/two_layer/table_mean_abs_fanout.txt
fi

# 2. Multi-layer (LM §5 / SS multi-layer): d 20, teacher 10-15-20-25 -> 100 outputs, x ~ N(0, 10²),
#    uniform biases tuned to fire half the time, outputs standardised; student ×10 (PyTorch init),
#    SGD lr 0.05 batch 64 on the MSE, 100,000 training inputs, 31,250 steps (20 epochs), 4 seeds.
if [[ $part == all || $part == ml_small ]]; then
  /usr/bin/time -v $TS --store $STORE --input-dim 20 --teacher-widths 10,15,20,25 --output-dim 100 \
    --data-std 10 --teacher-bias uniform --tune-bias --standardize-output --multi 10 --loss mse --lr 0.05 \
    --batch-size 64 --train-size 100000 --eval-size 10240 --steps 31250 --log-every 1250 --seed 124 --seeds 4 \
    --prune --out $OUT/multi_layer_small > $OUT/multi_layer_small/table.txt 2> $OUT/multi_layer_small/time.txt
fi

# 3. Multi-layer, SS's widths 50-75-100-125, student ×5 (250-375-500-625; ×10 measured 27-50 ms per
#    step here, 4x the cost), SS's lr 0.2 halved at mid-run, 200,000 training inputs, 30,000 steps
#    (9.6 epochs), one seed.
if [[ $part == all || $part == ml_big ]]; then
  /usr/bin/time -v $TS --store $STORE --input-dim 20 --teacher-widths 50,75,100,125 --output-dim 100 \
    --data-std 10 --teacher-bias uniform --tune-bias --standardize-output --multi 5 --loss mse --lr 0.2 \
    --milestones 15000 --gamma 0.5 --batch-size 64 --train-size 200000 --eval-size 10240 --steps 30000 \
    --log-every 1500 --seed 124 --seeds 1 --prune --out $OUT/multi_layer_big \
    > $OUT/multi_layer_big/table.txt 2> $OUT/multi_layer_big/time.txt
fi

# 4. Node-pruning readouts that keep more nodes (2× and 5× the teacher's width) on the two-layer
#    runs of part 1: evaluation only, no retraining.
if [[ $part == all || $part == keep ]]; then
  for k in 2 5; do
    $TS --store $STORE --sweep multi=1,2,5,10 --sweep strength_decay=0,1,2 --seeds 4 --init small \
      --steps 100000 --log-every 2500 --prune --prune-keep $k --no-prune-retrain \
      > $OUT/two_layer/table_keep$k.txt
  done
fi
