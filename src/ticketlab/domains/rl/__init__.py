"""Lottery tickets in reinforcement learning (Yu, Edunov, Tian & Morcos 2019, arXiv 1906.02768).

Agents are trained with stable-baselines3 (PPO, A2C, DQN) on gymnasium environments
(classic control, Box2D, ALE Atari); the lottery engine prunes and rewinds their networks.

    ticketlab lottery --task rl --env CartPole-v1 --algo ppo --strategy global --prune-fraction 0.3 \\
        --rewind-iter 2560 --levels 9 --controls reinit,random_mask --workers 1

    from ticketlab import api
    from ticketlab.experiments.lottery.trunk import LotteryConfig
    from ticketlab.domains.rl import RLConfig
    res = api.lottery(RLConfig(env="CartPole-v1", algo="ppo"), LotteryConfig(strategy="global", levels=2))

Modules: `config` (RLConfig), `envs` (environments, Atari preprocessing, evaluation), `agent` (the
prunable policy module, mask hooks inside SB3), `trainer` (the Trainer), `task` (registration).
Importing this package does not import stable-baselines3.
"""

from ticketlab.domains.rl.config import RLConfig

__all__ = ["RLConfig"]
