"""Convergence (issue 18): every run's summary says whether its early-stopping iteration lies before
80 % of the run; old summaries get it on read; aggregates count unconverged runs; tables, the
report and the plots mark them."""

import json

import pytest
import torch

from ticketlab.engine.results import aggregate, run_rows
from ticketlab.reports.tables import UNCONVERGED, lottery_table
from ticketlab.training.rundir import CONVERGED_BEFORE, RunDir, converged, summary_converged


def test_the_rule_is_measured_from_the_runs_start():
    assert CONVERGED_BEFORE == 0.8
    assert converged(79, 0, 100) and not converged(80, 0, 100)
    # a ticket rewound to k = 100 and trained to 200: 80 % of its own 100 iterations is iteration 180
    assert converged(179, 100, 200) and not converged(180, 100, 200)
    assert not converged(0, 0, 100, at_start=True)  # an untrained start never counts as converged
    assert converged(0, 0, 0) is None  # a run of no length


def test_old_summaries_get_it_from_their_metrics():
    rows = [{"iter": i} for i in range(0, 101, 10)]
    assert summary_converged({"early_stop": {"iter": 90}}, rows) is False
    assert summary_converged({"early_stop": {"iter": 30}}, rows) is True
    assert summary_converged({"early_stop": {"iter": 90}, "start_iter": 0, "iterations": 200}) is True
    assert summary_converged({"early_stop": {"iter": 90}, "converged": False}) is False  # the field wins
    assert summary_converged({"early_stop": {"iter": 9}, "diverged": {"iteration": 5}}, rows) is None
    assert summary_converged({"final": {}}, rows) is None  # no early stopping (teacher–student)


def test_finish_writes_the_field(tmp_path):
    rows = [{"iter": i, "v": 1.0} for i in range(0, 101, 10)]
    s = RunDir(tmp_path).create().finish(rows, {"iterations": 100, "start_iter": 0, "early_stop": {"iter": 95}})
    assert s["converged"] is False and RunDir(tmp_path).summary()["converged"] is False
    s = RunDir(tmp_path / "b").create().finish(rows, {"final": rows[-1]})
    assert "converged" not in s


def _row(level, branch, es_iter, conv, acc=0.6):
    return {"branch": branch, "level": level, "density": 0.8 ** level, "metric": "test_acc", "es_iter": es_iter,
            "es_score": acc, "es_test_acc": acc, "final_score": acc + 0.05, "final_test_acc": acc + 0.05,
            "diverged": None, "converged": conv}


def test_aggregate_counts_and_the_table_marks_unconverged_runs():
    rows = [_row(0, "ticket", 1450, False), _row(0, "ticket", 1500, False), _row(1, "ticket", 300, True),
            _row(1, "ticket", 500, True), _row(1, "reinit", 1400, False), _row(1, "reinit", 600, True)]
    agg = {(a["branch"], a["level"]): a for a in aggregate(rows)}
    assert agg["ticket", 0]["n_unconverged"] == 2 and agg["ticket", 1]["n_unconverged"] == 0
    assert agg["reinit", 1]["n"] == 2 and agg["reinit", 1]["n_unconverged"] == 1
    assert agg["reinit", 1]["es_iter"] == 1000 and agg["reinit", 1]["es_iter_std"] == pytest.approx(565.685, abs=1e-3)
    lines = lottery_table(list(agg.values())).splitlines()
    head = lines[0].split()
    assert head == ["level", "remaining_%", "ticket_es_iter", "ticket_acc_%", "ticket_final_acc_%", "reinit_es_iter",
                    "reinit_acc_%", "reinit_final_acc_%"]
    assert f"1475 ± 35 {UNCONVERGED}2" in lines[1] and "400 ± 141  " in lines[2]
    assert f"1000 ± 566 {UNCONVERGED}1" in lines[2] and "60.00 ± 0.00  65.00 ± 0.00" in lines[2]
    assert lines[3] == "n (runs per point, mean ± std over them): ticket 2, reinit 2"
    assert lines[4].startswith(f"{UNCONVERGED}k: k of the point's runs did not converge")


def test_a_point_with_another_n_gets_an_n_column():
    rows = [_row(0, "ticket", 100, True), _row(0, "ticket", 100, True), _row(1, "ticket", 100, True)]
    lines = lottery_table(aggregate(rows)).splitlines()
    assert lines[0].split()[2] == "ticket_n" and lines[-1].endswith("ticket 1–2")


def test_a_lottery_store_reports_convergence_and_computes_it_for_old_summaries(tmp_path):
    from ticketlab.api import lottery, plot, report
    from ticketlab.experiments.lottery.trunk import LotteryConfig
    from ticketlab.training.loop import TrainConfig

    torch.set_num_threads(1)
    res = lottery(TrainConfig(dataset="mnist1d", model="mlp", model_args={"widths": [16]}, iterations=60,
                              eval_every=10, batch_size=32),
                  LotteryConfig(levels=1, controls=("reinit",)), store=tmp_path, progress=False)
    rows = res["rows"]
    assert all(isinstance(r["converged"], bool) for r in rows)
    summary = rows[0]["path"] + "/summary.json"
    s = json.load(open(summary))
    assert s["converged"] == (s["early_stop"]["iter"] - s["start_iter"] < 0.8 * (s["iterations"] - s["start_iter"]))
    # an old summary, written before the field and without start_iter: computed from its metrics
    from ticketlab.core import integrity
    old = {k: v for k, v in s.items() if k not in ("converged", "start_iter")}
    old["early_stop"] = {**old["early_stop"], "iter": 60}
    integrity.write_text(summary, json.dumps(old))
    again = run_rows(res["experiment"])
    assert again[0]["path"] == rows[0]["path"] and again[0]["converged"] is False
    agg = aggregate(again)
    assert agg[0]["n_unconverged"] >= 1
    html = open(report(res["experiment"], tmp_path / "r.html", store=tmp_path)).read()
    assert f"{UNCONVERGED}" in html and "did not converge" in html
    assert plot([res["experiment"]], tmp_path / "plots", store=tmp_path)


