"""The training recipe of a reinforcement-learning agent (`ticketlab lottery --task rl`).

Yu, Edunov, Tian & Morcos 2019 ("Playing the lottery with rewards and multiple languages",
arXiv 1906.02768) §3 prune RL agents on discrete-action classic control and Atari. Their
algorithms, network sizes and budgets were not found (docs/rl_nlp.md §2), so a recipe here is a stable-baselines3 algorithm (PPO, A2C or DQN) with its
hyper-parameters as config fields.

Algorithm fields left at None take the algorithm's default from `DEFAULTS`, which are
rl-baselines3-zoo's tuned CartPole-v1 values for PPO and DQN and stable-baselines3's own
defaults for A2C; `resolve(cfg)` returns the values a run uses (each run also records them
in its summary). A field that does not apply to the chosen algorithm must stay None (checked
on construction, with the lengths, by `resolve`).
The identity of an experiment hashes the fields as given (None included), so changing
`DEFAULTS` changes the meaning of existing experiments: don't, add a field instead.

Units: every length is in environment steps summed over the vectorized environments
(`env_steps`, `eval_every`, the engine's `rewind_iter`), the unit of SB3's `num_timesteps`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ticketlab.core.config import Config, param
from ticketlab.core.errors import ConfigError

ALGOS = ("ppo", "a2c", "dqn")

# Per-algorithm defaults of the fields left at None.
DEFAULTS: dict[str, dict] = {
    # rl-baselines3-zoo hyperparams/ppo.yml, CartPole-v1 ("Tuned"); net: SB3's default
    "ppo": dict(n_envs=8, net_arch=(64, 64), activation="tanh", lr=1e-3, lr_schedule="linear", gamma=0.98,
                n_steps=32, batch_size=256, n_epochs=20, gae_lambda=0.8, clip_range=0.2, clip_schedule="linear",
                ent_coef=0.0, vf_coef=0.5, max_grad_norm=0.5),
    # stable-baselines3 A2C defaults (RMSprop, alpha 0.99, eps 1e-5), 8 environments as in the zoo
    "a2c": dict(n_envs=8, net_arch=(64, 64), activation="tanh", lr=7e-4, lr_schedule="constant", gamma=0.99,
                n_steps=5, gae_lambda=1.0, ent_coef=0.0, vf_coef=0.5, max_grad_norm=0.5),
    # rl-baselines3-zoo hyperparams/dqn.yml, CartPole-v1 ("Almost Tuned")
    "dqn": dict(n_envs=1, net_arch=(256, 256), activation="relu", lr=2.3e-3, lr_schedule="constant", gamma=0.99,
                batch_size=64, buffer_size=100_000, learning_starts=1000, train_freq=256, gradient_steps=128,
                target_update_interval=10, exploration_fraction=0.16, exploration_final_eps=0.04,
                max_grad_norm=10.0),
}
# The pixel (Atari) networks: NatureCNN features, then these hidden layers (SB3's CNN default: none)
CNN_NET_ARCH: tuple[int, ...] = ()


@dataclass(frozen=True)
class RLConfig(Config):
    """One RL training run: environment, algorithm, its hyper-parameters, evaluation and seeds."""

    env: str = param("CartPole-v1", "gymnasium environment id, e.g. CartPole-v1, Acrobot-v1, LunarLander-v3, "
                                    "ALE/Pong-v5 (Atari: standard preprocessing, 4 stacked 84x84 frames)")
    algo: str = param("ppo", "stable-baselines3 algorithm", choices=ALGOS)
    env_steps: int = param(51_200, "training length in environment steps (all vectorized envs together)", min=1)
    n_envs: int | None = param(None, "vectorized training environments (None: ppo/a2c 8, dqn 1)", min=1)
    net_arch: tuple[int, ...] | None = param(
        None, "hidden layer widths of each network (actor and critic each, or the Q-network); "
              "None: ppo/a2c 64,64, dqn 256,256, pixels: NatureCNN only", min=1)
    activation: str | None = param(None, "hidden activation (None: ppo/a2c tanh, dqn relu)", choices=("tanh", "relu"))
    keep_dense: str = param("none", "which part of an actor-critic agent is never pruned: none, the value "
                                    "head (value_net), or the whole critic", choices=("none", "value_head", "critic"))
    lr: float | None = param(None, "learning rate (None: ppo 1e-3, a2c 7e-4, dqn 2.3e-3)", min=0.0)
    lr_schedule: str | None = param(None, "learning-rate schedule over env steps (None: ppo linear, else constant)",
                                    choices=("constant", "linear"))
    gamma: float | None = param(None, "discount factor (None: ppo 0.98, else 0.99)", min=0.0, max=1.0)
    batch_size: int | None = param(None, "ppo/dqn minibatch size (None: ppo 256, dqn 64)", min=2)
    max_grad_norm: float | None = param(None, "gradient-norm clip (None: ppo/a2c 0.5, dqn 10)", min=0.0)
    # ---- on-policy (ppo, a2c) ----
    n_steps: int | None = param(None, "ppo/a2c: steps per environment per rollout (None: ppo 32, a2c 5)", min=1)
    n_epochs: int | None = param(None, "ppo: epochs over each rollout (None: 20)", min=1)
    gae_lambda: float | None = param(None, "ppo/a2c: GAE lambda (None: ppo 0.8, a2c 1.0)", min=0.0, max=1.0)
    clip_range: float | None = param(None, "ppo: clip range (None: 0.2)", min=0.0)
    clip_schedule: str | None = param(None, "ppo: clip-range schedule (None: linear)", choices=("constant", "linear"))
    ent_coef: float | None = param(None, "ppo/a2c: entropy coefficient (None: 0)", min=0.0)
    vf_coef: float | None = param(None, "ppo/a2c: value-loss coefficient (None: 0.5)", min=0.0)
    # ---- off-policy (dqn) ----
    buffer_size: int | None = param(None, "dqn: replay buffer size (None: 100000)", min=1)
    learning_starts: int | None = param(
        None, "dqn: random-action steps before learning, counted from the run's start (None: 1000)", min=0)
    train_freq: int | None = param(None, "dqn: env steps per environment between updates (None: 256)", min=1)
    gradient_steps: int | None = param(None, "dqn: gradient steps per update (None: 128)", min=1)
    target_update_interval: int | None = param(None, "dqn: env steps between target-network copies (None: 10)", min=1)
    exploration_fraction: float | None = param(None, "dqn: fraction of the run over which epsilon decays (None: 0.16)",
                                               min=0.0, max=1.0)
    exploration_final_eps: float | None = param(None, "dqn: final epsilon (None: 0.04)", min=0.0, max=1.0)
    # ---- evaluation ----
    eval_every: int = param(5_120, "evaluate every N env steps (a multiple of the rollout size)", min=1)
    # 20 each (issue #18): with 5 or 10 episodes a CartPole mean moves by tens of points between
    # evaluations of the same policy; 20 test episodes at each of the final evaluations give the
    # headline return over about 100 episodes (see ticketlab.training.final_evals).
    eval_episodes: int = param(20, "test episodes per evaluation (the reported return; its standard error is "
                                   "recorded beside it)", min=1)
    val_episodes: int = param(20, "validation episodes per evaluation (select the early-stopping point)", min=1)
    eval_seed: int = param(1_000_000, "test episode i starts from seed eval_seed + i, validation episode j from "
                                      "eval_seed + 100000 + j (the same episodes at every evaluation)", min=0)
    eval_max_steps: int | None = param(None, "cap on an evaluation episode's length (None: the env's own limit)",
                                       min=1)
    # ---- seeds (the engine adds the replicate index to both) ----
    init_seed: int = param(0, "seed of the networks' initialisation", min=0)
    data_seed: int = param(0, "seed of the training environments and of the agent's sampling", min=0)

    def check(self):
        resolve(self)  # fields the algorithm does not use, lengths off the rollout grid


ON_POLICY_ONLY = ("n_steps", "gae_lambda", "ent_coef", "vf_coef")
PPO_ONLY = ("n_epochs", "clip_range", "clip_schedule")
DQN_ONLY = ("buffer_size", "learning_starts", "train_freq", "gradient_steps", "target_update_interval",
            "exploration_fraction", "exploration_final_eps")


def resolve(cfg: RLConfig, pixels: bool = False) -> dict:
    """The hyper-parameters a run uses: the algorithm's `DEFAULTS` (on pixels, no hidden layers after
    the NatureCNN features), overridden by the fields set.

    Raises ConfigError for a field set that the algorithm does not use, or for lengths that do not
    fall between rollouts."""
    own = {"ppo": ON_POLICY_ONLY + PPO_ONLY + ("batch_size",), "a2c": ON_POLICY_ONLY, "dqn": DQN_ONLY + ("batch_size",)}
    foreign = set(ON_POLICY_ONLY + PPO_ONLY + DQN_ONLY + ("batch_size",)) - set(own[cfg.algo])
    for name in sorted(foreign):
        if getattr(cfg, name) is not None:
            raise ConfigError(f"{name}: got {getattr(cfg, name)!r}, but {cfg.algo} does not use it (leave it unset)")
    if cfg.algo == "dqn" and cfg.keep_dense != "none":
        raise ConfigError(f"keep_dense: got {cfg.keep_dense!r}, expected none for dqn (it has no critic)")
    out = dict(DEFAULTS[cfg.algo])
    if pixels:
        out["net_arch"] = CNN_NET_ARCH
    for k in out:
        v = getattr(cfg, k)
        if v is not None:
            out[k] = v
    R = rollout_size(out, cfg.algo)
    for name in ("env_steps", "eval_every"):
        if getattr(cfg, name) % R:
            what = "n_envs × train_freq" if cfg.algo == "dqn" else "n_envs × n_steps"
            raise ConfigError(f"{name}: got {getattr(cfg, name)}, expected a multiple of the rollout size "
                              f"{what} = {R} env steps")
    return out


def rollout_size(hp: dict, algo: str) -> int:
    """Env steps between two points where the agent's state is complete (no half-collected rollout):
    n_envs × n_steps (ppo, a2c) or n_envs × train_freq (dqn). Evaluations, checkpoints and rewind
    points fall on multiples of it."""
    return hp["n_envs"] * (hp["train_freq"] if algo == "dqn" else hp["n_steps"])


__all__ = ["RLConfig", "DEFAULTS", "ALGOS", "resolve", "rollout_size"]
