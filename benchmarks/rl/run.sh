#!/usr/bin/env bash
# Lottery tickets in RL (Yu et al. 2019): the benchmark runs, one process at a time, in this order.
# Usage: bash benchmarks/rl/run.sh [STORE]   (default /work/bench/rl/store); re-running skips what is done
# and resumes an interrupted level from its last checkpoint. Then: python benchmarks/rl/summarize.py STORE
set -euo pipefail
STORE=${1:-/work/bench/rl/store}
T="ticketlab lottery --task rl --workers 1 --quiet --store $STORE --checkpoint-every 10240"
run() { echo "== $(date -u +%FT%TZ) $*"; /usr/bin/time -f "   cpu %U s user, wall %e s" nice -n 5 $T "$@"; }

# A. CartPole-v1, PPO (rl-zoo's tuned recipe, 40,960 env steps per level), global IMP 40 %/level
#    to 2.8 % of the weights, late rewinding to k = 2,048 env steps (5 %), 3 replicates,
#    controls: random reinit and random mask (same per-layer counts) at levels 5 and 7.
CARTPOLE="--env CartPole-v1 --algo ppo --env-steps 40960 --eval-every 10240 --strategy global --prune-fraction 0.4"
run $CARTPOLE --levels 7 --rewind-iter 2048 --replicates 3 --controls reinit,random_mask --control-levels 5,7

# E. Pixels: ALE/Pong-v5 (standard Atari preprocessing), PPO with rl-zoo's Atari recipe, a short run:
#    4,096 env steps per level, dense + one level at 50 %, 1 replicate; throughput is the point.
run --env ALE/Pong-v5 --algo ppo --env-steps 4096 --n-envs 8 --n-steps 128 --n-epochs 4 --batch-size 256 \
    --lr 2.5e-4 --clip-range 0.1 --ent-coef 0.01 --eval-every 4096 --eval-episodes 2 --val-episodes 1 \
    --eval-max-steps 1000 --strategy global --prune-fraction 0.5 --levels 1 --rewind-iter 1024

# B. Acrobot-v1, PPO (gamma 0.99, GAE 0.94, 8 envs x 64 steps, 4 epochs, minibatch 128; our choice, checked
#    to reach about -75 to -90 by 20-30K steps), 30,720 env steps per level, global IMP 55 %/level to 4.1 %
#    (4 levels), late rewinding to 2,048, 3 replicates, controls at level 4.
run --env Acrobot-v1 --algo ppo --env-steps 30720 --eval-every 10240 --gamma 0.99 --gae-lambda 0.94 --n-steps 64 \
    --n-epochs 4 --batch-size 128 --strategy global --prune-fraction 0.55 --levels 4 --rewind-iter 2048 \
    --replicates 3 --controls reinit,random_mask --control-levels 4

# D. Ablation of A: rewinding to initialisation (k = 0, LTH) instead of late rewinding (levels 0-5, to 7.8 %).
run $CARTPOLE --levels 5 --rewind-iter 0 --replicates 3

# C. DQN on CartPole-v1 (rl-zoo's recipe), scaled down: 1 replicate, 1 level at 40 % pruned.
run --env CartPole-v1 --algo dqn --env-steps 40960 --eval-every 10240 --strategy global --prune-fraction 0.4 \
    --levels 1 --rewind-iter 2048

# B2. Acrobot-v1 again with layerwise pruning (each layer 55 %/level, the actor's output layer action_net at
#    half rate): in B, global magnitude pruning removed the whole actor head at level 1 (SB3 initialises it
#    with gain 0.01, so its weights stay the smallest) and every pruned agent scored -500.
run --env Acrobot-v1 --algo ppo --env-steps 30720 --eval-every 10240 --gamma 0.99 --gae-lambda 0.94 --n-steps 64 \
    --n-epochs 4 --batch-size 128 --strategy layerwise --prune-fraction 0.55 --levels 4 --rewind-iter 2048 \
    --replicates 3 --controls reinit,random_mask --control-levels 4
