"""Node pruning of a trained student, and the ticket it defines.

Luck Matters (Tian et al. 2019, §5 and code `model_gen.prune`) scores each hidden node by its
fan-out — the weights it sends to the layer above — and removes the weakest: the student nodes
that did not specialize end with fan-out near zero (the L-shape), so pruning by fan-out should
keep exactly the specialized ones. The kept nodes, with *their initial weights*, are a lottery
ticket in the sense of Frankle & Carbin 2019: a subnetwork that trains from its own init.

Scores (per hidden node k of layer l; W_{l+1}[:, k] is its fan-out):
- "fanout_norm": ‖W_{l+1}[:, k]‖₂ (the L-shape's y);
- "mean_abs_fanout": mean_i |W_{l+1}[i, k]|, as in the authors' code.

A node mask keeps the `keep[l]` highest-scoring nodes of each hidden layer (ties: lower index).
Pruning a node removes its row (fan-in and bias) in layer l and its column (fan-out) in layer
l+1; `compact` builds the smaller network, which computes exactly what the masked network
computes. `weight_masks` gives the same pruning as ticketlab's boolean weight masks.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ticketlab.core.errors import ConfigError
from ticketlab.experiments.teacher_student.net import Net

SCORES = ("fanout_norm", "mean_abs_fanout")


def node_scores(net: Net, score: str = "fanout_norm") -> list[torch.Tensor]:
    """Per hidden layer, [S, width] importance of each node by its fan-out."""
    if score not in SCORES:
        raise ConfigError(f"prune_score: got {score!r}, expected one of {', '.join(SCORES)}")
    out = []
    for l in range(len(net.weights) - 1):
        w = net.weights[l + 1].detach()  # [S, out, width]
        out.append(w.norm(dim=1) if score == "fanout_norm" else w.abs().mean(dim=1))
    return out


def node_masks(net: Net, keep: Sequence[int], score: str = "fanout_norm") -> list[torch.Tensor]:
    """Per hidden layer, a boolean [S, width] mask keeping the `keep[l]` top-scoring nodes."""
    scores = node_scores(net, score)
    if len(keep) != len(scores):
        raise ConfigError(f"keep: got {len(keep)} counts, expected one per hidden layer ({len(scores)})")
    masks = []
    for l, (s, k) in enumerate(zip(scores, keep)):
        if not 1 <= k <= s.shape[1]:
            raise ConfigError(f"keep: layer {l + 1} has {s.shape[1]} nodes, cannot keep {k}")
        order = torch.sort(s, dim=1, descending=True, stable=True).indices[:, :k]
        m = torch.zeros_like(s, dtype=torch.bool)
        m.scatter_(1, order, True)
        masks.append(m)
    return masks


def compact(net: Net, masks: Sequence[torch.Tensor]) -> Net:
    """The smaller network of the kept nodes (every slice keeps the same count per layer)."""
    ws, bs = [], []
    S = net.size
    idx = [torch.stack([m[s].nonzero().squeeze(1) for s in range(S)]) for m in masks]  # [S, k_l]
    for l, (w, b) in enumerate(zip(net.weights, net.biases)):
        w, b = w.detach(), b.detach()
        if l < len(masks):  # keep rows of kept nodes
            w = torch.gather(w, 1, idx[l].unsqueeze(2).expand(-1, -1, w.shape[2]))
            b = torch.gather(b, 1, idx[l])
        if l > 0:  # keep columns of kept nodes below
            w = torch.gather(w, 2, idx[l - 1].unsqueeze(1).expand(-1, w.shape[1], -1))
        ws.append(w.clone())
        bs.append(b.clone())
    return Net(ws, bs, net.activation, net.slope)


def weight_masks(net: Net, masks: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """The node pruning as ticketlab weight masks: {"fc<l>.weight": bool [S, out, in]}: a pruned
    node loses its fan-in row and its fan-out column."""
    out = {}
    for l, w in enumerate(net.weights):
        m = torch.ones_like(w, dtype=torch.bool)
        if l < len(masks):
            m &= masks[l].unsqueeze(2)
        if l > 0:
            m &= masks[l - 1].unsqueeze(1)
        out[f"fc{l + 1}.weight"] = m
    return out


def kept_counts(teacher_widths: Sequence[int], student_widths: Sequence[int], keep: float) -> list[int]:
    """Nodes kept per layer: round(keep × teacher width), at least 1 and at most the student's width."""
    return [min(s, max(1, round(keep * t))) for t, s in zip(teacher_widths, student_widths)]


__all__ = ["SCORES", "node_scores", "node_masks", "compact", "weight_masks", "kept_counts"]
