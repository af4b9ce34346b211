"""The sparse-training experiment: store layout, churn log, exact sparsity, stacking, resume after a kill."""

import dataclasses
import json
import math
import re
from pathlib import Path

import pytest
from crash import Crash
from gpu_marks import gpu, needs_cuda
import torch

from ticketlab.core import distributions as D
from ticketlab.core.errors import ConfigError
from ticketlab.experiments.sparse_training import SparseConfig, layer_sparsities, run
from ticketlab.training.loop import TrainConfig, load_state
from ticketlab.training import timing

torch.set_num_threads(1)

TRAIN = TrainConfig(dataset="mnist1d", model="mlp", model_args={"widths": [64, 32]}, optimizer="sgd", lr=0.05,
                    momentum=0.9, iterations=200, batch_size=50, eval_every=50)
RIGL = SparseConfig(method="rigl", sparsity=0.9, distribution="erk", update_interval=20)


@pytest.fixture(scope="module")
def data():
    from ticketlab.data import load_dataset
    return load_dataset("mnist1d")


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def go(tmp, data, sparse=RIGL, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("checkpoint_every", 50)
    return run(TRAIN, sparse, store=tmp, data=data, **kw)


def test_rigl_run_layout_churn_and_exact_sparsity(tmp_path, data):
    res = go(tmp_path, data)
    (row,) = res["rows"]
    rep = tmp_path / res["experiment"].split("/")[-1] / "replicate_0"
    assert {"metrics.jsonl", "summary.json", "final.pt", "churn.jsonl", "masks.pt", "sparsity.json"} <= {
        p.name for p in rep.iterdir()}
    from ticketlab.models import create_model
    model = create_model("mlp", input_shape=(40,), num_classes=10, widths=[64, 32])
    targets = layer_sparsities(RIGL, model)
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters() if n.endswith("weight")}
    masks = torch.load(rep / "masks.pt", weights_only=True)
    for n, s in targets.items():
        assert int(masks[n].sum()) == D.nnz(math.prod(shapes[n]), s)
    assert row["achieved_sparsity"] == pytest.approx(D.achieved_sparsity(shapes, targets))
    churn = read_jsonl(rep / "churn.jsonl")
    assert [c["step"] for c in churn] == list(range(0, 151, 20))  # end at 0.75 · 200
    assert row["updates"] == len(churn) == 8
    assert all(c["dropped"] == c["grown"] and c["nnz"] == sum(masks[n].sum().item() for n in targets) for c in churn)
    assert 0 < churn[0]["churn"] <= 0.3 and churn[-1]["drop_fraction"] < churn[0]["drop_fraction"]
    assert row["final_test_acc"] > 0.2  # it learns (10 classes)
    state = load_state(rep / "final.pt")["hooks"][0]
    assert state["step"] == 200 and state["dense_grad_captures"] == 8


def test_resumed_run_equals_uninterrupted(tmp_path, data):
    cfg = SparseConfig(method="rigl", sparsity=0.8, distribution="uniform", update_interval=15)
    full = go(tmp_path / "a", data, cfg)
    with pytest.raises(KeyboardInterrupt):
        go(tmp_path / "b", data, cfg, hooks=[Crash(at=130)])
    rep = next((tmp_path / "b").glob("sparse-*")) / "replicate_0"
    assert load_state(rep / "checkpoint.pt")["iteration"] == 100 and not (rep / "summary.json").exists()
    resumed = go(tmp_path / "b", data, cfg)
    a = next((tmp_path / "a").glob("sparse-*")) / "replicate_0"
    fa, fb = load_state(a / "final.pt"), load_state(rep / "final.pt")
    assert all(torch.equal(fa["model"][k], fb["model"][k]) for k in fa["model"])
    ha, hb = fa["hooks"][0], fb["hooks"][0]
    assert all(torch.equal(ha["masks"][n], hb["masks"][n]) for n in ha["masks"])
    assert ha["history"] == hb["history"] and ha["step"] == hb["step"] == 200
    assert read_jsonl(a / "metrics.jsonl") == read_jsonl(rep / "metrics.jsonl")
    assert (a / "churn.jsonl").read_text() == (rep / "churn.jsonl").read_text()
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("path", *timing.FIELDS)} for r in rows]  # noqa: E731
    assert strip(full["rows"]) == strip(resumed["rows"])
    # a finished experiment does no work
    again = go(tmp_path / "b", data, cfg, hooks=[Crash(at=1)])
    assert strip(again["rows"]) == strip(resumed["rows"])


