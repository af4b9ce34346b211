"""Results store: atomic writes, hashed folders, locks, and concurrent writers."""

import json
import multiprocessing as mp
import os

import pytest

from ticketlab.core import atomic as _atomic
from ticketlab.core.errors import TicketlabError
from ticketlab.engine.store import Store
from ticketlab.training.loop import TrainConfig


def test_atomic_write_leaves_old_content_on_failure(tmp_path):
    p = tmp_path / "f.json"
    _atomic.write_json(p, {"a": 1})
    with pytest.raises(RuntimeError):
        with _atomic.atomic_open(p, "w") as f:
            f.write('{"a": 2, "trunc')
            raise RuntimeError("killed mid-write")
    assert json.loads(p.read_text()) == {"a": 1}
    assert sorted(os.listdir(tmp_path)) == ["f.json"]  # no temp file left behind


def test_experiment_folder_is_keyed_by_config(tmp_path):
    s = Store(tmp_path)
    a = s.experiment("train", TrainConfig())
    b = s.experiment("train", TrainConfig())
    c = s.experiment("train", TrainConfig(lr=0.1))
    assert a.path == b.path != c.path
    saved = json.loads((a.path / "config.json").read_text())
    assert saved["config"]["lr"] == TrainConfig().lr and saved["kind"] == "train"
    assert "val_size" in saved["config"]  # every field, defaults included
    assert s.get(a.name.split("-")[1][:6]).path == a.path
    with pytest.raises(TicketlabError, match="no experiment"):
        s.get("zzzz")


def test_lock_is_exclusive(tmp_path):
    exp = Store(tmp_path).experiment("train", TrainConfig())
    with exp.lock():
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        p = ctx.Process(target=_try_lock, args=(str(exp.path), q))
        p.start()
        p.join(60)
        assert q.get(timeout=5) == "locked"
    with exp.lock():  # released
        pass


def _try_lock(path, q):
    from ticketlab.engine.store import Experiment
    try:
        with Experiment(__import__("pathlib").Path(path)).lock():
            q.put("acquired")
    except TicketlabError:
        q.put("locked")


def _writer(root, lrs):
    s = Store(root)
    for lr in lrs:
        exp = s.experiment("train", TrainConfig(lr=lr))
        for i in range(20):
            _atomic.write_json(exp.path / "summary.json", {"lr": lr, "i": i})


def test_two_processes_write_different_experiments(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), [k * 0.01 + j * 0.001 for j in range(1, 6)]))
             for k in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    exps = Store(tmp_path).list()
    assert len(exps) == 10
    for e in exps:
        s = json.loads((e.path / "summary.json").read_text())
        assert s["lr"] == e.config["lr"] and s["i"] == 19
        assert not [f for f in os.listdir(e.path) if f.endswith(".tmp")]


def test_config_json_records_the_stored_run_shape_not_the_last_call(tmp_path):
    """`--levels 1` after `--levels 2` keeps `levels: 2` (level 2 stays stored); controls and the
    levels they ran at accumulate (issue 17)."""
    from ticketlab import api
    from ticketlab.experiments.lottery.trunk import LotteryConfig
    from ticketlab.training.loop import TrainConfig
    train = TrainConfig(dataset="mnist1d", model="mlp", model_args={"widths": [16]}, iterations=20, eval_every=10)
    exp = api.lottery(train, LotteryConfig(levels=2, controls=("reinit",), control_levels=(2,)), store=tmp_path,
                      progress=False)["experiment"]
    api.lottery(train, LotteryConfig(levels=1, controls=("random_mask",), control_levels=(1,)), store=tmp_path,
                progress=False)
    lot = json.loads((tmp_path / exp.split("/")[-1] / "config.json").read_text())["config"]["lottery"]
    assert (lot["levels"], lot["controls"], lot["control_levels"]) == (2, ["reinit", "random_mask"], [1, 2])
    api.lottery(train, LotteryConfig(levels=1, controls=("reinit",)), store=tmp_path, progress=False)  # at every level
    lot = json.loads((tmp_path / exp.split("/")[-1] / "config.json").read_text())["config"]["lottery"]
    assert (lot["levels"], lot["controls"], lot["control_levels"]) == (2, ["reinit", "random_mask"], [])


def test_ls_and_verify_name_a_store_that_does_not_exist(tmp_path, capsys):
    """A mistyped --store is one line naming it, not an empty listing or 'every file checks out'."""
    from ticketlab.cli.commands import main

    missing = tmp_path / "no-such-store"
    for cmd in (["ls"], ["verify"]):
        assert main([*cmd, "--store", str(missing)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"no store at {missing}" in err and "Traceback" not in err
    (tmp_path / "empty").mkdir()
    assert main(["ls", "--store", str(tmp_path / "empty")]) == 0
    assert "no experiments in the store" in capsys.readouterr().out
