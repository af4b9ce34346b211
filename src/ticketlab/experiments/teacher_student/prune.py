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

Merging co-aligned nodes before pruning (issue #18; benchmarks/teacher_student/README.md §5): an
over-realized student grows *several* student nodes aligned with one teacher node (Student
Specialization §6, the vertical spread of the L-shape), and they split that teacher node's fan-out
between them, so pruning by fan-out keeps duplicates of strong teacher nodes and drops the only copy
of weaker ones. A ReLU (or leaky ReLU) node is positively homogeneous: for a > 0,
a·σ(w·x + b) = σ(a·w·x + a·b). Two nodes whose fan-in-with-bias vectors u_k = [w_k, b_k] are
positively co-linear, u_j = a·u_k with a = ‖u_j‖/‖u_k‖, therefore compute scaled copies, and node j
can be folded into node k by adding a·(j's fan-out) to k's fan-out and zeroing j's: the network
computes exactly the same function. `merge_coaligned` does this for every group of nodes of a layer
whose u vectors have cosine ≥ a threshold (for nearly co-linear nodes the function changes a little;
`prepare_prune` measures by how much), bottom layer first, so that a layer's merged fan-outs are the
fan-ins that the next layer's merge compares.
"""

from __future__ import annotations

import math
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


def node_masks(net: Net, keep: Sequence[int], score: str = "fanout_norm",
               alive: Sequence[torch.Tensor] | None = None) -> list[torch.Tensor]:
    """Per hidden layer, a boolean [S, width] mask keeping the `keep[l]` top-scoring nodes.

    `alive` (per layer, bool [S, width], from `merge_coaligned`): nodes marked False were merged into
    another node; they rank below every alive node, so they are kept only when a layer has fewer
    alive nodes than `keep[l]` (their fan-out is zero then: they add nothing)."""
    scores = node_scores(net, score)
    if alive is not None:  # merged-away nodes last, whatever their (zero) score
        scores = [torch.where(a, s, torch.full_like(s, -math.inf)) for s, a in zip(scores, alive)]
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


def coaligned_groups(fan_in: torch.Tensor, strength: torch.Tensor, threshold: float) -> list[list[int]]:
    """Groups of co-aligned nodes of one layer of one network.

    fan_in: [width, in + 1], each node's incoming weights with its bias (u_k); strength: [width], the
    order in which nodes become a group's representative (strongest first). Greedy: the strongest
    node not yet grouped takes every ungrouped node whose u has cosine ≥ `threshold` with its own
    (around one representative, not a chain of pairs, so a group never drifts away from it). A node
    with u = 0 is never grouped. Returns the groups of two or more, representative first."""
    u = fan_in.double()
    norm = u.norm(dim=1)
    live = norm > 0
    cos = (u @ u.T) / (norm.unsqueeze(1) * norm.unsqueeze(0)).clamp_min(1e-300)
    taken = ~live
    groups = []
    for k in torch.sort(strength.double(), descending=True, stable=True).indices.tolist():
        if taken[k]:
            continue
        taken[k] = True
        members = ((cos[k] >= threshold) & ~taken).nonzero().squeeze(1)
        if members.numel():
            taken[members] = True
            groups.append([k, *members.tolist()])
    return groups


@torch.no_grad()
def merge_coaligned(net: Net, threshold: float = 0.95) -> tuple[Net, list[torch.Tensor]]:
    """Merge co-aligned nodes of every hidden layer (see the module docstring), bottom layer first.

    In each group (`coaligned_groups`, representative = the node of largest ‖fan-out‖·‖u‖), every
    other node j's fan-out, scaled by ‖u_j‖/‖u_rep‖, is added to the representative's, and j's
    fan-out is set to zero (its fan-in is left as it was: with no fan-out it no longer counts).
    Returns (the merged network, same shape; per hidden layer a bool [S, width] mask, False for the
    nodes merged away). When the nodes of every group are exactly co-linear the merged network
    computes the same function; `compact(merged, alive)` then removes the merged-away nodes (for a
    stack whose slices keep the same count)."""
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"prune_merge_cos: got {threshold!r}, expected a cosine in [0, 1]")
    ws = [w.detach().clone() for w in net.weights]
    bs = [b.detach().clone() for b in net.biases]
    alive = []
    for l in range(len(ws) - 1):
        S, width = ws[l].shape[0], ws[l].shape[1]
        a = torch.ones(S, width, dtype=torch.bool)
        for s in range(S):
            u = torch.cat([ws[l][s], bs[l][s].unsqueeze(1)], 1).double()  # [width, in + 1]
            fan_out = ws[l + 1][s]  # [out, width], a view: edited in place
            norm = u.norm(dim=1)
            for g in coaligned_groups(u, fan_out.double().norm(dim=0) * norm, threshold):
                rep, rest = g[0], torch.tensor(g[1:])
                ratio = norm[rest] / norm[rep]  # a_j: u_j ≈ a_j·u_rep, so σ(u_j·x) ≈ a_j·σ(u_rep·x)
                fan_out[:, rep] += (fan_out[:, rest].double() * ratio).sum(1).to(fan_out.dtype)
                fan_out[:, rest] = 0
                a[s, rest] = False
        alive.append(a)
    return Net(ws, bs, net.activation, net.slope), alive


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


__all__ = ["SCORES", "node_scores", "node_masks", "coaligned_groups", "merge_coaligned", "compact", "weight_masks",
           "kept_counts"]
