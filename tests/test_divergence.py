"""Divergence is a result (issue 17): a run whose training loss becomes NaN or infinite stops, its
summary (strict JSON) says `"diverged": {"iteration": N}`, `ls` / the lottery table / the report show
it, and aggregates count diverged runs (`n_diverged`) instead of averaging over them. A stacked
run's other members train on, bit for bit as without the diverged one."""

import json
import math

import pytest
import torch

from ticketlab import api
from ticketlab.cli.commands import main
from ticketlab.data import load_dataset
from ticketlab.engine.results import aggregate
from ticketlab.models import create_model
from ticketlab.reports.tables import lottery_table
from ticketlab.training.loop import Run, RunOptions, TrainConfig, fit_many, load_state
from ticketlab.training.rundir import strict_json
from ticketlab.training.stacked import Stacked

torch.set_num_threads(1)
QUIET = RunOptions(progress=False, checkpoint_every=20)


def _strict(path):
    """Parse a JSON file refusing bare NaN / Infinity."""
    def bad(c):
        raise ValueError(f"non-strict JSON constant {c}")
    return json.loads(path.read_text(), parse_constant=bad)


def test_train_with_a_huge_lr_ends_as_diverged(tmp_path, capsys):
    store = tmp_path / "s"
    rc = main(["train", "--lr", "1e30", "--iterations", "40", "--eval-every", "10", "--store", str(store), "--quiet"])
    assert rc in (0, None)
    out = capsys.readouterr().out
    assert "diverged at iteration" in out
    [summary] = store.rglob("summary.json")
    s = _strict(summary)
    n = s["diverged"]["iteration"]
    assert 1 <= n < 40  # stopped at once, not at the end
    rows = [json.loads(line, parse_constant=lambda c: 1 / 0) for line in
            (summary.parent / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["iter"] == n and rows[-1]["test_acc"] is None
    assert s["early_stop"]["val_loss"] is not None and math.isfinite(s["early_stop"]["val_loss"])
    main(["ls", "--store", str(store)])
    assert f"diverged at iteration {n}" in capsys.readouterr().out


class PoisonMember:
    """Sets member `r`'s weights to NaN after step `at` (a divergence of one member of a stack)."""

    def __init__(self, r, at):
        self.r, self.at = r, at

    def attach(self, optimizer, params):
        self.params = params

    def after_step(self, it):
        if it + 1 == self.at:
            with torch.no_grad():
                for p in self.params.values():
                    p[self.r].fill_(math.nan)


def test_a_stacked_member_diverges_alone(tmp_path):
    data = load_dataset("mnist1d")
    cfg = TrainConfig(dataset="mnist1d", model="mlp", iterations=60, batch_size=50, eval_every=20)
    models = lambda: [create_model("mlp", input_shape=(40,), num_classes=10, seed=s, widths=[32]) for s in range(2)]
    ms = models()
    clean = fit_many([Run(tmp_path / f"a{s}", model=ms[s], data_seed=s) for s in range(2)], data, cfg, Stacked(ms),
                     options=QUIET)
    ms = models()
    out = fit_many([Run(tmp_path / f"b{s}", model=ms[s], data_seed=s) for s in range(2)], data, cfg, Stacked(ms),
                   hooks=[PoisonMember(1, 30)], options=QUIET)
    assert "diverged" not in clean[1] and "diverged" not in out[0]
    assert out[1]["diverged"] == {"iteration": 31}  # the first step whose loss saw the NaN weights
    a, b = load_state(tmp_path / "a0" / "final.pt")["model"], load_state(tmp_path / "b0" / "final.pt")["model"]
    assert all(torch.equal(a[n], b[n]) for n in a)  # the other member: bit for bit
    assert out[0]["final"] == clean[0]["final"]
    assert _strict(tmp_path / "b1" / "summary.json")["final"]["test_acc"] is None
    assert "diverged" not in load_state(tmp_path / "b0" / "final.pt")


def _row(level, acc, diverged=None, branch="ticket"):
    return {"branch": branch, "level": level, "density": 0.8 ** level, "metric": "test_acc", "es_iter": 10,
            "es_score": acc, "es_test_acc": acc, "diverged": diverged}


def test_aggregate_counts_diverged_runs_and_never_averages_them():
    agg = {(a["branch"], a["level"]): a for a in
           aggregate([_row(0, 0.9), _row(0, 0.7), _row(0, 0.1, diverged=3), _row(1, 0.1, diverged=5)])}
    assert agg["ticket", 0]["n"] == 2 and agg["ticket", 0]["n_diverged"] == 1
    assert agg["ticket", 0]["es_test_acc"] == pytest.approx(0.8)
    assert agg["ticket", 1]["n"] == 0 and agg["ticket", 1]["n_diverged"] == 1 and "es_score" not in agg["ticket", 1]
    table = lottery_table(list(agg.values()))
    assert "(1 diverged)" in table.splitlines()[1] and "diverged" in table.splitlines()[2]


def test_summaries_are_strict_json():
    assert strict_json({"a": math.nan, "b": [math.inf, 1.0]}) == '{"a": null, "b": [null, 1.0]}'


def test_a_lottery_from_a_diverged_trunk_says_so(tmp_path):
    from ticketlab.core.errors import TicketlabError
    from ticketlab.experiments.lottery.trunk import LotteryConfig
    with pytest.raises(TicketlabError, match="level_0 diverged at iteration .*nothing can be pruned"):
        api.lottery(TrainConfig(lr=1e30, iterations=20, eval_every=10), LotteryConfig(levels=1),
                    store=tmp_path, progress=False)
    [row] = api.ls(store=tmp_path)
    assert row["status"] == "1 runs, 1 diverged" and row["es_test_acc"] is None


def test_on_an_accelerator_the_loss_is_read_only_at_evaluations(tmp_path, monkeypatch):
    # issue #16: on an accelerator a per-step read of the loss waits for the device; `fit_many` then
    # sums on the device and checks at each evaluation. The same code path, forced on the CPU: the
    # poisoned member is caught at the evaluation after its NaN, the other trains bit for bit.
    from ticketlab.training import device as _device
    data = load_dataset("mnist1d")
    cfg = TrainConfig(dataset="mnist1d", model="mlp", iterations=60, batch_size=50, eval_every=20)
    models = lambda: [create_model("mlp", input_shape=(40,), num_classes=10, seed=s, widths=[32]) for s in range(2)]
    ms = models()
    each = fit_many([Run(tmp_path / f"a{s}", model=ms[s], data_seed=s) for s in range(2)], data, cfg, Stacked(ms),
                    hooks=[PoisonMember(1, 30)], options=QUIET)
    monkeypatch.setattr(_device, "reads_are_free", lambda dev: False)
    ms = models()
    late = fit_many([Run(tmp_path / f"b{s}", model=ms[s], data_seed=s) for s in range(2)], data, cfg, Stacked(ms),
                    hooks=[PoisonMember(1, 30)], options=QUIET)
    assert each[1]["diverged"] == {"iteration": 31} and late[1]["diverged"] == {"iteration": 40}
    assert "diverged" not in late[0] and late[0]["final"] == each[0]["final"]
    a, b = load_state(tmp_path / "a0" / "final.pt")["model"], load_state(tmp_path / "b0" / "final.pt")["model"]
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert _strict(tmp_path / "b1" / "summary.json")["final"]["test_acc"] is None
