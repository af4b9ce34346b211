"""The device setting (`--device`, `ticketlab.training.device`): names checked against the machine,
the same `auto` default on the command line and in the API, never in a hash, recorded in each
summary; device-agnostic logic checked on the CPU and on the `meta` device; and, marked `gpu`, the
CUDA checks of issue 16 (skipped with the reason when CUDA is absent)."""

import dataclasses

import pytest
import torch
from crash import Crash

from ticketlab import api
from ticketlab.cli.commands import main
from ticketlab.cli.common import _default
from ticketlab.core import config as C
from ticketlab.core.errors import ConfigError
from ticketlab.data import load_dataset
from ticketlab.engine import schedule
from ticketlab.engine.options import RunOptions
from ticketlab.experiments.lottery.trunk import LotteryConfig
from ticketlab.models import create_model, prunable_parameters
from ticketlab.training import device as D
from ticketlab.training.loop import Run, RunOptions as LoopOptions, TrainConfig, batch_indices, fit, fit_many, load_state
from ticketlab.training.stacked import Stacked

torch.set_num_threads(1)

from gpu_marks import HAS_CUDA, TINY, gpu, needs_cuda, no_cuda

CFG = TrainConfig(dataset="mnist1d", model="mlp", model_args={"widths": [64, 32]}, iterations=200, batch_size=50,
                  eval_every=50)


@pytest.fixture(autouse=True)
def _restore_device():
    before = D.current()
    yield
    D.use(before)


# ---- the setting ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["auto", "cpu"])
def test_names_this_machine_has_are_accepted(name):
    assert D.check(name) == name and RunOptions(device=name).device == name


@pytest.mark.parametrize("bad", ["tpu", "cuda:x", "CPU", "", "cuda:", 0, None])
def test_a_malformed_name_is_one_line_naming_the_field(bad):
    with pytest.raises(ConfigError) as e:
        RunOptions(device=bad)
    assert str(e.value).startswith("device: got") and "\n" not in str(e.value) and "cuda:N" in str(e.value)


@no_cuda
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_on_a_machine_without_it_is_one_line(name, tmp_path, capsys):
    with pytest.raises(ConfigError, match="CUDA is not available"):
        RunOptions(device=name)
    assert main(["train", "--store", str(tmp_path), "--device", name]) == 2
    err = capsys.readouterr().err
    assert "CUDA is not available" in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_auto_is_the_default_everywhere_and_never_hashed():
    assert RunOptions().device == "auto" == _default("device", "train") == D.current()
    meta = {f.name: f.metadata for f in dataclasses.fields(RunOptions)}
    assert meta["device"]["hashed"] is False
    assert D.resolve("auto") == torch.device("cuda" if HAS_CUDA else "cpu")
    assert D.resolve("cpu") == torch.device("cpu") and D.resolve(torch.device("meta")) == torch.device("meta")


def test_the_api_applies_the_device_and_workers_repeat_it():
    api._options("train", RunOptions(device="cpu"))
    assert D.current() == "cpu"
    D.use("auto")
    assert schedule._in_worker(None, ("cpu", "fp32", False), lambda payloads: D.current(), 0, []) == "cpu"


def test_a_run_records_its_device_and_a_cpu_run_is_unchanged(tmp_path):
    a = api.train(TINY, store=tmp_path / "a", options=RunOptions(progress=False))
    b = api.train(TINY, store=tmp_path / "b", options=RunOptions(device="cpu", progress=False))
    expected = "cpu" if not HAS_CUDA else D.describe(torch.device("cuda"))
    assert a["trained_on"] == expected and b["trained_on"] == "cpu"
    if not HAS_CUDA:  # auto is the CPU here: the same run, bit for bit
        assert a["final"] == b["final"]


# ---- device-agnostic logic, on the CPU and on the meta device ---------------------------

