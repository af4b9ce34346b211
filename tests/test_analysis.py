"""Analysis: linear mode connectivity / instability, plots and the HTML report.

Tiny budgets on `digits` with a one-hidden-layer MLP: a lottery experiment with two replicates
and the reinit control (rewind point k = 40), a second one differing only in k = 80 (it holds the
level-0 snapshot at 80 that instability must reproduce bit for bit), and a dense `train` run.
"""

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

from ticketlab import api
from ticketlab.core import integrity
from ticketlab.experiments.lottery import instability as I
from ticketlab.data import load_dataset
from ticketlab.core.errors import ConfigError, TicketlabError
from ticketlab.experiments.lottery.trunk import LotteryConfig, load_masks
from ticketlab.engine.results import run_rows
from ticketlab.training.loop import TrainConfig, evaluate, load_state

torch.set_num_threads(1)

# cosine decay depends on the run's total length and dropout draws from the RNG: both must be
# reproduced exactly when θk is rebuilt by re-running level 0 up to k
TRAIN = TrainConfig(dataset="digits", model="mlp", model_args={"widths": [32], "dropout": 0.1},
                    schedule="cosine", iterations=200, batch_size=50, eval_every=40)
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("store")


@pytest.fixture(scope="module")
def exp_a(store):
    cfg = LotteryConfig(levels=2, replicates=2, rewind_iter=40, controls=("reinit",))
    return api.lottery(TRAIN, cfg, store=store, progress=False)["experiment"]


@pytest.fixture(scope="module")
def exp_b(store):
    return api.lottery(TRAIN, LotteryConfig(levels=1, rewind_iter=80), store=store, progress=False)["experiment"]


@pytest.fixture(scope="module")
def exp_train(store):
    return api.train(dataclasses.replace(TRAIN, iterations=120), store=store, progress=False)["experiment"]


@pytest.fixture(scope="module")
def inst(exp_a, data):
    """Instability of level 1 at k = 40 (the trunk's own snapshot) and k = 80 (reproduced)."""
    return {k: I.instability(exp_a, level=1, rewind_iter=k, data=data) for k in (40, 80)}


