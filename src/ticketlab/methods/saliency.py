"""Pruning at initialisation: SNIP, GraSP and SynFlow scores, and one-shot masks from them.

Score functions follow `ticketlab.core.scores`: they map the prunable parameters ``{name: weight}`` to
``{name: float tensor}`` of the same shapes, detached, **higher = more important** (kept first).

- `snip` (Lee et al., "SNIP: Single-shot Network Pruning based on Connection Sensitivity", ICLR 2019):
  |g ⊙ w| with g = ∂L/∂w on one batch (the connection sensitivity, up to its global normalisation).
- `grasp` (Wang et al., "Picking Winning Tickets Before Training by Preserving Gradient Flow", ICLR
  2020): the paper's score is S = −w ⊙ Hg (H the Hessian, g the gradient, logits divided by a
  temperature T = 200 as in the official code), and GraSP **removes the largest S**. In the
  higher-is-kept convention this module returns −S = w ⊙ Hg. The official code splits its batch in
  halves and sums; one full batch gives the same scores up to a positive factor (the same mask).
- `synflow` (Tanaka et al., "Pruning neural networks without any data by iteratively conserving
  synaptic flow", NeurIPS 2020): |∂R/∂w ⊙ w| with R = Σ f(1; |θ|), the output of the network with every
  parameter (and buffer) replaced by its absolute value on an all-ones input, in float64 and eval mode.
  Data-free. `synflow_masks` prunes iteratively (100 rounds by default), density d^(k/K) at round k.

One-shot masks (`prune_at_init`, `masks_from_scores`) use the same counts as `ticketlab.core.distributions`
(a layer or group of N weights at sparsity s keeps N − ⌊s·N⌋), `ticketlab.core.pruning`'s exact selection,
and the same first/last-layer policy (`dense`: kept dense, outside the budget). **Global by default**,
as the three papers prune: one threshold over all non-dense layers, so per-layer sparsities follow the
scores (SNIP and GraSP can empty whole layers at high sparsity; SynFlow's iteration is designed to
avoid that). `distribution="uniform"/"er"/"erk"` instead fixes each layer's sparsity and ranks within
the layer.

`SNIP`, `GraSP` and `SynFlow` are the same methods as config dataclasses (`param()` fields: the batch
scored, GraSP's temperature, SynFlow's rounds, the scope), registered by name in
`ticketlab.methods.sparse.METHODS`; their one-shot mask then trains fixed, as `Static`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ticketlab.core import distributions
from ticketlab.core.config import Config, param
from ticketlab.core.errors import ConfigError
from ticketlab.core.pruning import prune_to_density

Loss = Callable[[Tensor, Tensor], Tensor]


def _prunable(model: nn.Module, params: Mapping[str, Tensor] | None) -> dict[str, Tensor]:
    if params is not None:
        return dict(params)
    from ticketlab.models import prunable_parameters
    return prunable_parameters(model)


def _on(ws: Sequence[Tensor], x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """The batch on the parameters' device (issue 16: scores are computed where the model lives)."""
    dev = ws[0].device if ws else x.device
    return x.to(dev), y.to(dev)


def snip(model: nn.Module, x: Tensor, y: Tensor, params: Mapping[str, nn.Parameter] | None = None, *,
         loss_fn: Loss = F.cross_entropy) -> dict[str, Tensor]:
    """SNIP connection sensitivity |∂L/∂w ⊙ w| on the batch (x, y), in the model's current mode.

    `params` default to the model's prunable parameters. Gradients go through `torch.autograd.grad`:
    the parameters' ``.grad`` are left untouched.
    """
    params = _prunable(model, params)
    names, ws = list(params), list(params.values())
    x, y = _on(ws, x, y)
    grads = torch.autograd.grad(loss_fn(model(x), y), ws, allow_unused=True)
    return {n: (torch.zeros_like(w) if g is None else (g * w).abs()).detach() for n, w, g in zip(names, ws, grads)}