def test_to_device_moves_a_tensor_once_and_leaves_its_own_device_alone():
    t = torch.arange(6.0)
    assert D.to_device(t, torch.device("cpu")) is t
    m1, m2 = D.to_device(t, torch.device("meta")), D.to_device(t, torch.device("meta"))
    assert m1 is m2 and m1.device.type == "meta" and m1.shape == t.shape
    assert D.to_device(torch.arange(6.0), torch.device("meta")) is not m1  # another tensor: its own copy


def test_state_files_hold_cpu_tensors_and_cpu_ones_are_not_copied():
    t = torch.ones(3)
    st = D.cpu_state({"model": {"w": t}, "list": [t, 1], "n": 3, "s": "x"})
    assert st["model"]["w"] is t and st["list"][0] is t and st["n"] == 3 and st["s"] == "x"
    if not (HAS_CUDA and torch.cuda.is_initialized()):
        assert D.rng_state() == {}  # CPU state files keep their old keys


def test_batch_indices_are_drawn_on_the_cpu_whatever_the_device():
    a = batch_indices(1000, 60, 3, 25)
    b = batch_indices(1000, 60, 3, 25, torch.device("cpu"))
    m = batch_indices(1000, 60, 3, 25, torch.device("meta"))
    assert torch.equal(a, b) and m.device.type == "meta" and m.shape == a.shape


def test_the_batches_of_a_stack_are_each_runs_own_for_any_number_of_runs():
    # rows equal batch_indices, across epoch boundaries, past the 256 data orders that cache holds
    from ticketlab.training.loop import Batches
    seeds = list(range(300))
    batches = Batches(1000, 60, seeds)  # 16 steps an epoch
    for it in (0, 1, 15, 16, 40, 17):
        idx = batches(it)
        assert idx.shape == (300, 60)
        for r in (0, 7, 299):
            assert torch.equal(idx[r], batch_indices(1000, 60, seeds[r], it)), (it, r)
    perms = batches.perms
    batches(20)
    assert batches.perms is perms  # the same epoch: no permutation drawn again
    m = Batches(1000, 60, [1, 2], torch.device("meta"))(5)
    assert m.device.type == "meta" and m.shape == (2, 60)
    # with a device, the next epoch is drawn on a thread meanwhile: the same rows, and a jump (a resume)
    # past the drawn epoch draws what it needs
    ahead = Batches(1000, 60, seeds[:5], torch.device("cpu"))
    for it in (0, 15, 16, 17, 40, 100, 101):
        assert torch.equal(ahead(it), batches(it)[:5]), it
        assert ahead._next is not None and ahead._next[0] == ahead.epoch + 1
    last = Batches(1000, 60, seeds[:5], torch.device("cpu"), total=40)  # epochs 0-2 (steps 0-39)
    last(20)
    assert last._next is not None and last._next[0] == 2
    last(35)
    assert last._next is None and torch.equal(last(39), batches(39)[:5])  # none drawn past the end


def test_stacked_shapes_and_masks_follow_the_parameters_device():
    with torch.device("meta"):
        models = [create_model("lenet300_100", input_shape=(1, 28, 28), num_classes=10, init="torch")
                  for _ in range(4)]
    ens = Stacked(models)
    names = prunable_parameters(models[0])
    one = {n: torch.rand(p.shape) < 0.5 for n, p in names.items()}  # made on the CPU, like saved masks
    masks = ens.stack_masks([None, one, None, one])
    for n, p in names.items():
        assert masks[n].device.type == "meta" and masks[n].shape == (4, *p.shape) and masks[n].dtype == torch.bool
    losses = ens.losses(torch.empty(4, 60, 1, 28, 28, device="meta"), torch.empty(4, 60, dtype=torch.long,
                                                                                  device="meta"))
    assert losses.shape == (4,) and ens.logits(torch.empty(7, 1, 28, 28, device="meta")).shape == (4, 7, 10)


