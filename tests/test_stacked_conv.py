"""Stacked conv nets through vmap (`ticketlab.training.stacked_conv`): forward, gradients and a short
training equal to one model at a time to float tolerance (on the CPU, and marked `gpu` on CUDA); what it
refuses; which runs stack on which device (`family`), in the classification trainer and in the
calibration."""

import dataclasses

import pytest
import torch

from ticketlab.data import Dataset, Split
from ticketlab.models import create_model, prunable_parameters
from ticketlab.training.loop import Run, RunOptions, TrainConfig, fit, fit_many, load_state
from ticketlab.training.stacked import Stacked
from ticketlab.training.stacked_conv import VmapStacked, family, vmap_stackable

from gpu_marks import gpu, needs_cuda

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


@pytest.mark.parametrize("where", ["cpu", pytest.param("cuda", marks=[gpu, needs_cuda])])
def test_training_stacked_equals_one_at_a_time(tmp_path, where):
    g = torch.Generator().manual_seed(1)
    split = lambda n: Split(torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g))  # noqa: E731
    data = Dataset("random", split(200), split(50), split(50), 10, (1, 8, 8))  # tiny: Conv-2 evals are slow
    cfg = TrainConfig(dataset="fashion-mnist", model="conv2", iterations=6, batch_size=20, eval_every=3,
                      optimizer="adam", lr=2e-4)
    opts = RunOptions(progress=False, device=where)
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
            assert torch.count_nonzero(a[n][~mk]) == 0 and torch.count_nonzero(b[n][~mk]) == 0


def test_dropout_and_batchnorm_are_refused():
    with_dropout = create_model("conv2", input_shape=(1, 8, 8), num_classes=10, seed=0, dropout=0.5)
    assert vmap_stackable(conv2(0)) and not vmap_stackable(with_dropout)
    assert not vmap_stackable(torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3)))
    with pytest.raises(ValueError, match="dropout"):
        VmapStacked([with_dropout, with_dropout])


def test_linear_chains_stack_everywhere_and_conv_nets_only_off_the_cpu():
    mlp = create_model("mlp", input_shape=(40,), num_classes=10, seed=0, widths=[16])
    with_bn = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
    for dev in ("cpu", "cuda", "mps", torch.device("cuda:1")):  # only the device's type is read
        assert family(mlp, dev) is Stacked
        assert family(with_bn, dev) is None
    assert family(conv2(0), "cpu") is None  # measured: no gain on the CPU, so one at a time as before
    assert family(conv2(0), "cuda") is VmapStacked and family(conv2(0), "mps") is VmapStacked


def test_the_classification_trainer_stacks_what_family_says_on_its_device(monkeypatch):
    from ticketlab.domains import classify
    from ticketlab.training import device as _device
    trainer = classify.ClassifyTrainer(TrainConfig(dataset="fashion-mnist", model="conv2"),
                                       data=Dataset("random", *(Split(torch.zeros(4, 1, 8, 8), torch.zeros(4).long()),) * 3,
                                                    10, (1, 8, 8)))
    assert not trainer.can_stack(conv2(0))
    monkeypatch.setattr(_device, "resolve", lambda name=None: torch.device("cuda"))
    assert trainer.can_stack(conv2(0))


def test_the_calibration_measures_the_vmapped_stack(monkeypatch, tmp_path):
    # on CUDA the calibration times VmapStacked for a conv net; the same code path, forced, on the CPU
    from ticketlab.engine import calibrate
    monkeypatch.setattr(calibrate, "STEPS", 4)
    monkeypatch.setattr(calibrate, "WARMUP", 1)
    monkeypatch.setattr(calibrate, "ROUNDS", 1)
    from calibration_spy import expected_calls, spy_on_fit_many
    calls = spy_on_fit_many(monkeypatch)
    stacked, single = calibrate.measure(conv2, (1, 8, 8), "cpu", TrainConfig(optimizer="adam", batch_size=8),
                                        ensemble=VmapStacked)
    assert stacked > 0 and single > 0
    assert calls == expected_calls("VmapStacked", (8, "adam"))
    with pytest.raises(ValueError, match="does not stack on cpu"):
        calibrate.measure(conv2, (1, 8, 8), "cpu")
    monkeypatch.setenv("TICKETLAB_CACHE", str(tmp_path))
    assert calibrate.stacking_wins("conv2 test", conv2, (1, 8, 8), "cpu") is False  # not measured on the CPU
    assert calibrate.read() == {}
