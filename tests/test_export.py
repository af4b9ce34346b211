"""Sparse export: outputs equal the masked dense model's, the file round-trips without unpickling
any class, it is compact, and exporting a real lottery level works (or fails naming the path).

Tolerance: the CSR kernels (MKL sparse addmm / addmv) sum each dot product in another order than
dense GEMM, so outputs agree to float32 rounding, not bit for bit: allclose(atol=1e-5, rtol=1e-5).
"""

import io
import json
import shutil

import pytest
import torch
from torch import nn

from ticketlab import api
from ticketlab.data import load_dataset
from ticketlab.core.errors import TicketlabError
from ticketlab.engine.export import (CSRLinear, SparseModel, export_experiment, export_run, sparse_from_dense)
from ticketlab.experiments.lottery.trunk import LotteryConfig
from ticketlab.models import create_model, prunable_parameters
from ticketlab.training.loop import TrainConfig, load_state

torch.set_num_threads(1)
TOL = dict(atol=1e-5, rtol=1e-5)

CASES = {
    "lenet300_100": ((1, 28, 28), {}),
    "mlp": ((40,), {"widths": [64, 32], "activation": "tanh"}),
    "conv2": ((3, 16, 16), {}),
    "resnet20": ((3, 16, 16), {}),
}


def spec_of(name):
    shape, kw = CASES[name]
    return {"builder": "ticketlab.models", "model": name, "input_shape": list(shape), "num_classes": 10,
            "init": None, "model_args": kw}


def random_masks(model, sparsity=0.9, seed=1):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.rand(p.shape, generator=g) >= sparsity for n, p in prunable_parameters(model).items()}


