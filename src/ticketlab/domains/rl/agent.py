"""The agent's networks as one prunable module, and masks enforced inside stable-baselines3.

The module the lottery engine prunes and rewinds is the SB3 *policy*: `ActorCriticPolicy` for
PPO/A2C (a separate actor MLP `mlp_extractor.policy_net` + `action_net`, and critic MLP
`mlp_extractor.value_net` + `value_net`; on pixels a NatureCNN shared by both) or `DQNPolicy`
for DQN (the online Q-network `q_net` and its target copy `q_net_target`). Its `state_dict()`
is the agent: rewinding it restores actor, critic, Q-network and target network together.

Which weights are pruned (Yu et al. 2019 do not say; see docs/rl_nlp.md §3): every Linear/Conv weight of actor and critic (`keep_dense` can spare the value head or
the whole critic), or of the online Q-network. The target network is not pruned on its own
terms: it is a delayed copy of the online network, so it follows the online network's mask
(masked when the run starts; SB3's copy `target ← τ·online + (1 − τ)·target` keeps zeros zero).

Enforcement inside SB3's own loop (it owns backward and `optimizer.step()`), by
`ticketlab.core.masks.enforce`:
- a gradient hook on each pruned tensor masks its gradient as it is computed, so that SB3's
  gradient-norm clipping sees the masked gradient (masking at the optimizer step would clip
  with the pruned weights' gradients counted);
- an optimizer step hook re-zeroes the weights after each step (`MaskEnforcer.after_step`); the
  optimizer state at pruned positions is zeroed when the masks are installed (`MaskEnforcer.install`).
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from ticketlab.core import masks as M
from ticketlab.core.seeds import seeded
from ticketlab.models import prunable_parameters
from ticketlab.training.optim import FUSED

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def algorithm_class(algo: str):
    """The stable-baselines3 class of `algo`."""
    from stable_baselines3 import A2C, DQN, PPO
    return {"ppo": PPO, "a2c": A2C, "dqn": DQN}[algo]


def policy_class(algo: str, pixels: bool):
    """SB3's policy class for `algo` on vector (Mlp) or pixel (Cnn) observations."""
    return algorithm_class(algo).policy_aliases["CnnPolicy" if pixels else "MlpPolicy"]


def policy_kwargs(algo: str, hp: dict) -> dict:
    """Keyword arguments of the policy, the same for `build_policy` and the SB3 algorithm (so that the
    algorithm's own policy has the same parameters, in the same order, and the same optimizer)."""
    arch, act = list(hp["net_arch"]), ACTIVATIONS[hp["activation"]]
    # SB3's own optimizers, made explicit so that `build_policy` matches the algorithm's: Adam with
    # eps 1e-5 for PPO, 1e-8 for DQN, both fused (see ticketlab.training.optim: unfused Adam is up to 7x slower
    # on a pruned network); RMSprop for A2C.
    if algo == "dqn":
        return dict(net_arch=arch, activation_fn=act, optimizer_kwargs=dict(FUSED))
    kw = dict(net_arch=dict(pi=arch, vf=list(arch)), activation_fn=act)  # separate actor and critic MLPs
    if algo == "a2c":
        kw.update(optimizer_class=torch.optim.RMSprop, optimizer_kwargs=dict(alpha=0.99, eps=1e-5, weight_decay=0))
    else:
        kw.update(optimizer_kwargs=dict(eps=1e-5, **FUSED))
    return kw


def build_policy(algo: str, hp: dict, obs_space, action_space, pixels: bool, seed: int) -> nn.Module:
    """A freshly initialised SB3 policy (with its optimizer): the same seed gives identical weights.

    SB3's own initialisation is kept (orthogonal, gains √2 hidden / 0.01 actor head / 1 value head,
    for PPO/A2C; PyTorch's default for DQN). The global torch RNG is left as it was."""
    with seeded(seed):
        return policy_class(algo, pixels)(obs_space, action_space, lambda _: hp["lr"], **policy_kwargs(algo, hp))