def test_stacked_replicates_match_and_resume(tmp_path, data):
    cfg = SparseConfig(method="set", sparsity=0.9, distribution="erk", update_interval=25)
    one = go(tmp_path / "one", data, cfg, replicates=2, stack=1)
    two = go(tmp_path / "two", data, cfg, replicates=2, stack=2)
    for r in range(2):
        ra, rb = (next((tmp_path / s).glob("sparse-*")) / f"replicate_{r}" for s in ("one", "two"))
        assert json.loads((rb / "group.json").read_text())["members"] == [0, 1]
        ma, mb = (torch.load(d / "masks.pt", weights_only=True) for d in (ra, rb))
        # SET's masks depend on |w| and its seeded draws only: stacked training reproduces them here
        assert all(torch.equal(ma[n], mb[n]) for n in ma)
        assert one["rows"][r]["achieved_sparsity"] == two["rows"][r]["achieved_sparsity"]
        assert one["rows"][r]["final_test_acc"] == pytest.approx(two["rows"][r]["final_test_acc"], abs=0.02)
        # each stacked run saves its own share of the sparse state, as if trained alone
        own = load_state(rb / "final.pt")["hooks"][0]
        assert own["seeds"] == [cfg.seed + r] and all(own["masks"][n].shape == ma[n].shape for n in own["masks"])
        assert all(len(v) == 1 for h in own["history"] for v in h["dropped"].values())
    assert one["rows"][0]["final_test_acc"] != one["rows"][1]["final_test_acc"]  # different seeds
    # a killed stacked group resumes as the same group
    with pytest.raises(KeyboardInterrupt):
        go(tmp_path / "cut", data, cfg, replicates=2, stack=2, hooks=[Crash(at=120)])
    cut = go(tmp_path / "cut", data, cfg, replicates=2, stack=2)
    for r in range(2):
        assert cut["rows"][r]["final_test_acc"] == two["rows"][r]["final_test_acc"]
        assert cut["rows"][r]["mean_churn"] == two["rows"][r]["mean_churn"]


@pytest.mark.parametrize("method", ["dense", "static", "snfs", "gmp", "snip", "synflow"])
def test_other_methods_reach_their_sparsity(tmp_path, data, method):
    cfg = SparseConfig(method=method, sparsity=0.9, distribution="uniform", dense_last=True, update_interval=25,
                       gmp_begin=0.1, gmp_end=0.5, gmp_frequency=20, synflow_iterations=5)
    (row,) = go(tmp_path, data, cfg)["rows"]
    rep = next(tmp_path.glob("sparse-*")) / "replicate_0"
    masks = torch.load(rep / "masks.pt", weights_only=True)
    sp = json.loads((rep / "sparsity.json").read_text())
    if method == "dense":
        assert row["achieved_sparsity"] == 0.0 and all(m.all() for m in masks.values())
        return
    assert masks["fc3.weight"].all()  # dense_last: outside the budget
    kept = int(masks["fc1.weight"].sum()) + int(masks["fc2.weight"].sum())
    assert kept == D.nnz(40 * 64, 0.9) + D.nnz(64 * 32, 0.9) or (
        method in ("snip", "synflow") and kept == D.nnz(40 * 64 + 64 * 32, 0.9))  # global: one count
    assert sp["achieved"] == pytest.approx(row["achieved_sparsity"])
    churn = read_jsonl(rep / "churn.jsonl")
    if method == "gmp":
        assert [c["step"] for c in churn] == [20, 40, 60, 80, 100]  # 0.1·200 .. 0.5·200 every 20
        assert all(c["grown"] == 0 for c in churn) and churn[-1]["nnz"] == kept
    elif method == "snfs":
        assert len(churn) == 7
    else:
        assert churn == []


