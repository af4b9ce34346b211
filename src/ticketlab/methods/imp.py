"""The iterative-magnitude-pruning step: which weights one IMP level removes, from weights and masks alone.

Frankle & Carbin 2019 (LTH) §2 and App. (rates): each level removes a fraction of the *surviving*
weights with the smallest |w|, per layer (fc 20 %, the output layer at half that rate, conv 10–15 %)
or over all pruned layers at once (global). docs/lottery.md §1–2.

Nothing here trains, stores or knows an experiment: the rates come from any object with the fields
of `Rates` (a `ticketlab.experiments.lottery.trunk.LotteryConfig` is one), the weights and masks are
plain name → tensor dicts.

`IMP` is the procedure as an object for any model and any training loop (issue 15): it captures θ0
and θk (by an optimizer step hook at step k), enforces the masks (`ticketlab.core.masks.enforce`),
prunes with `IMP.prune_masks`, the step that the lottery experiment's trunk
(`ticketlab.experiments.lottery.trunk.prune`) takes through this same object, and rewinds (Frankle et al. 2019, "Stabilizing the
LTH", §3: late rewinding to θk). Its controls are LTH §2's random reinitialisation and App. E's
random masks with the ticket's per-layer counts.

    imp = IMP(prune_fraction=0.2, rewind_iter=100).attach(model, optimizer)
    for level in range(imp.levels_for(0.9) + 1):
        train(model, optimizer)                      # your loop, unchanged
        if level < imp.levels_for(0.9):
            imp.prune(); imp.rewind()
"""

from __future__ import annotations

import copy
import logging
import types
from typing import Callable, Protocol, Sequence

import torch
from torch import nn

from ticketlab.core import masks as M, pruning, scores, targets
from ticketlab.core.errors import ConfigError, TicketlabError
from ticketlab.core.optimizers import scaler_skipped, unwrap_optimizer
from ticketlab.core.seeds import seeded

logger = logging.getLogger(__name__)


class Rates(Protocol):
    """The pruning rates of IMP and how many levels to run (the fields of `LotteryConfig` read here)."""

    strategy: str                    # "layerwise" or "global"
    prune_fraction: float            # fraction of the surviving weights pruned per level
    output_fraction: float | None    # layerwise: the output layer's rate (None: prune_fraction / 2)
    conv_fraction: float | None      # layerwise: the conv layers' rate (None: prune_fraction)
    layers: tuple[str, ...]          # name patterns of the parameters to prune
    exclude: tuple[str, ...]         # name patterns never to prune
    levels: int                      # `n_levels`: levels after the dense level 0 ...
    target_sparsity: float | None    # ... or as many as reach this sparsity


def pruned_layers(cfg: Rates, params: dict[str, torch.Tensor]) -> list[str]:
    """The prunable parameters this run prunes, by the include/exclude patterns."""
    try:
        names = pruning.select(params, cfg.layers)
        excluded = set(pruning.select(names, cfg.exclude)) if cfg.exclude else set()
    except ValueError as e:
        raise ConfigError(f"layers/exclude: {e}; prunable parameters: {', '.join(params)}") from None
    kept = [n for n in names if n not in excluded]
    if not kept and params:  # every level would be the dense network again
        raise ConfigError(f"layers/exclude: layers={list(cfg.layers)} less exclude={list(cfg.exclude)} leave no "
                          f"parameter to prune; prunable parameters: {', '.join(params)}")
    return kept


def level_fractions(cfg: Rates, params: dict[str, torch.Tensor], output: str | None) -> dict[str, float]:
    """Per-layer pruning rates of one level (layerwise strategy)."""
    names = pruned_layers(cfg, params)
    out = {}
    for n in names:
        if n == output:
            out[n] = cfg.output_fraction if cfg.output_fraction is not None else cfg.prune_fraction / 2
        elif params[n].dim() > 2 and cfg.conv_fraction is not None:
            out[n] = cfg.conv_fraction
        else:
            out[n] = cfg.prune_fraction
    return out


def prune_level(cfg: Rates, weights: dict[str, torch.Tensor], masks: M.Masks, output: str | None) -> M.Masks:
    """One IMP pruning step: remove the smallest-|w| surviving weights (per layer or globally)."""
    params = {n: weights[n] for n in masks}  # the prunable tensors only, not biases or norms
    s = scores.magnitude(params)
    if cfg.strategy == "layerwise":
        return pruning.prune_layerwise(s, masks, level_fractions(cfg, params, output))
    return pruning.prune_global(s, masks, cfg.prune_fraction, pruned_layers(cfg, params))


