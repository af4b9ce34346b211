#!/usr/bin/env bash
# The NLP lottery benchmarks (issue #9), one process at a time, niced; stores go outside the repo.
# Usage: benchmarks/nlp/run.sh [STORE]   (default /work/bench/nlp/store; ≈ 54 CPU-minutes in all, measured)
set -euo pipefail
cd "$(dirname "$0")/../.."
STORE=${1:-/work/bench/nlp/store}
export TICKETLAB_DATA=${TICKETLAB_DATA:-/work/shared/data}
export TICKETLAB_CACHE=${TICKETLAB_CACHE:-/work/bench/nlp/cache}
TL=".venv/bin/ticketlab"

# 1. LSTM LM on PTB: Zaremba et al.'s small model (2 × 200, SGD lr 1, clip 5, BPTT 20, batch 20, no
#    dropout, ±0.1 init) trained for 1 epoch instead of 13, its schedule compressed 13× (full rate for
#    4/13 of the run, then halved every 1/13); IMP: global, 40 % per level, 3 levels (60, 36, 21.6 %
#    of the LSTM + softmax weights; embedding dense), late rewinding to step 116 (5 %),
#    controls (random reinit, random mask) at the last level.
/usr/bin/time -f "lm: %e s wall, %U s user, %S s sys" nice -n 5 $TL lottery --task lm --dataset ptb \
    --model lstm_small --epochs 1 --decay-start 0.3076923 --decay-every 0.0769231 --eval-every 1162 \
    --strategy global --prune-fraction 0.4 --levels 3 --rewind-iter 116 \
    --controls reinit,random_mask --control-levels 3 \
    --workers 1 --threads 1 --checkpoint-every 500 --store "$STORE" --quiet

# 2. Transformer on Multi30k En→De: 2 + 2 layers, d_model 128, 4 heads, ffn 512, joint BPE 2,000,
#    tied embeddings (pruned), no dropout, Adam 1.5e-3 (β 0.9/0.98), 150 warmup steps then cosine,
#    batch 32 pairs, 2 epochs; test BLEU with beam 4, α 0.6. IMP: global, 42 % per level,
#    2 levels (58, 33.6 % of the weights), late rewinding to step 150, controls at level 2.
/usr/bin/time -f "translate: %e s wall, %U s user, %S s sys" nice -n 5 $TL lottery --task translate \
    --dataset multi30k --src-lang en --tgt-lang de --vocab-size 2000 --hidden 128 --n-layers 2 --heads 4 \
    --ffn 512 --dropout 0 --batch-size 32 --lr 1.5e-3 --schedule cosine --warmup 150 --epochs 2 \
    --eval-every 604 --beam-size 4 --length-penalty 0.6 \
    --strategy global --prune-fraction 0.42 --levels 2 --rewind-iter 150 \
    --controls reinit,random_mask --control-levels 2 \
    --workers 1 --threads 1 --checkpoint-every 500 --store "$STORE" --quiet
