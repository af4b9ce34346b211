"""Stacked conv nets through vmap (`ticketlab.training.stacked_conv`): forward, gradients and a short
training equal to one model at a time to float tolerance on the CPU; what it refuses."""

import dataclasses

import pytest
import torch

from ticketlab.data import Dataset, Split
from ticketlab.models import create_model, prunable_parameters
from ticketlab.training.loop import Run, RunOptions, TrainConfig, fit, fit_many, load_state
from ticketlab.training.stacked_conv import VmapStacked, vmap_stackable

torch.set_num_threads(1)


def conv2(seed):
    return create_model("conv2", input_shape=(1, 8, 8), num_classes=10, seed=seed)


def test_forward_and_gradients_equal_one_at_a_time():
    models = [conv2(s) for s in range(3)]
    ens = VmapStacked(models)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(3, 5, 1, 8, 8, generator=g), torch.randint(0, 10, (3, 5), generator=g)
    losses = ens.losses(x, y)
    losses.sum().backward()
    for r, m in enumerate(models):
        loss = torch.nn.functional.cross_entropy(m(x[r]), y[r])
        loss.backward()
        assert torch.allclose(losses[r], loss, atol=1e-6)
        for n, p in m.named_parameters():
            q = ens.params[ens.names.index(n)]
            assert torch.allclose(q.grad[r], p.grad, atol=1e-6, rtol=1e-4), n
    assert set(ens.prunable()) == set(prunable_parameters(models[0]))


def test_training_stacked_equals_one_at_a_time(tmp_path):
    g = torch.Generator().manual_seed(1)
    split = lambda n: Split(torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g))  # noqa: E731
    data = Dataset("random", split(200), split(50), split(50), 10, (1, 8, 8))  # tiny: Conv-2 evals are slow
    cfg = TrainConfig(dataset="fashion-mnist", model="conv2", iterations=6, batch_size=20, eval_every=3,
                      optimizer="adam", lr=2e-4)
    opts = RunOptions(progress=False, device="cpu")
    g = torch.Generator().manual_seed(3)
    masks = [{n: torch.rand(p.shape, generator=g) < 0.3 for n, p in prunable_parameters(conv2(s)).items()}
             for s in range(2)]
    for s in range(2):
        m = conv2(s)
        fit(m, data, dataclasses.replace(cfg, data_seed=s), tmp_path / f"one{s}", masks=masks[s],
            prunable=prunable_parameters(m), options=opts)
    ms = [conv2(s) for s in range(2)]
    fit_many([Run(tmp_path / f"stk{s}", model=ms[s], masks=masks[s], data_seed=s) for s in range(2)], data, cfg,
             VmapStacked(ms), options=opts)
    for s in range(2):
        a, b = (load_state(tmp_path / f"{t}{s}" / "final.pt")["model"] for t in ("one", "stk"))
        for n in a:
            assert torch.allclose(a[n], b[n], atol=1e-4, rtol=0), (s, n)
        for n, mk in masks[s].items():
            assert torch.count_nonzero(b[n][~mk]) == 0


def test_dropout_and_batchnorm_are_refused():
    with_dropout = create_model("conv2", input_shape=(1, 8, 8), num_classes=10, seed=0, dropout=0.5)
    assert vmap_stackable(conv2(0)) and not vmap_stackable(with_dropout)
    assert not vmap_stackable(torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3)))
    with pytest.raises(ValueError, match="dropout"):
        VmapStacked([with_dropout, with_dropout])