def test_fit_leaves_the_callers_model_where_it_was(tmp_path):
    data = load_dataset("mnist1d")
    model = create_model("mlp", input_shape=(40,), num_classes=10, seed=0, widths=[16])
    s = fit(model, data, TINY, tmp_path, prunable=prunable_parameters(model),
            options=LoopOptions(progress=False, device="cpu"))
    assert next(model.parameters()).device.type == "cpu" and s["trained_on"] == "cpu"


# ---- on CUDA (pytest -m gpu; skipped with the reason where CUDA is absent) ---------------

def _masks(model, seed, density=0.4):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.rand(p.shape, generator=g) < density for n, p in prunable_parameters(model).items()}


def _lottery(tmp_path, device):
    return api.lottery(CFG, LotteryConfig(levels=2, replicates=2, controls=("reinit", "random_mask")),
                       store=tmp_path / device, options=RunOptions(device=device, progress=False, workers=1))


def _same_lottery(x, y, tol):
    """The same branches, levels and densities; final test accuracies within `tol`."""
    assert [(a["branch"], a["level"], a["density"]) for a in x["aggregate"]] == \
        [(b["branch"], b["level"], b["density"]) for b in y["aggregate"]]
    for a, b in zip(x["aggregate"], y["aggregate"]):
        assert abs(a["final_test_acc"] - b["final_test_acc"]) <= tol, (a, b)


def test_the_lottery_comparison_holds_on_the_cpu(tmp_path):
    run = lambda tag: api.lottery(TINY, LotteryConfig(levels=1, controls=("reinit",)), store=tmp_path / tag,
                                  options=RunOptions(device="cpu", progress=False, workers=1))
    _same_lottery(run("a"), run("b"), 0.0)


@gpu
@needs_cuda
def test_a_lottery_on_cuda_equals_the_same_lottery_on_the_cpu(tmp_path):
    # float rounding on another device moves a few examples, not the masks' sizes
    _same_lottery(_lottery(tmp_path, "cpu"), _lottery(tmp_path, "cuda"), 0.03)


# each CUDA check runs on the CPU too, so that its own logic is tested where CUDA is absent
ON = ["cpu", pytest.param("cuda", marks=[gpu, needs_cuda])]


@pytest.mark.parametrize("where", ON)
def test_stacked_equals_one_at_a_time_on_cuda_and_masks_stay_exact(tmp_path, where):
    data = load_dataset("mnist1d")
    opts = LoopOptions(progress=False, device=where)
    make = lambda s: create_model("mlp", input_shape=(40,), num_classes=10, seed=s, widths=[64, 32])
    masks = [None, _masks(make(1), 1), _masks(make(2), 2, 0.1)]
    for s in range(3):
        m = make(s)
        fit(m, data, dataclasses.replace(CFG, data_seed=s), tmp_path / f"one{s}", masks=masks[s],
            prunable=prunable_parameters(m), options=opts)
    ms = [make(s) for s in range(3)]
    out = fit_many([Run(tmp_path / f"stk{s}", model=ms[s], masks=masks[s], data_seed=s) for s in range(3)],
                   data, CFG, Stacked(ms), options=opts)
    assert all(o["trained_on"].startswith(where) for o in out)
    for s in range(3):
        a, b = (load_state(tmp_path / f"{t}{s}" / "final.pt")["model"] for t in ("one", "stk"))
        for n in a:
            assert a[n].device.type == "cpu" and b[n].device.type == "cpu"  # files hold CPU tensors
            # Adam magnifies rounding where gradients are tiny (10 % dense): 1.5e-4 measured on the CPU
            assert torch.allclose(a[n], b[n], atol=1e-3, rtol=0), (s, n)
        for n, m in (masks[s] or {}).items():  # exact zeros after every step
            assert torch.count_nonzero(a[n][~m]) == 0 and torch.count_nonzero(b[n][~m]) == 0