def grasp(model: nn.Module, x: Tensor, y: Tensor, params: Mapping[str, nn.Parameter] | None = None, *,
          temperature: float = 200.0, loss_fn: Loss = F.cross_entropy) -> dict[str, Tensor]:
    """GraSP importance w ⊙ Hg (= −S of the paper: the largest S are removed), on the batch (x, y).

    g = ∂L/∂w of the loss on logits / `temperature`, then Hg = ∂(gᵀ ∂L/∂w)/∂w with g held fixed
    (a Hessian-vector product by double backward).
    """
    params = _prunable(model, params)
    names, ws = list(params), list(params.values())
    x, y = _on(ws, x, y)
    loss = loss_fn(model(x) / temperature, y)
    g = torch.autograd.grad(loss, ws, allow_unused=True)
    g = [torch.zeros_like(w) if gi is None else gi.detach() for w, gi in zip(ws, g)]
    loss = loss_fn(model(x) / temperature, y)
    grad_f = torch.autograd.grad(loss, ws, create_graph=True, allow_unused=True)
    z = sum((gi * fi).sum() for gi, fi in zip(g, grad_f) if fi is not None)
    if not torch.is_tensor(z) or not z.requires_grad:
        return {n: torch.zeros_like(w).detach() for n, w in zip(names, ws)}
    hg = torch.autograd.grad(z, ws, allow_unused=True)
    return {n: (torch.zeros_like(w) if h is None else w * h).detach() for n, w, h in zip(names, ws, hg)}


@torch.no_grad()
def _abs_copy(model: nn.Module) -> nn.Module:
    net = copy.deepcopy(model).double().eval()
    for t in net.state_dict().values():
        if t.is_floating_point():
            t.abs_()
    return net