def n_levels(cfg: Rates, params: dict[str, torch.Tensor], output: str | None) -> int:
    """Levels to run: `levels`, or the first level whose sparsity reaches `target_sparsity`."""
    if cfg.target_sparsity is None:
        if cfg.levels > 0:
            pruned_layers(cfg, params)  # a ConfigError now, not after the dense run, when nothing would be pruned
        return cfg.levels
    sizes = {n: p.numel() for n, p in params.items()}
    if cfg.strategy == "layerwise":
        fr = {n: 0.0 for n in params} | level_fractions(cfg, params, output)
        ladder = pruning.ladder(sizes, fr, 200)
    else:  # global pruning removes the same total count per level whatever the layer
        sel = set(pruned_layers(cfg, params))
        kept_fixed = sum(v for n, v in sizes.items() if n not in sel)
        rem, total, ladder = sum(sizes[n] for n in sel), sum(sizes.values()), []
        for _ in range(201):
            ladder.append((rem + kept_fixed) / total)
            rem -= pruning.n_to_prune(rem, cfg.prune_fraction)
    for L, d in enumerate(ladder):
        if 1 - d >= cfg.target_sparsity - 1e-12:
            return L
    raise ConfigError(f"target_sparsity: {cfg.target_sparsity} is not reached in 200 levels "
                      f"with these pruning rates")



