"""Stacked conv nets: R models of one architecture with conv layers, as one computation through
`torch.func.vmap` over stacked parameters.

Issue 16 ("Speed on every device", *Stacked runs on the GPU*): `ticketlab.training.stacked.Stacked`
covers chains of Linear layers (its `baddbmm` per layer); Conv-2/4/6 (LTH §2, docs/lottery.md) need
convolutions. `VmapStacked` keeps `Stacked`'s layout and interface (parameters stacked on a leading
axis in the plain model's order, per-model state and optimizer dicts, stacked masks) and computes
the forward pass as `vmap(functional_call(model, params_r, x_r))`, so each model sees its own
minibatch and slice r of every gradient is model r's own: equal to training one at a time to float
rounding (tests/test_stacked_conv.py).

`family(model, device)` is the one rule of which runs stack, used by the classification trainer and
by the calibration (`ticketlab.engine.calibrate`): Linear chains stack as `Stacked` on any device;
other vmap-stackable models (Conv-2/4/6) as `VmapStacked` on an accelerator only. On the CPU,
stacking conv nets bought nothing measurable (docs/performance.md §4), and a vmapped conv costs
more than R plain ones there. On CUDA a small conv net's step is bound by kernel launches, which a
stack shares; the commands still stack only where the calibration measures it winning on that
device, and benchmarks/gpu (section 4) measures Conv-4 stacked against one model at a time.
Models with dropout or batch norm are refused: vmap would draw one dropout stream for the stack and
share batch statistics across it, which one-at-a-time training does not.
"""

from __future__ import annotations


import torch
from torch import nn
from torch.func import functional_call, vmap

from ticketlab.training.stacked import Stacked, stackable

_REFUSED = (nn.Dropout, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def vmap_stackable(model: nn.Module) -> bool:
    """True if `model` has parameters and no dropout, batch norm or buffers (see the module docstring)."""
    return (any(True for _ in model.parameters()) and not any(True for _ in model.buffers())
            and not any(isinstance(m, _REFUSED) for m in model.modules()))


class _VmapModule(nn.Module):
    """Forward of R stacked models: x [R, B, *in] -> [R, B, classes]."""

    def __init__(self, template: nn.Module, params: nn.ParameterList, names: list[str]):
        super().__init__()
        self.params, self.names = params, names
        self._template = [template]  # a list: not a submodule, so its meta parameters stay out of ours

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        template = self._template[0]

        def one(params, xb):
            return functional_call(template, dict(zip(self.names, params)), (xb,))

        return vmap(one)(tuple(self.params), x)


class VmapStacked(Stacked):
    """R models of one vmap-stackable architecture (Conv-2/4/6, MLPs), trained as one computation."""

    accepts = staticmethod(vmap_stackable)
    needs = "models without dropout, batch norm or buffers"

    def module_class(self, template: nn.Module, params: nn.ParameterList, names: list[str]) -> nn.Module:
        return _VmapModule(template, params, names)


def family(model: nn.Module, device: torch.device | str) -> type[Stacked] | None:
    """The ensemble class that stacks runs of `model` on `device`: `Stacked` for a Linear chain
    (`stackable`), `VmapStacked` for another vmap-stackable model on a device other than the CPU,
    else None (its runs train one at a time)."""
    if stackable(model):
        return Stacked
    if torch.device(device).type != "cpu" and vmap_stackable(model):
        return VmapStacked
    return None


__all__ = ["VmapStacked", "vmap_stackable", "family"]
