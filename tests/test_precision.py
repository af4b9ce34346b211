"""Issue 16's run settings beyond the device: `--precision fp32|bf16|tf32` (its own store folder when
not fp32, recorded, masks exact under bf16), `--deterministic`, one GPU per worker on a several-GPU
machine, Ray's GPU request, and the stack size from GPU memory. Device-agnostic logic is tested on
the CPU (with a mocked CUDA where the logic needs one); the CUDA checks carry the `gpu` mark."""

import dataclasses
import json
import os
from pathlib import Path

import pytest
import torch

import requires
from ticketlab import api
from ticketlab.cli.commands import main
from ticketlab.core import config as C
from ticketlab.core.errors import ConfigError
from ticketlab.data import load_dataset
from ticketlab.engine import schedule
from ticketlab.engine.options import RunOptions
from ticketlab.experiments.lottery.trunk import LotteryConfig
from ticketlab.models import create_model, prunable_parameters
from ticketlab.training import determinism, device as D, precision as P, stack_size as S
from ticketlab.training.loop import RunOptions as LoopOptions, TrainConfig, fit, load_state

torch.set_num_threads(1)

from gpu_marks import HAS_CUDA, TINY, gpu, needs_cuda

CFG = TrainConfig(dataset="mnist1d", model="mlp", model_args={"widths": [64, 32]}, iterations=100, batch_size=50,
                  eval_every=50)


@pytest.fixture(autouse=True)
def _restore_settings():
    before = D.current(), P.current(), determinism.current(), os.environ.get(determinism.CUBLAS[0])
    yield
    D.use(before[0])
    P.use(before[1])
    determinism.use(before[2])
    if before[3] is None:
        os.environ.pop(determinism.CUBLAS[0], None)


# ---- precision ---------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["fp16", "BF16", "", None, 32])
def test_a_bad_precision_is_one_line_naming_the_field(bad, tmp_path, capsys):
    with pytest.raises(ConfigError) as e:
        RunOptions(precision=bad)
    assert str(e.value).startswith("precision: got") and "fp32, bf16, tf32" in str(e.value)
    if isinstance(bad, str) and bad:
        assert main(["train", "--store", str(tmp_path), "--precision", bad]) == 2
        assert "precision: got" in capsys.readouterr().err


def test_fp32_is_the_default_everywhere_and_no_field_is_hashed():
    assert RunOptions().precision == "fp32" and RunOptions().deterministic is False
    meta = {f.name: f.metadata for f in dataclasses.fields(RunOptions)}
    assert meta["precision"]["hashed"] is False and meta["deterministic"]["hashed"] is False
    assert P.identity() == {}  # fp32: no key joins the store's hash, so stored hashes stay put
    assert C.config_hash("train", TINY) == C.config_hash("train", TINY, {}) == C.config_hash("train", TINY, None)


def test_bf16_trains_on_the_cpu_in_its_own_folder_and_records_it(tmp_path):
    a = api.train(TINY, store=tmp_path, options=RunOptions(progress=False, device="cpu"))
    b = api.train(TINY, store=tmp_path, options=RunOptions(progress=False, device="cpu", precision="bf16"))
    c = api.train(TINY, store=tmp_path, options=RunOptions(progress=False, device="cpu"))
    assert a["experiment"] != b["experiment"] and a["experiment"] == c["experiment"]
    assert (a["precision"], b["precision"]) == ("fp32", "bf16")
    assert a["final"] != b["final"]  # bf16 arithmetic changes the numbers...
    assert abs(a["final"]["test_loss"] - b["final"]["test_loss"]) < 0.05  # ...by rounding, not more
    assert C.config_hash("train", TINY) in a["experiment"]  # the fp32 folder is the one it always was
    cfg = (tmp_path / os.path.basename(b["experiment"]) / "config.json").read_text()
    assert '"precision": "bf16"' in cfg


def test_the_cli_takes_precision_and_deterministic(tmp_path, capsys):
    assert main(["train", "--store", str(tmp_path), "--dataset", "mnist1d", "--iterations", "10", "--eval-every",
                 "10", "--quiet", "--device", "cpu", "--precision", "bf16", "--deterministic"]) in (0, None)
    (summary,) = tmp_path.glob("*/summary.json")
    text = summary.read_text()
    assert '"precision": "bf16"' in text and '"deterministic": true' in text


