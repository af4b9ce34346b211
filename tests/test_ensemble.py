"""Batched training (R stacked models as one computation) equals training one by one."""

import dataclasses

import pytest
from crash import Crash
import torch

from ticketlab.data import load_dataset
from ticketlab.training.stacked import Stacked, stackable
from ticketlab.models import create_model, prunable_parameters
from ticketlab.training.loop import Run, RunOptions, TrainConfig, fit, fit_many, load_state

torch.set_num_threads(1)
QUIET = RunOptions(progress=False, checkpoint_every=100)
# bmm and mm sum in different orders, so stacked and single runs agree to float rounding, not
# bit for bit; 300 Adam steps keep the drift below this.
ATOL = 2e-5


@pytest.fixture(scope="module")
def data():
    return load_dataset("mnist1d")


def models(R=3):
    return [create_model("mlp", input_shape=(40,), num_classes=10, seed=s, widths=[64, 32]) for s in range(R)]


def random_masks(model, seed, density=0.4):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.rand(p.shape, generator=g) < density for n, p in prunable_parameters(model).items()}


def test_stackable():
    assert stackable(models(1)[0])
    assert stackable(create_model("lenet300_100", input_shape=(1, 28, 28), num_classes=10))
    assert not stackable(create_model("conv2", input_shape=(1, 28, 28), num_classes=10))
    assert not stackable(create_model("resnet20", input_shape=(3, 32, 32), num_classes=10))
    assert not stackable(create_model("mlp", input_shape=(40,), num_classes=10, dropout=0.5))  # randomness


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_stacked_equals_one_by_one(tmp_path, data, optimizer):
    cfg = TrainConfig(dataset="mnist1d", model="mlp", optimizer=optimizer, lr=0.01 if optimizer == "sgd" else 1e-3,
                      momentum=0.9, weight_decay=1e-4, schedule="cosine", iterations=300, batch_size=50,
                      eval_every=50)
    ms = models()
    masks = [None, random_masks(ms[1], 1), random_masks(ms[2], 2, 0.1)]
    seeds = [0, 5, 9]
    singles = []
    for s, m, d in zip(range(3), masks, seeds):
        model = create_model("mlp", input_shape=(40,), num_classes=10, seed=s, widths=[64, 32])
        singles.append(fit(model, data, dataclasses.replace(cfg, data_seed=d), tmp_path / f"single{s}", masks=m,
                           prunable=prunable_parameters(model), options=QUIET))
    runs = [Run(tmp_path / f"stacked{s}", model=ms[s], masks=m, data_seed=d) for s, m, d in zip(range(3), masks, seeds)]
    stacked = fit_many(runs, data, cfg, Stacked(ms), options=QUIET)
    for s in range(3):
        a = load_state(tmp_path / f"single{s}" / "final.pt")
        b = load_state(tmp_path / f"stacked{s}" / "final.pt")
        assert a["model"].keys() == b["model"].keys()
        for n in a["model"]:
            assert torch.allclose(a["model"][n], b["model"][n], atol=ATOL, rtol=0), (s, n)
        if masks[s]:  # pruned weights exactly zero in the stacked run too
            for n, m in masks[s].items():
                assert torch.count_nonzero(b["model"][n][~m]) == 0
        # optimizer state in the plain model's format, slice by slice
        for i, st in a["optimizer"]["state"].items():
            for k, v in st.items():
                assert torch.allclose(v.float(), b["optimizer"]["state"][i][k].float(), atol=ATOL), (s, i, k)
        ra, rb = singles[s], stacked[s]
        assert abs(ra["final"]["test_acc"] - rb["final"]["test_acc"]) <= 0.002
        assert abs(ra["final"]["val_loss"] - rb["final"]["val_loss"]) < 1e-4
        assert abs(ra["final"]["train_loss"] - rb["final"]["train_loss"]) < 1e-4
        assert rb["trained_with"] == 3


def test_stacked_resume_is_bit_identical_and_checkpoints_are_plain(tmp_path, data):
    cfg = TrainConfig(dataset="mnist1d", model="mlp", iterations=300, batch_size=50, eval_every=50)
    runs = lambda tag, ms: [Run(tmp_path / f"{tag}{s}", model=ms[s], data_seed=s) for s in range(3)]
    ms = models()
    fit_many(runs("full", ms), data, cfg, Stacked(ms), options=QUIET)
    ms = models()
    with pytest.raises(KeyboardInterrupt):
        fit_many(runs("cut", ms), data, cfg, Stacked(ms), hooks=[Crash(at=171)], options=QUIET)
    ck = load_state(tmp_path / "cut1" / "checkpoint.pt")
    plain = create_model("mlp", input_shape=(40,), num_classes=10, seed=0, widths=[64, 32])
    assert {k: v.shape for k, v in ck["model"].items()} == {k: v.shape for k, v in plain.state_dict().items()}
    ms = models()
    fit_many(runs("cut", ms), data, cfg, Stacked(ms), options=QUIET)
    for s in range(3):
        a, b = (load_state(tmp_path / f"{t}{s}" / "final.pt")["model"] for t in ("full", "cut"))
        assert all(torch.equal(a[n], b[n]) for n in a)
    # a stacked run's checkpoint resumes with the plain loop too (same format)
    ms = models()
    with pytest.raises(KeyboardInterrupt):
        fit_many(runs("mixed", ms), data, cfg, Stacked(ms), hooks=[Crash(at=171)], options=QUIET)
    fit(models(1)[0], data, dataclasses.replace(cfg, data_seed=0), tmp_path / "mixed0", options=QUIET)
    a, b = (load_state(tmp_path / f"{t}0" / "final.pt")["model"] for t in ("full", "mixed"))
    assert all(torch.allclose(a[n], b[n], atol=ATOL) for n in a)


def test_group_consistency_errors(tmp_path, data):
    cfg = TrainConfig(dataset="mnist1d", model="mlp", iterations=100, batch_size=50, eval_every=50)
    ms = models(2)
    fit(ms[0], data, cfg, tmp_path / "a", options=QUIET)
    with pytest.raises(ValueError, match="some runs of the group are finished"):
        fit_many([Run(tmp_path / "a", model=ms[0]), Run(tmp_path / "b", model=ms[1])], data, cfg, Stacked(ms),
                 options=QUIET)
