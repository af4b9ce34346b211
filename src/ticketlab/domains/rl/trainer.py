"""Training an RL agent with stable-baselines3 as a `Trainer` for the lottery engine.

Yu et al. 2019 (arXiv 1906.02768) §3–4 run IMP with late rewinding on RL agents; here the agent
is trained by stable-baselines3's own `learn()` (PPO, A2C, DQN), and a callback does what the
engine needs at the points where the agent's state is complete (between rollouts):

- snapshots `snapshot_<k>.pt` of the agent before env step k (θ0, the rewind point θk);
- every `eval_every` env steps, an evaluation on fixed episodes of separate environments:
  `val_return` over `val_episodes` validation episodes (which select the early-stopping
  point) and `eval_return` over `eval_episodes` test episodes, with its std, episode count and
  standard error (`eval_return_sem`), with the deterministic policy; a row of `metrics.jsonl`;
- the headline (`summary["headline"]`): the mean test return over the last evaluations after the
  run's start, with its standard error (`ticketlab.training.final_evals`, issue #18): what the
  tables and the report show as the run's return, rather than the early-stopping pick;
- a resumable `checkpoint.pt` every `checkpoint_every` env steps (rounded up to evaluations).

**Segments.** Training is cut into segments at the run's start and at every multiple of
`eval_every`. A segment starts from a pure function of (data seed, env step): the training
environments are re-seeded and reset (an episode in flight is truncated, which PPO and DQN
treat as a time limit: they bootstrap from the value of the last state), and the torch, numpy,
python and action-space RNGs are re-seeded. So the agent's state at a segment boundary is its
weights, its optimizer state, the env-step counter and (DQN) the replay buffer — exactly what a
checkpoint holds. Hence a resumed run repeats the uninterrupted run bit for bit, and a rewound
run from θk with the same mask, optimizer state and k at a boundary repeats level 0 (PPO/A2C;
a rewound DQN run starts with an empty replay buffer, see below).

What a resume restores: weights (actor, critic / Q-network and target network), optimizer
state, env-step counter, metrics rows, elapsed and evaluation time, and for DQN the replay
buffer (its filled part, as tensors); the RNGs and environments are re-seeded by the segment
rule rather than restored. Checkpoints load with `torch.load(weights_only=True)`.

What late rewinding restores (`Replicate.plan_rewind`): the agent's weights at env step k (and
its optimizer state with `rewind_optimizer`); the env-step counter continues from k, so the
learning-rate, clip-range and exploration schedules are at k (or restart with
`rewind_schedule` off: the engine's `lr_offset`). A DQN replay buffer is *not* rewound: it
starts empty at k and `learning_starts` random-action steps refill it before the first update,
as at the start of level 0.

Divergence is a result (docs/architecture/divergence.md): SB3 computes the loss inside its own
`train()`, so a hook before each optimizer step checks the gradient the loss gave. A non-finite one
(the loss was NaN or infinite) stops the run at once, before the step is applied: the last metrics
row (at that env step) has null metrics, `final.pt` holds the last finite weights, and the summary
records `"diverged": {"iteration": N}`, N the env step after which that update ran (the same key
as the supervised loop; the lottery cannot prune from it).
"""

from __future__ import annotations

import logging
import math
import random
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger

from ticketlab.core.progress import bar as progress_bar
from ticketlab.core.errors import ConfigError
from ticketlab.domains.rl import agent as A
from ticketlab.domains.rl.config import RLConfig, resolve, rollout_size
from ticketlab.domains.rl.envs import env_spaces, evaluate, is_pixels, make_env, make_vec_env, reset_vec_env
from ticketlab.training import device as _device, final_evals, precision as _precision, rundir, timing
from ticketlab.training.rundir import RunDir

log = logging.getLogger(__name__)

METRIC = "eval_return"
HEADLINE = "final_return"  # the mean test return over the final evaluations (see `headline`)
VAL_SEED_OFFSET = 100_000