def prunable(policy: nn.Module, algo: str, keep_dense: str = "none") -> dict[str, nn.Parameter]:
    """The agent's prunable weights by name: Linear/Conv weights of actor and critic (minus what
    `keep_dense` spares), or of the online Q-network (never the target network)."""
    params = prunable_parameters(policy)
    if algo == "dqn":
        return {n: p for n, p in params.items() if n.startswith("q_net.")}
    spared = {"none": (), "value_head": ("value_net.",),
              "critic": ("value_net.", "mlp_extractor.value_net.", "vf_features_extractor.")}[keep_dense]
    return {n: p for n, p in params.items() if not n.startswith(spared)}


def output_layer(policy: nn.Module, algo: str) -> str:
    """The actor's output layer (`action_net.weight`), or the Q-network's last layer."""
    if algo != "dqn":
        return "action_net.weight"
    return [n for n in prunable(policy, algo) if n.startswith("q_net.q_net.")][-1]


def shadows(policy: nn.Module, algo: str, names) -> dict[str, nn.Parameter]:
    """Parameters that follow a pruned parameter's mask without being pruned themselves: the DQN
    target network's copy of each online weight (`q_net.X` → `q_net_target.X`)."""
    if algo != "dqn":
        return {}
    params = dict(policy.named_parameters())
    return {n: params["q_net_target." + n[len("q_net."):]] for n in names}


class MaskHooks:
    """Keeps an SB3 agent's pruned weights exactly zero through SB3's own training loop.

    `ticketlab.core.masks.enforce` on the policy and its optimizer (see the module docstring);
    `remove()` takes its hooks off. `shadows` (the DQN target network) are masked with the same
    masks at install and at every `sync()`."""

    def __init__(self, policy: nn.Module, masks: Mapping[str, torch.Tensor],
                 optimizer: torch.optim.Optimizer, shadows: Mapping[str, nn.Parameter] | None = None):
        self.handle = M.enforce(policy, optimizer, masks)
        # the masks stay where they came from (the CPU); the target network may live on the GPU
        self._shadow = [(shadows[n], m.to(shadows[n].device)) for n, m in self.handle.masks.items()
                        if shadows and n in shadows]
        self.sync()

    @torch.no_grad()
    def sync(self) -> None:
        """Zero the shadows' pruned entries (the DQN target network follows the online mask)."""
        for p, m in self._shadow:
            p.mul_(m)

    def remove(self) -> None:
        self.handle.remove()


def linear_or_constant(kind: str, value: float, total: int, offset: int = 0):
    """An SB3 schedule (a function of progress_remaining p = 1 − it/total) that gives `value`, or
    `value` decayed linearly to 0 at `total` with its position shifted by `offset` env steps:
    at step it it returns value · (1 − (it − offset)/total) (`offset` = the engine's lr_offset)."""
    if kind == "constant":
        return lambda p: value
    return lambda p: value * min(1.0, max(0.0, p + offset / total))


def shifted(schedule, total: int, offset: int):
    """`schedule` (a function of progress remaining) evaluated `offset` env steps earlier."""
    if not offset:
        return schedule
    return lambda p: schedule(min(1.0, p + offset / total))


# ---- DQN replay buffer in a checkpoint (plain tensors, so it loads with weights_only=True) ----

_REPLAY_FIELDS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def replay_state(buffer) -> dict:
    """The filled part of an SB3 ReplayBuffer, as tensors."""
    n = buffer.buffer_size if buffer.full else buffer.pos
    out = {"pos": buffer.pos, "full": bool(buffer.full)}
    for f in _REPLAY_FIELDS:
        arr = getattr(buffer, f, None)
        if arr is not None:
            out[f] = torch.from_numpy(arr[:n].copy())
    return out


def load_replay_state(buffer, state: dict) -> None:
    """Restore what `replay_state` saved into a buffer of the same size."""
    for f in _REPLAY_FIELDS:
        if f in state:
            arr = state[f].numpy()
            getattr(buffer, f)[:len(arr)] = arr
    buffer.pos, buffer.full = int(state["pos"]), bool(state["full"])


__all__ = ["build_policy", "prunable", "output_layer", "shadows", "MaskHooks", "policy_kwargs", "policy_class",
           "algorithm_class", "linear_or_constant", "shifted", "replay_state", "load_replay_state"]
