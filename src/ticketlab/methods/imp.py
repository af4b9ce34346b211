"""The iterative-magnitude-pruning step: which weights one IMP level removes, from weights and masks alone.

Frankle & Carbin 2019 (LTH) §2 and App. (rates): each level removes a fraction of the *surviving*
weights with the smallest |w|, per layer (fc 20 %, the output layer at half that rate, conv 10–15 %)
or over all pruned layers at once (global). docs/lottery.md §1–2.

Nothing here trains, stores or knows an experiment: the rates come from any object with the fields
of `Rates` (a `ticketlab.experiments.lottery.trunk.LotteryConfig` is one), the weights and masks are
plain name → tensor dicts.
"""

from __future__ import annotations

from typing import Protocol

import torch

from ticketlab.core import masks as M, pruning, scores
from ticketlab.core.errors import ConfigError


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
    return [n for n in names if n not in excluded]


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


__all__ = ["Rates", "pruned_layers", "level_fractions", "prune_level", "n_levels"]