def test_config_validation():
    with pytest.raises(ConfigError):
        SparseConfig(method="magic")
    with pytest.raises(ConfigError):
        SparseConfig(sparsity=1.0)
    with pytest.raises(ConfigError):
        SparseConfig(gmp_begin=0.8, gmp_end=0.5)
    with pytest.raises(ConfigError):
        SparseConfig(distribution="gaussian")


def test_plots_accuracy_vs_sparsity_and_churn(tmp_path, data):
    from ticketlab.reports.plots import plot_all
    from ticketlab.reports.sparse_plots import accuracy_table, churn_curves, sparse_rows
    short = dataclasses.replace(TRAIN, iterations=100)
    exps = [run(short, s, store=tmp_path, data=data, progress=False)["experiment"]
            for s in (SparseConfig(method="dense"), dataclasses.replace(RIGL, sparsity=0.8), RIGL,
                      SparseConfig(method="static", sparsity=0.9))]
    table = accuracy_table(sparse_rows(exps))
    assert [(t["method"], t["sparsity"]) for t in table] == [("dense", 0.0), ("rigl", 0.8), ("rigl", 0.9),
                                                             ("static", 0.9)]
    label, pts = churn_curves(exps[2])
    # updates every 20 steps up to 0.75 · 100; the cosine-decayed drop fraction makes churn fall
    assert label == "rigl erk 90%" and [s for s, _ in pts] == [0, 20, 40, 60] and pts[0][1] > pts[-1][1] > 0
    files = plot_all(exps, tmp_path / "plots")
    names = {f.name for f in files}
    assert {"sparse_accuracy.png", "sparse_accuracy.svg", "churn.png", "churn.svg"} <= names
    assert all(f.stat().st_size > 1000 for f in files)


def test_grow_state_config_hash_cli_and_api(tmp_path, data):
    """grow_state (issue #18): checked, out of the hash at its default, a CLI flag, and a run through
    the API with "keep" keeps pruned weights at zero and stores the field."""
    from ticketlab import api
    from ticketlab.cli.commands import parser
    from ticketlab.core import config as C
    from ticketlab.experiments.sparse_training import SparseRun

    with pytest.raises(ConfigError, match="grow_state"):
        SparseConfig(grow_state="stale")
    t = TrainConfig()
    assert C.config_hash("sparse", SparseRun(t, SparseConfig(grow_state="zero"))) == "797a30de7cba"  # test_hashes
    assert C.config_hash("sparse", SparseRun(t, SparseConfig(grow_state="keep"))) != "797a30de7cba"
    argv = ["sparse-train", "--method", "rigl", "--grow-state", "keep"]
    cfg = C.from_dict(SparseConfig, C.flags_to_dict(SparseConfig, parser(argv).parse_args(argv)))
    assert cfg.grow_state == "keep"
    keep = dataclasses.replace(RIGL, grow_state="keep")
    res = api.sparse_train(TRAIN, keep, store=tmp_path, progress=False)
    exp = tmp_path / res["experiment"].split("/")[-1]
    assert json.loads((exp / "config.json").read_text())["config"]["sparse"]["grow_state"] == "keep"
    final = load_state(exp / "replicate_0" / "final.pt")
    masks = torch.load(exp / "replicate_0" / "masks.pt", weights_only=True)
    w = final["model"]
    assert masks and set(masks) <= set(w)
    assert all((w[n][~m] == 0).all() for n, m in masks.items())
    assert any(not m.all() for m in masks.values())
    assert res["rows"][0]["final_test_acc"] > 0.2