def segment_seeds(data_seed: int, it: int) -> tuple[int, int]:
    """(RNG seed, environment seed) of the segment starting at env step `it`."""
    a, b = np.random.SeedSequence([data_seed, it]).generate_state(2)
    return int(a), int(b)


def headline(rows: Sequence[dict], start_iter: int) -> dict:
    """The run's headline return: the mean test return over its last `final_evals.FINAL_EVALS`
    evaluations after `start_iter`, with its standard error over their pooled episodes; None when no
    evaluation after the start has a return (a run that diverged before its first one)."""
    mean = final_evals.final_mean(rows, METRIC, start_iter)
    return None if mean is None else {"name": HEADLINE, "of": METRIC, **mean}


def early_stopping(rows: Sequence[dict]) -> dict:
    """The evaluation with the best validation return (first on ties): the early-stopping point."""
    return rundir.early_stopping(rows, "val_return", higher_is_better=True)


class RLTrainer:
    """Trains one RL agent configured by an `RLConfig` (one replicate's seeds)."""

    def __init__(self, cfg: RLConfig, *, progress: bool = False, checkpoint_every: int = 10_000):
        self.cfg = cfg
        self.pixels = is_pixels(cfg.env)
        self.hp = resolve(cfg, pixels=self.pixels)
        self.obs_space, self.action_space = env_spaces(cfg.env)
        self.progress = progress
        self.checkpoint_every = checkpoint_every

    @property
    def total_iterations(self) -> int:
        return self.cfg.env_steps

    @property
    def rollout(self) -> int:
        """Env steps per rollout: evaluations, checkpoints and rewind points fall on its multiples."""
        return rollout_size(self.hp, self.cfg.algo)

    def build(self, seed: int) -> torch.nn.Module:
        return A.build_policy(self.cfg.algo, self.hp, self.obs_space, self.action_space, self.pixels, seed)

    def prunable(self, model):
        return A.prunable(model, self.cfg.algo, self.cfg.keep_dense)

    def output_layer(self, model):
        return A.output_layer(model, self.cfg.algo)

    def check_points(self, points: Sequence[int]) -> None:
        """Raise ConfigError unless each env step in `points` falls between two rollouts."""
        for k in points:
            if k % self.rollout:
                raise ConfigError(f"rewind_iter: got {k}, expected a multiple of the rollout size "
                                  f"({self.rollout} env steps for this {self.cfg.algo} config)")

    # ---- training ----
    def fit(self, model, run_dir: Path, *, masks=None, start_iter: int = 0, start_optimizer=None,
            lr_offset: int = 0, snapshot_iters: Sequence[int] = (), data_seed: int | None = None,
            desc: str = "") -> dict:
        rd = RunDir(run_dir)
        if rd.done():
            return rd.summary()
        check_precision()
        rd.create()
        T = self.total_iterations
        if not 0 <= start_iter <= T:
            raise ValueError(f"start_iter {start_iter} outside [0, {T}]")
        self.check_points([start_iter, *snapshot_iters])
        return _Run(self, rd, model, masks=masks, start_iter=start_iter, start_optimizer=start_optimizer,
                    lr_offset=lr_offset, snapshot_iters=snapshot_iters,
                    data_seed=self.cfg.data_seed if data_seed is None else data_seed, desc=desc).train()


def check_precision() -> None:
    """RL agents train in SB3's own loop, with no autocast around it: fp32 only (issue 16)."""
    if _precision.current() != _precision.DEFAULT:
        raise ConfigError(f"precision: got {_precision.current()!r}, but RL agents train in SB3's loop in "
                          f"fp32; use --precision fp32")


