"""Issue #18, "How results are measured": RL's headline over the final evaluations with its standard
error (point 2), metrics selected on the test set kept out of the tables or labelled (point 3),
timing fields that name the stack (point 4), and spread beside every teacher–student mean (point 5).
Tiny budgets."""

import math
import re
import shutil

import numpy as np
import pytest
import torch

from ticketlab import api
from ticketlab.core import integrity
from ticketlab.data import load_dataset
from ticketlab.domains.rl import RLConfig
from ticketlab.domains.rl.task import make_trainer
from ticketlab.engine import results
from ticketlab.experiments import sparse_training
from ticketlab.experiments.lottery.trunk import LotteryConfig
from ticketlab.experiments.teacher_student.experiment import TeacherStudentConfig, _std, run as ts_run
from ticketlab.models import create_model
from ticketlab.reports import sparse_plots, style, teacher_student_tables as ts_tables
from ticketlab.reports.html import write_report
from ticketlab.training import final_evals, timing
from ticketlab.training.loop import Run, RunOptions, TrainConfig, fit_many
from ticketlab.training.rundir import RunDir, read_json
from ticketlab.training.stacked import Stacked

torch.set_num_threads(1)

PPO = RLConfig(env="CartPole-v1", algo="ppo", env_steps=768, n_envs=4, n_steps=32, batch_size=64, n_epochs=1,
               eval_every=128, eval_episodes=3, val_episodes=2, eval_max_steps=30)


# ---- point 2: RL evaluation ---------------------------------------------------------------------

def _rows(episodes: list[np.ndarray], start: int = 0, every: int = 10) -> list[dict]:
    return [{"iter": start + i * every, "eval_return": float(e.mean()), "eval_return_std": float(e.std()),
             "eval_return_n": len(e)} for i, e in enumerate(episodes)]


def test_final_mean_is_over_the_last_evaluations_after_the_start_with_the_pooled_sem():
    rng = np.random.default_rng(0)
    eps = [rng.normal(100 + 10 * i, 5 + i, size=4 + i % 3) for i in range(9)]
    rows = _rows(eps, start=20)
    h = final_evals.final_mean(rows, "eval_return", start_iter=20, k=5)
    last = eps[-5:]
    assert h["evals"] == 5 and h["from_iter"] == rows[-5]["iter"]
    assert h["value"] == pytest.approx(np.mean([e.mean() for e in last]))
    pooled = np.concatenate(last)
    assert h["sem"] == pytest.approx(pooled.std(ddof=1) / math.sqrt(len(pooled)))
    # the evaluation at the start (before any training) never counts, even when fewer than k follow
    h2 = final_evals.final_mean(rows[:3], "eval_return", start_iter=20, k=5)
    assert h2["evals"] == 2 and h2["value"] == pytest.approx(np.mean([e.mean() for e in eps[1:3]]))
    # rows written before episode counts were: a mean, no standard error
    old = [{k: v for k, v in r.items() if k != "eval_return_n"} for r in rows]
    assert final_evals.final_mean(old, "eval_return", 20)["sem"] is None


def test_rl_defaults_evaluate_over_twenty_episodes():
    assert RLConfig().eval_episodes >= 20 and RLConfig().val_episodes >= 20


