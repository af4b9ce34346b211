"""IMP driver and controls: exact masks through optimizers, bit-exact rewinding, caching,
resume after an interruption, and control counts. Tiny budgets on MNIST-1D."""

import dataclasses
import json

import pytest
from crash import Crash
import torch

from ticketlab import api
from ticketlab.core import masks as M
from ticketlab.experiments.lottery.trunk import LotteryConfig, load_masks, n_levels
from ticketlab.training.loop import TrainConfig, fit, load_state
from ticketlab.data import load_dataset
from ticketlab.models import create_model, prunable_parameters
from ticketlab.training import timing

torch.set_num_threads(1)

TRAIN = TrainConfig(dataset="mnist1d", model="mlp", model_args={"widths": [64, 32]}, iterations=200,
                    batch_size=50, eval_every=50)


def lottery(tmp_path, **kw):
    return api.lottery(TRAIN, LotteryConfig(**{"levels": 2, **kw}), store=tmp_path, progress=False,
                       checkpoint_every=50)


@pytest.mark.parametrize("optimizer,extra", [
    ("sgd", dict(momentum=0.9, nesterov=True, weight_decay=5e-4)),
    ("adam", dict(weight_decay=5e-4)),
    ("adamw", dict(weight_decay=0.05)),
])
def test_masks_stay_exact_through_optimizer_steps(tmp_path, optimizer, extra):
    cfg = dataclasses.replace(TRAIN, optimizer=optimizer, lr=0.01, **extra)
    data = load_dataset("mnist1d")
    model = create_model("mlp", input_shape=(40,), num_classes=10, seed=0, widths=[64, 32])
    params = prunable_parameters(model)
    g = torch.Generator().manual_seed(0)
    masks = {n: torch.rand(p.shape, generator=g) < 0.3 for n, p in params.items()}
    # a non-zero optimizer state at pruned positions must be zeroed when the mask is installed:
    # start from an optimizer state taken from a dense run
    dense = create_model("mlp", input_shape=(40,), num_classes=10, seed=0, widths=[64, 32])
    fit(dense, data, dataclasses.replace(cfg, iterations=20, eval_every=10), tmp_path / "dense",
        snapshot_iters=[20])
    opt_state = load_state(tmp_path / "dense" / "snapshot_20.pt")["optimizer"]
    fit(model, data, cfg, tmp_path / "masked", masks=masks, prunable=params, start_iter=20,
        start_optimizer=opt_state)
    final = load_state(tmp_path / "masked" / "final.pt")
    opt = final["optimizer"]["state"]
    names = [n for n, _ in model.named_parameters()]
    for n, m in masks.items():
        w = final["model"][n]
        assert torch.count_nonzero(w[~m]) == 0, n
        assert torch.count_nonzero(w[m]) > 0.99 * m.sum()  # survivors trained
        moments = [v for v in opt[names.index(n)].values() if torch.is_tensor(v) and v.shape == m.shape]
        assert len(moments) == (1 if optimizer == "sgd" else 2), n  # momentum, or Adam's two moments
        for v in moments:
            assert torch.count_nonzero(v[~m]) == 0, (n, "optimizer state")
    assert final["masks"].keys() == masks.keys()
    assert all(torch.equal(final["masks"][n], masks[n]) for n in masks)


def test_rewinding_restores_the_saved_state_bit_for_bit(tmp_path):
    res = lottery(tmp_path, rewind_iter=50, levels=1)
    rep = tmp_path / res["experiment"].split("/")[-1] / "replicate_0"
    theta_k = load_state(rep / "level_0" / "snapshot_50.pt")["model"]
    start = load_state(rep / "level_1" / "snapshot_50.pt")
    mask = load_masks(rep / "level_1" / "mask.pt")
    assert start["iteration"] == 50
    for n, w in theta_k.items():
        if n in mask:
            assert torch.equal(start["model"][n], w * mask[n])
            assert torch.equal(start["model"][n][mask[n]], w[mask[n]])
        else:
            assert torch.equal(start["model"][n], w)
    # θ0 is the seeded init, saved as tensors
    theta0 = load_state(rep / "level_0" / "snapshot_0.pt")["model"]
    fresh = create_model("mlp", input_shape=(40,), num_classes=10, seed=0, widths=[64, 32]).state_dict()
    assert all(torch.equal(theta0[n], fresh[n]) for n in fresh)


def test_layerwise_rates_and_output_layer(tmp_path):
    res = lottery(tmp_path, levels=2)
    rep = tmp_path / res["experiment"].split("/")[-1] / "replicate_0"
    m1, m2 = (load_masks(rep / f"level_{L}" / "mask.pt") for L in (1, 2))
    sizes = {"fc1.weight": 64 * 40, "fc2.weight": 32 * 64, "fc3.weight": 10 * 32}
    for n, size in sizes.items():
        rate = 0.1 if n == "fc3.weight" else 0.2
        k1 = size - int(rate * size + 0.5)
        assert int(m1[n].sum()) == k1
        assert int(m2[n].sum()) == k1 - int(rate * k1 + 0.5)
        assert not (m2[n] & ~m1[n]).any()  # pruned stays pruned