def synflow(model: nn.Module, input_shape: Sequence[int], params: Mapping[str, nn.Parameter] | None = None,
            *, masks: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
    """SynFlow scores |∂R/∂w ⊙ w| (data-free), with pruned entries (`masks`) held at zero.

    Computed on a float64, eval-mode copy whose parameters and buffers are all made non-negative, on one
    all-ones input of `input_shape`; `model` itself is not touched. Scores are float64.
    """
    params = _prunable(model, params)
    net = _abs_copy(model)
    copied = dict(net.named_parameters())
    names = list(params)
    missing = [n for n in names if n not in copied]
    if missing:
        raise ConfigError(f"synflow: {missing} are not parameters of the model")
    ws = [copied[n] for n in names]
    if masks is not None:
        with torch.no_grad():
            for n, w in zip(names, ws):
                if n in masks:
                    w.mul_(masks[n].to(w.dtype))
    out = net(torch.ones(1, *input_shape, dtype=torch.float64, device=ws[0].device if ws else None))
    grads = torch.autograd.grad(out.sum(), ws, allow_unused=True)
    return {n: (torch.zeros_like(w) if g is None else (g * w).abs()).detach() for n, w, g in zip(names, ws, grads)}


# --- one-shot masks --------------------------------------------------------------------------------

SCOPES = ("global", "uniform", "er", "erk")


def _densities(shapes: Mapping[str, Sequence[int]], sparsity: float, distribution: str,
               dense: Sequence[str]) -> tuple[dict[str, float], list[str] | None]:
    """({layer: target density}, or {} and the layers of one global group) for `prune_to_density`."""
    if distribution == "global":
        distributions.uniform(shapes, sparsity, dense=dense)  # validates sparsity and names
        return {}, [n for n in shapes if n not in set(dense)]
    if distribution not in distributions.DISTRIBUTIONS:
        raise ConfigError(f"unknown distribution {distribution!r}; known: {', '.join(SCOPES)}")
    s = distributions.sparsities(distribution, shapes, sparsity, dense=dense)
    out = {}
    for n, v in s.items():
        N = distributions._numel(shapes[n])
        out[n] = distributions.nnz(N, v) / N  # exact count through prune_to_density's rounding
    return out, None


def masks_from_scores(scores: Mapping[str, Tensor], sparsity: float, *, distribution: str = "global",
                      dense: Sequence[str] = (), masks: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
    """Keep the highest-scored entries: N − ⌊S·N⌋ of the non-`dense` layers together (`"global"`), or
    per layer at the sparsities of `distribution` (uniform / er / erk). `masks` (default all ones): the
    entries still alive; they must hold at least the target count."""
    shapes = {n: tuple(s.shape) for n, s in scores.items()}
    current = ({n: torch.ones(sh, dtype=torch.bool, device=scores[n].device) for n, sh in shapes.items()}
               if masks is None else dict(masks))
    per_layer, group = _densities(shapes, sparsity, distribution, dense)
    if group is not None:
        if not group:
            return current
        N = sum(distributions._numel(shapes[n]) for n in group)
        keep = distributions.nnz(N, sparsity)
        return prune_to_density(scores, current, keep / N, layers=group)
    return prune_to_density(scores, current, per_layer)


def synflow_masks(model: nn.Module, input_shape: Sequence[int], sparsity: float, *,
                  params: Mapping[str, nn.Parameter] | None = None, iterations: int = 100,
                  distribution: str = "global", dense: Sequence[str] = ()) -> dict[str, Tensor]:
    """Iterative SynFlow: K = `iterations` rounds of scoring with the current masks and pruning to
    density d^(k/K) (d = 1 − sparsity; exponential schedule of the paper), globally by default."""
    if iterations < 1:
        raise ConfigError(f"iterations must be >= 1, got {iterations!r}")
    params = _prunable(model, params)
    masks = {n: torch.ones(p.shape, dtype=torch.bool, device=p.device) for n, p in params.items()}
    for k in range(1, iterations + 1):
        s_k = 1.0 - (1.0 - sparsity) ** (k / iterations) if k < iterations else sparsity
        scores = synflow(model, input_shape, params, masks=masks)
        masks = masks_from_scores(scores, s_k, distribution=distribution, dense=dense, masks=masks)
    return masks


def prune_at_init(method: str, model: nn.Module, sparsity: float, *, x: Tensor | None = None,
                  y: Tensor | None = None, input_shape: Sequence[int] | None = None,
                  params: Mapping[str, nn.Parameter] | None = None, distribution: str = "global",
                  dense: Sequence[str] = (), synflow_iterations: int = 100,
                  grasp_temperature: float = 200.0) -> dict[str, Tensor]:
    """One-shot masks of `model` at `sparsity` by ``"snip"`` or ``"grasp"`` (on the batch x, y) or
    ``"synflow"`` (data-free, `input_shape`)."""
    if method == "synflow":
        if input_shape is None:
            raise ConfigError("synflow needs input_shape")
        return synflow_masks(model, input_shape, sparsity, params=params, iterations=synflow_iterations,
                             distribution=distribution, dense=dense)
    if x is None or y is None:
        raise ConfigError(f"{method} needs a batch (x, y)")
    if method == "snip":
        scores = snip(model, x, y, params)
    elif method == "grasp":
        scores = grasp(model, x, y, params, temperature=grasp_temperature)
    else:
        raise ConfigError(f"unknown pruning-at-init method {method!r}; use snip, grasp or synflow")
    return masks_from_scores(scores, sparsity, distribution=distribution, dense=dense)


# --- the methods as configs ------------------------------------------------------------------------

@dataclass(frozen=True)
class PruneAtInit(Config):
    """One-shot pruning at initialisation: scores at init choose a fixed mask, then trained as `Static`."""

    name = "prune_at_init"
    data_free = False  # scored without a batch of data (SynFlow)
    scope: str = param("global", "one global threshold (the papers), or per-layer targets from the "
                                 "sparsity distribution", choices=("global", "distribution"))

    def masks(self, model: nn.Module, sparsity: float, *, x: Tensor | None = None, y: Tensor | None = None,
              input_shape: Sequence[int] | None = None, distribution: str = "erk",
              dense: Sequence[str] = ()) -> dict[str, Tensor]:
        """`prune_at_init` with this method's settings; `distribution` applies when `scope` is "distribution"."""
        return prune_at_init(self.name, model, sparsity, x=x, y=y, input_shape=input_shape,
                             distribution="global" if self.scope == "global" else distribution, dense=dense,
                             **self._options())

    def _options(self) -> dict:
        return {}


@dataclass(frozen=True)
class SNIP(PruneAtInit):
    """SNIP: keep the largest connection sensitivities |∂L/∂w ⊙ w| on one batch."""

    name = "snip"
    batch: int = param(100, "training examples scored", min=1)


@dataclass(frozen=True)
class GraSP(PruneAtInit):
    """GraSP: keep the weights whose removal least reduces the gradient flow (w ⊙ Hg) on one batch."""

    name = "grasp"
    batch: int = param(100, "training examples scored", min=1)
    temperature: float = param(200.0, "logits temperature", min=1e-9)

    def _options(self) -> dict:
        return {"grasp_temperature": self.temperature}


@dataclass(frozen=True)
class SynFlow(PruneAtInit):
    """SynFlow: iteratively keep the largest synaptic flows |∂R/∂w ⊙ w|, without data."""

    name = "synflow"
    data_free = True
    iterations: int = param(100, "pruning rounds", min=1)

    def _options(self) -> dict:
        return {"synflow_iterations": self.iterations}


SALIENCY = {"snip": snip, "grasp": grasp, "synflow": synflow}

__all__ = ["snip", "grasp", "synflow", "synflow_masks", "masks_from_scores", "prune_at_init", "SALIENCY", "SCOPES",
           "PruneAtInit", "SNIP", "GraSP", "SynFlow"]