def test_gmp_early_stopping_judges_only_the_fully_sparse_network(tmp_path, data):
    # GMP reaches its sparsity at step 100 (0.5 · 200): the evaluations at 50 and 100 are of denser
    # networks, so early stopping picks among 150 and 200 only (issue #18)
    cfg = SparseConfig(method="gmp", sparsity=0.9, distribution="uniform", gmp_begin=0.1, gmp_end=0.5,
                       gmp_frequency=20)
    (row,) = go(tmp_path, data, cfg, replicates=1)["rows"]
    rep = next(tmp_path.glob("sparse-*")) / "replicate_0"
    s = json.loads((rep / "summary.json").read_text())
    rows = read_jsonl(rep / "metrics.jsonl")
    assert s["select_from"] == 101 and s["early_stop"]["iter"] in (150, 200)
    best = min((r for r in rows if r["iter"] >= 101), key=lambda r: (r["val_loss"], r["iter"]))
    assert s["early_stop"]["iter"] == best["iter"] == row["es_iter"]
    # a summary written before `select_from` existed is re-judged from its rows when read
    from ticketlab.experiments.sparse_training import early_stop_sparse
    old = {k: v for k, v in s.items() if k not in ("select_from", "converged")}
    old["early_stop"] = min(rows[1:], key=lambda r: (r["val_loss"], r["iter"]))  # the whole run, as before
    config = json.loads((rep.parent / "config.json").read_text())["config"]
    fixed = early_stop_sparse(rep, old, config)
    assert fixed["early_stop"]["iter"] == best["iter"] and fixed["select_from"] == 101
    assert fixed["converged"] == (best["iter"] - 101 < 0.8 * (200 - 101))
    assert row["converged"] == s["converged"] and row["diverged"] is None  # rows carry the marks


def test_static_sparse_runs_keep_early_stopping_over_the_whole_run(tmp_path, data):
    cfg = SparseConfig(method="static", sparsity=0.9, distribution="uniform")
    go(tmp_path, data, cfg, replicates=1)
    rep = next(tmp_path.glob("sparse-*")) / "replicate_0"
    s = json.loads((rep / "summary.json").read_text())
    rows = read_jsonl(rep / "metrics.jsonl")
    best = min(rows[1:], key=lambda r: (r["val_loss"], r["iter"]))  # every evaluation after the start
    assert "select_from" not in s and s["early_stop"]["iter"] == best["iter"]


@pytest.mark.parametrize("where", ["cpu", pytest.param("cuda", marks=[gpu, needs_cuda])])
def test_conv_nets_stack_through_vmap_where_family_says(tmp_path, monkeypatch, where):
    # On an accelerator `family` stacks Conv-2 as VmapStacked; on the CPU it does not, so there the
    # same code path is forced. Stacked SET replicates keep the masks they get one at a time.
    from ticketlab.data import Dataset, Split
    from ticketlab.training import stacked_conv
    from ticketlab.training import device as _device
    g = torch.Generator().manual_seed(0)
    split = lambda n: Split(torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g))  # noqa: E731
    small = Dataset("random", split(120), split(40), split(40), 10, (1, 8, 8))
    train = TrainConfig(dataset="fashion-mnist", model="conv2", optimizer="adam", lr=1e-3, iterations=30,
                        batch_size=20, eval_every=15)
    cfg = SparseConfig(method="set", sparsity=0.8, distribution="erk", update_interval=10)
    used = []
    real = stacked_conv.family

    def family(model, device):
        used.append(stacked_conv.VmapStacked if where == "cpu" else real(model, device))
        return used[-1]
    monkeypatch.setattr(stacked_conv, "family", family)
    before = _device.current()
    _device.use(where)
    try:
        one = run(train, cfg, store=tmp_path / "one", data=small, progress=False, replicates=2, stack=1)
        two = run(train, cfg, store=tmp_path / "two", data=small, progress=False, replicates=2, stack=2)
    finally:
        _device.use(before)
    assert stacked_conv.VmapStacked in used
    for r in range(2):
        ra, rb = (next((tmp_path / s).glob("sparse-*")) / f"replicate_{r}" for s in ("one", "two"))
        assert json.loads((rb / "group.json").read_text())["members"] == [0, 1]
        ma, mb = (torch.load(d / "masks.pt", weights_only=True) for d in (ra, rb))
        agree = sum(int((ma[n] == mb[n]).sum()) for n in ma) / sum(ma[n].numel() for n in ma)
        assert agree > 0.99  # SET drops by |w|: float rounding between the paths may flip a near tie
        assert one["rows"][r]["achieved_sparsity"] == two["rows"][r]["achieved_sparsity"]
        assert one["rows"][r]["final_test_acc"] == pytest.approx(two["rows"][r]["final_test_acc"], abs=0.05)


