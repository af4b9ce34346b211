"""The "rl" task: lottery tickets in reinforcement learning (`ticketlab lottery --task rl`).

Yu, Edunov, Tian & Morcos 2019, "Playing the lottery with rewards and multiple languages"
(arXiv 1906.02768, ICLR 2020), RL part: IMP with late rewinding applied unchanged to the
networks of RL agents on discrete-action classic control and Atari. The engine
(`ticketlab.experiments.lottery.trunk`, `ticketlab.experiments.lottery.controls`) prunes, rewinds and runs the controls; this task
only trains agents (`ticketlab.domains.rl.trainer.RLTrainer`). Unit of `rewind_iter`: env steps.
"""

from __future__ import annotations

from ticketlab.core.errors import ConfigError
from ticketlab.domains.rl.config import RLConfig, resolve
from ticketlab.domains.rl.envs import check_env_id, env_spaces, is_pixels
from ticketlab.domains.rl.trainer import METRIC, RLTrainer, check_precision
from ticketlab.engine.tasks import Domain, register_task


def make_trainer(cfg: RLConfig, *, data_dir=None, progress: bool = False,
                 checkpoint_every: int = 10_000) -> RLTrainer:
    """The RL trainer of one replicate (`ticketlab.engine.tasks`); `data_dir` is not used."""
    return RLTrainer(cfg, progress=progress, checkpoint_every=checkpoint_every)


def validate(cfg: RLConfig, data_dir=None) -> None:
    """Check the environment, the algorithm's fields and the lengths before a store folder is made."""
    check_precision()
    check_env_id(cfg.env)
    resolve(cfg, pixels=is_pixels(cfg.env))
    import gymnasium as gym
    _, action_space = env_spaces(cfg.env)
    if cfg.algo == "dqn" and not isinstance(action_space, gym.spaces.Discrete):
        raise ConfigError(f"algo: dqn needs a discrete action space; {cfg.env} has {action_space}")
    if not isinstance(action_space, (gym.spaces.Discrete, gym.spaces.Box)):
        raise ConfigError(f"env: {cfg.env}'s action space {action_space} is neither discrete nor a box")


register_task(Domain("rl", RLConfig, make_trainer, metric=METRIC, higher_is_better=True, extra="rl",
                   validate=validate))