def test_resumed_lottery_equals_uninterrupted(tmp_path, monkeypatch):
    full = lottery(tmp_path / "a", levels=2, rewind_iter=50)
    import ticketlab.domains.classify as classify
    crash, real_fit = Crash(at=121), classify.fit
    def crashing_fit(*a, **kw):
        if str(a[3]).endswith("level_1"):
            kw["hooks"] = [crash]
        return real_fit(*a, **kw)
    monkeypatch.setattr(classify, "fit", crashing_fit)
    with pytest.raises(KeyboardInterrupt):
        lottery(tmp_path / "b", levels=2, rewind_iter=50)
    exp_b = tmp_path / "b" / full["experiment"].split("/")[-1]
    assert (exp_b / "replicate_0" / "level_1" / "checkpoint.pt").exists()
    resumed = lottery(tmp_path / "b", levels=2, rewind_iter=50)
    exp_a = tmp_path / "a" / full["experiment"].split("/")[-1]
    for L in range(3):
        wa = load_state(exp_a / "replicate_0" / f"level_{L}" / "final.pt")["model"]
        wb = load_state(exp_b / "replicate_0" / f"level_{L}" / "final.pt")["model"]
        assert all(torch.equal(wa[n], wb[n]) for n in wa), L
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("path", *timing.FIELDS)} for r in rows]
    assert strip(full["rows"]) == strip(resumed["rows"])


def test_an_interrupted_stack_resumes_as_the_stack_it_started_in(tmp_path, monkeypatch):
    # one worker: a level's ticket and reinit control train as one stack (issue #18, point 6); a crash
    # inside it leaves stack.json beside the checkpoints, and the resume continues that very stack
    kw = dict(levels=1, replicates=2, controls=("reinit",))
    full = lottery(tmp_path / "a", **kw)
    import ticketlab.domains.classify as classify
    crash, real_fit = Crash(at=121), classify.fit_many
    monkeypatch.setattr(classify, "fit_many", lambda *a, **k: real_fit(*a, **{**k, "hooks": [crash]})
                        if len(a[0]) == 4 else real_fit(*a, **k))  # the level-1 stack of four runs
    with pytest.raises(KeyboardInterrupt):
        lottery(tmp_path / "b", **kw)
    name = full["experiment"].split("/")[-1]
    runs = [f"replicate_{r}/{b}level_1" for r in (0, 1) for b in ("", "reinit_0/")]
    stacks = {len(json.loads((tmp_path / "b" / name / run / "stack.json").read_text())["members"]) for run in runs}
    assert stacks == {4} and all((tmp_path / "b" / name / run / "checkpoint.pt").exists() for run in runs)
    resumed = lottery(tmp_path / "b", **kw)
    for run in runs:
        wa = load_state(tmp_path / "a" / name / run / "final.pt")["model"]
        wb = load_state(tmp_path / "b" / name / run / "final.pt")["model"]
        assert all(torch.equal(wa[n], wb[n]) for n in wa), run
        assert not (tmp_path / "b" / name / run / "stack.json").exists()  # dropped once finished
        assert json.loads((tmp_path / "b" / name / run / "summary.json").read_text())["trained_with"] == 4
    assert len(resumed["rows"]) == len(full["rows"])


def test_levels_are_cached_and_extended(tmp_path):
    lottery(tmp_path, levels=1)
    exp = next(tmp_path.glob("lottery-*"))
    t = {L: (exp / "replicate_0" / f"level_{L}" / "final.pt").stat().st_mtime_ns for L in (0, 1)}
    res = lottery(tmp_path, levels=2)  # same experiment: levels are run shape, not identity
    assert len(list(tmp_path.glob("lottery-*"))) == 1
    assert t == {L: (exp / "replicate_0" / f"level_{L}" / "final.pt").stat().st_mtime_ns for L in (0, 1)}
    assert sorted(r["level"] for r in res["rows"]) == [0, 1, 2]


