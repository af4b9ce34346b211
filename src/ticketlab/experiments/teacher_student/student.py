"""Over-realized students: the teacher's depth with every hidden layer `multi` times wider.

Tian 2019 ("Student Specialization" §3) calls a student *over-realized* when each of its layers
has more nodes than the teacher's; Luck Matters (Tian et al. 2019) uses ×10 (`node_multi`).
Initialisations (docs/teacher_student.md §3):

- "default": PyTorch's `nn.Linear` reset, U(-1/√fan_in, 1/√fan_in) for weights and biases
  (LM's students);
- "small": weights N(0, init_std²), biases zero (SS two-layer: init_std 0.005);
- "perturbed": the teacher planted in the student, plus N(0, perturb_std²) noise on every entry
  (LM `--perturb`; with multi > 1 as the matrix code's planted nodes): student node i < m_l of layer l
  copies teacher node i (its incoming weights on the planted nodes below); the extra nodes keep the
  default init among themselves, and every weight between planted and extra nodes, and from the
  top extra nodes to the output, starts at zero (plus the noise). With perturb_std = 0 the student is
  the teacher beside a silent random network: it computes exactly the teacher's function, and each
  planted node has exactly its teacher node's fan-out.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from ticketlab.core.errors import ConfigError
from ticketlab.experiments.teacher_student.net import Net

INITS = ("default", "small", "perturbed")


def student_widths(teacher_widths: Sequence[int], multi: int) -> tuple[int, ...]:
    """Hidden widths of a student over-realized by `multi` at every layer."""
    return tuple(int(w) * int(multi) for w in teacher_widths)


def random_init(sizes: Sequence[int], init: str, gen: torch.Generator, init_std: float = 0.005
                ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Weights [out, in] and biases [out] of a fresh network with layer sizes `sizes` (input first):
    "small" = N(0, init_std²) weights and zero biases, anything else PyTorch's default reset."""
    ws, bs = [], []
    for l in range(1, len(sizes)):
        fan_in, out = sizes[l - 1], sizes[l]
        if init == "small":
            w = torch.randn(out, fan_in, generator=gen) * init_std
            b = torch.zeros(out)
        else:
            bound = 1 / math.sqrt(fan_in)
            w = (torch.rand(out, fan_in, generator=gen) * 2 - 1) * bound
            b = (torch.rand(out, generator=gen) * 2 - 1) * bound
        ws.append(w)
        bs.append(b)
    return ws, bs


def make_student(teacher: Net, multi: int, *, seed: int, init: str = "default", init_std: float = 0.005,
                 perturb_std: float = 0.0) -> Net:
    """A student for a stack-of-one `teacher`, drawn from `seed`. Returns a stack of one network."""
    if init not in INITS:
        raise ConfigError(f"init: got {init!r}, expected one of {', '.join(INITS)}")
    gen = torch.Generator().manual_seed(int(seed))
    sizes = [teacher.input_dim, *student_widths(teacher.widths, multi), teacher.output_dim]
    ws, bs = random_init(sizes, init, gen, init_std)
    if init == "perturbed":
        for l, (tw, tb) in enumerate(zip(teacher.weights, teacher.biases)):
            tw, tb = tw[0], tb[0]
            m_out, m_in = tw.shape
            rows = slice(None) if l == len(ws) - 1 else slice(0, m_out)  # output: every row is planted
            w = ws[l]
            if l > 0:  # planted and extra nodes do not see each other: two disjoint networks
                w[rows, m_in:] = 0
                w[m_out:, :m_in] = 0
            w[rows, :m_in] = tw
            bs[l][rows] = tb
            w += torch.randn(w.shape, generator=gen) * perturb_std
            bs[l] += torch.randn(bs[l].shape, generator=gen) * perturb_std
    return Net([w.unsqueeze(0) for w in ws], [b.unsqueeze(0) for b in bs], teacher.activation, teacher.slope)


__all__ = ["INITS", "student_widths", "random_init", "make_student"]
