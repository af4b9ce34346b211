"""The training loop: determinism, resume (in-process and after SIGKILL), schedules, hooks."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
from crash import Crash
import torch

from ticketlab.core.schedules import lr_factor
from ticketlab.training.loop import RunOptions, TrainConfig, early_stopping, fit, load_state, make_optimizer

torch.set_num_threads(1)


def tiny_data(n=600, d=12, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, d, generator=g) * 2
    def split(m):
        y = torch.randint(0, k, (m,), generator=g)
        return SimpleNamespace(x=centers[y] + torch.randn(m, d, generator=g), y=y, __len__=lambda: m)
    mk = lambda m: _Split(*vars(split(m)).values())
    return SimpleNamespace(train=mk(n), val=mk(200), test=mk(200), num_classes=k, input_shape=(d,))


class _Split:
    def __init__(self, x, y, _):
        self.x, self.y = x, y
    def __len__(self):
        return len(self.x)


def tiny_model(seed=0, dropout=0.1):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(12, 32), torch.nn.ReLU(), torch.nn.Dropout(dropout),
                               torch.nn.Linear(32, 3))


CFG = TrainConfig(dataset="tiny", model="tiny", optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True,
                  weight_decay=1e-4, schedule="cosine", warmup_iters=20, iterations=300, batch_size=32,
                  eval_every=25)
QUIET = RunOptions(progress=False, checkpoint_every=50)


def weights(run_dir):
    return load_state(run_dir / "final.pt")["model"]


def test_same_seeds_give_identical_weights(tmp_path):
    data = tiny_data()
    fit(tiny_model(0), data, CFG, tmp_path / "a", options=QUIET)
    fit(tiny_model(0), data, CFG, tmp_path / "b", options=QUIET)
    wa, wb = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # a different data order changes the result, from the same init
    from dataclasses import replace
    fit(tiny_model(0), data, replace(CFG, data_seed=1), tmp_path / "c", options=QUIET)
    wc = weights(tmp_path / "c")
    assert not torch.equal(wa["0.weight"], wc["0.weight"])


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_resume_after_interrupt_is_bit_identical(tmp_path, optimizer):
    from dataclasses import replace
    cfg = replace(CFG, optimizer=optimizer, lr=0.01 if optimizer == "adamw" else 0.05)
    data = tiny_data()
    full = fit(tiny_model(0), data, cfg, tmp_path / "full", options=QUIET)
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_model(0), data, cfg, tmp_path / "cut", hooks=[Crash(at=170)], options=QUIET)
    assert (tmp_path / "cut" / "checkpoint.pt").exists() and not (tmp_path / "cut" / "summary.json").exists()
    assert load_state(tmp_path / "cut" / "checkpoint.pt")["iteration"] == 150
    resumed = fit(tiny_model(123), data, cfg, tmp_path / "cut", options=QUIET)  # init is overwritten by the checkpoint
    wa, wb = weights(tmp_path / "full"), weights(tmp_path / "cut")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    rows = lambda d: [json.loads(l) for l in (d / "metrics.jsonl").read_text().splitlines()]
    assert rows(tmp_path / "full") == rows(tmp_path / "cut")
    assert full["early_stop"] == resumed["early_stop"]
    assert not (tmp_path / "cut" / "checkpoint.pt").exists()


def test_finished_run_does_no_work(tmp_path):
    data = tiny_data()
    s1 = fit(tiny_model(0), data, CFG, tmp_path, options=QUIET)
    mtime = (tmp_path / "final.pt").stat().st_mtime_ns
    s2 = fit(tiny_model(0), data, CFG, tmp_path, hooks=[Crash(at=1)], options=QUIET)
    assert s1 == s2 and (tmp_path / "final.pt").stat().st_mtime_ns == mtime


def test_metrics_and_early_stopping(tmp_path):
    s = fit(tiny_model(0), tiny_data(), CFG, tmp_path, options=QUIET)
    rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in rows] == list(range(0, 301, 25))
    best = min(rows[1:], key=lambda r: r["val_loss"])  # never the untrained start
    assert s["early_stop"]["iter"] == best["iter"] and s["early_stop"]["test_acc"] == best["test_acc"]
    assert s["final"]["test_acc"] > 0.8  # separable blobs: it really learns
    row = {"val_acc": 0, "test_loss": 0, "test_acc": 0}
    assert early_stopping([{"iter": 0, "val_loss": 0.5, **row}, {"iter": 5, "val_loss": 1.0, **row},
                           {"iter": 2, "val_loss": 1.0, **row}])["iter"] == 2  # first on ties, never the start


def test_snapshots_and_late_start(tmp_path):
    data = tiny_data()
    fit(tiny_model(0, dropout=0.0), data, CFG, tmp_path / "a", snapshot_iters=[0, 40], options=QUIET)
    s0, s40 = (load_state(tmp_path / "a" / f"snapshot_{k}.pt") for k in (0, 40))
    assert s40["iteration"] == 40 and "optimizer" in s40
    assert all(torch.equal(s0["model"][k], v) for k, v in tiny_model(0, dropout=0.0).state_dict().items())
    # Starting at k=40 from the snapshot (weights + optimizer state) continues the data order
    # and the learning-rate schedule from k, so it reproduces the full run bit for bit.
    m = tiny_model(9, dropout=0.0)
    m.load_state_dict(s40["model"])
    sb = fit(m, data, CFG, tmp_path / "b", start_iter=40, start_optimizer=s40["optimizer"], options=QUIET)
    assert sb["start_iter"] == 40
    wa, wb = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_hooks_order(tmp_path):
    calls = []
    class H:
        def after_backward(self, it):
            calls.append(("b", it))
        def after_step(self, it):
            calls.append(("s", it))
    fit(tiny_model(0), tiny_data(), TrainConfig(iterations=3, batch_size=32, eval_every=3), tmp_path,
        hooks=[H()], options=QUIET)
    assert calls == [("b", 0), ("s", 0), ("b", 1), ("s", 1), ("b", 2), ("s", 2)]


def test_lr_schedules():
    kw = dict(total=100)
    assert lr_factor(50, schedule="constant", **kw) == 1.0
    assert lr_factor(9, schedule="multistep", milestones=(10, 20), **kw) == 1.0
    assert lr_factor(10, schedule="multistep", milestones=(10, 20), **kw) == pytest.approx(0.1)
    assert lr_factor(25, schedule="multistep", milestones=(20, 10), **kw) == pytest.approx(0.01)
    assert lr_factor(0, schedule="cosine", **kw) == 1.0
    assert lr_factor(50, schedule="cosine", **kw) == pytest.approx(0.5)
    assert lr_factor(100, schedule="cosine", **kw) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(25, schedule="cosine", **kw) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_factor(0, schedule="constant", warmup_iters=10, **kw) == pytest.approx(0.1)
    assert lr_factor(9, schedule="constant", warmup_iters=10, **kw) == 1.0


def test_optimizers():
    p = [torch.nn.Parameter(torch.zeros(3))]
    o = make_optimizer(TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4), p)
    assert isinstance(o, torch.optim.SGD) and o.defaults["nesterov"] and o.defaults["momentum"] == 0.9
    assert isinstance(make_optimizer(TrainConfig(optimizer="adam"), p), torch.optim.Adam)
    o = make_optimizer(TrainConfig(optimizer="adamw", weight_decay=0.01, betas=(0.8, 0.9)), p)
    assert isinstance(o, torch.optim.AdamW) and o.defaults["betas"] == (0.8, 0.9)


class Counter:
    """A stateful hook: counts steps; its state must survive an interruption."""
    def __init__(self):
        self.steps, self.attached = 0, None
    def attach(self, optimizer, params):
        self.attached = (type(optimizer).__name__, sorted(params))
    def after_step(self, it):
        self.steps += 1
    def state_dict(self):
        return {"steps": torch.tensor(self.steps)}
    def load_state_dict(self, state):
        self.steps = int(state["steps"])


def test_stateful_hooks_are_checkpointed_and_restored(tmp_path):
    data, c1 = tiny_data(), Counter()
    fit(tiny_model(0), data, CFG, tmp_path / "a", hooks=[c1], prunable={"0.weight": None}, options=QUIET)
    assert c1.steps == 300 and c1.attached == ("SGD", ["0.weight"])
    assert int(load_state(tmp_path / "a" / "final.pt")["hooks"][0]["steps"]) == 300
    c2 = Counter()
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_model(0), data, CFG, tmp_path / "b", hooks=[c2, Crash(at=170)], options=QUIET)
    c3 = Counter()  # a fresh process: the state comes from the checkpoint at 150
    fit(tiny_model(0), data, CFG, tmp_path / "b", hooks=[c3], options=QUIET)
    assert c3.steps == 300


def test_a_bad_train_config_fails_before_any_store_folder_exists(tmp_path):
    from ticketlab import api
    from ticketlab.core.errors import TicketlabError

    store = tmp_path / "store"
    with pytest.raises(TicketlabError, match="nosuchmodel"):
        api.train(TrainConfig(dataset="mnist1d", model="nosuchmodel", iterations=10), store=store, progress=False)
    with pytest.raises(TicketlabError, match="widths"):
        api.train(TrainConfig(dataset="mnist1d", model="mlp", model_args={"widths": "wide"}, iterations=10),
                  store=store, progress=False)
    assert not store.exists() or not any(store.iterdir())


def test_subnormals_are_flushed_while_the_loop_trains_and_restored_after(tmp_path):
    """docs/performance.md §7b: flush-to-zero inside ticketlab's loop (recorded in the summary),
    IEEE subnormals again in the caller's process afterwards."""
    from ticketlab.training import denormals
    tiny = torch.tensor([1e-39])  # a subnormal float32
    seen = []

    class Probe:  # a hook: what a subnormal multiplies to while the loop trains
        def after_step(self, it):
            if not seen:
                seen.append((tiny * 1.0).item())
    summary = fit(tiny_model(0), tiny_data(), CFG, tmp_path / "a", hooks=[Probe()], options=QUIET)
    with denormals.flushed() as supported:
        pass
    if not supported:
        pytest.skip("this CPU cannot flush subnormals (no SSE3)")
    assert seen == [0.0] and summary["flush_denormal"] is True
    assert (tiny * 1.0).item() > 0  # restored: the caller's arithmetic is IEEE again
