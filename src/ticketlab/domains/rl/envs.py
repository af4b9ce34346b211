"""Environments of the RL task: gymnasium classic control and Box2D, ALE Atari, and evaluation.

- Classic control and Box2D (CartPole-v1, Acrobot-v1, LunarLander-v3, ...): `gymnasium.make`,
  wrapped in SB3's `Monitor` so that training episodes report their return.
- Atari (`ALE/<Game>-v5`, ROMs shipped in the ale-py wheel): the standard preprocessing of
  Mnih et al. 2015 as stable-baselines3's `AtariWrapper` does it — no-op starts (up to 30),
  4-frame skip with a max over the last two frames, loss of life ends a training episode,
  FIRE on reset where the game needs it, 84×84 grayscale frames, rewards clipped to their
  sign during training — and 4 stacked frames. v5's sticky actions (p = 0.25, Machado et al.
  2018) stay on. The resize is an area average (OpenCV's INTER_AREA, which SB3 and gymnasium
  call) done with two small matrix products, so that OpenCV is not needed.
- Training environments are vectorized (`DummyVecEnv`: one process, stepped in turn; the
  machine has 2 cores and the agent's own updates dominate). `reset_vec_env` re-seeds and
  really resets them (an Atari game too, not just the life) at every segment boundary
  (`ticketlab.domains.rl.trainer`).
- `evaluate` plays one episode per seed with the deterministic policy, all episodes stepped
  together so that the network runs on a batch; evaluation environments never clip rewards
  or end episodes on a lost life (the reported return is the game score).
"""

from __future__ import annotations

import functools

import gymnasium as gym
import numpy as np
import torch

from ticketlab.core.errors import ConfigError

FRAME_STACK = 4
SCREEN = 84


def is_pixels(env_id: str) -> bool:
    """Whether `env_id` is an Atari game (pixel observations, Atari preprocessing)."""
    return env_id.startswith("ALE/") or "NoFrameskip" in env_id


def _register_ale() -> None:
    import ale_py  # registers the ALE/* ids; ships the ROMs
    gym.register_envs(ale_py)


def check_env_id(env_id: str) -> None:
    """Raise ConfigError unless `env_id` names an installed gymnasium environment."""
    if is_pixels(env_id):
        _register_ale()
    try:
        gym.spec(env_id)
    except gym.error.Error as e:
        raise ConfigError(f"env: {env_id!r} is not a gymnasium environment ({e}); e.g. CartPole-v1, "
                          "Acrobot-v1, LunarLander-v3, ALE/Pong-v5") from None


class AreaResize(gym.ObservationWrapper):
    """Resize a 2-D uint8 frame to (height, width) by area averaging (OpenCV INTER_AREA when shrinking).

    Each output pixel is the mean of the input area it covers, fractional pixels weighted by
    their overlap: out = Rows @ frame @ Cols.T with Rows [h, H] and Cols [w, W] row-stochastic.
    The products run in torch (one thread): numpy's multi-threaded BLAS was measured 25–250×
    slower on these small matrices when the cores are shared."""

    def __init__(self, env: gym.Env, size: int = SCREEN):
        super().__init__(env)
        H, W = env.observation_space.shape
        self._rows = torch.from_numpy(_area_weights(H, size))
        self._cols_t = torch.from_numpy(_area_weights(W, size)).T.contiguous()
        self.observation_space = gym.spaces.Box(0, 255, (size, size), np.uint8)

    def observation(self, frame: np.ndarray) -> np.ndarray:
        out = self._rows @ torch.from_numpy(frame).float() @ self._cols_t  # [84, 84]
        return out.round_().clamp_(0, 255).to(torch.uint8).numpy()


def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in]: the fraction of output cell i covered by input pixel j, rows summing to 1."""
    scale = n_in / n_out
    w = np.zeros((n_out, n_in), np.float32)
    for i in range(n_out):
        lo, hi = i * scale, (i + 1) * scale
        for j in range(int(np.floor(lo)), min(int(np.ceil(hi)), n_in)):
            w[i, j] = min(hi, j + 1) - max(lo, j)
    return w / w.sum(1, keepdims=True)


def make_env(env_id: str, *, train: bool) -> gym.Env:
    """One environment; training ones are wrapped in SB3's Monitor (episode returns in `info`)."""
    from stable_baselines3.common.monitor import Monitor

    if not is_pixels(env_id):
        env = gym.make(env_id)
        return Monitor(env) if train else env
    from stable_baselines3.common.atari_wrappers import (ClipRewardEnv, EpisodicLifeEnv, FireResetEnv,
                                                         MaxAndSkipEnv, NoopResetEnv)
    _register_ale()
    env = gym.make(env_id, frameskip=1, obs_type="grayscale")  # [210, 160] uint8; we skip frames
    if train:
        env = Monitor(env)  # innermost: game score and length, before clipping and life loss
    env = NoopResetEnv(env, noop_max=30)
    env = MaxAndSkipEnv(env, skip=4)
    if train:
        env = EpisodicLifeEnv(env)
    if "FIRE" in env.unwrapped.get_action_meanings():
        env = FireResetEnv(env)
    env = AreaResize(env, SCREEN)
    if train:
        env = ClipRewardEnv(env)
    return gym.wrappers.FrameStackObservation(env, FRAME_STACK)  # [4, 84, 84], channels first


@functools.lru_cache(maxsize=16)
def env_spaces(env_id: str) -> tuple[gym.Space, gym.Space]:
    """(observation space, action space) of the environment as the agent sees it."""
    env = make_env(env_id, train=False)
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def make_vec_env(env_id: str, n_envs: int):
    """`n_envs` training environments stepped in this process (SB3 `DummyVecEnv`)."""
    from stable_baselines3.common.vec_env import DummyVecEnv
    return DummyVecEnv([functools.partial(make_env, env_id, train=True) for _ in range(n_envs)])


def reset_vec_env(venv, seed: int) -> np.ndarray:
    """Start a fresh episode in every environment, env i from seed `seed + i`; returns the observations.

    Atari's EpisodicLifeEnv would only replay a lost life: the game is reset for real."""
    from stable_baselines3.common.atari_wrappers import EpisodicLifeEnv
    for env in venv.envs:
        e = env
        while isinstance(e, gym.Wrapper):
            if isinstance(e, EpisodicLifeEnv):
                e.was_real_done = True
            e = e.env
    venv.seed(seed)
    return venv.reset()


def evaluate(policy, envs: list[gym.Env], seeds: list[int], max_steps: int | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """(returns, lengths): one episode per (env, seed) with the deterministic policy (greedy
    action / most likely action), all episodes stepped together; an episode also stops after
    `max_steps` steps."""
    n = len(seeds)
    returns, lengths = np.zeros(n), np.zeros(n, dtype=np.int64)
    obs = [env.reset(seed=int(s))[0] for env, s in zip(envs, seeds)]
    active = list(range(n))
    while active:
        actions, _ = policy.predict(np.stack([obs[i] for i in active]), deterministic=True)
        still = []
        for i, a in zip(active, actions):
            o, r, terminated, truncated, _ = envs[i].step(a)
            returns[i] += float(r)
            lengths[i] += 1
            if not (terminated or truncated or (max_steps is not None and lengths[i] >= max_steps)):
                obs[i] = o
                still.append(i)
        active = still
    return returns, lengths


__all__ = ["is_pixels", "check_env_id", "make_env", "make_vec_env", "env_spaces", "reset_vec_env", "evaluate",
           "AreaResize"]