def test_masks_stay_exact_under_bf16(tmp_path):
    P.use("bf16")
    data = load_dataset("mnist1d")
    m = create_model("mlp", input_shape=(40,), num_classes=10, seed=0, widths=[64, 32])
    g = torch.Generator().manual_seed(0)
    masks = {n: torch.rand(p.shape, generator=g) < 0.2 for n, p in prunable_parameters(m).items()}
    s = fit(m, data, CFG, tmp_path / "r", masks=masks, prunable=prunable_parameters(m),
            options=LoopOptions(progress=False, device="cpu"))
    w = load_state(tmp_path / "r" / "final.pt")["model"]
    assert s["precision"] == "bf16"
    for n, mk in masks.items():
        assert w[n].dtype == torch.float32  # weights stay fp32: only the arithmetic is bf16
        assert torch.count_nonzero(w[n][~mk]) == 0 and torch.count_nonzero(w[n][mk]) > 0


def test_a_stacked_lottery_trains_in_bf16_with_exact_masks(tmp_path):
    # replicates and controls of a level train as one stack: its hand-written backward under autocast
    res = api.lottery(TINY, LotteryConfig(levels=1, replicates=2, controls=("reinit",)), store=tmp_path,
                      options=RunOptions(progress=False, device="cpu", precision="bf16", stack=4))
    finals = list((tmp_path / os.path.basename(res["experiment"])).glob("**/level_1/final.pt"))
    assert len(finals) == 4
    for f in finals:
        st = load_state(f)
        for n, mk in st["masks"].items():
            assert st["model"][n].dtype == torch.float32
            assert torch.count_nonzero(st["model"][n][~mk.bool()]) == 0 and torch.count_nonzero(st["model"][n]) > 0
    s = json.loads((f.parent / "summary.json").read_text())
    assert s["precision"] == "bf16" and s["trained_with"] > 1


def test_tf32_is_a_no_op_on_the_cpu_and_sets_the_cuda_flags(tmp_path):
    a = api.train(TINY, store=tmp_path, options=RunOptions(progress=False, device="cpu"))
    b = api.train(TINY, store=tmp_path, options=RunOptions(progress=False, device="cpu", precision="tf32"))
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    assert a["experiment"] != b["experiment"] and a["final"] == b["final"]  # the CPU ignores the TF32 flags
    P.use("fp32")
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32


def test_a_sweep_finds_its_bf16_folder(tmp_path):
    from ticketlab.sweep.kinds import store_folder
    P.use("bf16")
    assert store_folder(tmp_path, "train", TINY).name == f"train-{C.config_hash('train', TINY, P.identity())}"
    P.use("fp32")
    assert store_folder(tmp_path, "train", TINY).name == f"train-{C.config_hash('train', TINY)}"


@gpu
@needs_cuda
def test_bf16_on_cuda_is_close_to_fp32_and_masks_stay_exact(tmp_path):
    a = api.train(CFG, store=tmp_path, options=RunOptions(progress=False, device="cuda"))
    b = api.train(CFG, store=tmp_path, options=RunOptions(progress=False, device="cuda", precision="bf16"))
    assert b["precision"] == "bf16" and abs(a["final"]["test_acc"] - b["final"]["test_acc"]) <= 0.05
    res = api.lottery(CFG, LotteryConfig(levels=1), store=tmp_path,
                      options=RunOptions(progress=False, device="cuda", precision="bf16"))
    (final,) = [p for p in (tmp_path / os.path.basename(res["experiment"])).glob("**/level_1/final.pt")][:1]
    st = load_state(final)
    for n, mk in st["masks"].items():
        assert torch.count_nonzero(st["model"][n][~mk.bool()]) == 0


# ---- deterministic mode ---------------------------------------------------------------------

def test_deterministic_sets_torch_and_cublas_and_changes_nothing_on_the_cpu(tmp_path):
    os.environ.pop(determinism.CUBLAS[0], None)
    a = api.train(TINY, store=tmp_path / "a", options=RunOptions(progress=False, device="cpu"))
    assert a["deterministic"] is False
    b = api.train(TINY, store=tmp_path / "b", options=RunOptions(progress=False, device="cpu", deterministic=True))
    assert torch.are_deterministic_algorithms_enabled() and os.environ[determinism.CUBLAS[0]] == ":4096:8"
    assert b["deterministic"] is True and a["final"] == b["final"]
    assert os.path.basename(a["experiment"]) == os.path.basename(b["experiment"])  # not in the key
    determinism.use(False)
    assert not torch.are_deterministic_algorithms_enabled()
    with pytest.raises(ConfigError, match="^deterministic: got"):
        RunOptions(deterministic="yes")