class IMP:
    """Iterative magnitude pruning with rewinding on any model, in any training loop.

    The fields are `LotteryConfig`'s IMP fields (`IMP.from_config(cfg)` reads them from one):
    `strategy`, `prune_fraction`, `output_fraction`, `conv_fraction`, `layers` (alias `include`),
    `exclude`, `rewind_iter` (k) and `rewind_optimizer`. `names` takes the prunable tensors as a
    list of parameter names instead of the Linear/Conv weights; `output` names the output layer's
    weight (found automatically otherwise, `ticketlab.core.targets.output_layer`).
    """

    FIELDS = ("strategy", "prune_fraction", "output_fraction", "conv_fraction", "layers", "exclude",
              "rewind_iter", "rewind_optimizer")
    levels, target_sparsity = 0, None  # the `Rates` fields that `levels_for` sets

    def __init__(self, strategy: str = "layerwise", prune_fraction: float = 0.2,
                 output_fraction: float | None = None, conv_fraction: float | None = None,
                 layers: Sequence[str] = ("*",), exclude: Sequence[str] = (), *,
                 include: Sequence[str] | None = None, names: Sequence[str] | None = None,
                 output: str | None = None, rewind_iter: int = 0, rewind_optimizer: bool = False):
        if strategy not in ("layerwise", "global"):
            raise ConfigError(f"strategy: got {strategy!r}, expected 'layerwise' or 'global'")
        for field, v in (("prune_fraction", prune_fraction), ("output_fraction", output_fraction),
                         ("conv_fraction", conv_fraction)):
            if v is not None and not 0.0 <= v <= 1.0:
                raise ConfigError(f"{field}: got {v!r}, expected a number in [0, 1]")
        if isinstance(rewind_iter, bool) or not isinstance(rewind_iter, int) or rewind_iter < 0:
            raise ConfigError(f"rewind_iter: got {rewind_iter!r}, expected an integer >= 0")
        self.strategy, self.prune_fraction = strategy, prune_fraction
        self.output_fraction, self.conv_fraction = output_fraction, conv_fraction
        self.layers = tuple([include] if isinstance(include, str) else include or
                            ([layers] if isinstance(layers, str) else layers))
        self.exclude = tuple([exclude] if isinstance(exclude, str) else exclude)
        self.names, self.output_name = names, output
        self.rewind_iter, self.rewind_optimizer = rewind_iter, rewind_optimizer
        self.model = self.optimizer = self._handle = self._counter = None
        self.output: str | None = output  # resolved from the model at `attach` when None
        self._masks: M.Masks | None = None
        self.theta0 = self.thetak = self.thetak_optimizer = None
        self.steps = self.level = 0

    @classmethod
    def from_config(cls, cfg, **overrides) -> "IMP":
        """An IMP with the IMP fields of `cfg` (a `LotteryConfig`, or any object with those fields)."""
        return cls(**{f: getattr(cfg, f) for f in cls.FIELDS}, **overrides)

    # ---- on a model and its optimizer ----
    def attach(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> "IMP":
        """Start enforcing the masks on `model` trained by `optimizer`; save θ0 now and θk after the
        k-th optimizer step. Masks start dense (or as `load_state_dict` left them). A wrapped
        optimizer (accelerate, Lightning) is unwrapped, as `enforce` does. Returns self."""
        optimizer = unwrap_optimizer(optimizer)  # θk's hook must be on the optimizer that steps
        self.model, self.optimizer = model, optimizer
        params = targets.prunable(model, names=self.names)
        self.output = targets.output_layer(model, self.output_name)
        pruned_layers(self, {n: p.detach() for n, p in params.items()})  # a bad pattern fails now
        if self._masks is None:
            self._masks = M.ones_masks({n: p.detach() for n, p in params.items()})
        if self.theta0 is None:
            self.theta0 = _clone(model.state_dict())
            if self.rewind_iter == 0:
                self.thetak, self.thetak_optimizer = self.theta0, _optimizer_state(optimizer)
        self._handle = M.enforce(model, optimizer, self._masks)
        self._watch(optimizer)
        return self

    def detach(self) -> None:
        """Stop enforcing the masks and counting steps; the masks, θ0 and θk stay (`attach` again,
        e.g. to the next optimizer of a framework that builds one per run)."""
        if self._handle is not None:
            self._masks = self._handle.masks  # the masks may have come from an optimizer checkpoint since
        for h in (self._handle, self._counter):
            if h is not None:
                h.remove()
        self._handle = self._counter = None

    def _watch(self, optimizer) -> None:
        if self._counter is not None:
            self._counter.remove()
        self._counter = optimizer.register_step_post_hook(self._count) if self.thetak is None else None

    def _count(self, optimizer, args, kwargs) -> None:
        if scaler_skipped(optimizer):  # a fused optimizer told by a GradScaler to skip: no step
            return
        self.steps += 1  # (a non-fused optimizer whose step a GradScaler skips never runs this hook)
        if self.steps == self.rewind_iter:
            self.thetak, self.thetak_optimizer = _clone(self.model.state_dict()), _optimizer_state(optimizer)
            self._counter.remove()
            self._counter = None

    def _attached(self) -> None:
        if self._handle is None:
            raise TicketlabError("IMP: call attach(model, optimizer) first")

    @property
    def masks(self) -> M.Masks:
        """The current masks: parameter name -> bool tensor (True = kept)."""
        return self._handle.masks if self._handle is not None else dict(self._masks or {})

    def set_masks(self, masks: M.Masks) -> None:
        """Enforce `masks` from now on (the pruned weights and their optimizer state are zeroed)."""
        self._attached()
        self._handle.set_masks(masks)
        self._masks = self._handle.masks

    def prune(self) -> M.Masks:
        """One IMP level: remove the smallest-|w| surviving weights of the current weights
        (`prune_level`, per layer at the LTH rates or globally). Returns the new masks."""
        self._attached()
        weights = {n: p.detach() for n, p in self.model.named_parameters()}
        self.set_masks(self.prune_masks(weights, self.masks))
        self.level += 1
        logger.info("IMP level %d: %.2f%% of the pruned weights left", self.level, 100 * M.density(self.masks))
        return self.masks

    def prune_masks(self, weights: dict[str, torch.Tensor], masks: M.Masks) -> M.Masks:
        """The masks one IMP level leaves, from given weights and masks (`prune_level` at this
        object's rates, `self.output` pruned at the output rate). `prune()` takes this step on the
        attached model; the lottery experiment's trunk takes it on a level's stored weights."""
        return prune_level(self, weights, masks, self.output)

    def rewind(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Rewind the weights to θk and mask them. The optimizer (`optimizer`, which then replaces the
        attached one, or the attached one) restarts fresh, or from its state at step k with
        `rewind_optimizer`. The learning-rate schedule is the loop's own: restart it at k."""
        self._attached()
        if self.thetak is None:
            raise TicketlabError(f"IMP.rewind: the rewind point is not reached yet ({self.steps} of "
                                 f"rewind_iter={self.rewind_iter} optimizer steps taken)")
        optimizer = unwrap_optimizer(optimizer) if optimizer is not None else None
        if optimizer is not None and optimizer is not self.optimizer:
            masks = self.masks  # the handle's: an optimizer checkpoint may have brought them
            self._handle.remove()
            self.optimizer, self._handle = optimizer, M.enforce(self.model, optimizer, masks)
        self.model.load_state_dict(self.thetak)
        if self.rewind_optimizer:
            self.optimizer.load_state_dict(copy.deepcopy(self.thetak_optimizer))  # it trains in place
        else:
            self.optimizer.state.clear()  # a fresh optimizer, as LTH and open_lth start each level
        self.set_masks(self.masks)

    def levels_for(self, target_sparsity: float) -> int:
        """How many pruning levels reach `target_sparsity` of the prunable weights at these rates."""
        rates = types.SimpleNamespace(**{f: getattr(self, f) for f in self.FIELDS},
                                      levels=0, target_sparsity=target_sparsity)
        return n_levels(rates, self.masks, self.output)

    # ---- the controls (LTH §2 and App. E) ----
    def random_reinit(self, seed: int = 0, init: Callable[[nn.Module], None] | None = None) -> None:
        """The reinit control: the current masks on fresh random weights (each module's
        `reset_parameters()`, or `init(model)`, under `seed`), with a fresh optimizer."""
        self._attached()
        with seeded(seed):
            if init is not None:
                init(self.model)
            else:
                for m in self.model.modules():
                    if callable(getattr(m, "reset_parameters", None)):
                        m.reset_parameters()
        self.optimizer.state.clear()
        self.set_masks(self.masks)

    def random_masks(self, seed: int = 0, strategy: str = "layerwise") -> M.Masks:
        """The random-mask control: random positions with the current masks' per-layer counts
        ("layerwise") or total count over the pruned layers ("global"); installed and returned.
        Call `rewind()` to start it from θk, as the lottery experiment does."""
        self._attached()
        self.set_masks(self.random_masks_like(self.masks, seed, strategy))
        return self.masks

    def random_masks_like(self, masks: M.Masks, seed: int, strategy: str = "layerwise") -> M.Masks:
        """The masks of the random-mask control for given `masks` (a ticket): random positions with
        their per-layer counts ("layerwise") or their total count over this object's pruned layers
        ("global"), drawn from `seed` alone (`ticketlab.core.pruning.random_mask_like`). `random_masks`
        installs them on the attached model; the lottery experiment's controls take them for a
        level's stored ticket."""
        return pruning.random_mask_like(masks, seed, strategy, pruned_layers(self, masks))

    def reinit_weights(self, build: Callable[[int], nn.Module], seed: int, masks: M.Masks) -> dict:
        """The reinit control's starting weights for given `masks` (a ticket): those of `build(seed)`,
        a model freshly initialised from `seed` alone, with `masks` applied. The lottery experiment's
        reinit control starts from them (its trainer's `build`); `random_reinit` draws them in place."""
        model = build(seed)
        M.apply_masks(dict(model.named_parameters()), masks)
        return model.state_dict()

    # ---- checkpoints ----
    def state_dict(self) -> dict:
        """Masks, θ0, θk (and the optimizer state at k), steps and level: loadable with weights_only."""
        return {"masks": {n: m.clone() for n, m in self.masks.items()}, "theta0": self.theta0,
                "thetak": self.thetak, "thetak_optimizer": self.thetak_optimizer,
                "steps": self.steps, "level": self.level}

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` saved (before or after `attach`)."""
        self.theta0, self.thetak = state["theta0"], state["thetak"]
        self.thetak_optimizer, self.steps, self.level = state["thetak_optimizer"], state["steps"], state["level"]
        self._masks = dict(state["masks"])
        if self._handle is not None:
            self.set_masks(self._masks)
            self._watch(self.optimizer)


def _clone(state: dict) -> dict:
    return {k: v.detach().clone() if torch.is_tensor(v) else copy.deepcopy(v) for k, v in state.items()}


def _optimizer_state(optimizer: torch.optim.Optimizer) -> dict:
    """A deep copy of the optimizer's state dict, without the masks that `enforce` adds to it (a
    rewind must not bring back the masks of step k)."""
    sd = copy.deepcopy(optimizer.state_dict())
    sd.pop(M.STATE_KEY, None)
    return sd


__all__ = ["Rates", "IMP", "pruned_layers", "level_fractions", "prune_level", "n_levels"]
