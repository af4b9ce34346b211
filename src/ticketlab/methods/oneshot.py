"""One-shot pruning of any model to a sparsity, by magnitude or by a pruning-at-initialisation score.

The scores are `ticketlab.core.scores.magnitude` (LTH §2's one-shot pruning when applied to trained
weights) and `ticketlab.methods.saliency`'s SNIP (Lee et al. 2019), GraSP (Wang et al. 2020) and
SynFlow (Tanaka et al. 2020); the masks keep exact counts (`saliency.masks_from_scores`), one global
threshold by default as the three papers prune. The prunable tensors are chosen as in
`ticketlab.core.targets`: Linear/Conv weights by `include`/`exclude` patterns, or a list of `names`.

    masks = prune_once(model, 0.9, score="snip", data=(x, y))   # the weights are masked in place
    handle = enforce(model, optimizer, masks)                     # keep them masked while training
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ticketlab.core import masks as M, scores, targets
from ticketlab.core.errors import ConfigError
from ticketlab.methods import saliency

SCORES = ("magnitude", "snip", "grasp", "synflow")


def prune_once(model: nn.Module, sparsity: float, score: str = "magnitude", *,
               data: tuple[Tensor, Tensor] | None = None, input_shape: Sequence[int] | None = None,
               include: Sequence[str] = ("*",), exclude: Sequence[str] = (), names: Sequence[str] | None = None,
               distribution: str = "global", dense: Sequence[str] = ()) -> M.Masks:
    """Prune `model` in one shot to `sparsity` of its prunable weights and return the masks (name ->
    bool tensor); the pruned weights are zeroed in place.

    `score`: "magnitude" (|w|), "snip" or "grasp" (on the batch `data` = (x, y)), or "synflow"
    (data-free: `input_shape`, or the shape of `data`'s inputs). `distribution`: "global" (one
    threshold) or "uniform" / "er" / "erk" (fixed per-layer sparsities); `dense` layers are kept.
    """
    if score not in SCORES:
        raise ConfigError(f"score: got {score!r}, expected one of {', '.join(SCORES)}")
    params = targets.prunable(model, include, exclude, names)
    if score == "magnitude":
        masks = saliency.masks_from_scores(scores.magnitude({n: p.detach() for n, p in params.items()}),
                                           sparsity, distribution=distribution, dense=dense)
    else:
        x, y = data if data is not None else (None, None)
        if score == "synflow" and input_shape is None and x is not None:
            input_shape = tuple(x.shape[1:])
        if score == "synflow" and input_shape is None:
            raise ConfigError("data: synflow needs input_shape, or data=(x, y) to read it from")
        if score != "synflow" and data is None:
            raise ConfigError(f"data: {score} scores a batch; pass data=(x, y)")
        masks = saliency.prune_at_init(score, model, sparsity, x=x, y=y, input_shape=input_shape,
                                       params=params, distribution=distribution, dense=dense)
    with torch.no_grad():
        M.apply_masks(params, masks)
    return masks


__all__ = ["SCORES", "prune_once"]
