"""Mask cost (issue #16): the training loop skips re-zeroing weights after the step where the step
provably keeps them zero, and the result is the same, bit for bit, with masks exact."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ticketlab.core.masks import MaskEnforcer, step_keeps_zeros
from ticketlab.models import create_model


def _train(opt_name: str, trust: bool, steps: int = 30, **kw):
    torch.manual_seed(0)
    model = create_model("lenet300_100", input_shape=(1, 28, 28), num_classes=10, seed=0)
    params = dict(model.named_parameters())
    g = torch.Generator().manual_seed(1)
    masks = {n: torch.rand(p.shape, generator=g) >= 0.8 for n, p in params.items() if n.endswith("weight")}
    cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[opt_name]
    opt = cls(model.parameters(), lr=1e-2, **kw)
    enf = MaskEnforcer(params, masks)
    enf.install(opt, trust_step=trust)
    x, y = torch.randn(steps, 16, 1, 28, 28, generator=g), torch.randint(0, 10, (steps, 16), generator=g)
    for i in range(steps):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[i]), y[i]).backward()
        enf.after_backward(i)
        opt.step()
        enf.after_step(i)
    return enf, {n: p.detach().clone() for n, p in params.items()}, masks


@pytest.mark.parametrize("opt_name,kw", [("sgd", dict(momentum=0.9, nesterov=True, weight_decay=1e-3)),
                                         ("adam", dict(weight_decay=1e-3, fused=True)),
                                         ("adam", dict(amsgrad=True)),
                                         ("adamw", dict(weight_decay=0.1, fused=True))])
def test_skipping_the_rezero_pass_changes_no_bit_and_keeps_masks_exact(opt_name, kw):
    trusted, got, masks = _train(opt_name, True, **kw)
    plain, want, _ = _train(opt_name, False, **kw)
    assert not trusted.rezero and plain.rezero
    for n in want:
        assert torch.equal(got[n].view(torch.int32), want[n].view(torch.int32)), n  # the same bits, ±0 included
    for n, m in masks.items():
        assert bool((got[n][~m] == 0).all()) and bool((got[n][m] != 0).any()), n


def test_only_known_optimizers_are_trusted():
    class Mine(torch.optim.Adam):
        pass

    p = torch.nn.Parameter(torch.ones(3))
    assert step_keeps_zeros(torch.optim.Adam([p])) and not step_keeps_zeros(Mine([p]))
    assert not step_keeps_zeros(torch.optim.RMSprop([p]))
    enf = MaskEnforcer({"w": p}, {"w": torch.tensor([True, False, True])})
    enf.install(Mine([p]), trust_step=True)
    assert enf.rezero  # a subclass may step otherwise: re-zeroed as before
    enf.install(torch.optim.Adam([p]))
    assert enf.rezero  # not trusted unless the caller says nothing else touches the gradients
