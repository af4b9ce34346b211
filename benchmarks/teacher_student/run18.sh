#!/usr/bin/env bash
# Issue #18 re-measurement of the teacher–student benchmark (README.md, "Re-measured 2026-12-06"):
#   two  — node pruning with and without merging co-aligned nodes (two-layer, SS §6 setting, 3 seeds);
#   ml   — the 50-75-100-125 multi-layer run (student ×5) with 3 seeds, pruned with and without merge;
#   retrain — after `two`: the two-layer node tickets retrained against reinit, without and with the merge.
# One process, nice -n 5, one torch thread. Stores outside the repo; tables/plots beside this script.
# Training is what costs; the `--prune-merge` calls read the trained students and only evaluate.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-/work/main/.venv/bin/python}
export OMP_NUM_THREADS=1 PYTHONPATH=${PYTHONPATH:-$PWD/src}
TS="nice -n 5 $PY -m ticketlab teacher-student --quiet --workers 1"
STORE=${STORE:-/work/bench/ts/store}
OUT=benchmarks/teacher_student/re18
TIME="/usr/bin/time -v"
part=${1:-all}
mkdir -p $OUT/two_layer $OUT/two_layer_merge $OUT/multi_layer_big $OUT/multi_layer_big_merge

# 1. Two-layer (as README §1/§5): d 100, teacher 10 nodes, 50 outputs, N(0, 0.005²) init, SGD lr 0.01,
#    batch 16, 100,000 steps (SS's full schedule, not shortened), p ∈ {0, 1, 2}, students ×2/×5/×10
#    (×1 prunes nothing), seeds 0–2 (the first 3 of the README's 4). Pruned to 10 nodes by fan-out
#    norm; readouts only (no ticket / reinit retraining: see the README for why).
TWO="--sweep multi=2,5,10 --sweep strength_decay=0,1,2 --seeds 3 --init small --steps 100000 --log-every 5000"
if [[ $part == all || $part == two ]]; then
  $TIME $TS --store $STORE $TWO --stack 27 --prune --no-prune-retrain --out $OUT/two_layer \
    > $OUT/two_layer/table.txt 2> $OUT/two_layer/time.txt
  for c in 0.95 0.99 0.9; do  # the merge at three cosines (evaluation only)
    $TIME $TS --store $STORE $TWO --prune --no-prune-retrain --prune-merge --prune-merge-cos $c \
      > $OUT/two_layer_merge/table_cos$c.txt 2> $OUT/two_layer_merge/time_cos$c.txt
  done
fi

# 2. Multi-layer, SS's widths (README §3): teacher 20 -> 50-75-100-125 -> 100, student ×5, SS's lr 0.2
#    halved at step 15,000, batch 64, 200,000 training inputs, 30,000 steps (as the 1-seed run:
#    not shortened), seeds 124–126 stacked; pruned to 50-75-100-125 by fan-out norm, readouts only.
ML="--input-dim 20 --teacher-widths 50,75,100,125 --output-dim 100 --data-std 10 --teacher-bias uniform \
 --tune-bias --standardize-output --multi 5 --loss mse --lr 0.2 --milestones 15000 --gamma 0.5 --batch-size 64 \
 --train-size 200000 --eval-size 10240 --steps 30000 --log-every 1500 --seed 124 --seeds 3"
if [[ $part == all || $part == ml ]]; then
  $TIME $TS --store $STORE $ML --stack 3 --prune --no-prune-retrain --out $OUT/multi_layer_big \
    > $OUT/multi_layer_big/table.txt 2> $OUT/multi_layer_big/time.txt
  for c in 0.95 0.9; do
    $TIME $TS --store $STORE $ML --prune --no-prune-retrain --prune-merge --prune-merge-cos $c \
      > $OUT/multi_layer_big_merge/table_cos$c.txt 2> $OUT/multi_layer_big_merge/time_cos$c.txt
  done
fi

# 3. After `two`: retrain the two-layer node tickets (README §5) without and with the merge of co-aligned
#    nodes. The ticket is the kept nodes (with merge: each group's representative) from their own initial
#    weights; reinit is a fresh N(0, 0.005²) init of the pruned 100-10-50 shape (the same draw in both
#    folders). 100,000 steps, the full schedule; the 27 pruned students × 2 branches train as one stack.
if [[ $part == retrain ]]; then
  R=$OUT/two_layer_retrain
  mkdir -p $R
  $TIME $TS --store $STORE $TWO --stack 54 --prune > $R/table.txt 2> $R/time.txt
  $TIME $TS --store $STORE $TWO --stack 54 --prune --prune-merge --prune-merge-cos 0.95 \
    > $R/table_merge0.95.txt 2> $R/time_merge0.95.txt
fi