# ---- longer baselines: `LotteryConfig.baseline_length` -------------------------------------------

def _longer_lottery(store, **kw):
    from ticketlab import api
    from ticketlab.experiments.lottery.trunk import LotteryConfig
    from ticketlab.training.loop import TrainConfig
    torch.set_num_threads(1)
    train = TrainConfig(dataset="mnist1d", model="mlp", model_args={"widths": [32]}, iterations=100,
                        batch_size=50, eval_every=25)
    return api.lottery(train, LotteryConfig(**{"levels": 1, "controls": ("reinit",), **kw}), store=store,
                       progress=False, checkpoint_every=25)


def test_longer_baselines_train_dense_and_controls_longer_and_prune_at_the_recipes_length(tmp_path):
    from ticketlab.training.loop import load_state
    plain = _longer_lottery(tmp_path / "a")
    longer = _longer_lottery(tmp_path / "b", baseline_length=3)
    assert plain["experiment"].split("/")[-1] != longer["experiment"].split("/")[-1]  # another experiment
    def summary(res, L, branch=""):
        return json.load(open(f"{res['experiment']}/replicate_0/{branch}level_{L}/summary.json"))
    assert summary(plain, 0)["iterations"] == 100 and summary(longer, 0)["iterations"] == 300
    assert summary(longer, 1, "reinit_0/")["iterations"] == 300 and summary(longer, 1)["iterations"] == 100
    # the dense weights at iteration 100 of the long run are the plain run's final weights, bit for bit,
    # so IMP prunes the same ticket, which trains the same
    w_plain = load_state(f"{plain['experiment']}/replicate_0/level_0/final.pt")["model"]
    w_at_100 = load_state(f"{longer['experiment']}/replicate_0/level_0/snapshot_100.pt")["model"]
    assert all(torch.equal(w_plain[n], w_at_100[n]) for n in w_plain)
    ma, mb = (load_state(f"{r['experiment']}/replicate_0/level_1/mask.pt") for r in (plain, longer))
    assert all(torch.equal(ma[n], mb[n]) for n in ma)
    assert summary(plain, 1)["final"] == summary(longer, 1)["final"]


def test_longer_baselines_resume_after_a_kill(tmp_path, monkeypatch):
    from crash import Crash
    import ticketlab.domains.classify as classify
    from ticketlab.training.loop import load_state
    full = _longer_lottery(tmp_path / "a", baseline_length=2)
    crash, real_fit = Crash(at=130), classify.fit
    def crashing_fit(*a, **kw):
        if str(a[3]).endswith("reinit_0/level_1"):
            kw["hooks"] = [crash]
        return real_fit(*a, **kw)
    monkeypatch.setattr(classify, "fit", crashing_fit)
    with pytest.raises(KeyboardInterrupt):
        _longer_lottery(tmp_path / "b", baseline_length=2)
    name = full["experiment"].split("/")[-1]
    assert (tmp_path / "b" / name / "replicate_0" / "reinit_0" / "level_1" / "checkpoint.pt").exists()
    resumed = _longer_lottery(tmp_path / "b", baseline_length=2)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("path", "wall_time_s", "stack_wall_time_s", "stack_cpu_time_s")} for r in rows]
    assert strip(full["rows"]) == strip(resumed["rows"])
    wa, wb = (load_state(tmp_path / s / name / "replicate_0" / "reinit_0" / "level_1" / "final.pt")["model"]
              for s in ("a", "b"))
    assert all(torch.equal(wa[n], wb[n]) for n in wa)


def test_longer_baselines_keep_stored_hashes_and_refuse_a_cosine_schedule(tmp_path):
    from ticketlab.core import config as C
    from ticketlab.core.errors import ConfigError
    from ticketlab.experiments.lottery.trunk import LotteryConfig
    assert C.config_hash("lottery", LotteryConfig()) == C.config_hash("lottery", LotteryConfig(baseline_length=1))
    assert C.config_hash("lottery", LotteryConfig()) != C.config_hash("lottery", LotteryConfig(baseline_length=2))
    with pytest.raises(ConfigError, match="baseline_length"):
        LotteryConfig(baseline_length=0)
    from ticketlab import api
    from ticketlab.training.loop import TrainConfig
    with pytest.raises(ConfigError, match="baseline_length: got 2 with schedule 'cosine'"):
        api.lottery(TrainConfig(dataset="mnist1d", model="mlp", model_args={"widths": [8]}, iterations=20,
                                eval_every=10, schedule="cosine"), LotteryConfig(levels=0, baseline_length=2),
                    store=tmp_path, progress=False)