def test_controls_match_the_ticket_counts(tmp_path):
    res = lottery(tmp_path, levels=2, controls=("reinit", "random_mask", "random_mask_global", "oneshot",
                                               "continued"), control_draws=2, control_levels=(2,))
    rep = next(tmp_path.glob("lottery-*")) / "replicate_0"
    ticket = load_masks(rep / "level_2" / "mask.pt")
    per_layer = lambda m: {n: int(v.sum()) for n, v in m.items()}
    for d in (0, 1):
        assert all(torch.equal(ticket[n], v) for n, v in load_masks(rep / f"reinit_{d}" / "level_2" / "mask.pt").items())
        rm = load_masks(rep / f"random_mask_{d}" / "level_2" / "mask.pt")
        assert per_layer(rm) == per_layer(ticket) and any(not torch.equal(rm[n], ticket[n]) for n in rm)
        rg = load_masks(rep / f"random_mask_global_{d}" / "level_2" / "mask.pt")
        assert M.count(rg) == M.count(ticket)
    assert not torch.equal(load_masks(rep / "random_mask_0" / "level_2" / "mask.pt")["fc1.weight"],
                           load_masks(rep / "random_mask_1" / "level_2" / "mask.pt")["fc1.weight"])
    assert per_layer(load_masks(rep / "oneshot" / "level_2" / "mask.pt")) == per_layer(ticket)
    assert per_layer(load_masks(rep / "continued" / "level_2" / "mask.pt")) == per_layer(ticket)
    # reinit starts from a different init than the ticket
    r0 = load_state(rep / "reinit_0" / "level_2" / "snapshot_0.pt")["model"]
    t0 = load_state(rep / "level_2" / "snapshot_0.pt")["model"]
    assert not torch.equal(r0["fc1.weight"], t0["fc1.weight"])
    branches = {(r["branch"], r["level"]) for r in res["rows"]}
    assert {("reinit", 2), ("random_mask", 2), ("oneshot", 2), ("continued", 2)} <= branches
    assert sum(1 for r in res["rows"] if r["branch"] == "reinit") == 2


def test_target_sparsity_sets_the_levels():
    params = {"fc1.weight": torch.zeros(300, 784), "fc2.weight": torch.zeros(100, 300), "fc3.weight": torch.zeros(10, 100)}
    # LTH ladder: 3.6% remaining at level 15, 2.9% at 16, 1.9% at 18
    assert n_levels(LotteryConfig(target_sparsity=0.964), params, "fc3.weight") == 15
    assert n_levels(LotteryConfig(target_sparsity=0.98), params, "fc3.weight") == 18
    assert n_levels(LotteryConfig(levels=4), params, "fc3.weight") == 4


def test_global_strategy_and_replicates(tmp_path):
    res = lottery(tmp_path, strategy="global", levels=1, replicates=2, exclude=("fc3.weight",))
    rep = next(tmp_path.glob("lottery-*"))
    m = [load_masks(rep / f"replicate_{r}" / "level_1" / "mask.pt") for r in (0, 1)]
    assert all(bool(x["fc3.weight"].all()) for x in m)  # excluded layer stays dense
    kept, total = M.count({n: v for n, v in m[0].items() if n != "fc3.weight"})
    assert total - kept == int(0.2 * total + 0.5)
    assert not torch.equal(m[0]["fc1.weight"], m[1]["fc1.weight"])  # different seeds
    ticket1 = [a for a in res["aggregate"] if a["branch"] == "ticket" and a["level"] == 1][0]
    assert ticket1["n"] == 2 and ticket1["es_test_acc_std"] >= 0


def test_cli_lottery_with_toml_sections(tmp_path, capsys):
    from ticketlab.cli.commands import main
    f = tmp_path / "exp.toml"
    f.write_text('[train]\ndataset = "mnist1d"\nmodel = "mlp"\nmodel_args = {widths = [32]}\n'
                 'iterations = 100\nbatch_size = 50\neval_every = 50\n'
                 '[lottery]\nlevels = 1\ncontrols = ["reinit"]\n')
    assert main(["lottery", "--config", str(f), "--store", str(tmp_path / "s"), "--quiet", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    # fc1 1280 -> 1024 kept, output 320 -> 288 kept (half rate): 1312/1600
    assert "remaining_%" in out and "reinit_acc_%" in out and "82.00" in out
    f.write_text('[lottery]\nlevels = 1\nrewind = 3\n')
    assert main(["lottery", "--config", str(f), "--store", str(tmp_path / "s"), "--quiet"]) == 2
    assert "unknown key 'rewind'" in capsys.readouterr().err


def test_ls_reports_the_deepest_level(tmp_path):
    res = lottery(tmp_path, levels=2)
    rows = api.ls(store=tmp_path)
    assert len(rows) == 1 and rows[0]["kind"] == "lottery" and rows[0]["model"] == "mlp"
    k = sum(1 for r in res["rows"] if r["converged"] is False)  # 200 iterations: short runs, marked
    assert rows[0]["levels"] == 2 and rows[0]["status"] == "3 runs" + (f", {k} not converged" if k else "")
    assert 0.6 < rows[0]["remaining"] < 0.7 and 0 < rows[0]["es_test_acc"] <= 1