def test_points_of_a_sparse_sweep_share_stacks_and_match_each_point_alone(tmp_path, data):
    # SET at two sparsities and two distributions (one keeping the output layer dense) shares one stack of
    # 6 runs; GMP, another method, stacks apart. Each point equals the point run alone, one model at a time.
    from ticketlab.experiments.sparse_training import run_points
    base = SparseConfig(method="set", sparsity=0.9, distribution="erk", update_interval=25)
    cfgs = [base, dataclasses.replace(base, sparsity=0.8, distribution="uniform"),
            dataclasses.replace(base, sparsity=0.7, dense_last=True), SparseConfig(method="gmp", sparsity=0.8)]
    together = run_points(TRAIN, cfgs, store=tmp_path / "together", data=data, progress=False, replicates=2,
                          stack=8, checkpoint_every=50)
    alone = [go(tmp_path / "alone", data, c, replicates=2, stack=1) for c in cfgs]
    for p, (t, a) in enumerate(zip(together, alone)):
        assert t["rows"][0]["sparsity"] == a["rows"][0]["sparsity"]
        for r in range(2):
            rt, ra = Path(t["rows"][r]["path"]), Path(a["rows"][r]["path"])
            group = json.loads((rt / "group.json").read_text())
            assert group["members"] == [0, 1]
            if p < 3:  # the three SET points, in order, replicates in order
                assert group["stack"] == [[Path(together[q]["experiment"]).name, m] for q in range(3) for m in range(2)]
            else:
                assert "stack" not in group
            mt, ma = (torch.load(d / "masks.pt", weights_only=True) for d in (rt, ra))
            assert all(torch.equal(mt[n], ma[n]) for n in ma)  # SET: |w| and seeded draws only
            assert t["rows"][r]["achieved_sparsity"] == a["rows"][r]["achieved_sparsity"]
            assert t["rows"][r]["final_test_acc"] == pytest.approx(a["rows"][r]["final_test_acc"], abs=0.02)
            assert t["rows"][r]["mean_churn"] == pytest.approx(a["rows"][r]["mean_churn"], abs=1e-9)
            assert t["rows"][r]["stack_size"] == (6 if p < 3 else 2)
    assert [Path(t["experiment"]).name for t in together] == [Path(a["experiment"]).name for a in alone]  # same hashes
    # a killed stack resumes as the same stack, whichever points are asked for first
    with pytest.raises(KeyboardInterrupt):
        run_points(TRAIN, cfgs[:3], store=tmp_path / "cut", data=data, progress=False, replicates=2, stack=8,
                   checkpoint_every=50, hooks=[Crash(at=120)])
    cut = run_points(TRAIN, cfgs[2::-1], store=tmp_path / "cut", data=data, progress=False, replicates=2,
                     stack=8, checkpoint_every=50)[::-1]
    for t, c in zip(together, cut):
        for r in range(2):
            assert c["rows"][r]["final_test_acc"] == t["rows"][r]["final_test_acc"]
            assert c["rows"][r]["mean_churn"] == t["rows"][r]["mean_churn"]


