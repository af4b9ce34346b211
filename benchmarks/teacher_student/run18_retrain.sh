#!/usr/bin/env bash
# Issue #18, after run18.sh `two`: retrain the two-layer node tickets (README §5) without and with the
# merge of co-aligned nodes. The ticket is the kept nodes (with merge: each group's representative)
# from their own initial weights; reinit is a fresh N(0, 0.005²) init of the pruned 100-10-50 shape
# (the same draw in both folders). 100,000 steps, the full schedule; the 27 pruned students × 2
# branches train as one stack. One process, nice -n 5, one torch thread.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-/work/main/.venv/bin/python}
export OMP_NUM_THREADS=1 PYTHONPATH=${PYTHONPATH:-$PWD/src}
TS="nice -n 5 $PY -m ticketlab teacher-student --quiet --workers 1"
STORE=${STORE:-/work/bench/ts/store}
OUT=benchmarks/teacher_student/re18/two_layer_retrain
TWO="--sweep multi=2,5,10 --sweep strength_decay=0,1,2 --seeds 3 --init small --steps 100000 --log-every 5000"
mkdir -p $OUT
/usr/bin/time -v $TS --store $STORE $TWO --stack 54 --prune > $OUT/table.txt 2> $OUT/time.txt
/usr/bin/time -v $TS --store $STORE $TWO --stack 54 --prune --prune-merge --prune-merge-cos 0.95 \
  > $OUT/table_merge0.95.txt 2> $OUT/time_merge0.95.txt
