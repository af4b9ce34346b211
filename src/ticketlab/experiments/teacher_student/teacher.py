"""Teacher networks: random fixed ReLU nets of a chosen shape, or a pruned trained ticketlab network.

Random teachers follow the authors' generators (Tian et al. 2019 "Luck Matters" §5 and code
`model_gen.py`; Tian 2019 "Student Specialization" §6 and code `recon_two_layer.py`,
`recon_multilayer.py`), re-implemented from their description in
docs/teacher_student.md §2:

1. every layer's weight rows are drawn i.i.d. from a discrete grid of values, redrawing any row
   that is all zero or duplicates another (`grid_rows`, the authors' `init_separate_w`), so no two
   teacher nodes are the same hyperplane;
2. biases are U(-0.5, 0.5) (LM) or one constant (SS two-layer: -0.1);
3. each hidden layer's weight rows are normalised to unit L2 norm (the output layer keeps its
   grid values, as in SS's two-layer teacher);
4. strength decay p: hidden node i's fan-out (its column in the layer above) is divided by
   (i+1)^p, so node 0 is the strongest (SS's `teacher_strength_decay` / `prioritize`). Applied
   after the normalisation, so the fan-out norms are exactly the grid's divided by (i+1)^p
   (LM's multi-layer code renormalises rows afterwards, which rescales every row but keeps the
   ratios inside it);
5. optionally (SS multi-layer `tune_teacher`), bottom-up, each hidden bias is shifted by the median
   pre-activation over a sample of inputs, so each node fires on about half the inputs; and
   (`tune_teacher_last_layer`) each output is standardised to mean 0, std 1 over that sample.

Everything is drawn from one generator seeded by the teacher seed, in an order that does not
depend on p, so teachers that differ only in p share their grid values.

A teacher can also be a trained, pruned `mlp` / `lenet300_100` from the store (`load_teacher`):
a lottery level's `final.pt` with its `mask.pt`. Pruning can leave hidden nodes with no incoming
weights (constant) or no outgoing weights (silent); `compact` removes them, folding a constant
node's output into the next layer's bias, so every teacher node is a real hyperplane (LM's
`--load_teacher` sized the student from the active nodes in the same way).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch

from ticketlab.core.errors import ConfigError, TicketlabError
from ticketlab.experiments.teacher_student.net import Net
from ticketlab.training.rundir import load_tensors, read_json

GRID = (-1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0)


def grid_rows(out: int, inp: int, choices: Sequence[float], gen: torch.Generator, tries: int = 1000) -> torch.Tensor:
    """[out, inp] weights with entries drawn uniformly from `choices`; no all-zero or duplicate row."""
    vals = torch.tensor(sorted(set(float(c) for c in choices)), dtype=torch.float64)
    if len(vals) < 2 or not bool((vals != 0).any()):
        raise ConfigError(f"grid: got {tuple(choices)!r}, expected at least two values, one nonzero")
    possible = len(vals) ** inp - (1 if bool((vals == 0).any()) else 0) if inp < 64 else math.inf
    if out > possible:
        raise ConfigError(f"grid: cannot draw {out} distinct nonzero rows of {inp} values from {tuple(choices)!r}")
    w = vals[torch.randint(len(vals), (out, inp), generator=gen)]
    for _ in range(tries):
        seen, bad = set(), []
        for i, row in enumerate(map(tuple, w.tolist())):
            if row in seen or not any(row):
                bad.append(i)
            seen.add(row)
        if not bad:
            return w.float()
        for i in bad:  # redraw offending rows only, in index order (deterministic)
            w[i] = vals[torch.randint(len(vals), (inp,), generator=gen)]
    raise ConfigError(f"grid: could not draw {out} distinct nonzero rows of {inp} values from {tuple(choices)!r} "
                      f"in {tries} tries")


def apply_strength_decay(net: Net, p: float) -> None:
    """Divide hidden node i's fan-out (column i of the layer above) by (i+1)^p, in place."""
    if p == 0:
        return
    for l in range(1, len(net.weights)):
        n = net.weights[l].shape[2]
        net.weights[l].div_((torch.arange(1, n + 1, dtype=net.weights[l].dtype) ** p).view(1, 1, n))


@torch.no_grad()
def tune_biases(net: Net, x: torch.Tensor) -> None:
    """Bottom-up, subtract from each hidden bias the median pre-activation over `x` [N, in]:
    each hidden node then fires on about half of the inputs (SS `tune_teacher`)."""
    for l in range(len(net.weights) - 1):
        _, pre, _ = net.forward(x)
        net.biases[l].sub_(pre[l].median(dim=1).values)


@torch.no_grad()
def standardize_output(net: Net, x: torch.Tensor) -> None:
    """Rescale the output layer so every output has mean 0 and std 1 over `x` (SS `tune_teacher_last_layer`)."""
    y = net(x)  # [S, N, out]
    mu, sd = y.mean(1), y.std(1).clamp_min(1e-8)
    net.weights[-1].div_(sd.unsqueeze(2))
    net.biases[-1].sub_(mu).div_(sd)


