"""The stacking calibration (`ticketlab.engine.calibrate`, issue #16): measured once per
architecture, recipe, device and torch version, cached in the cache folder, read back without
measuring, reset by deleting it; the lottery, sparse-train and transfer commands and the trials of
`ticketlab sweep` stack only where it says stacking wins, an explicit `--stack` always wins, and the
Python API never calibrates."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from calibration_spy import expected_calls, spy_on_fit_many
from ticketlab.cli import commands
from ticketlab.engine import calibrate
from ticketlab.engine.options import RunOptions
from ticketlab.experiments.transfer import TransferConfig
from ticketlab.training.loop import TrainConfig

CFG = TrainConfig(dataset="mnist1d", model="mlp", model_args={"widths": [8]})


@pytest.fixture
def on(tmp_path, monkeypatch):
    monkeypatch.delenv(calibrate.ENV, raising=False)
    monkeypatch.setenv("TICKETLAB_CACHE", str(tmp_path))
    calls = []

    def fake(build, input_shape, device="cpu", recipe=None):
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
    key = calibrate.key('mlp {"widths": [8]} (40,) -> 10', "cpu", CFG)
    assert key in calibrate.read() and "torch " in key and "adam, batch 100" in key
    assert "| adam, batch 60 |" in calibrate.key("arch", "cpu")  # no recipe: measure's default, never an old key
    sgd = TrainConfig(dataset="mnist1d", model="mlp", model_args={"widths": [8]}, optimizer="sgd")
    assert calibrate.for_config(sgd) is False and len(calls) == 2  # another recipe: measured for itself
    path.unlink()  # the reset
    assert calibrate.for_config(CFG) is False and len(calls) == 3
    assert calibrate.for_config(CFG, "meta") is False and len(calls) == 4  # another device: its own entry


def test_a_win_needs_the_margin(on):
    _, fake, path = on
    fake.times = (0.95, 1.0)  # 5 %: within what the scheduler loses to stacks (and this machine's noise)
    assert calibrate.for_config(CFG) is False
    path.unlink()
    fake.times = (0.85, 1.0)
    assert calibrate.for_config(CFG) is True


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
    assert calibrate.options(RunOptions(), [CFG]).stack == 1
    assert calibrate.options(RunOptions(stack=8), [CFG]).stack == 8  # --stack 8 given
    fake.times = (1.0, 2.0)
    wins = TrainConfig(dataset="mnist1d", model="mlp", model_args={"widths": [9]})
    assert calibrate.options(RunOptions(), [wins]).stack is None
    assert calibrate.options(RunOptions(), [wins, CFG]).stack == 1  # one recipe where it loses: no stacks
    assert calibrate.options(RunOptions(), []).stack is None


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


def test_transfer_calibrates_its_target_recipe(on, tmp_path, monkeypatch, capsys):
    from ticketlab import api
    from ticketlab.experiments.lottery.trunk import LotteryConfig
    store = tmp_path / "s"
    src = api.lottery(TrainConfig(dataset="mnist1d", model="mlp", model_args={"widths": [8]}, iterations=20,
                                  eval_every=10, batch_size=50), LotteryConfig(levels=1), store=store, progress=False)
    seen = []
    monkeypatch.setattr(calibrate, "for_config", lambda cfg, device="cpu": seen.append(cfg) or False)
    argv = ["transfer", Path(src["experiment"]).name, "--store", str(store), "--quiet", "--workers", "1",
            "--target-optimizer", "sgd", "--levels", "1", "--controls", "random"]
    assert commands.main(argv) in (0, None)
    assert [c.optimizer for c in seen] == ["sgd"] and seen[0].model_args == {"widths": [8]}
    res = api.transfer(TransferConfig(source=Path(src["experiment"]).name, target={"optimizer": "sgd"}, levels=(1,),
                                      controls=("random",)), store=store, progress=False)
    sizes = [json.loads(p.read_text())["stack_size"] for p in Path(res["experiment"]).glob("**/summary.json")]
    assert sizes == [1]  # calibrated: the ticket did not stack with its random control
    seen.clear()  # a source that does not resolve: nothing to measure, and the transfer's own one-line error
    assert commands.main(argv[:1] + ["nosuchsource"] + argv[2:]) == 2 and seen == []


def test_the_sweep_command_calibrates_its_trials_and_the_api_does_not(on, tmp_path):
    from ticketlab.sweep import run_file
    _, fake, _ = on
    fake.times = (2.0, 1.0)  # stacking loses here
    path = tmp_path / "sparse.toml"
    path.write_text('kind = "sparse"\n[base]\ndataset = "mnist1d"\nmodel = "mlp"\nmodel_args = {widths = [8]}\n'
                    'iterations = 20\neval_every = 10\nsparsity = 0.5\nmethod = "static"\n'
                    '[sweep]\nreplicates = 2\nbackend = "inline"\n')

    def sizes(store):
        return [json.loads(p.read_text())["stack_size"] for p in sorted(Path(store).glob("*/**/summary.json"))]
    run_file(path, store=tmp_path / "a", progress=False, calibrated=True)  # as `ticketlab sweep` runs it
    run_file(path, store=tmp_path / "b", progress=False)  # the Python API: the kind's fixed default
    run_file(path, store=tmp_path / "c", progress=False, calibrated=True, stack=2)  # a given stack wins
    assert sizes(tmp_path / "a") == [1, 1] and sizes(tmp_path / "b") == [2, 2] and sizes(tmp_path / "c") == [2, 2]


def test_a_real_measurement_trains_in_the_loop(monkeypatch):
    from ticketlab.models import create_model
    monkeypatch.setattr(calibrate, "STEPS", 6)
    monkeypatch.setattr(calibrate, "WARMUP", 2)
    calls = spy_on_fit_many(monkeypatch)
    built = []

    def build(s):
        built.append(create_model("mlp", input_shape=(40,), num_classes=10, seed=s, widths=[8]))
        return built[-1]
    stacked, single = calibrate.measure(build, (40,), "cpu", TrainConfig(optimizer="sgd", batch_size=20))
    assert stacked > 0 and single > 0
    assert calls == expected_calls("Stacked", (20, "sgd"))  # the run's recipe, as one stack and one by one
    fresh = create_model("mlp", input_shape=(40,), num_classes=10, seed=0, widths=[8])
    w, w0 = built[0].state_dict(), fresh.state_dict()
    assert not all(torch.equal(w[k], w0[k]) for k in w0)  # the models really trained