def test_rl_summary_records_the_headline_and_each_evaluation_its_sem(tmp_path):
    tr = make_trainer(PPO)
    s = tr.fit(tr.build(0), tmp_path / "run")
    rows = RunDir(tmp_path / "run").read_metrics()
    for r in rows:
        assert r["eval_return_n"] == 3
        assert r["eval_return_sem"] == pytest.approx(r["eval_return_std"] * math.sqrt(3 / 2) / math.sqrt(3))
    h = s["headline"]
    after = [r for r in rows if r["iter"] > 0][-final_evals.FINAL_EVALS:]
    assert h["name"] == "final_return" and h["evals"] == final_evals.FINAL_EVALS
    assert h["value"] == pytest.approx(sum(r["eval_return"] for r in after) / len(after))
    # the pooled standard error of every episode of those evaluations, from each row's mean, std (ddof 0) and n
    n = np.array([r["eval_return_n"] for r in after])
    m = np.array([r["eval_return"] for r in after])
    sd = np.array([r["eval_return_std"] for r in after])
    grand = (n * m).sum() / n.sum()
    ss = (n * sd ** 2).sum() + (n * (m - grand) ** 2).sum()
    assert h["sem"] == pytest.approx(math.sqrt(ss / (n.sum() - 1) / n.sum()))
    assert s["stack_size"] == 1 and s["stack_wall_time_s"] > 0 and s["stack_cpu_time_s"] > 0
    # the results rows carry it as the headline, and an old summary without it gets it from its rows
    m = results.summary_metrics(s)
    assert m["headline"] == "final_return" and m["headline_score"] == h["value"]
    old = {k: v for k, v in s.items() if k != "headline"}
    assert results.with_headline(old, tmp_path / "run")["headline"]["value"] == pytest.approx(h["value"])
    assert results.result_key("eval_return") == "headline_score"
    assert results.result_key("test_acc") == "es_test_acc" and results.result_key("test_ppl") == "es_score"


# ---- point 4: timing fields ---------------------------------------------------------------------

def test_timing_reads_old_and_new_summaries():
    old = {"wall_time_s": 3.0, "trained_with": 4}
    assert timing.read(old) == {"stack_wall_time_s": 12.0, "stack_cpu_time_s": None, "stack_size": 4}
    assert timing.run_share_s(old) == 3.0
    old_nlp = {"wall_time_s": 7.0, "cpu_time_s": 5.0}  # an NLP run trained alone, its CPU time recorded
    assert timing.read(old_nlp) == {"stack_wall_time_s": 7.0, "stack_cpu_time_s": 5.0, "stack_size": 1}
    new = {"stack_wall_time_s": 10.0, "stack_cpu_time_s": 9.0, "stack_size": 2}
    assert timing.read(new) == new and timing.run_share_s(new) == 5.0


def test_a_stack_records_its_wall_and_cpu_time_and_size(tmp_path):
    data = load_dataset("digits")
    cfg = TrainConfig(dataset="digits", model="mlp", model_args={"widths": [16]}, iterations=40, batch_size=50,
                      eval_every=20)
    ms = [create_model("mlp", input_shape=(64,), num_classes=10, seed=s, widths=[16]) for s in range(2)]
    out = fit_many([Run(tmp_path / f"r{s}", model=ms[s], data_seed=s) for s in range(2)], data, cfg, Stacked(ms),
                   options=RunOptions(progress=False))
    assert [s["stack_size"] for s in out] == [2, 2] and out[0]["trained_with"] == 2
    assert out[0]["stack_wall_time_s"] == out[1]["stack_wall_time_s"] > 0  # one stack, one wall time
    assert out[0]["stack_cpu_time_s"] > 0 and "wall_time_s" not in out[0]


@pytest.fixture(scope="module")
def lottery_exp(tmp_path_factory):
    train = TrainConfig(dataset="digits", model="mlp", model_args={"widths": [32]}, iterations=60, batch_size=50,
                        eval_every=20)
    return api.lottery(train, LotteryConfig(levels=1, replicates=2), store=tmp_path_factory.mktemp("s"),
                       progress=False)["experiment"]


