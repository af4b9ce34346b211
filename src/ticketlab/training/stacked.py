"""Training R models of one architecture as one computation.

Lottery-ticket science is many small runs (replicates × levels × controls). On a CPU the
dense LeNet step is already near the GEMM limit, so what batching buys is fewer, larger
kernel calls: stacked weights [R, out, in] and one `baddbmm` per layer instead of R
`addmm`s (docs/performance.md §4: ≈1.1× at 1 thread, ≈1.3–1.4× at 2,
1.9× with 2 processes × 8 stacked models). The batched path stays device-agnostic: on a
GPU it pays far more.

An ensemble hides whether there is one model or R stacked ones from the training loop:

- `Single(model)`: the plain module; R = 1.
- `Stacked(models)`: R copies of an `nn.Sequential` chain of Flatten / Linear / elementwise
  activation modules (LeNet-300-100, the MLP) as one module whose parameters are the
  per-layer weights stacked on a leading axis. Each model sees its own minibatch, and
  the loss is the sum of the per-model mean losses, so each slice's gradient is exactly
  its own model's. Optimizers in `torch.optim` act elementwise, so one optimizer on the
  stacked parameters is R independent optimizers with the same hyper-parameters.

Both convert to and from per-model state dicts and optimizer state dicts in the plain
model's format, so a run's checkpoint does not depend on how it was trained.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# Modules a stacked chain may contain besides Linear: they act elementwise (or only reshape),
# so they apply unchanged to a [R, B, features] tensor.
_ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.Identity)


def stackable(model: nn.Module) -> bool:
    """True if `model` is an `nn.Sequential` of Flatten(1) / Linear / elementwise activations."""
    if not isinstance(model, nn.Sequential) or type(model).forward is not nn.Sequential.forward:
        return False
    for m in model:
        if isinstance(m, nn.Flatten):
            if m.start_dim != 1 or m.end_dim != -1:
                return False
        elif not isinstance(m, (nn.Linear, *_ELEMENTWISE)):
            return False
    return any(isinstance(m, nn.Linear) for m in model)


class Single:
    """One plain model, as an ensemble of size 1."""

    def __init__(self, model: nn.Module, prunable: dict[str, nn.Parameter] | None = None):
        self.module = model
        self.size = 1
        self._prunable = prunable

    def prunable(self) -> dict[str, nn.Parameter]:
        if self._prunable is None:
            from ticketlab.models import prunable_parameters
            self._prunable = prunable_parameters(self.module)
        return self._prunable

    def losses(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x: [1, B, ...], y: [1, B] -> [1]: the mean cross-entropy."""
        return self.loss(x[0], y[0]).unsqueeze(0)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x: [B, ...], y: [B] -> []: the mean cross-entropy (the training loop's one-model step)."""
        return F.cross_entropy(self.module(x), y)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, ...] -> [1, N, classes]."""
        return self.module(x).unsqueeze(0)

    def stack_masks(self, masks: Sequence[dict | None]) -> dict:
        return dict(masks[0] or {})

    def state_dicts(self) -> list[dict]:
        return [self.module.state_dict()]

    def load_state_dicts(self, states: Sequence[dict]) -> None:
        self.module.load_state_dict(states[0])

    def split_optimizer(self, state: dict) -> list[dict]:
        return [state]

    def stack_optimizer(self, states: Sequence[dict]) -> dict:
        return states[0]


class Stacked:
    """R models of one `stackable` architecture, trained as one batched computation.

    A subclass stacks another family of models by setting `accepts` (which models it can stack) and
    `needs` (what the error says they must be), and by overriding `module_class` (the stacked forward)."""

    accepts = staticmethod(stackable)
    needs = "nn.Sequential chains of Flatten / Linear / elementwise activations"

    def module_class(self, template: nn.Module, params: nn.ParameterList, names: list[str]) -> nn.Module:
        """The stacked forward over `params` (in the order of `names`)."""
        return _StackedModule(template, params, names)

    def __init__(self, models: Sequence[nn.Module]):
        if not models or not all(self.accepts(m) for m in models):
            raise ValueError(f"{type(self).__name__} needs {self.needs}")
        self.template = copy.deepcopy(models[0]).to("meta")  # structure and names only
        self.size = len(models)
        self.names = [n for n, _ in models[0].named_parameters()]
        # One stacked parameter per parameter of the plain model, in the same order, so the
        # optimizer's parameter indices match the plain model's optimizer state dict.
        self.params = nn.ParameterList(
            nn.Parameter(torch.stack([dict(m.named_parameters())[n].detach() for m in models]))
            for n in self.names)
        self.module = self.module_class(self.template, self.params, self.names)
        self.output_layer = getattr(models[0], "output_layer", None)

    def prunable(self) -> dict[str, nn.Parameter]:
        """Stacked weights of the plain model's prunable parameters: name -> [R, out, in]."""
        from ticketlab.models import prunable_parameters
        names = prunable_parameters(self.template)
        return {n: self.params[self.names.index(n)] for n in names}

    def losses(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x: [R, B, ...], y: [R, B] -> [R]: each model's mean cross-entropy on its own batch.

        Their sum is what is differentiated: slice r of every stacked gradient is then model r's own."""
        out = self.module(x)  # [R, B, classes]
        return F.cross_entropy(out.transpose(1, 2), y, reduction="none").mean(1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, ...] (shared by all models) -> [R, N, classes]."""
        return self.module(x.unsqueeze(0).expand(self.size, *x.shape))

    def stack_masks(self, masks: Sequence[dict | None]) -> dict:
        if all(m is None or not m for m in masks):
            return {}
        names = self.prunable()
        full = [m or {} for m in masks]
        return {n: torch.stack([m[n].to(p.device) if n in m else torch.ones(p.shape[1:], dtype=torch.bool,
                                                                            device=p.device) for m in full])
                for n, p in names.items()}

    def state_dicts(self) -> list[dict]:
        return [{n: p[r].detach().clone() for n, p in zip(self.names, self.params)} for r in range(self.size)]

    @torch.no_grad()
    def load_state_dicts(self, states: Sequence[dict]) -> None:
        for n, p in zip(self.names, self.params):
            p.copy_(torch.stack([s[n] for s in states]))

    def split_optimizer(self, state: dict) -> list[dict]:
        """A stacked optimizer state dict -> R plain ones (tensors of the stacked shape are sliced)."""
        out = []
        for r in range(self.size):
            per = {}
            for i, st in state["state"].items():
                shape = self.params[int(i)].shape
                per[i] = {k: (v[r].clone() if torch.is_tensor(v) and v.shape == shape else
                              (v.clone() if torch.is_tensor(v) else v)) for k, v in st.items()}
            out.append({"state": per, "param_groups": copy.deepcopy(state["param_groups"])})
        return out

    def stack_optimizer(self, states: Sequence[dict]) -> dict:
        """R plain optimizer state dicts (same step counts) -> one stacked state dict."""
        first = states[0]
        stacked = {}
        for i, st in first["state"].items():
            stacked[i] = {}
            for k, v in st.items():
                if torch.is_tensor(v) and v.dim() > 0:
                    stacked[i][k] = torch.stack([s["state"][i][k] for s in states])
                else:
                    stacked[i][k] = v
        return {"state": stacked, "param_groups": copy.deepcopy(first["param_groups"])}


_AUTOCAST = ("cpu", "cuda", "mps", "xpu")  # device types autocast knows (the meta device is not one)


class _StackedLinear(torch.autograd.Function):
    """y = x wᵀ + b for R models at once. x: [R, B, in], w: [R, out, in], b: [R, out] or None.

    Autograd's own bmm backward yields the weight gradient as the transpose of an [R, in, out]
    product, a strided view that the gradient-layout contract then copies into w's [R, out, in]
    layout: measured here, that copy was a quarter of a stacked LeNet-300-100 step. Computing
    dw = gᵀ x directly gives it in w's layout."""

    @staticmethod
    def forward(ctx, x, w, b):
        # Under autocast (bf16, `ticketlab.training.precision`) the product runs in the autocast
        # dtype, and backward, which autocast does not cover, must see the same dtype in g, x and w;
        # autograd casts the gradients back to the fp32 parameters' dtype. In fp32 nothing is cast.
        kind = x.device.type
        if kind in _AUTOCAST and torch.is_autocast_enabled(kind):
            dt = torch.get_autocast_dtype(kind)
            x, w, b = x.to(dt), w.to(dt), (b.to(dt) if b is not None else None)
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        if b is None:
            return torch.bmm(x, w.transpose(1, 2))
        return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))

    @staticmethod
    def backward(ctx, g):  # g: [R, B, out]
        x, w = ctx.saved_tensors
        gx = torch.bmm(g, w) if ctx.needs_input_grad[0] else None           # [R, B, in]
        gw = torch.bmm(g.transpose(1, 2), x) if ctx.needs_input_grad[1] else None  # [R, out, in]
        gb = g.sum(1) if ctx.has_bias and ctx.needs_input_grad[2] else None   # [R, out]
        return gx, gw, gb


class _StackedModule(nn.Module):
    """Forward of R stacked Sequential chains: x [R, B, *in] -> [R, B, classes]."""

    def __init__(self, template: nn.Sequential, params: nn.ParameterList, names: list[str]):
        super().__init__()
        self.params = params
        self.steps = []
        index = {n: i for i, n in enumerate(names)}
        for name, m in template.named_children():
            if isinstance(m, nn.Linear):
                self.steps.append(("linear", index[f"{name}.weight"],
                                   index.get(f"{name}.bias") if m.bias is not None else None))
            elif isinstance(m, nn.Flatten):
                self.steps.append(("flatten", None, None))
            else:
                self.steps.append(("apply", copy.deepcopy(m).to("cpu"), None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for kind, a, b in self.steps:
            if kind == "linear":
                x = _StackedLinear.apply(x, self.params[a], None if b is None else self.params[b])
            elif kind == "flatten":
                x = x.flatten(2)
            else:
                x = a(x)
        return x