def same_state(a: dict, b: dict) -> bool:
    """Bit-for-bit equality of two saved states (nested dicts / lists of tensors and numbers)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_state(x, y) for x, y in zip(a, b))
    if torch.is_tensor(a):
        return torch.is_tensor(b) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    return a == b


# ---- the path -------------------------------------------------------------------------------

def test_interpolate_endpoints_are_exact_and_midpoint_is_the_mean():
    bn = torch.nn.BatchNorm1d(3)
    a = {"w": torch.tensor([-0.0, 1.0, 3.0, 0.1]), "n": torch.tensor(7), **bn.state_dict()}
    b = {"w": torch.tensor([2.0, -1.0, 5.0, 0.7]), "n": torch.tensor(9), **bn.state_dict()}
    b["running_mean"] = torch.tensor([2.0, 4.0, 6.0])
    b["num_batches_tracked"] = torch.tensor(5)
    for alpha, ref in ((0.0, a), (1.0, b)):
        out = I.interpolate(a, b, alpha)
        for k in ("w", "running_mean"):  # the bits, so that -0.0 stays -0.0
            assert torch.equal(out[k].view(torch.int32), ref[k].view(torch.int32)), (alpha, k)
        assert out["w"] is not ref["w"]
    mid = I.interpolate(a, b, 0.5)
    assert torch.equal(mid["w"], torch.tensor([1.0, 0.0, 4.0, 0.4]))
    assert torch.equal(mid["running_mean"], torch.tensor([1.0, 2.0, 3.0]))
    assert torch.allclose(I.interpolate(a, b, 0.25)["w"], 0.75 * a["w"] + 0.25 * b["w"])
    # non-float buffers come from a
    assert int(mid["n"]) == 7 and int(mid["num_batches_tracked"]) == 0
    with pytest.raises(ValueError, match="different entries"):
        I.interpolate(a, {k: v for k, v in b.items() if k != "w"}, 0.5)


def test_instability_from_errors_hand_cases():
    assert I.instability_from_errors([0.10, 0.30, 0.50, 0.20, 0.10]) == pytest.approx(0.40)
    assert I.instability_from_errors([0.10, 0.15, 0.20]) == pytest.approx(0.05)  # max at an endpoint
    assert I.instability_from_errors([0.2] * 5) == 0.0
    assert I.path_alphas(5) == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_error_along_path_between_a_model_and_itself_is_flat():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(300, 6, generator=g), torch.randint(0, 3, (300,), generator=g)
    build = lambda: torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    torch.manual_seed(1)
    state = build().state_dict()
    errors = I.error_along_path(build, state, state, x, y, points=7)
    model = build()
    model.load_state_dict(state)
    assert len(errors) == 7 and errors == [1 - evaluate(model, x, y)[1]] * 7
    assert I.instability_from_errors(errors) == 0.0
    with pytest.raises(ConfigError, match="points"):
        I.error_along_path(build, state, state, x, y, points=2)


# ---- instability end to end -----------------------------------------------------------------

def test_instability_from_the_trunk_snapshot(exp_a, inst):
    r = inst[40]
    assert r["rewind_source"] == "level_0" and r["rewind_check"] is None and r["level"] == 1 and r["rewind_iter"] == 40
    rep = Path(exp_a) / "replicate_0"
    assert not (rep / "instability" / "rewind_40").exists()  # nothing reproduced
    assert json.loads((I.instability_dir(exp_a, 0, 1, 40) / "instability.json").read_text()) == r
    assert r["alphas"][0] == 0.0 and r["alphas"][-1] == 1.0 and len(r["errors"]) == 11
    assert r["instability"] == pytest.approx(max(r["errors"]) - sum(r["endpoint_errors"]) / 2)
    mask = load_masks(rep / "level_1" / "mask.pt")
    assert r["density"] == pytest.approx(sum(int(m.sum()) for m in mask.values()) /
                                         sum(m.numel() for m in mask.values()))
    # the endpoints are the two copies, which differ (different data orders) and respect the mask
    finals = []
    for copy, err in zip(r["copies"], r["endpoint_errors"]):
        s = json.loads((rep.parent / copy["run"] / "summary.json").read_text())
        assert err == pytest.approx(1 - s["final"]["test_acc"], abs=1e-12)
        finals.append(load_state(rep.parent / copy["run"] / "final.pt")["model"])
    assert any(not torch.equal(finals[0][n], finals[1][n]) for n in finals[0])
    mid = I.interpolate(finals[0], finals[1], 0.5)
    for n, m in mask.items():
        assert torch.count_nonzero(mid[n][~m]) == 0
    # the copies live beside the trunk without being read back as lottery runs
    rows = run_rows(exp_a)
    assert len(rows) == 2 * (3 + 2) and not any("instability" in r["path"] for r in rows)


def test_reproduced_rewind_point_equals_the_trunk_snapshot_bit_for_bit(exp_a, data, tmp_path):
    # same experiment: re-run level 0 up to the trunk's own k = 40 (its snapshot left in place)
    rep = I.open_replicate(exp_a, 0, data=data)
    path, check = I.reproduce_rewind_point(rep, 40, tmp_path / "theta40")
    assert same_state(load_state(path), load_state(rep.level_dir(0) / "snapshot_40.pt"))
    assert check == {"evals": 2, "snapshots": [40], "mismatch": [], "exact": True}  # rows at 0 and 40
    assert sorted(p.name for p in (tmp_path / "theta40").iterdir()) == ["check.json", "manifest.json", "snapshot_40.pt"]
    assert sorted(integrity.read_manifest(tmp_path / "theta40")) == ["check.json", "snapshot_40.pt"]
    assert I.reproduce_rewind_point(rep, 40, tmp_path / "theta40") == (path, check)  # cached


def test_reproduction_is_exact_for_every_replicate(exp_a, data, tmp_path):
    """Replicate r trains with init seed and data seed shifted by r (`replicate_seeds`), dropout
    noise included: its level 0 must not depend on which other runs it was scheduled with."""
    rep1 = I.open_replicate(exp_a, 1, data=data)
    path, check = I.reproduce_rewind_point(rep1, 40, tmp_path / "theta40_r1")
    trunk = load_state(rep1.level_dir(0) / "snapshot_40.pt")
    assert same_state(load_state(path), trunk), (
        "replicate 1's level 0 differs from a re-run with its own seeds: was it trained with another "
        "replicate's trainer config (init_seed seeds the dropout RNG)?", check)
    assert not same_state(trunk["model"], load_state(I.open_replicate(exp_a, 0).level_dir(0) / "snapshot_40.pt")["model"])


def test_an_inexact_reproduction_is_refused_or_flagged(exp_a, data, tmp_path):
    exp = tmp_path / exp_a.rsplit("/", 1)[1]
    shutil.copytree(exp_a, exp, ignore=shutil.ignore_patterns("instability", "reinit_*"))
    metrics = exp / "replicate_0" / "level_0" / "metrics.jsonl"
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    rows[1]["val_loss"] += 1e-7  # as if the trunk had been trained slightly differently
    from ticketlab.training.rundir import write_metrics
    write_metrics(metrics, rows)  # through the store (its manifest), else it reads as damaged
    with pytest.raises(TicketlabError, match="cannot be reproduced exactly.*eval at iteration 40"):
        I.instability(exp, level=0, rewind_iter=60, data=data)
    r = I.instability(exp, level=0, rewind_iter=60, data=data, allow_inexact=True)
    assert r["rewind_source"] == "reproduced" and r["density"] == 1.0
    assert r["rewind_check"] == {"evals": 2, "snapshots": [40], "mismatch": ["eval at iteration 40"],
                                 "exact": False}


def test_instability_reproduces_a_missing_rewind_point(exp_a, exp_b, inst):
    r = inst[80]
    assert r["rewind_source"] == "reproduced"
    root = Path(exp_a) / "replicate_0"
    assert not (root / "level_0" / "snapshot_80.pt").exists()  # the trunk is left untouched
    reproduced = root / "instability" / "rewind_80" / "snapshot_80.pt"
    # exp_b's level 0 is the same run (same training config and seeds), saved at k = 80
    original = load_state(f"{exp_b}/replicate_0/level_0/snapshot_80.pt")
    assert same_state(load_state(reproduced), original)
    assert load_state(reproduced)["iteration"] == 80
    assert r["rewind_check"] == {"evals": 3, "snapshots": [40], "mismatch": [], "exact": True}
    # the copies started from θ80 (masked): their first logged step is iteration 80
    rows = [json.loads(x) for x in (root.parent / r["copies"][0]["run"] / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["iter"] == 80 and rows[-1]["iter"] == 200


def test_rerun_is_cached_and_new_points_need_no_training(exp_a, data, inst, monkeypatch):
    def no_training(*a, **k):
        raise AssertionError("trained")
    import ticketlab.domains.classify
    monkeypatch.setattr(I, "fit", no_training)
    monkeypatch.setattr(ticketlab.domains.classify, "fit", no_training)
    path = I.instability_dir(exp_a, 0, 1, 80) / "instability.json"
    mtime = path.stat().st_mtime_ns
    assert I.instability(exp_a, level=1, rewind_iter=80, data=data) == inst[80]
    assert path.stat().st_mtime_ns == mtime
    five = I.instability(exp_a, level=1, rewind_iter=80, points=5, data=data)  # copies reused
    assert five["alphas"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert five["endpoint_errors"] == inst[80]["endpoint_errors"]
    assert five["errors"][2] == inst[80]["errors"][5]  # α = 0.5 in both
    # restore the 11-point result for the plots and report below
    assert I.instability(exp_a, level=1, rewind_iter=80, data=data)["points"] == 11
    assert [(r["rewind_iter"], r["points"]) for r in I.instability_rows(exp_a)] == [(40, 11), (80, 11)]


def test_instability_errors_name_the_problem(exp_a, exp_train, data):
    with pytest.raises(TicketlabError, match="no level 7"):
        I.instability(exp_a, level=7, rewind_iter=0, data=data)
    with pytest.raises(ConfigError, match="points"):
        I.instability(exp_a, level=1, rewind_iter=0, points=2, data=data)
    with pytest.raises(ConfigError, match="data_seeds"):
        I.instability(exp_a, level=1, rewind_iter=0, data_seeds=(3, 3), data=data)
    with pytest.raises(ConfigError, match="rewind_iter"):
        I.instability(exp_a, level=1, rewind_iter=10_000, data=data)
    with pytest.raises(TicketlabError, match="lottery"):
        I.instability(exp_train, level=0, rewind_iter=0, data=data)


# ---- plots ----------------------------------------------------------------------------------

def check_images(files, names):
    assert sorted(f.name for f in files) == sorted(f"{n}.{ext}" for n in names for ext in ("png", "svg"))
    for f in files:
        assert f.stat().st_size > 2000, f
        if f.suffix == ".png":
            assert f.read_bytes()[:8] == PNG
        else:
            text = f.read_text()
            assert "<svg" in text and text.rstrip().endswith("</svg>")


def test_plots_of_one_and_of_two_overlaid_experiments(exp_a, exp_b, exp_train, inst, tmp_path):
    from ticketlab.reports import plots
    check_images(plots.plot_accuracy([exp_a], tmp_path / "one" / "accuracy.png"), ["accuracy"])
    svg = (tmp_path / "one" / "accuracy.svg").read_text()
    assert all(text in svg for text in ("ticket", "reinit", "dense (level 0)"))
    # two lottery experiments overlaid (labelled by what differs), plus a train run's curves
    assert plots.experiment_labels([exp_a, exp_b]) == ["rewind_iter=40", "rewind_iter=80"]
    files = plots.plot_all([exp_a, exp_b, exp_train], tmp_path / "all")
    check_images(files, ["accuracy", "early_stop", "instability"] +
                 [f"learning_curves_{Path(e).name}" for e in (exp_a, exp_b, exp_train)])
    assert "level 1 (81.3% left), k=80" in (tmp_path / "all" / "instability.svg").read_text()
    assert "level 2" in (tmp_path / "all" / f"learning_curves_{Path(exp_a).name}.svg").read_text()
    svg = (tmp_path / "all" / "accuracy.svg").read_text()
    for text in ("rewind_iter=40: ticket", "rewind_iter=80: ticket", "rewind_iter=40: reinit",
                 "rewind_iter=80: dense"):
        assert text in svg, text
    with pytest.raises(TicketlabError, match="instability"):
        plots.plot_instability([exp_b], tmp_path / "none")
    with pytest.raises(TicketlabError, match="unknown metric"):
        plots.plot_accuracy([exp_a], tmp_path / "none", metric="test_acc")
    with pytest.raises(TicketlabError, match="no finished lottery runs"):
        empty = tmp_path / "lottery-empty"
        empty.mkdir()
        (empty / "config.json").write_text(json.dumps({"kind": "lottery", "config": {}}))
        plots.plot_accuracy([empty], tmp_path / "none")


# ---- report ---------------------------------------------------------------------------------

def test_report_is_self_contained_and_complete(exp_a, inst, tmp_path):
    from ticketlab.reports.html import mask_overlap, write_report
    page = write_report(exp_a, tmp_path / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    for value in ("digits", "mlp", "rewind_iter", "<td class=\"val\">40</td>", "cosine", "reinit"):
        assert value in page, value
    results = page[page.index('<table class="results">'):]
    results = results[:results.index("</table>")]
    assert [f'data-level="{L}"' in results for L in range(4)] == [True, True, True, False]
    assert "<svg" in page and page.count("<figure>") == 4
    assert "Mask overlap" in page and "Instability" in page and "reproduced (verified exact)" in page
    for bad in ('src="http', "src='http", 'href="http', "url(http", "<link", "<script", "<img"):
        assert bad not in page, bad
    overlap = mask_overlap(exp_a)
    assert [o["level"] for o in overlap] == [1, 2] and all(0 < o["jaccard"] <= 1 for o in overlap)
    assert "Total training time" in page


def test_report_escapes_text_and_covers_train_experiments(exp_train, tmp_path):
    from ticketlab.reports.html import write_report
    odd = tmp_path / "train-<b>&x"
    shutil.copytree(exp_train, odd)
    page = write_report(odd, tmp_path / "odd.html").read_text()
    assert "train-&lt;b&gt;&amp;x" in page and "<b>&x" not in page
    assert '<table class="summary">' in page and "<td>120</td>" in page  # iterations
    assert "<svg" in page and 'src="http' not in page and "Total training time" in page