def make_algorithm(cfg: RLConfig, hp: dict, venv, pixels: bool, *, start_iter: int, lr_offset: int):
    """The SB3 algorithm around `venv`, its schedules positioned in env steps of the whole run
    (`lr_offset`: the engine's schedule shift) and its logger silenced."""
    T = cfg.env_steps
    common = dict(env=venv, learning_rate=A.linear_or_constant(hp["lr_schedule"], hp["lr"], T, lr_offset),
                  gamma=hp["gamma"], max_grad_norm=hp["max_grad_norm"], policy_kwargs=A.policy_kwargs(cfg.algo, hp),
                  device=str(_device.resolve()), verbose=0, seed=None)  # SB3's own device argument
    cls, policy = A.algorithm_class(cfg.algo), A.policy_class(cfg.algo, pixels)
    if cfg.algo == "ppo":
        algo = cls(policy, n_steps=hp["n_steps"], batch_size=hp["batch_size"], n_epochs=hp["n_epochs"],
                   gae_lambda=hp["gae_lambda"], clip_range=A.linear_or_constant(hp["clip_schedule"], hp["clip_range"],
                                                                                 T, lr_offset),
                   ent_coef=hp["ent_coef"], vf_coef=hp["vf_coef"], **common)
    elif cfg.algo == "a2c":
        algo = cls(policy, n_steps=hp["n_steps"], gae_lambda=hp["gae_lambda"], ent_coef=hp["ent_coef"],
                   vf_coef=hp["vf_coef"], use_rms_prop=True, rms_prop_eps=1e-5, **common)
    else:
        algo = cls(policy, buffer_size=hp["buffer_size"], learning_starts=start_iter + hp["learning_starts"],
                   batch_size=hp["batch_size"], train_freq=hp["train_freq"], gradient_steps=hp["gradient_steps"],
                   target_update_interval=hp["target_update_interval"],
                   exploration_fraction=hp["exploration_fraction"],
                   exploration_final_eps=hp["exploration_final_eps"], **common)
        algo.exploration_schedule = A.shifted(algo.exploration_schedule, T, lr_offset)
    algo.set_logger(Logger(folder=None, output_formats=[]))
    return algo


class _Diverged(Exception):
    """Raised from inside SB3's update when its loss's gradient is not finite; caught by `_Run.train`."""

    def __init__(self, step: int):
        super().__init__(step)
        self.step = step


