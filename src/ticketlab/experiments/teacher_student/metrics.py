"""Specialization metrics: correlation between teacher and student nodes, matching, L-shape, luck.

Definitions (docs/teacher_student.md §5; Tian et al. 2019 "Luck Matters" §5,
Tian 2019 "Student Specialization" §6). For one hidden layer, f_j(x) is teacher node j's
activation and g_k(x) student node k's, over an evaluation set X:

- normalized correlation ρ_jk = Σ_x (f_j - f̄_j)(g_k - ḡ_k) / √(Σ_x (f_j - f̄_j)² Σ_x (g_k - ḡ_k)²),
  on post-activations (the papers' metric) or pre-activations;
- best match of teacher node j: max_k ρ_jk and its argmax k*;
- success: the fraction of teacher nodes whose best match is ≥ a threshold τ (0.95 by default);
- L-shape (SS Fig. 4): per student node, x = max_j ρ_jk and y = the L2 norm of its fan-out (or
  that norm times the norm of its fan-in, which a ReLU's rescaling symmetry leaves unchanged);
- luck (LM §5): the rank, by correlation with teacher node j *at initialisation*, of the student
  node that is j's best match at the end (rank 0: it was already the closest).

A node whose activation is constant over X (a dead ReLU) has no defined correlation: it gets
ρ = 0 with every node, so it never counts as matched. Sums run in float64.
"""

from __future__ import annotations

import torch


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation between the columns of a [S, N, m] and b [S, N, n] -> [S, m, n].

    (2-D inputs [N, m], [N, n] give [m, n].) Constant columns correlate 0 with everything."""
    squeeze = a.dim() == 2
    if squeeze:
        a, b = a.unsqueeze(0), b.unsqueeze(0)
    a, b = a.double(), b.double()
    n = a.shape[1]
    ma, mb = a.mean(1, keepdim=True), b.mean(1, keepdim=True)
    a, b = a - ma, b - mb
    sa, sb = a.pow(2).sum(1), b.pow(2).sum(1)  # [S, m], [S, n]
    # a constant column leaves only rounding error after centring: call it zero variance
    dead_a = sa <= n * (1e-10 * (1 + ma.squeeze(1).abs())) ** 2
    dead_b = sb <= n * (1e-10 * (1 + mb.squeeze(1).abs())) ** 2
    den = (sa.clamp_min(1e-300).sqrt().unsqueeze(2) * sb.clamp_min(1e-300).sqrt().unsqueeze(1))
    r = torch.bmm(a.transpose(1, 2), b) / den
    r = r.masked_fill(dead_a.unsqueeze(2) | dead_b.unsqueeze(1), 0.0).clamp(-1.0, 1.0)
    return r[0] if squeeze else r


def best_match(corr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(best correlation, index of the best student) per teacher node: corr [..., m, n] -> [..., m] each."""
    v, i = corr.max(-1)
    return v, i


def success_rate(best: torch.Tensor, threshold: float = 0.95) -> torch.Tensor:
    """Fraction of teacher nodes whose best match is ≥ threshold: best [..., m] -> [...]."""
    return (best >= threshold).double().mean(-1)


def student_max_corr(corr: torch.Tensor) -> torch.Tensor:
    """Each student node's highest correlation with any teacher node: [..., m, n] -> [..., n] (L-shape x)."""
    return corr.max(-2).values


def scaled_fan_out(net, layer: int) -> torch.Tensor:
    """[S, width]: ‖fan-out‖ · ‖fan-in weights‖ of each hidden node of `layer`.

    A ReLU node can be rescaled (fan-in × α, bias × α, fan-out ÷ α) without changing the network's
    function, which moves its raw fan-out norm but not this product. A teacher node's hidden row has
    unit norm, so for the teacher it equals the fan-out norm."""
    return net.fan_out_norm(layer) * net.weights[layer].norm(dim=2)


@torch.no_grad()
def layer_correlations(teacher, student, x: torch.Tensor) -> list[dict]:
    """Per hidden layer, {"post": [S, m, n], "pre": [S, m, n]} correlations of teacher and student
    nodes on inputs x ([S, N, in] or [N, in]); teacher and student are stacks of S (or teacher of 1)."""
    _, tpre, tpost = teacher.forward(x)
    _, spre, spost = student.forward(x)
    S = max(teacher.size, student.size)
    out = []
    for tp, tq, sp, sq in zip(tpre, tpost, spre, spost):
        out.append({"post": pearson(tq.expand(S, -1, -1), sq.expand(S, -1, -1)),
                    "pre": pearson(tp.expand(S, -1, -1), sp.expand(S, -1, -1))})
    return out