@pytest.mark.parametrize("where", ON)
def test_a_checkpoint_written_on_cuda_resumes_on_the_cpu(tmp_path, where):
    data = load_dataset("mnist1d")
    make = lambda: create_model("mlp", input_shape=(40,), num_classes=10, seed=0, widths=[64, 32])
    m = make()
    mask = _masks(m, 0)
    with pytest.raises(KeyboardInterrupt):
        fit(m, data, CFG, tmp_path / "cut", masks=mask, prunable=prunable_parameters(m), hooks=[Crash(at=120)],
            options=LoopOptions(progress=False, device=where, checkpoint_every=50))
    ck = load_state(tmp_path / "cut" / "checkpoint.pt")
    assert ("cuda_rng" in ck) == (where == "cuda") and all(v.device.type == "cpu" for v in ck["model"].values())
    m = make()
    s = fit(m, data, CFG, tmp_path / "cut", masks=mask, prunable=prunable_parameters(m),
            options=LoopOptions(progress=False, device="cpu"))
    m = make()
    ref = fit(m, data, CFG, tmp_path / "ref", masks=mask, prunable=prunable_parameters(m),
              options=LoopOptions(progress=False, device="cpu"))
    assert s["trained_on"] == "cpu" and abs(s["final"]["test_acc"] - ref["final"]["test_acc"]) <= 0.02


@pytest.mark.parametrize("where", ON)
def test_a_resume_on_cuda_is_exact(tmp_path, where):
    data = load_dataset("mnist1d")
    make = lambda: create_model("mlp", input_shape=(40,), num_classes=10, seed=0, widths=[64, 32])
    opts = LoopOptions(progress=False, device=where, checkpoint_every=50)
    m = make()
    fit(m, data, CFG, tmp_path / "full", prunable=prunable_parameters(m), options=opts)
    m = make()
    with pytest.raises(KeyboardInterrupt):
        fit(m, data, CFG, tmp_path / "cut", prunable=prunable_parameters(m), hooks=[Crash(at=120)], options=opts)
    m = make()
    fit(m, data, CFG, tmp_path / "cut", prunable=prunable_parameters(m), options=opts)
    a, b = (load_state(tmp_path / t / "final.pt")["model"] for t in ("full", "cut"))
    assert all(torch.allclose(a[n], b[n], atol=1e-6, rtol=0) for n in a)


def test_the_gpu_mark_is_registered():
    import tomllib
    from pathlib import Path
    cfg = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert any(m.startswith("gpu:") for m in cfg["tool"]["pytest"]["ini_options"]["markers"])
    assert {"device", "precision", "deterministic"} <= set(C.field_names(RunOptions))


def test_a_forked_process_draws_the_next_epoch_on_its_own_thread():
    # a child forked after the parent started the drawing thread has the executor object but no thread
    import os
    from ticketlab.training.loop import Batches
    Batches(1000, 60, [0, 1], torch.device("cpu"))(0)  # the parent's thread exists now
    want = Batches(1000, 60, [0, 1])(20)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: an epoch change waits on the next epoch drawn by the thread
        ok = torch.equal(Batches(1000, 60, [0, 1], torch.device("cpu"))(20), want)
        os.write(w, b"1" if ok else b"0")
        os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"1"
    os.waitpid(pid, 0)


def test_the_cuda_rng_saved_is_that_of_the_gpu_the_run_is_on(monkeypatch, tmp_path):
    # each GPU has its own generator: a run on cuda:1 saves cuda:1's, whichever GPU is current
    # (fake CUDA tensors carry the device without a GPU)
    from torch._subclasses.fake_tensor import FakeTensorMode

    from ticketlab.training.rundir import RunDir
    with FakeTensorMode():
        w = torch.empty(3, device="cuda:1")
    asked = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state",
                        lambda device="cuda": asked.append(device) or torch.zeros(4, dtype=torch.uint8))
    assert set(D.rng_state({"model": {"fc.bias": torch.zeros(2), "fc.weight": w}, "iteration": 3})) == {"cuda_rng"}
    D.rng_state({"model": {"fc.weight": torch.zeros(2)}})  # no GPU tensor: the current GPU's
    assert asked == [torch.device("cuda:1"), "cuda"]
    seen = []
    monkeypatch.setattr(D, "rng_state", lambda state=None: seen.append(state) or {})
    RunDir(tmp_path).create().save("final.pt", 5, model={"w": torch.ones(2)}, optimizer=None)
    [state] = seen  # the run's own state (where its weights live), before it is copied to the CPU
    assert list(state) == ["model"] and torch.equal(state["model"]["w"], torch.ones(2))