def test_report_totals_count_each_stack_once_and_show_no_test_selected_best(lottery_exp, tmp_path):
    exp = tmp_path / "exp"
    shutil.copytree(lottery_exp, exp)
    for r in (0, 1):  # as if the two level-0 runs had trained as one stack of 100 s
        p = exp / f"replicate_{r}" / "level_0" / "summary.json"
        integrity.write_json(p, {**read_json(p), "stack_wall_time_s": 100.0, "stack_size": 2})
    page = write_report(exp, tmp_path / "r.html").read_text()
    # level 1: its two runs trained as one stack (one worker takes a level as one stack): once as well
    level_1 = [read_json(p) for p in exp.glob("replicate_*/level_1/summary.json")]
    rest = sum(s["stack_wall_time_s"] / s["stack_size"] for s in level_1)
    shown = float(re.search(r"\(([\d.]+) s wall-clock", page).group(1))
    assert shown == pytest.approx(100.0 + rest, abs=0.06)  # the stack once, not once per run
    tables = re.findall(r'<table class="results">.*?</table>', page, re.S)
    assert tables and not any("best" in t for t in tables)
    rows = results.run_rows(lottery_exp)
    assert all(r["stack_size"] >= 1 and r["stack_wall_time_s"] > 0 for r in rows)
    agg = results.aggregate(rows)
    assert all("stack_wall_time_s" in a and "wall_time_s" not in a for a in agg)


# ---- point 3: metrics selected on the test set --------------------------------------------------

def test_test_selected_best_is_labelled_or_absent():
    for labels in (style.METRIC_LABELS, sparse_plots.METRIC_LABELS):
        assert "selected on the test set" in labels["best_test_acc"]
    rows = [{"achieved_sparsity": 0.9, "es_test_acc": 0.8 + i / 100, "final_test_acc": 0.81, "best_test_acc": 0.9,
             "stack_wall_time_s": 1.0} for i in range(3)]
    agg = sparse_training.aggregate_replicates(rows)
    assert "best_test_acc" not in agg and agg["n"] == 3
    assert agg["es_test_acc_std"] == pytest.approx(0.01)


# ---- point 5: spread in the teacher–student tables ----------------------------------------------

def test_teacher_student_tables_show_std_and_n(tmp_path):
    cfg = TeacherStudentConfig(input_dim=12, teacher_widths=(4,), output_dim=6, steps=200, log_every=100, seeds=3,
                               train_size=500, eval_size=600, batch_size=8, lr=0.02, multi=2)
    row = ts_run(cfg, store=tmp_path)["rows"][0]
    L = row["layers"][0]
    assert row["seeds"] == 3
    for k in ("success", "mean_best", "mean_best_pre", "mean_best_init", "luck_rank_frac"):
        assert L[k + "_std"] >= 0, k
    assert row["eval_rel_mse_std"] >= 0 and row["stack_wall_share_s"] > 0
    short = ts_tables.short_points([row])[0]
    assert "±" in short["success_per_layer"] and "±" in short["mean_best_per_layer"] and "±" in short["eval_rel_mse"]
    assert short["seeds"] == 3
    flat = ts_tables.points([row])[0]
    assert float(flat["mean_best_L1_std"]) == pytest.approx(L["mean_best_std"], abs=1e-4)
    # the std is the sample std of the per-seed values
    vals = [0.2, 0.4, 0.9]
    assert _std(vals) == pytest.approx(float(np.std(vals, ddof=1)))
    assert ts_tables.per_node([row])[0]["seeds"] == 3


def test_teacher_student_prune_table_shows_std():
    layer = {"keep": 2, "specialized_kept": 1, "specialized": 2, "kept_specialized_frac": 0.5, "success_full": 1.0,
             "success_pruned": 0.5}
    pr = [{"score": "fan_out", "layers": [dict(layer, kept_specialized_frac=f)], "eval_rel_mse_full": 0.1,
           "eval_rel_mse_pruned": m} for f, m in ((0.5, 0.2), (1.0, 0.4))]
    row = {"experiment": "e", "teacher_widths": [4], "multi": 2, "p": 1.0, "prune": pr}
    out = ts_tables.prune([row])[0]
    assert out["kept_spec_frac"] == f"0.750 ± {np.std([0.5, 1.0], ddof=1):.3f}"
    assert out["rel_mse_pruned"].startswith("0.3 ± ") and out["seeds"] == 2