def test_a_callers_own_torch_settings_are_left_alone_unless_asked(tmp_path):
    torch.use_deterministic_algorithms(True)
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        api.train(TINY, store=tmp_path, options=RunOptions(progress=False, device="cpu"))
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cuda.matmul.allow_tf32 = False


def test_workers_repeat_every_setting_of_the_parent():
    D.use("auto")
    P.use("fp32")
    got = schedule._in_worker(None, ("cpu", "bf16", True),
                              lambda payloads: (D.current(), P.current(), determinism.current()), 3, [])
    assert got == ("cpu", "bf16", True)


@gpu
@needs_cuda
def test_deterministic_runs_on_cuda_are_bit_identical(tmp_path):
    opts = RunOptions(progress=False, device="cuda", deterministic=True)
    a = api.train(CFG, store=tmp_path / "a", options=opts)
    b = api.train(CFG, store=tmp_path / "b", options=opts)
    assert a["final"] == b["final"]


# ---- several GPUs ---------------------------------------------------------------------------

def test_each_worker_slot_takes_its_own_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert [D.for_worker("cuda", i, 4) for i in range(6)] == ["cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:0",
                                                             "cuda:1"]
    assert D.for_worker("auto", 1, 2) == "cuda:1"
    assert D.for_worker("cuda:3", 1, 4) == "cuda:3"  # an explicit device is kept
    assert D.for_worker("cuda", 5, 1) == "cuda"  # one GPU: every worker shares it
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert D.for_worker("cuda", 3) == "cuda:1"
    assert D.for_worker("cpu", 3) == "cpu" and D.for_worker("mps", 1) == "mps"


def test_without_cuda_workers_keep_the_setting():
    if HAS_CUDA:
        pytest.skip("checks a machine without CUDA")
    assert D.for_worker("auto", 3, 8) == "auto" and D.for_worker("cpu", 1, 8) == "cpu"


class _Recorder:
    """An executor that runs each job at once and records the slot (the first argument) it got."""

    def __init__(self):
        self.slots = []

    def submit(self, fn, payloads):
        import concurrent.futures as cf
        self.slots.append(fn.args[-1])  # partial(_in_worker, level, settings, train, slot)
        f = cf.Future()
        f.set_result(fn(payloads))
        return f


def test_groups_running_at_once_hold_distinct_slots(tmp_path):
    nodes = [schedule.Node(key=i, run_dir=tmp_path / str(i), payload=i) for i in range(5)]
    rec = _Recorder()
    schedule.run([[n] for n in nodes], lambda payloads: None, workers=3, executor=rec)
    # three submitted before any result is read: slots 0, 1, 2; then the freed ones again
    assert rec.slots[:3] == [0, 1, 2] and len(rec.slots) == 5 and set(rec.slots) <= {0, 1, 2}


def test_ray_asks_for_a_gpu_per_trial_on_cuda(monkeypatch):
    assert D.ray_resources("cpu") == {"num_cpus": 1, "num_gpus": 0}
    assert D.ray_resources("cuda") == {"num_cpus": 1, "num_gpus": 1}
    assert D.ray_resources("cuda:1") == {"num_cpus": 1, "num_gpus": 1}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert D.ray_resources("auto") == {"num_cpus": 1, "num_gpus": 1}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert D.ray_resources("auto") == {"num_cpus": 1, "num_gpus": 0}


def test_the_ray_executor_builds_its_request_from_the_device(monkeypatch):
    ray = requires.package("ray")
    from ticketlab.engine import parallel
    seen = {}
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 4, "GPU": 2})
    monkeypatch.setattr(ray, "remote", lambda **kw: (seen.update(kw), lambda f: f)[1])
    ex = parallel.RayExecutor(2, device="cuda")
    assert ex.resources == {"num_cpus": 1, "num_gpus": 1} and seen["num_gpus"] == 1
    parallel.RayExecutor(2)
    assert seen["num_gpus"] == 0


# ---- the stack size from memory ---------------------------------------------------------------