def test_sparse_train_sweep_on_the_command_line_and_the_api(tmp_path, capsys):
    # `ticketlab sparse-train --sweep` and `api.sparse_train(train, [points])`: the same experiments,
    # their runs in one stack; bad sweeps are one line each
    from ticketlab import api
    from ticketlab.cli.commands import main
    flags = ["--dataset", "mnist1d", "--model", "mlp", "--model-args", '{"widths": [32]}', "--iterations", "60",
             "--eval-every", "30", "--batch-size", "50", "--method", "set", "--update-interval", "20", "--replicates", "2", "--stack", "8",
             "--quiet"]
    assert main(["sparse-train", "--store", str(tmp_path / "cli"), *flags, "--sweep", "sparsity=0.8,0.9",
                 "--sweep", "distribution=erk,uniform"]) == 0
    out = capsys.readouterr().out
    labels = [line.split("(")[1].rstrip(")") for line in out.splitlines() if line.startswith("experiment:")]
    assert labels == ["sparsity=0.8, distribution=erk", "sparsity=0.8, distribution=uniform",
                      "sparsity=0.9, distribution=erk", "sparsity=0.9, distribution=uniform"]
    train = TrainConfig(dataset="mnist1d", model="mlp", model_args={"widths": [32]}, iterations=60, eval_every=30,
                        batch_size=50)
    points = [SparseConfig(method="set", update_interval=20, sparsity=s, distribution=d)
              for s in (0.8, 0.9) for d in ("erk", "uniform")]
    res = api.sparse_train(train, points, store=tmp_path / "api", replicates=2, stack=8, progress=False)
    assert [Path(r["experiment"]).name for r in res] == [line.split()[1].split("/")[-1] for line in out.splitlines()
                                                         if line.startswith("experiment:")]
    assert all(row["stack_size"] == 8 for r in res for row in r["rows"])
    for bad, says in ((["--sweep", "lr=0.1,0.2"], "--sweep: unknown key 'lr'"),
                      (["--sparsity", "0.8", "--sweep", "sparsity=0.8,0.9"], "--sparsity is both set and swept"),
                      (["--sweep", "sparsity=2"], "sparsity: got 2.0")):
        assert main(["sparse-train", "--store", str(tmp_path / "bad"), *flags, *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert says in err and len(err.splitlines()) == 1


def test_sparse_train_points_from_a_config_files_grid(tmp_path):
    # [grid] in sparse-train's --config file: the same points as --sweep; a flag fixes its key (out of
    # the file's grid), --sweep replaces the file's values, a key set and swept in the file is refused
    from ticketlab.cli.commands import parser, sparse_points
    from ticketlab.cli.common import _configs

    def points(*argv):
        argv = ["sparse-train", *argv]
        ns = parser(argv).parse_args(argv)
        _, cfg = _configs({"train": TrainConfig, "sparse": SparseConfig}, ns, grid=True)
        return [(c.sparsity, c.distribution, label) for c, label in sparse_points(ns, cfg)]
    f = tmp_path / "points.toml"
    f.write_text('dataset = "mnist1d"\nmethod = "set"\n[grid]\nsparsity = [0.8, 0.9]\ndistribution = ["erk", "er"]\n')
    from_file = points("--config", str(f))
    assert from_file == points("--method", "set", "--sweep", "sparsity=0.8,0.9", "--sweep", "distribution=erk,er")
    assert [p[:2] for p in from_file] == [(0.8, "erk"), (0.8, "er"), (0.9, "erk"), (0.9, "er")]
    assert points("--config", str(f), "--distribution", "uniform") == [(0.8, "uniform", "sparsity=0.8"),
                                                                       (0.9, "uniform", "sparsity=0.9")]
    assert [p[0] for p in points("--config", str(f), "--sweep", "sparsity=0.95")] == [0.95, 0.95]
    assert points("--method", "set") == [(0.9, "erk", "")]  # no grid: the one point
    for text, says in (('sparsity = 0.9\n[grid]\nsparsity = [0.8]\n', "'sparsity' is both set and swept in"),
                       ('[grid]\nlr = [0.1, 0.2]\n', "'lr' in [grid] of"),
                       ('[grid]\nsparsity = 0.8\n', "expected a table of keys with non-empty lists")):
        f.write_text(text)
        with pytest.raises(ConfigError, match=re.escape(says)):
            points("--config", str(f))
