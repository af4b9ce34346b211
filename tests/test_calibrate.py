"""The stacking calibration (`ticketlab.engine.calibrate`, issue #16): measured once per
architecture, device and torch version, cached in the cache folder, read back without measuring,
reset by deleting it; the lottery and sparse-train commands stack only where it says stacking wins,
and an explicit `--stack` always wins."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from ticketlab.cli import commands
from ticketlab.engine import calibrate
from ticketlab.engine.options import RunOptions
from ticketlab.training.loop import TrainConfig

CFG = TrainConfig(dataset="mnist1d", model="mlp", model_args={"widths": [8]})


@pytest.fixture
def on(tmp_path, monkeypatch):
    monkeypatch.delenv(calibrate.ENV, raising=False)
    monkeypatch.setenv("TICKETLAB_CACHE", str(tmp_path))
    calls = []

    def fake(build, input_shape, device="cpu"):
        calls.append((input_shape, device))
        return fake.times
    fake.times = (1.0, 2.0)
    monkeypatch.setattr(calibrate, "measure", fake)
    return calls, fake, tmp_path / calibrate.FILE


def test_measured_once_then_read_from_the_cache(on):
    calls, fake, path = on
    assert calibrate.for_config(CFG) is True and calls == [((40,), "cpu")]
    fake.times = (2.0, 1.0)  # a second measurement would say otherwise: it must not happen
    assert calibrate.for_config(CFG) is True and len(calls) == 1
    (entry,) = json.loads(path.read_text()).values()
    assert entry["stack_wins"] is True and entry["stacked_ms"] == 1000.0 and entry["single_ms"] == 2000.0
    key = calibrate.key('mlp {"widths": [8]} (40,) -> 10', "cpu")
    assert key in calibrate.read() and "torch " in key
    path.unlink()  # the reset
    assert calibrate.for_config(CFG) is False and len(calls) == 2
    assert calibrate.for_config(CFG, "meta") is False and len(calls) == 3  # another device: its own entry


def test_a_win_needs_the_margin(on):
    _, fake, _ = on
    fake.times = (0.99, 1.0)  # 1 % is noise
    assert calibrate.for_config(CFG) is False


def test_off_and_unmeasurable_configs_give_none(on, monkeypatch):
    calls, _, _ = on
    assert calibrate.for_config(SimpleNamespace(dataset="x.npz", model="mlp")) is None
    assert calibrate.for_config(SimpleNamespace(dataset="mnist1d", model="pkg.mod:factory")) is None
    assert calibrate.for_config(object()) is None
    monkeypatch.setenv(calibrate.ENV, "off")
    assert calibrate.for_config(CFG) is None and calls == []


def test_the_lottery_command_stacks_only_where_it_wins_and_explicit_stack_wins(on):
    _, fake, _ = on
    fake.times = (2.0, 1.0)  # stacking loses here
    assert commands.calibrated(RunOptions(), CFG).stack == 1
    assert commands.calibrated(RunOptions(stack=8), CFG).stack == 8  # --stack 8 given
    fake.times = (1.0, 2.0)
    assert commands.calibrated(RunOptions(), TrainConfig(dataset="mnist1d", model="mlp", model_args={"widths": [9]})).stack is None


def test_sparse_train_stacks_its_replicates_only_where_stacking_wins(on, tmp_path, capsys):
    _, fake, path = on
    fake.times = (2.0, 1.0)  # stacking loses here: the two replicates train one at a time
    args = ["sparse-train", "--store", str(tmp_path / "s"), "--dataset", "mnist1d", "--model", "mlp",
            "--model-args", '{"widths": [8]}', "--iterations", "20", "--eval-every", "10", "--replicates", "2",
            "--method", "static", "--sparsity", "0.5", "--quiet"]
    assert commands.main(args) in (0, None)
    rows = [json.loads(p.read_text()) for p in sorted((tmp_path / "s").glob("*/**/summary.json"))]
    assert len(rows) == 2 and all(r["stack_size"] == 1 for r in rows)
    path.unlink()  # the calibration reset; measured again, stacking wins: a new store stacks both
    fake.times = (1.0, 2.0)
    assert commands.main(args[:2] + [str(tmp_path / "t")] + args[3:]) in (0, None)
    rows = [json.loads(p.read_text()) for p in sorted((tmp_path / "t").glob("*/**/summary.json"))]
    assert len(rows) == 2 and all(r["stack_size"] == 2 for r in rows)


def test_a_real_measurement_is_two_positive_times():
    from ticketlab.models import create_model
    build = lambda s: create_model("mlp", input_shape=(40,), num_classes=10, seed=s, widths=[8])
    stacked, single = calibrate.measure(build, (40,))
    assert stacked > 0 and single > 0