def test_footprint_counts_state_and_activations():
    # LeNet-300-100: 266,610 parameters; Adam; batch 60; 300 + 100 + 10 (+ ReLUs 400) activations
    fp = S.footprint(266_610, 60, 810, slots=2)
    assert fp == 266_610 * 4 * 5 + 2 * 60 * 810 * 4
    assert S.footprint(100, 1, 0, slots=0) == 100 * 4 * 3
    assert S.optimizer_slots("adam") == 2 and S.optimizer_slots("sgd", 0.9) == 1 and S.optimizer_slots("sgd") == 0


def test_the_stack_fits_the_free_memory_between_one_and_the_cap():
    gib = 2 ** 30
    assert S.stack_for_memory(10 * gib, gib, headroom=0.5) == 5
    assert S.stack_for_memory(10 * gib, 20 * gib) == 1  # too large: still trains alone
    assert S.stack_for_memory(80 * gib, 6 * 2 ** 20) == S.CAP
    assert S.stack_for_memory(80 * gib, 6 * 2 ** 20, cap=10_000) == int(80 * gib * S.HEADROOM) // (6 * 2 ** 20)


def test_activations_are_counted_on_the_meta_device():
    m = create_model("mlp", input_shape=(40,), num_classes=10, seed=0, widths=[300, 100])
    n = S.activations_per_example(m, (40,))
    assert n >= 300 + 100 + 10 and next(m.parameters()).device.type == "cpu"  # the model is not moved
    conv = create_model("conv2", input_shape=(1, 28, 28), num_classes=10, seed=0)
    assert S.activations_per_example(conv, (1, 28, 28)) > 28 * 28


def test_on_cuda_the_api_takes_the_stack_from_memory(monkeypatch):
    cfg = dataclasses.replace(TINY, model_args={"widths": [300, 100]}, batch_size=60)
    o = RunOptions(device="cpu").resolved("lottery")
    assert api._stack(o, RunOptions(), cfg, None) == 8  # the CPU: the kind's measured default
    monkeypatch.setattr(D, "resolve", lambda name=None: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda dev=None: (2 ** 30, 80 * 2 ** 30))
    got = api._stack(o, RunOptions(), cfg, None)
    assert 8 < got <= S.CAP
    assert api._stack(o, RunOptions(stack=3), cfg, None) == 8  # given: `o.stack` already holds it


class _TrialRecorder:
    """A two-worker executor that runs each sweep trial at once and records the slot it was given."""

    workers = 2

    def __init__(self):
        self.slots = []

    def submit(self, fn, *args, slot=0):
        import concurrent.futures as cf
        self.slots.append(slot)
        f = cf.Future()
        f.set_result(fn(*args, slot=slot))
        return f


def test_sweep_trials_running_at_once_hold_distinct_slots(monkeypatch, tmp_path):
    from ticketlab.sweep import dispatch
    from ticketlab.sweep.grammar import Trial
    seen = []
    monkeypatch.setattr(dispatch, "run_trials", lambda job, *args, slot: seen.append((job[0].index, slot)) or
                        [{"status": "done", "experiment": ""}])
    trials = [Trial(i, "lottery", (i,), {"i": i}) for i in range(4)]
    monkeypatch.setattr(dispatch, "_busy_key", lambda t, store: str(t.index))  # four distinct folders
    rec, rows = _TrialRecorder(), {}
    dispatch._dispatch(rec, [[t] for t in trials], rows, 4, lambda s: None, retries=0, store=str(tmp_path),
                       args=lambda t: (str(tmp_path), None, None, 1, None))
    # two submitted before any result is read: slots 0 and 1; then both freed, and the same again
    assert rec.slots == [0, 1, 0, 1] and [s for _, s in seen] == rec.slots and len(rows) == 4


def test_a_sweep_trial_trains_on_the_options_device(tmp_path):
    from ticketlab.engine.options import RunOptions
    from ticketlab.sweep.dispatch import run_trial
    from ticketlab.sweep.grammar import Trial
    before = D.current()
    try:
        D.use("auto")
        row = run_trial(Trial(0, "train", (CFG,), {}), tmp_path, options=RunOptions(workers=1, progress=False,
                                                                                   device="cpu"))
        assert row["status"] == "done" and D.current() == "cpu"
        summary = json.loads(next(Path(tmp_path).glob("train-*/summary.json")).read_text())
        assert summary["trained_on"] == "cpu"
    finally:
        D.use(before)
