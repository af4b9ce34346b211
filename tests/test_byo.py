"""Masks, IMP and one-shot pruning on any model, in a plain PyTorch loop (issue 15)."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from ticketlab.core import masks as M, targets
from ticketlab.core.errors import ConfigError


def net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))


def half_masks(model: nn.Module, seed: int = 1) -> M.Masks:
    g = torch.Generator().manual_seed(seed)
    return {n: torch.rand(p.shape, generator=g) < 0.5 for n, p in targets.prunable(model).items()}


def batches(n: int, seed: int = 2):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        yield torch.randn(32, 8, generator=g), torch.randint(0, 3, (32,), generator=g)


def assert_masked(model: nn.Module, masks: M.Masks) -> None:
    params = dict(model.named_parameters())
    for n, m in masks.items():
        assert int(params[n].detach()[~m].count_nonzero()) == 0, n


# ---- which tensors, which output layer -------------------------------------------------------------

def test_prunable_by_patterns_or_names():
    model = net()
    assert list(targets.prunable(model)) == ["0.weight", "2.weight", "4.weight"]
    assert list(targets.prunable(model, exclude=["4.*"])) == ["0.weight", "2.weight"]
    assert list(targets.prunable(model, names=["0.bias", "2.weight"])) == ["0.bias", "2.weight"]
    with pytest.raises(ConfigError, match="names: 'nope'"):
        targets.prunable(model, names=["nope"])
    with pytest.raises(ConfigError, match="include/exclude"):
        targets.prunable(model, include=["fc*"])


def test_output_layer_found_like_timm_hf_or_last_linear():
    model = net()
    assert targets.output_layer(model) == "4.weight"
    assert targets.output_layer(model, "2.weight") == "2.weight"

    class Timm(nn.Module):
        def __init__(self):
            super().__init__()
            self.head, self.body = nn.Linear(4, 2), nn.Linear(4, 4)  # the last Linear is not the head

        def get_classifier(self):
            return self.head

    class HF(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, 4)
            self.lm_head, self.extra = nn.Linear(4, 10, bias=False), nn.Linear(4, 4)
            self.lm_head.weight = self.embed.weight  # tied: the parameter's name is the embedding's

    assert targets.output_layer(Timm()) == "head.weight"
    assert targets.output_layer(HF()) == "embed.weight"


# ---- enforce ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("scaled", [False, True])
def test_enforce_keeps_masks_exact_with_clipping_and_grad_scaler(scaled):
    model = net()
    masks = half_masks(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    handle = M.enforce(model, opt, masks)
    assert_masked(model, masks)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8) if scaled else None
    params = dict(model.named_parameters())
    for x, y in batches(20):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        if scaled:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
        else:
            loss.backward()
        for n, m in masks.items():  # masked before clipping reads them
            assert int(params[n].grad[~m].count_nonzero()) == 0
        nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        if scaled:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        assert_masked(model, masks)
    checked = 0
    for n, m in masks.items():  # no Adam moment built up at a pruned position
        for v in opt.state[params[n]].values():
            if v.shape == m.shape:
                assert int(v[~m].count_nonzero()) == 0
                checked += 1
    assert checked == 2 * len(masks)  # both moments of every masked tensor were looked at
    handle.remove()
    x, y = next(batches(1))
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    assert any(int(params[n].detach()[~m].count_nonzero()) for n, m in masks.items())


@pytest.mark.parametrize("fused", [False, True])
def test_a_step_the_grad_scaler_skips_is_no_step_for_imps_rewind_point(fused):
    """θk is the weights after k optimizer steps taken: a step a GradScaler skips (inf gradients) does
    not count, whether the scaler leaves the optimizer unstepped or tells a fused one to skip."""
    from ticketlab.methods.imp import IMP

    model = net()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, fused=fused)
    imp = IMP(prune_fraction=0.5, rewind_iter=3).attach(model, opt)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
    params, after = dict(model.named_parameters()), []
    for i, (x, y) in enumerate(batches(6)):
        opt.zero_grad()
        scaler.scale(nn.functional.cross_entropy(model(x), y)).backward()
        if i == 1:  # an overflow on a kept weight: the scaler skips this step
            params["4.bias"].grad[0] = float("inf")
        scaler.unscale_(opt)
        nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        scaler.step(opt)
        scaler.update()
        after.append({k: v.clone() for k, v in model.state_dict().items()})
    assert all(torch.equal(after[0][k], v) for k, v in after[1].items())  # step 1 was skipped
    assert scaler.get_scale() < 2.0 ** 8 and imp.steps == 3
    assert all(torch.equal(imp.thetak[k], v) for k, v in after[3].items())  # steps 0, 2, 3
    assert not torch.equal(imp.thetak["0.weight"], after[2]["0.weight"])


class Wrapped:
    """A minimal accelerate/Lightning-style wrapper: the torch optimizer in `.optimizer`, no hooks API."""

    def __init__(self, optimizer):
        self.optimizer = optimizer

    def step(self):
        self.optimizer.step()

    def zero_grad(self):
        self.optimizer.zero_grad()

    def state_dict(self):
        return self.optimizer.state_dict()


def test_enforce_and_imp_hook_the_optimizer_inside_a_wrapper():
    from ticketlab.methods.imp import IMP

    model = net()
    masks = half_masks(model)
    inner = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    opt = Wrapped(inner)
    handle = M.enforce(model, opt, masks)
    assert handle.optimizer is inner
    for x, y in batches(10):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        assert_masked(model, masks)  # decoupled weight decay would revive them without the hooks
    assert M.STATE_KEY in opt.state_dict()  # the masks ride in the real optimizer's state dict
    handle.remove()

    model = net()
    imp = IMP(rewind_iter=3).attach(model, Wrapped(torch.optim.SGD(model.parameters(), lr=0.1)))
    for x, y in batches(5):
        imp.optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        imp.optimizer.step()
    assert imp.steps == 3 and imp.thetak is not None  # θk captured by the inner optimizer's hook
    imp.prune()
    imp.rewind(Wrapped(torch.optim.SGD(model.parameters(), lr=0.1)))
    assert all(torch.equal(p, imp.thetak[n] * imp.masks.get(n, 1)) for n, p in model.state_dict().items())


def test_masks_ride_in_the_optimizer_state_dict():
    model = net()
    masks = half_masks(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    M.enforce(model, opt, masks)
    for x, y in batches(3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)

    resumed = net(seed=5)  # a fresh run that resumes: no masks until the checkpoint is loaded
    opt2 = torch.optim.Adam(resumed.parameters(), lr=1e-2)
    handle = M.enforce(resumed, opt2)
    resumed.load_state_dict(ckpt["model"])
    opt2.load_state_dict(ckpt["optimizer"])
    assert handle.masks.keys() == masks.keys()
    assert all(torch.equal(handle.masks[n], m) for n, m in masks.items())
    for x, y in batches(5, seed=3):
        opt2.zero_grad()
        nn.functional.cross_entropy(resumed(x), y).backward()
        opt2.step()
    assert_masked(resumed, masks)
    plain = torch.optim.Adam(net().parameters())  # an optimizer without enforce ignores the masks
    plain.load_state_dict(ckpt["optimizer"])


# ---- IMP as an object --------------------------------------------------------------------------------

def test_imp_in_a_plain_loop_gives_the_lottery_experiments_masks_bit_for_bit(tmp_path):
    """The public object and `ticketlab lottery` on the same tiny config: identical masks at every
    level, with late rewinding (k = 50) and the optimizer rewound too."""
    import torch.nn.functional as F

    from ticketlab import api
    from ticketlab.domains.classify import make_trainer
    from ticketlab.experiments.lottery.trunk import LotteryConfig, load_masks
    from ticketlab.methods.imp import IMP
    from ticketlab.training.loop import TrainConfig, batch_indices, make_optimizer

    train = TrainConfig(dataset="mnist1d", model="mlp", model_args={"widths": [64, 32]}, iterations=200,
                        batch_size=50, eval_every=100)
    cfg = LotteryConfig(levels=2, rewind_iter=50, rewind_optimizer=True)
    exp = api.lottery(train, cfg, store=tmp_path, progress=False)["experiment"]

    data = make_trainer(train).data
    x, y, n = data.train.x, data.train.y, len(data.train.x)
    model = make_trainer(train).build(train.init_seed)
    opt = make_optimizer(train, model.parameters())
    imp = IMP.from_config(cfg).attach(model, opt)
    start = 0
    for level in range(cfg.levels + 1):
        assert all(torch.equal(imp.masks[k], m) for k, m in load_masks(
            tmp_path / exp / "replicate_0" / f"level_{level}" / "mask.pt").items())
        torch.manual_seed(train.data_seed * 7919 + train.init_seed + start)
        model.train()
        for it in range(start, 200):
            opt.zero_grad(set_to_none=True)
            idx = batch_indices(n, train.batch_size, train.data_seed, it)
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        if level < cfg.levels:
            imp.prune()
            imp.rewind()
            start = cfg.rewind_iter
    assert imp.level == 2 and 0.6 < M.density(imp.masks) < 0.7


def test_the_lottery_trunk_prunes_through_the_public_imp_object(tmp_path, monkeypatch):
    """The experiment's trunk and its "continued" control take each pruning step through
    `IMP.prune_masks`, the method `IMP.prune()` uses: one path for users and experiments."""
    from ticketlab import api
    from ticketlab.experiments.lottery.trunk import LotteryConfig, load_masks
    from ticketlab.methods.imp import IMP
    from ticketlab.training.loop import TrainConfig

    calls = []
    original = IMP.prune_masks

    def spy(self, weights, masks):
        calls.append(self.output)
        return original(self, weights, masks)

    monkeypatch.setattr(IMP, "prune_masks", spy)
    train = TrainConfig(dataset="mnist1d", model="mlp", model_args={"widths": [32]}, iterations=50,
                        batch_size=50, eval_every=50)
    exp = api.lottery(train, LotteryConfig(levels=2, controls=("continued",)), store=tmp_path,
                      progress=False)["experiment"]
    assert calls == ["fc2.weight"] * 4  # trunk levels 1, 2 and the continued chain's 1, 2
    m = load_masks(tmp_path / exp / "replicate_0" / "level_1" / "mask.pt")
    assert int(m["fc2.weight"].sum()) == 320 - 32  # the output layer at half the rate: found by IMP


def test_the_lottery_controls_are_made_by_the_public_imp_object(tmp_path, monkeypatch):
    """The reinit and random-mask controls of `ticketlab lottery` come from `IMP.reinit_weights` and
    `IMP.random_masks_like`, and equal what they were before the move: a random mask drawn from the
    control's seed with the ticket's counts, and the trainer's model built from the control's seed."""
    from ticketlab import api
    from ticketlab.core import pruning
    from ticketlab.core.seeds import derive_seed
    from ticketlab.domains.classify import make_trainer
    from ticketlab.experiments.lottery.trunk import LotteryConfig, load_masks
    from ticketlab.methods.imp import IMP
    from ticketlab.training.loop import TrainConfig, load_state

    calls = []
    for name in ("random_masks_like", "reinit_weights"):
        original = getattr(IMP, name)
        monkeypatch.setattr(IMP, name, lambda self, *a, _o=original, _n=name, **kw: calls.append(_n) or _o(self, *a, **kw))
    train = TrainConfig(dataset="mnist1d", model="mlp", model_args={"widths": [32]}, iterations=50,
                        batch_size=50, eval_every=50)
    cfg = LotteryConfig(levels=1, controls=("reinit", "random_mask", "random_mask_global"))
    exp = api.lottery(train, cfg, store=tmp_path, progress=False)["experiment"]
    assert sorted(calls) == ["random_masks_like", "random_masks_like", "reinit_weights"]
    rep = tmp_path / exp / "replicate_0"
    ticket = load_masks(rep / "level_1" / "mask.pt")
    for control, strategy in (("random_mask", "layerwise"), ("random_mask_global", "global")):
        seed = derive_seed(train.init_seed, 0, control, 1, 0, bits=32)
        expected = pruning.random_mask_like(ticket, seed, strategy, list(ticket))
        got = load_masks(rep / f"{control}_0" / "level_1" / "mask.pt")
        assert all(torch.equal(got[n], expected[n]) for n in ticket), control
    fresh = make_trainer(train).build(derive_seed(train.init_seed, 0, "reinit", 1, 0, bits=32)).state_dict()
    start = load_state(rep / "reinit_0" / "level_1" / "snapshot_0.pt")["model"]
    for n, w in fresh.items():
        assert torch.equal(start[n], w * ticket[n] if n in ticket else w), n


def test_imp_rewinds_to_theta_k_and_offers_the_controls():
    from ticketlab.core import pruning
    from ticketlab.methods.imp import IMP

    model = net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    imp = IMP(prune_fraction=0.5, rewind_iter=3, rewind_optimizer=True).attach(model, opt)
    assert imp.output == "4.weight"
    for i, (x, y) in enumerate(batches(6)):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if i == 2:
            at_k = {k: v.clone() for k, v in model.state_dict().items()}
            mom_k = {k: v["momentum_buffer"].clone() for k, v in opt.state_dict()["state"].items()}
    masks = imp.prune()
    kept = {n: int(m.sum()) for n, m in masks.items()}
    assert kept == {"0.weight": 64, "2.weight": 128, "4.weight": 36}  # output layer at half rate
    imp.rewind()
    for k, v in model.state_dict().items():
        expected = at_k[k] * masks[k] if k in masks else at_k[k]
        assert torch.equal(v, expected), k
    for k, v in opt.state_dict()["state"].items():
        name = [n for n, _ in model.named_parameters()][k]
        expected = mom_k[k] * masks[name] if name in masks else mom_k[k]
        assert torch.equal(v["momentum_buffer"], expected)
    assert imp.levels_for(0.0) == 0 and imp.levels_for(0.5) == 2

    saved = imp.state_dict()
    rand = imp.random_masks(seed=1)
    assert {n: int(m.sum()) for n, m in rand.items()} == kept
    assert pruning.jaccard(rand, masks) < 0.9
    imp.random_reinit(seed=2)
    assert_masked(model, rand)
    assert not torch.equal(model.state_dict()["0.bias"], at_k["0.bias"])

    again = IMP(prune_fraction=0.5, rewind_iter=3, rewind_optimizer=True)
    again.load_state_dict(saved)
    fresh = net(seed=9)
    again.attach(fresh, torch.optim.SGD(fresh.parameters(), lr=0.1))
    assert_masked(fresh, masks)
    assert all(torch.equal(again.masks[n], m) for n, m in masks.items()) and again.level == 1


def test_imp_errors_name_the_field():
    from ticketlab.core.errors import TicketlabError
    from ticketlab.methods.imp import IMP

    with pytest.raises(ConfigError, match="strategy"):
        IMP(strategy="random")
    with pytest.raises(ConfigError, match="rewind_iter"):
        IMP(rewind_iter=-1)
    with pytest.raises(ConfigError, match="include/exclude|exclude"):
        IMP(exclude=["nope.*"]).attach(net(), torch.optim.SGD(net().parameters(), lr=0.1))
    model = net()
    imp = IMP(rewind_iter=5).attach(model, torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(TicketlabError, match="rewind point"):
        imp.rewind()


# ---- one-shot pruning ----------------------------------------------------------------------------------

@pytest.mark.parametrize("score", ["magnitude", "snip", "grasp", "synflow"])
def test_prune_once_reaches_the_exact_sparsity_and_masks_the_weights(score):
    from ticketlab.methods.oneshot import prune_once

    model = net()
    x, y = next(batches(1))
    masks = prune_once(model, 0.75, score=score, data=(x, y), exclude=["4.*"])
    assert list(masks) == ["0.weight", "2.weight"]
    assert M.count(masks) == (96, 384)
    assert_masked(model, masks)
    if score == "magnitude":  # the kept weights are the largest overall
        w = torch.cat([dict(net().named_parameters())[n].detach().abs().flatten() for n in masks])
        kept = torch.cat([m.flatten() for m in masks.values()])
        assert w[kept].min() >= w[~kept].max()


def test_prune_once_errors_name_the_argument():
    from ticketlab.methods.oneshot import prune_once

    with pytest.raises(ConfigError, match="score"):
        prune_once(net(), 0.5, score="taylor")
    with pytest.raises(ConfigError, match="data"):
        prune_once(net(), 0.5, score="snip")


# ---- the public names ------------------------------------------------------------------------------------

def test_public_names_load_lazily_from_the_package():
    import subprocess
    import sys

    code = ("import sys, ticketlab; heavy = [m for m in ('torch', 'ticketlab.methods', 'ticketlab.experiments') "
            "if m in sys.modules]; assert not heavy, heavy; "
            "from ticketlab import IMP, prune_once, sparsify, RigL, SET; import ticketlab.methods.imp as imp; "
            "assert IMP is imp.IMP and ticketlab.masks.enforce and ticketlab.masks is sys.modules['ticketlab.core.masks']")
    subprocess.run([sys.executable, "-c", code], check=True)
    import ticketlab

    assert ticketlab.__version__ == "0.1.0" and "IMP" in dir(ticketlab)
    with pytest.raises(AttributeError, match="nope"):
        ticketlab.nope


def test_the_plain_pytorch_example_runs_tiny():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "byo_pytorch.py"
    out = subprocess.run([sys.executable, str(script), "--tiny"], check=True, capture_output=True, text=True).stdout
    lines = [line for line in out.splitlines() if line.startswith("level ")]
    left = [float(line.split(":")[1].split("%")[0]) for line in lines]
    assert len(lines) == 3 and left[0] == 100.0 and left[0] > left[1] > left[2]