class _Run:
    """One training run: the SB3 algorithm, its evaluation environments, rows and files."""

    def __init__(self, trainer: RLTrainer, rd: RunDir, model, *, masks, start_iter, start_optimizer, lr_offset,
                 snapshot_iters, data_seed, desc):
        cfg, hp = trainer.cfg, trainer.hp
        self.trainer, self.cfg, self.hp, self.rd = trainer, cfg, hp, rd
        self.T, self.start_iter, self.data_seed, self.masks = cfg.env_steps, start_iter, data_seed, masks
        self.venv = make_vec_env(cfg.env, hp["n_envs"])
        self.algo = make_algorithm(cfg, hp, self.venv, trainer.pixels, start_iter=start_iter, lr_offset=lr_offset)
        self.policy = self.algo.policy
        self.dqn = cfg.algo == "dqn"
        self.elapsed = self.eval_time = self.cpu = 0.0
        resumed = rd.resume(masks)
        if resumed is not None:
            st, self.rows = resumed
            self.it = int(st["iteration"])
            self.policy.load_state_dict(st["model"])
            self.policy.optimizer.load_state_dict(st["optimizer"])
            if self.dqn:
                A.load_replay_state(self.algo.replay_buffer, st["replay"])
            self.elapsed, self.eval_time = float(st["elapsed"]), float(st["eval_time"])
            self.cpu = float(st.get("cpu", 0.0))
        else:
            self.it = start_iter
            self.policy.load_state_dict(model.state_dict())
            if start_optimizer is not None:
                self.policy.optimizer.load_state_dict(start_optimizer)
            self.rows = []
        self.hooks = None
        if masks:
            self.hooks = A.MaskHooks(self.policy, masks, self.policy.optimizer, A.shadows(self.policy, cfg.algo, masks))
        self.snapshots = sorted({k for k in snapshot_iters if self.it <= k <= self.T})
        ev = max(cfg.eval_every, 1)
        self.ckpt_every = max(ev, math.ceil(trainer.checkpoint_every / ev) * ev)
        n_eval = cfg.val_episodes + cfg.eval_episodes
        self.eval_envs = [make_env(cfg.env, train=False) for _ in range(n_eval)]
        self.eval_seeds = ([cfg.eval_seed + VAL_SEED_OFFSET + j for j in range(cfg.val_episodes)]
                           + [cfg.eval_seed + i for i in range(cfg.eval_episodes)])
        self.train_returns: list[float] = []
        self.diverged: int | None = None
        self.guard = self.policy.optimizer.register_step_pre_hook(self.check_finite)
        self.bar = progress_bar(self.T, enabled=trainer.progress, initial=self.it, desc=desc or "rl", unit="step")
        self._bar_at = self.it

    # ---- what happens between two rollouts ----
    def boundary(self, s: int, first: bool = False) -> None:
        """The agent is complete before env step s: snapshot, evaluate, checkpoint, start a segment."""
        if s in self.snapshots:
            self.save(rundir.snapshot_name(s), s)
        if not (first or s % self.cfg.eval_every == 0):
            return
        if not self.rows or self.rows[-1]["iter"] < s:
            self.record(s)
        if not first and s % self.ckpt_every == 0 and s < self.T:
            extra = dict(elapsed=self.clock.wall(), cpu=self.clock.cpu(), eval_time=self.eval_time)
            if self.dqn:
                extra["replay"] = A.replay_state(self.algo.replay_buffer)
            self.rd.checkpoint(self.rows, s, **self.state(**extra))
        self.start_segment(s)

    def start_segment(self, s: int) -> None:
        """Re-seed every RNG and reset every training environment from (data seed, s)."""
        rng_seed, env_seed = segment_seeds(self.data_seed, s)
        torch.manual_seed(rng_seed)
        np.random.seed(rng_seed % 2**32)
        random.seed(rng_seed)
        algo = self.algo
        algo.action_space.seed(env_seed)
        algo._last_obs = reset_vec_env(self.venv, env_seed)
        algo._last_episode_starts = np.ones(self.venv.num_envs, dtype=bool)
        algo._update_current_progress_remaining(s, self.T)
        if self.dqn:  # SB3 sets it after each step; the next step must see the value at s
            algo.exploration_rate = algo.exploration_schedule(algo._current_progress_remaining)
            algo._n_calls = s // self.venv.num_envs
        if self.hooks is not None:
            self.hooks.sync()

    def check_finite(self, optimizer, args, kwargs) -> None:
        """Before each optimizer step: stop the run when the loss's gradient is NaN or infinite."""
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        if grads and not bool(torch.stack([torch.isfinite(g).all() for g in grads]).all()):
            raise _Diverged(self.algo.num_timesteps)

    def record(self, s: int) -> None:
        """One evaluation: validation and test episodes, and the training episodes since the last row."""
        t = time.perf_counter()
        returns, lengths = evaluate(self.policy, self.eval_envs, self.eval_seeds, self.cfg.eval_max_steps)
        self.eval_time += time.perf_counter() - t
        V = self.cfg.val_episodes
        test = returns[V:]
        tr = self.train_returns
        sem = float(test.std(ddof=1) / math.sqrt(len(test))) if len(test) > 1 else None
        self.rows.append({"iter": s, "val_return": float(returns[:V].mean()), "eval_return": float(test.mean()),
                          "eval_return_std": float(test.std()), "eval_return_n": len(test), "eval_return_sem": sem,
                          "eval_length": float(lengths[V:].mean()),
                          "train_return": float(np.mean(tr)) if tr else None, "train_episodes": len(tr)})
        self.train_returns = []
        if self.bar is not None:
            self.bar.set_postfix(eval_return=f"{test.mean():.1f}", refresh=False)

    def state(self, **extra) -> dict:
        """The agent's state file: policy weights, masks, optimizer state, and `extra`."""
        return dict(model=self.policy.state_dict(), masks=dict(self.masks or {}),
                    optimizer=self.policy.optimizer.state_dict(), **extra)

    def save(self, name: str, s: int) -> None:
        self.rd.save(name, s, **self.state())

    # ---- the run ----
    def train(self) -> dict:
        self.clock = timing.StackClock(self.elapsed, self.cpu)
        self.algo.num_timesteps = self.it
        self.boundary(self.it, first=True)
        try:
            if self.it < self.T:
                self.algo.learn(self.T - self.it, callback=_Callback(self), reset_num_timesteps=False,
                                log_interval=None)
        except _Diverged as d:
            self.diverged = end = d.step
            log.warning("%s: the training loss became NaN or infinite at env step %d: diverged", self.rd.path, end)
            row = {k: None for k in self.rows[-1]}
            self.rows.append({**row, "iter": end, "train_episodes": 0})  # metrics after a divergence: null
        else:
            end = self.T
            if self.T in self.snapshots and self.start_iter < self.T:
                self.save(rundir.snapshot_name(self.T), self.T)
            if self.rows[-1]["iter"] < self.T:
                self.record(self.T)
        self.guard.remove()
        stack_time = self.clock.fields(1)  # an RL agent trains alone: its stack is itself
        wall = stack_time["stack_wall_time_s"]
        if self.bar is not None:
            self.bar.close()
        if self.hooks is not None:
            self.hooks.remove()
        self.save(rundir.FINAL, end)
        steps = end - self.start_iter
        summary = {"iterations": self.T, "start_iter": self.start_iter, "metric": METRIC,
                   "final": self.rows[-1], "early_stop": early_stopping(self.rows),
                   "headline": headline(self.rows, self.start_iter),
                   "best_score": max((r[METRIC] for r in self.rows if r[METRIC] is not None), default=None),
                   **stack_time,
                   "eval_time_s": self.eval_time,
                   "env_steps_per_s": steps / max(wall - self.eval_time, 1e-9) if steps else None,
                   "trained_with": 1, "env": self.cfg.env, "algo": self.cfg.algo,
                   "trained_on": _device.describe(self.policy.device), **_precision.summary(),
                   "hyperparameters": {k: list(v) if isinstance(v, tuple) else v for k, v in self.hp.items()},
                   **({"diverged": {"iteration": self.diverged}} if self.diverged is not None else {})}
        self.rd.finish(self.rows, summary)
        self.venv.close()
        for e in self.eval_envs:
            e.close()
        return summary


class _Callback(BaseCallback):
    """SB3 callback: segment boundaries between rollouts, training-episode returns, progress."""

    def __init__(self, run: _Run):
        super().__init__(verbose=0)
        self.run = run

    def _on_rollout_start(self) -> None:
        if self.model.num_timesteps != self.run.it:  # the run's first boundary was handled before learn()
            self.run.boundary(self.model.num_timesteps)

    def _on_step(self) -> bool:
        dones = self.locals["dones"]
        if dones.any():
            for info, done in zip(self.locals["infos"], dones):
                ep = info.get("episode") if done else None
                if ep is not None:
                    self.run.train_returns.append(float(ep["r"]))
        return True

    def _on_rollout_end(self) -> None:
        bar = self.run.bar
        if bar is not None:
            bar.update(self.model.num_timesteps - self.run._bar_at)
            self.run._bar_at = self.model.num_timesteps


__all__ = ["RLTrainer", "make_algorithm", "early_stopping", "headline", "segment_seeds", "METRIC", "HEADLINE"]
