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
    assert head == ["level", "remaining_%", "ticket_es_iter", "ticket_es_%", "ticket_final_%", "reinit_es_iter",
                    "reinit_es_%", "reinit_final_%"]
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