def make_teacher(input_dim: int, widths: Sequence[int], output_dim: int, *, seed: int,
                 activation: str = "relu", slope: float = 0.01, grid: Sequence[float] = GRID,
                 bias: str = "uniform", bias_value: float = -0.1, strength_decay: float = 0.0,
                 tune_bias: bool = False, standardize: bool = False, data_std: float = 1.0,
                 tune_samples: int = 10240) -> Net:
    """A random teacher (see the module docstring for the recipe). Returns a stack of one network.

    `bias`: "uniform" (U(-0.5, 0.5), LM) or "constant" (`bias_value`, SS two-layer).
    `tune_bias`/`standardize` use `tune_samples` Gaussian inputs of std `data_std`, drawn from the
    same generator after the weights.
    """
    gen = torch.Generator().manual_seed(int(seed))
    sizes = [input_dim, *widths, output_dim]
    ws, bs = [], []
    for l in range(1, len(sizes)):
        w = grid_rows(sizes[l], sizes[l - 1], grid, gen)
        if bias == "uniform":
            b = torch.rand(sizes[l], generator=gen) - 0.5
        elif bias == "constant":
            b = torch.full((sizes[l],), float(bias_value))
        else:
            raise ConfigError(f"teacher_bias: got {bias!r}, expected uniform or constant")
        if l < len(sizes) - 1:
            w = w / w.norm(dim=1, keepdim=True)
        ws.append(w.unsqueeze(0))
        bs.append(b.unsqueeze(0))
    net = Net(ws, bs, activation, slope)
    apply_strength_decay(net, strength_decay)
    if tune_bias or standardize:
        x = torch.randn(tune_samples, input_dim, generator=gen) * data_std
        if tune_bias:
            tune_biases(net, x)
        if standardize:
            standardize_output(net, x)
    return net


# ---- a trained, pruned network as the teacher --------------------------------------------------

def _find_config(path: Path) -> dict | None:
    for p in [path, *path.parents]:
        if (p / "config.json").exists():
            return read_json(p / "config.json")
    return None


def load_teacher(path: str | Path) -> Net:
    """A pruned trained network as a teacher: a ticketlab run folder holding `final.pt` (and `mask.pt`,
    e.g. `lottery-<hash>/replicate_0/level_5`), or a `final.pt` file. The model must be an `mlp` or
    `lenet300_100` (layers fc1..fcN); the mask is applied and dead nodes removed (`compact`)."""
    from ticketlab.training.loop import load_state
    path = Path(path)
    ckpt = path / "final.pt" if path.is_dir() else path
    if not ckpt.exists():
        raise ConfigError(f"teacher_checkpoint: {ckpt} not found (expected a run folder with final.pt, or the file)")
    cfg = _find_config(ckpt.parent) or {}
    train = cfg.get("config", {})
    train = train.get("train", train)
    model = train.get("model", "mlp")
    if model not in ("mlp", "lenet300_100"):
        raise ConfigError(f"teacher_checkpoint: {ckpt} holds a {model!r}, expected an mlp or lenet300_100")
    activation = (train.get("model_args") or {}).get("activation", "relu")
    if activation not in ("relu", "leaky_relu"):
        raise ConfigError(f"teacher_checkpoint: {ckpt} uses activation {activation!r}, expected relu or leaky_relu")
    try:
        sd = load_state(ckpt)["model"]
    except Exception as e:
        raise TicketlabError(f"teacher_checkpoint: cannot read {ckpt}: {e}") from None
    n = 1
    ws, bs = [], []
    while f"fc{n}.weight" in sd:
        ws.append(sd[f"fc{n}.weight"].float())
        bs.append(sd.get(f"fc{n}.bias", torch.zeros(ws[-1].shape[0])).float())
        n += 1
    if len(ws) < 2 or any(w.dim() != 2 for w in ws):
        raise ConfigError(f"teacher_checkpoint: {ckpt} has no fully connected layers fc1..fcN with a hidden layer")
    mask_path = ckpt.parent / "mask.pt"
    if mask_path.exists():
        masks = load_tensors(mask_path)
        for i, w in enumerate(ws):
            m = masks.get(f"fc{i + 1}.weight")
            if m is not None:
                w.mul_(m.to(w.dtype))
    net = Net([w.unsqueeze(0) for w in ws], [b.unsqueeze(0) for b in bs], activation, 0.01)
    return compact(net)


@torch.no_grad()
def compact(net: Net) -> Net:
    """Remove hidden nodes that carry no signal from a stack of one: nodes with no incoming weight
    (constant: act(bias), folded into the next layer's bias) and nodes with no outgoing weight.
    Repeats until no such node is left. Raises TicketlabError if a hidden layer would be empty."""
    ws = [w[0].clone() for w in net.weights]
    bs = [b[0].clone() for b in net.biases]
    changed = True
    while changed:
        changed = False
        for l in range(len(ws) - 1):
            no_in = ~(ws[l] != 0).any(1)
            no_out = ~(ws[l + 1] != 0).any(0)
            drop = no_in | no_out
            if not bool(drop.any()):
                continue
            const = no_in & ~no_out
            if bool(const.any()):  # a constant node adds W[:, j]·act(b_j) to the next layer's input
                a = net.act(bs[l][const])
                bs[l + 1] += ws[l + 1][:, const] @ a
            keep = ~drop
            if not bool(keep.any()):
                raise TicketlabError(f"teacher: hidden layer {l + 1} has no active node left after pruning")
            ws[l], bs[l] = ws[l][keep], bs[l][keep]
            ws[l + 1] = ws[l + 1][:, keep]
            changed = True
    return Net([w.unsqueeze(0) for w in ws], [b.unsqueeze(0) for b in bs], net.activation, net.slope)


__all__ = ["GRID", "grid_rows", "apply_strength_decay", "tune_biases", "standardize_output",
           "make_teacher", "load_teacher", "compact"]