def masked_dense(name, sparsity=0.9):
    """(model with pruned weights zeroed, in eval mode with non-trivial BN statistics, masks)."""
    shape, kw = CASES[name]
    model = create_model(name, input_shape=shape, num_classes=10, seed=0, **kw)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            if isinstance(m, nn.Linear) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)  # default init zeroes them
    masks = random_masks(model, sparsity)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in masks:
                p.mul_(masks[n])
    return model.eval(), masks


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Per model: (masked dense model, in-memory SparseModel, SparseModel loaded from its file, path)."""
    out = {}
    d = tmp_path_factory.mktemp("sparse")
    for name in CASES:
        model, masks = masked_dense(name)
        sm = sparse_from_dense(model, masks, spec=spec_of(name))
        path = sm.save(d / f"{name}.pt")
        out[name] = (model, sm, SparseModel.load(path), path)
    return out


@pytest.mark.parametrize("batch", [1, 64])
@pytest.mark.parametrize("name", list(CASES))
def test_outputs_equal_masked_dense_model(exported, name, batch):
    model, sm, loaded, _ = exported[name]
    x = torch.randn(batch, *CASES[name][0], generator=torch.Generator().manual_seed(batch))
    with torch.inference_mode():
        ref, a, b = model(x), sm(x), loaded(x)
    assert ref.shape == a.shape == b.shape == (batch, 10)
    assert torch.allclose(a, ref, **TOL), (a - ref).abs().max()
    assert torch.allclose(b, ref, **TOL), (b - ref).abs().max()
    assert torch.equal(a, b)  # the file round trip changes nothing: same tensors, same kernels
    # sequential nets run through the plan (no module calls); it computes exactly what the modules do
    assert (loaded._plan is not None) == (name != "resnet20")
    with torch.inference_mode():
        assert torch.equal(b, loaded.net(x))
    # the Linear layers really run sparse; convolutions stay dense
    assert set(loaded.csr_layers()) == {n for n, m in model.named_modules() if type(m) is nn.Linear}
    assert not any(isinstance(m, nn.Linear) for m in loaded.modules())
    assert any(isinstance(m, nn.Conv2d) for m in loaded.modules()) == (name in ("conv2", "resnet20"))


def test_masks_applied_and_original_untouched():
    model, masks = masked_dense("lenet300_100")
    fresh = create_model("lenet300_100", input_shape=(1, 28, 28), num_classes=10, seed=0)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    sm = sparse_from_dense(fresh, masks)  # unmasked weights in, masks applied to a copy
    assert all(torch.equal(before[k], v) for k, v in fresh.state_dict().items())
    for name, layer in sm.csr_layers().items():
        kept = masks[f"{name}.weight"]
        assert layer.nnz == int(kept.sum())
        dense_w = layer.weight.to_dense()
        assert torch.count_nonzero(dense_w[~kept]) == 0
        assert torch.equal(dense_w[kept], fresh.get_submodule(name).weight.detach()[kept])
    assert abs(sm.info["layers"]["fc1"]["sparsity"] - 0.9) < 0.01


def test_file_loads_with_weights_only_and_holds_no_objects(exported):
    _, _, _, path = exported["resnet20"]
    payload = torch.load(path, weights_only=True)  # raises on any pickled class
    allowed = (torch.Tensor, str, int, float, bool, type(None))

    def walk(v):
        if isinstance(v, dict):
            assert all(isinstance(k, str) for k in v)
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        else:
            assert isinstance(v, allowed), type(v)
            if isinstance(v, torch.Tensor):
                assert v.layout == torch.strided  # CSR is stored as plain component tensors

    walk(payload)
    assert payload["format"] == "ticketlab.sparse_model" and payload["version"] == 1
    assert json.loads(payload["spec"])["model"] == "resnet20"
    assert set(payload["csr"]) == {"fc"}
    # the masked convs are stored packed (CSR components), BN and biases dense
    assert "conv.weight" in payload["packed"] and "bn.running_var" in payload["dense"]


@pytest.mark.parametrize("name", ["lenet300_100", "conv2", "resnet20"])
def test_file_much_smaller_than_dense_state_dict(exported, name):
    model, _, loaded, path = exported[name]
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    size, dense = path.stat().st_size, buf.tell()
    # 90% sparse: 6 bytes (float32 value + int16 column) per kept entry vs 4 per entry dense
    assert size < 0.25 * dense, (size, dense)
    assert loaded.info["dense_bytes"] <= dense


def test_min_sparsity_keeps_denser_layers_dense():
    model = create_model("lenet300_100", input_shape=(1, 28, 28), num_classes=10, seed=0).eval()
    masks = random_masks(model, 0.95)
    masks["fc3.weight"] = random_masks(model, 0.5)["fc3.weight"]
    sm = sparse_from_dense(model, masks, min_sparsity=0.9, spec=spec_of("lenet300_100"))
    assert set(sm.csr_layers()) == {"fc1", "fc2"}
    assert isinstance(sm.net.fc3, nn.Linear)
    assert sm.info["layers"]["fc3"]["compute"] == "dense"
    x = torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in masks:
                p.mul_(masks[n])
        ref = model(x)
    assert torch.allclose(sm(x), ref, **TOL)
    for batch in (1, 8):
        assert torch.equal(sm(x[:batch]), sm.net(x[:batch]))  # the plan's dense step too
    with pytest.raises(TicketlabError, match="min_sparsity"):
        sparse_from_dense(model, masks, min_sparsity=1.5)


def test_csr_linear_shapes_no_bias_and_grad_mode():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(7, 5, generator=g) * (torch.rand(7, 5, generator=g) > 0.5)
    for bias in (None, torch.randn(7, generator=g)):
        layer = CSRLinear.from_dense(w, bias)
        for shape in [(5,), (1, 5), (3, 5), (2, 4, 5)]:
            x = torch.randn(*shape, generator=g)
            assert torch.allclose(layer(x), nn.functional.linear(x, w, bias), **TOL)
    seq = nn.Sequential(nn.Linear(5, 7), nn.LeakyReLU(0.3), nn.Linear(7, 2))
    for model in (seq, nn.Linear(5, 7)):  # a bare Linear becomes a bare CSRLinear
        sm = sparse_from_dense(model, None)
        for shape in [(5,), (1, 5), (3, 5), (2, 4, 5)]:
            x = torch.randn(*shape, generator=g)
            with torch.no_grad():
                assert torch.allclose(sm(x), model(x), **TOL)
    assert isinstance(sm.net, CSRLinear)
    x = torch.randn(4, 5, requires_grad=True)
    assert not sm(x).requires_grad  # outside inference_mode, no graph is built
    with pytest.raises(TicketlabError, match="inference-only"):
        sm.train()
    sm.eval()


def test_custom_model_needs_its_builder(tmp_path):
    def build():
        return nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3))

    model = build()
    masks = {"1.weight": torch.rand(16, 12) > 0.8, "3.weight": torch.rand(3, 16) > 0.5}
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"model": model.state_dict(), "masks": masks}, run / "final.pt")
    out = export_run(run, tmp_path / "custom.pt", build_model=build)
    with pytest.raises(TicketlabError, match="build_model"):
        SparseModel.load(out)
    sm = SparseModel.load(out, build_model=build)
    with torch.no_grad():
        model[1].weight.mul_(masks["1.weight"])
        model[3].weight.mul_(masks["3.weight"])
        x = torch.randn(5, 3, 4)
        assert torch.allclose(sm(x), model(x), **TOL)
    with pytest.raises(TicketlabError, match="no config.json"):
        export_run(run, tmp_path / "x.pt")  # outside a store, without a builder


def test_bad_files_raise_ticketlab_errors(tmp_path, exported):
    with pytest.raises(TicketlabError, match="no such file"):
        SparseModel.load(tmp_path / "missing.pt")
    (tmp_path / "obj.pt").write_bytes(b"")
    torch.save({"x": nn.Linear(2, 2)}, tmp_path / "obj.pt")  # a pickled module: refused
    with pytest.raises(TicketlabError, match="obj.pt"):
        SparseModel.load(tmp_path / "obj.pt")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(TicketlabError, match="not a ticketlab sparse model"):
        SparseModel.load(tmp_path / "other.pt")
    payload = torch.load(exported["lenet300_100"][3], weights_only=True)
    payload["csr"]["fc2"]["col_indices"][0] = 10_000  # out of range: must raise, not crash
    torch.save(payload, tmp_path / "corrupt.pt")
    with pytest.raises(TicketlabError, match="fc2"):
        SparseModel.load(tmp_path / "corrupt.pt")


# ---- from a real lottery experiment ------------------------------------------------------

TRAIN = TrainConfig(dataset="mnist1d", model="mlp", model_args={"widths": [64, 32]}, iterations=100,
                    batch_size=50, eval_every=50)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    res = api.lottery(TRAIN, LotteryConfig(levels=2), store=store, progress=False)
    return store, res["experiment"]


@pytest.mark.parametrize("level", [0, 2])
def test_export_lottery_level_matches_masked_model(experiment, tmp_path, level):
    store, exp = experiment
    out = export_experiment(exp, tmp_path / "ticket.pt", level=level)
    assert out == tmp_path / "ticket.pt" and out.is_file()
    sm = SparseModel.load(out)
    run = load_state(f"{exp}/replicate_0/level_{level}/final.pt")
    data = load_dataset("mnist1d")
    model = create_model("mlp", input_shape=data.input_shape, num_classes=data.num_classes, widths=[64, 32])
    model.load_state_dict(run["model"])
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in run["masks"]:
                p.mul_(run["masks"][n])
    model.eval()
    kept = {n.rsplit(".", 1)[0]: int(m.sum()) for n, m in run["masks"].items()}
    assert {n: l.nnz for n, l in sm.csr_layers().items()} == kept
    with torch.inference_mode():
        for batch in (1, 64, len(data.test)):
            x = data.test.x[:batch]
            assert torch.allclose(sm(x), model(x), **TOL)
        assert torch.equal(sm(data.test.x).argmax(1), model(data.test.x).argmax(1))
    assert sm.input_shape == (40,) and sm.num_classes == 10
    assert sm.info["source"].endswith(f"level_{level}")
    if level == 2:  # two levels at 20% per layer (output 10%): fc1 keeps 64%
        assert abs(sm.info["layers"]["fc1"]["sparsity"] - 0.36) < 0.01


def test_export_by_store_ref_and_run_dir(experiment, tmp_path):
    store, exp = experiment
    name = exp.rstrip("/").rsplit("/", 1)[-1]
    a = SparseModel.load(export_experiment(name, tmp_path / "a.pt", level=1, store=store))
    b = SparseModel.load(export_run(f"{exp}/replicate_0/level_1", tmp_path / "b.pt"))
    x = torch.randn(16, 40)
    assert torch.equal(a(x), b(x))


def test_export_errors_name_the_path(experiment, tmp_path):
    store, exp = experiment
    with pytest.raises(TicketlabError, match=r"level_7.*no such level.*level_0, level_1, level_2"):
        export_experiment(exp, tmp_path / "x.pt", level=7)
    with pytest.raises(TicketlabError, match=r"replicate_3.*no such replicate"):
        export_experiment(exp, tmp_path / "x.pt", level=1, replicate=3)
    with pytest.raises(TicketlabError, match=r"reinit_0.*no such branch"):
        export_experiment(exp, tmp_path / "x.pt", level=1, branch="reinit_0")
    copy = tmp_path / "copy"
    shutil.copytree(exp, copy)
    (copy / "replicate_0" / "level_1" / "final.pt").unlink()
    with pytest.raises(TicketlabError, match=r"level_1/final\.pt: no such file"):
        export_experiment(copy, tmp_path / "x.pt", level=1)
    with pytest.raises(TicketlabError, match="no experiment"):
        export_experiment("nonexistent", tmp_path / "x.pt", level=1, store=store)
    assert not (tmp_path / "x.pt").exists()