def test_seeded_draws_from_the_seed_and_gives_the_global_rng_back():
    from ticketlab.core.seeds import seeded
    torch.manual_seed(7)
    before = torch.get_rng_state()
    with seeded(3):
        a = torch.rand(4)
    assert torch.equal(torch.get_rng_state(), before)
    with seeded(3):
        assert torch.equal(torch.rand(4), a)


@gpu
@needs_cuda
def test_seeding_a_model_or_a_reinit_leaves_the_gpus_rng_alone():
    # a training loop's dropout stream on the GPU must not restart when a model is built from a seed
    import ticketlab
    torch.cuda.init()
    torch.cuda.manual_seed(5)
    before = torch.cuda.get_rng_state()
    model = create_model("mlp", input_shape=(40,), num_classes=10, seed=1, widths=[16]).cuda()
    imp = ticketlab.IMP().attach(model, torch.optim.Adam(model.parameters()))
    imp.random_reinit(seed=2)
    assert torch.equal(torch.cuda.get_rng_state(), before)


@gpu
@needs_cuda
def test_masks_scores_and_exports_may_live_on_different_devices():
    # IMP's controls on a model on the GPU; CPU masks (a loaded checkpoint) pruning GPU weights; the
    # export of a GPU-trained ticket with its GPU masks
    import ticketlab
    from ticketlab.engine.export import sparse_from_dense
    model = create_model("mlp", input_shape=(40,), num_classes=10, seed=1, widths=[16]).cuda()
    imp = ticketlab.IMP().attach(model, torch.optim.Adam(model.parameters()))
    imp.prune()
    masks = imp.random_masks(seed=3)
    assert all(m.device.type == "cuda" for m in masks.values())
    imp.set_masks({n: m.cpu() for n, m in imp.masks.items()})
    kept = sum(int(m.sum()) for m in imp.masks.values())
    imp.prune()
    assert sum(int(m.sum()) for m in imp.masks.values()) < kept
    sparse = sparse_from_dense(model, {n: m.cuda() for n, m in imp.masks.items()})
    x = torch.randn(5, 40)
    assert torch.allclose(sparse(x), model.cpu()(x), atol=1e-5)


@gpu
@needs_cuda
def test_a_dqn_target_network_on_the_gpu_follows_cpu_masks():
    from torch import nn

    from ticketlab.domains.rl.agent import MaskHooks
    policy = nn.ModuleDict({"q_net": nn.Linear(4, 3), "q_net_target": nn.Linear(4, 3)}).cuda()
    mask = {"q_net.weight": torch.rand(3, 4) < 0.5}
    hooks = MaskHooks(policy, mask, torch.optim.Adam(policy.parameters()),
                      shadows={"q_net.weight": policy["q_net_target"].weight})
    with torch.no_grad():
        policy["q_net_target"].weight.fill_(1.0)
    hooks.sync()
    assert torch.equal(policy["q_net_target"].weight.detach().cpu() != 0, mask["q_net.weight"])


@pytest.mark.parametrize("where", ON)
def test_upload_copies_a_batch_to_the_device(where):
    t = torch.arange(6).reshape(2, 3)
    up = D.upload(t, torch.device(where))
    assert up.device.type == where and torch.equal(up.cpu(), t)
