#!/usr/bin/env bash
# Issue #18 re-measurement of the RL lottery benchmark (Yu et al. 2019, RL part) with the corrected
# evaluation: 20 test (+ validation) episodes per evaluation, headline = mean test return over the last 5
# evaluations (src/ticketlab/training/final_evals.py), early stopping never picks the run's start.
# Usage: bash benchmarks/rl/run18.sh [STORE] [PART...]   (default /work/bench/rl/store18, all parts in order)
# Re-running skips what is done and resumes an interrupted level. Then:
#   python benchmarks/rl/summarize.py STORE benchmarks/rl
# Levels, replicates and controls are not part of an experiment's hash, so the "+" parts below extend
# the same experiments (their finished levels are reused).
set -euo pipefail
STORE=${1:-/work/bench/rl/store18}; shift || true
PARTS=${*:-A C A+ AL L C+ AL2 LF}
T="ticketlab lottery --task rl --workers 1 --quiet --store $STORE --checkpoint-every 5120"
run() { echo "== $(date -u +%FT%TZ) $*"; /usr/bin/time -f "   cpu %U s user %S s sys, wall %e s" nice -n 5 $T "$@"; }

# A. CartPole-v1, PPO (rl-zoo's tuned recipe, 40,960 env steps per level, evaluation every 5,120 so that
#    the headline's last 5 evaluations are the second half of training), global IMP 40 %/level, 5 levels
#    to 7.8 % of the weights, late rewinding to k = 2,048 env steps (5 %), 5 replicates, random-mask
#    control (a random mask with the ticket's per-layer counts, weights from θk; docs/lottery.md §6) at level 5;
#    A+ adds reinit (the ticket's mask, a fresh init) at level 5.
CARTPOLE="--env CartPole-v1 --algo ppo --env-steps 40960 --eval-every 5120 --strategy global --prune-fraction 0.4"
# C. DQN on CartPole-v1 (rl-zoo's recipe, 256-256 ReLU Q-network), 40,960 env steps, 3 replicates,
#    one global level at 80 % pruned (20 % left), late rewinding to 2,048.
DQN="--env CartPole-v1 --algo dqn --env-steps 40960 --eval-every 5120 --strategy global --prune-fraction 0.8 --levels 1 --rewind-iter 2048 --replicates 3"
# L. LunarLander-v3, PPO at a reduced length (102,400 env steps, ~10 % of what solving it takes; the recipe
#    is the zoo's LunarLander one scaled to a short run: 8 envs x 256 steps, minibatch 128, 4 epochs,
#    gamma 0.999, GAE 0.98, entropy 0.01, lr 3e-4 constant), layerwise 50 %/level (actor head at 25 %:
#    global pruning removes SB3's gain-0.01 action head, README B), 1 level, rewind to 4,096, 3 replicates.
LUNAR="--env LunarLander-v3 --algo ppo --env-steps 102400 --eval-every 20480 --n-envs 8 --n-steps 256 --batch-size 128 \
  --n-epochs 4 --gamma 0.999 --gae-lambda 0.98 --ent-coef 0.01 --lr 3e-4 --lr-schedule constant --val-episodes 10 \
  --strategy layerwise --prune-fraction 0.5 --levels 1 --rewind-iter 4096 --replicates 3"
# LF. L at its full length (1,024,000 env steps, evaluation every 102,400, so the headline is the mean over
#    the second half), 2 worker processes (the 3 seeds of a level at once). Run after the others, when CPU freed.
LUNAR_FULL="${LUNAR/--env-steps 102400 --eval-every 20480/--env-steps 1024000 --eval-every 102400}"

# AL. A with layerwise pruning (each layer 40 %/level, the actor's output layer action_net at 20 %/level,
#    LTH's output-layer rule; 8.1 % left at level 5), 5 replicates (3 first, 2 added at the end), random mask at level 5: in A, global pruning left
#    SB3's gain-0.01 actor head action_net with 0-10 of its 128 weights, and every ticket whose head was
#    emptied scored 9.4 (a constant action), ticket and control alike.
CARTPOLE_LW="--env CartPole-v1 --algo ppo --env-steps 40960 --eval-every 5120 --strategy layerwise --prune-fraction 0.4"
# AL2. Training length: AL at twice the env steps (81,920 per level, evaluation every 10,240, so the headline is
#    the mean over 40,960-81,920), 3 replicates, random mask at level 5. Added at the end with the time left.
CARTPOLE_LW2="--env CartPole-v1 --algo ppo --env-steps 81920 --eval-every 10240 --strategy layerwise --prune-fraction 0.4"

for part in $PARTS; do
  case $part in
    A)  run $CARTPOLE --levels 5 --rewind-iter 2048 --replicates 5 --controls random_mask --control-levels 5 ;;
    C)  run $DQN ;;
    AL) run $CARTPOLE_LW --levels 5 --rewind-iter 2048 --replicates 5 --controls random_mask --control-levels 5 ;;
    AL2) run $CARTPOLE_LW2 --levels 5 --rewind-iter 2048 --replicates 3 --controls random_mask --control-levels 5 ;;
    L)  run $LUNAR ;;
    LF) run $LUNAR_FULL --workers 2 ;;
    C+) run $DQN --controls random_mask --control-levels 1 ;;                       # the DQN random mask, if time
    A+) run $CARTPOLE --levels 5 --rewind-iter 2048 --replicates 5 --controls random_mask,reinit --control-levels 5 ;;
    *)  echo "unknown part $part"; exit 2 ;;
  esac
done
