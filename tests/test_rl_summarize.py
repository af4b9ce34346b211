"""benchmarks/rl/summarize.py (issue #18): the seed-paired ticket-vs-control comparison and the
markdown table's cells (mean ± std, n, SEM, † marks), on synthetic run rows (fast)."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "rl" / "summarize.py"


@pytest.fixture(scope="module")
def summarize():
    spec = importlib.util.spec_from_file_location("rl_summarize", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _row(branch, level, rep, score, converged=True, draw=0, path="x"):
    return {"path": path, "replicate": rep, "branch": branch, "draw": draw, "level": level, "density": 0.6 ** level,
            "metric": "eval_return", "headline_score": score, "headline_sem": 2.0, "es_iter": 30720,
            "converged": converged, "diverged": None}


ROWS = ([_row("ticket", 0, r, 500.0) for r in range(3)]
        + [_row("ticket", 2, r, s) for r, s in enumerate((400.0, 300.0, 100.0))]
        + [_row("random_mask", 2, r, s, converged=r != 1) for r, s in enumerate((50.0, 300.0, 150.0))]
        + [_row("random_mask", 2, 0, 999.0, draw=1)]  # a second draw: never paired
        + [_row("ticket", 3, r, s) for r, s in enumerate((9.4, 60.0, 9.4))]
        + [_row("random_mask", 3, r, s) for r, s in enumerate((9.3, 50.0, 14.0))])


def test_paired_counts_wins_ties_and_the_mean_difference(summarize):
    p = summarize.paired(ROWS, "ticket", 2, ("random_mask", 2))
    assert p["n"] == 3 and p["wins"] == 1 and p["ties"] == 1  # 350 > 0, 0 = 0, -50 < 0
    assert p["diff_mean"] == pytest.approx(100.0)
    assert p["diff_std"] == pytest.approx(((250 ** 2 + 100 ** 2 + 150 ** 2) / 2) ** 0.5)
    assert p["pairs"][0] == (0, 400.0, 50.0)
    dense = summarize.paired(ROWS, "ticket", 2, ("ticket", 0))
    assert dense["wins"] == 0 and dense["diff_mean"] == pytest.approx(-700 / 3)
    assert summarize.paired(ROWS, "ticket", 2, ("reinit", 2)) is None
    # within 2 SEM (2 * hypot(2, 2) = 5.7) of each other: a tie; 10 > 5.7: a win; -4.6: a tie, not a loss
    p = summarize.paired(ROWS, "ticket", 3, ("random_mask", 3))
    assert (p["wins"], p["ties"]) == (1, 2)


def test_markdown_marks_unconverged_runs_and_pairs_by_seed(summarize, monkeypatch):
    monkeypatch.setattr(summarize, "run_rows", lambda path: ROWS)
    monkeypatch.setattr(summarize, "kept_per_layer", lambda rows, b, lv: {0: {"action_net.weight": (0, 128)},
                                                                         1: {"action_net.weight": (7, 128)}})
    md = summarize.markdown(Path("x"), "t")
    assert "| action_net.weight | 0 / 128 | 7 / 128 |" in md
    line = next(l for l in md.splitlines() if l.startswith("| 36.0 % |"))
    assert "266.7 ± 152.8 (n 3, SEM 2.0)" in line  # the ticket at level 2
    assert "†1" in line  # one random-mask run did not converge
    assert "| random_mask | 2 | 50.0 (ES 30720) | 300.0 † (ES 30720) | 150.0 (ES 30720) |" in md
    assert "| ticket − random_mask | 2 | 3 | 1 | 1 | +100.0 ± 217.9 |" in md
    assert "| ticket − dense | 2 | 3 | 0 | 0 | -233.3 ± 152.8 |" in md


def test_kept_per_layer_reads_each_seeds_mask(summarize, tmp_path):
    import torch
    from ticketlab.training.rundir import save_file
    rows = []
    for rep in (0, 1):
        d = tmp_path / f"r{rep}"
        d.mkdir()
        save_file(d / "mask.pt", {"action_net.weight": torch.tensor([[1.0, 0.0], [0.0, float(rep)]]),
                                  "value_net.weight": torch.ones(1, 3)})
        rows.append(_row("ticket", 5, rep, 9.4, path=str(d)))
    kept = summarize.kept_per_layer(rows, "ticket", 5)
    assert kept == {0: {"action_net.weight": (1, 4), "value_net.weight": (3, 3)},
                    1: {"action_net.weight": (2, 4), "value_net.weight": (3, 3)}}
    assert summarize.kept_per_layer(rows, "ticket", 4) == {}


def test_name_tells_apart_two_training_lengths_of_one_recipe(summarize):
    cfg = {"train": {"env": "ALE/Pong-v5", "algo": "ppo", "env_steps": 40960},
           "lottery": {"strategy": "layerwise", "rewind_iter": 2048}}
    assert summarize.name(cfg) == "ALE_Pong-v5_ppo_layerwise_k2048_40960"
    assert summarize.name({**cfg, "train": {**cfg["train"], "env_steps": 81920}}).endswith("_81920")