def ranks(v: torch.Tensor) -> torch.Tensor:
    """Rank of each entry along the last axis, 0 for the largest (ties: lower index first)."""
    order = torch.sort(v, dim=-1, descending=True, stable=True).indices
    r = torch.empty_like(order)
    r.scatter_(-1, order, torch.arange(v.shape[-1], device=v.device).expand_as(order).contiguous())
    return r


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two 1-D tensors (nan if either is constant or shorter than 3)."""
    if a.numel() < 3:
        return float("nan")
    ra, rb = ranks(a.double()).double(), ranks(b.double()).double()
    r = pearson(ra.view(-1, 1), rb.view(-1, 1))
    sd = float(ra.std()) * float(rb.std())
    return float(r[0, 0]) if sd > 0 else float("nan")


def luck(corr_init: torch.Tensor, corr_final: torch.Tensor) -> dict:
    """The luck readout of one layer of one run: corr_init, corr_final [m, n] (post-activation).

    For each teacher node j, k* = its final best student; `init_rank[j]` = the rank of k* among all
    students by ρ_jk at initialisation (0 = k* was already j's closest student), `init_corr[j]` = ρ_jk*
    at initialisation; `final_corr[j]` = ρ_jk* at the end. `rank_final_spearman` is the Spearman
    correlation, over teacher nodes, between that initial rank and the final match (negative when
    luckier winners, with lower rank, end up better matched); `init_final_spearman[j]` the Spearman
    correlation over all students between ρ_jk at initialisation and at the end."""
    final_best, winner = best_match(corr_final)
    r0 = ranks(corr_init)  # [m, n]
    m = corr_init.shape[0]
    j = torch.arange(m, device=corr_init.device)
    init_rank = r0[j, winner]
    return {"winner": winner.tolist(), "init_rank": init_rank.tolist(),
            "init_corr": corr_init[j, winner].tolist(), "final_corr": final_best.tolist(),
            "students": int(corr_init.shape[1]),
            "rank_final_spearman": spearman(init_rank.double(), final_best),
            "init_final_spearman": [spearman(corr_init[i], corr_final[i]) for i in range(m)]}


class CorrStats:
    """Streaming Pearson correlation between teacher and student activations of one layer, over
    chunks of samples (the authors' `StatsCorr`: the evaluation set need not fit in memory).

    Each chunk is shifted by the first chunk's column means before its sums (x, y, x², y², xy) are
    taken in float32 and added up in float64: the shift keeps float32 sums of centred-ish values
    accurate, and float32 `bmm` is ≈5× faster than float64 here."""

    def __init__(self):
        self.n = 0
        self.shift_a = self.shift_b = None
        self.sums: list[torch.Tensor] | None = None

    def update(self, a: torch.Tensor, b: torch.Tensor) -> None:
        """a: [S, B, m] teacher, b: [S, B, n] student activations of one chunk."""
        if self.shift_a is None:
            self.shift_a, self.shift_b = a.mean(1, keepdim=True), b.mean(1, keepdim=True)
        a, b = a - self.shift_a, b - self.shift_b
        sums = (a.sum(1), b.sum(1), (a * a).sum(1), (b * b).sum(1), torch.bmm(a.transpose(1, 2), b))
        if self.sums is None:
            self.sums = [v.double() for v in sums]
        else:
            for acc, v in zip(self.sums, sums):
                acc += v
        self.n += a.shape[1]

    def corr(self) -> torch.Tensor:
        """[S, m, n]; constant columns correlate 0 with everything (as `pearson`)."""
        n = self.n
        sa, sb, saa, sbb, sab = self.sums
        ma, mb = sa / n, sb / n
        va = (saa / n - ma ** 2).clamp_min(0)
        vb = (sbb / n - mb ** 2).clamp_min(0)
        cov = sab / n - ma.unsqueeze(2) * mb.unsqueeze(1)
        # a constant column leaves only float32 rounding (~1e-7 of its value) after the shift
        dead_a = va <= (1e-6 * (1 + (ma + self.shift_a.squeeze(1)).abs())) ** 2
        dead_b = vb <= (1e-6 * (1 + (mb + self.shift_b.squeeze(1)).abs())) ** 2
        r = cov / (va.clamp_min(1e-300).sqrt().unsqueeze(2) * vb.clamp_min(1e-300).sqrt().unsqueeze(1))
        return r.masked_fill(dead_a.unsqueeze(2) | dead_b.unsqueeze(1), 0.0).clamp(-1.0, 1.0)


__all__ = ["pearson", "best_match", "success_rate", "student_max_corr", "layer_correlations", "ranks",
           "spearman", "luck", "CorrStats", "scaled_fan_out"]
