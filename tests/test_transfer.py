"""Ticket transfer (Morcos et al. 2019): the source mask travels bit for bit, a class-count change
re-initialises the output layer, input-shape mismatches are clear errors, random tickets keep the
per-layer counts, a transfer onto the source's own recipe reproduces the lottery, CLI and matrix.
Tiny budgets on MNIST-1D."""

import json

import pytest
import torch

from ticketlab import api
from ticketlab.cli import commands as cli
from ticketlab.experiments import transfer as T
from ticketlab.data import Dataset, Split, load_dataset
from ticketlab.core.errors import ConfigError, TicketlabError
from ticketlab.experiments.lottery.trunk import LotteryConfig, load_masks
from ticketlab.core.pruning import n_to_keep
from ticketlab.training.loop import TrainConfig, load_state
from ticketlab.experiments.transfer import TransferConfig

torch.set_num_threads(1)

TRAIN = TrainConfig(dataset="mnist1d", model="mlp", model_args={"widths": [64, 32]}, iterations=100,
                    batch_size=50, eval_every=50)
SGD = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A finished source lottery: 2 replicates, levels 0-2 (so levels up to 3 can be transferred)."""
    store = tmp_path_factory.mktemp("store")
    # one at a time, as the transfer below that reproduces it (one worker would stack a level's runs)
    res = api.lottery(TRAIN, LotteryConfig(levels=2, replicates=2), store=store, progress=False, stack=1)
    return store, res["experiment"]


def run(store, src, **kw):
    target = kw.pop("target", SGD)
    cfg = TransferConfig(source=src, target=target, **{"controls": ("random",), **kw})
    return api.transfer(cfg, store=store, progress=False, checkpoint_every=50)


def test_transferred_ticket_keeps_the_source_mask_and_weights(source):
    store, src = source
    res = run(store, src, levels=(1, 2, 3))
    exp = store / res["experiment"].split("/")[-1]
    body = json.loads((exp / "config.json").read_text())
    assert body["config"]["source"] == src.split("/")[-1]  # linked by the source's folder name (its hash)
    assert body["config"]["target"]["optimizer"] == "sgd" and body["config"]["target"]["dataset"] == "mnist1d"
    assert T.links(exp)["output_layer"] == "keep"  # same class count: the output layer is kept
    for r in (0, 1):
        theta0 = load_state(f"{src}/replicate_{r}/level_0/snapshot_0.pt")["model"]
        for L in (1, 2, 3):  # level 3's mask comes from the source's finished level 2
            src_mask = load_masks(f"{src}/replicate_{r}/level_{L}/mask.pt")
            mask = load_masks(exp / f"replicate_{r}" / f"level_{L}" / "mask.pt")
            assert mask.keys() == src_mask.keys()
            assert all(torch.equal(mask[n], src_mask[n]) for n in mask), (r, L)
            start = load_state(exp / f"replicate_{r}" / f"level_{L}" / "snapshot_0.pt")["model"]
            for n, w in theta0.items():  # the source's θ0, masked
                assert torch.equal(start[n], w * mask[n] if n in mask else w), (r, L, n)
            final = load_state(exp / f"replicate_{r}" / f"level_{L}" / "final.pt")["model"]
            assert all(torch.count_nonzero(final[n][~m]) == 0 for n, m in mask.items())
    assert {(r["branch"], r["level"]) for r in res["rows"]} == {
        ("transfer", 1), ("transfer", 2), ("transfer", 3), ("random", 1), ("random", 2), ("random", 3)}
    agg = {(a["branch"], a["level"]): a for a in res["aggregate"]}
    assert agg[("transfer", 3)]["n"] == 2 and 0 < agg[("transfer", 3)]["es_test_acc"] <= 1
    assert agg[("transfer", 3)]["density"] < agg[("transfer", 1)]["density"] < 1


def test_random_tickets_match_the_per_layer_counts(source):
    store, src = source
    res = run(store, src, levels=(1, 2, 3), control_draws=2)  # extends the experiment above: draw 1 only is new
    exp = store / res["experiment"].split("/")[-1]
    rnd = store / res["random"]
    theta0 = load_state(f"{src}/replicate_0/level_0/snapshot_0.pt")["model"]
    for L in (1, 2, 3):
        ticket = load_masks(exp / "replicate_0" / f"level_{L}" / "mask.pt")
        folder = rnd / f"counts_{T.counts_key(ticket)}" / "replicate_0"
        draws = [load_masks(folder / f"random_{d}" / "mask.pt") for d in (0, 1)]
        for m in draws:
            assert {n: int(v.sum()) for n, v in m.items()} == {n: int(v.sum()) for n, v in ticket.items()}
            assert any(not torch.equal(m[n], ticket[n]) for n in m)
        assert not torch.equal(draws[0]["fc1.weight"], draws[1]["fc1.weight"])
        start = load_state(folder / "random_0" / "snapshot_0.pt")["model"]  # a fresh init, not the source's θ0
        assert not torch.equal(start["fc1.weight"][draws[0]["fc1.weight"]], theta0["fc1.weight"][draws[0]["fc1.weight"]])
    assert sum(r["branch"] == "random" for r in res["rows"]) == 3 * 2 * 2
    # random tickets carry convergence and divergence like every other run, so aggregates count and mark them
    from ticketlab.engine.results import aggregate
    from ticketlab.training.rundir import read_json
    rows = [r for r in res["rows"] if r["branch"] == "random"]
    assert all(r["converged"] == read_json(f"{r['path']}/summary.json")["converged"] for r in rows)
    assert all("diverged" in r and r["diverged"] is None for r in rows)
    agg = {(a["branch"], a["level"]): a for a in aggregate(T.transfer_rows(exp))}
    for L in (1, 2, 3):
        assert agg[("random", L)]["n_unconverged"] == sum(r["converged"] is False for r in rows if r["level"] == L)


def five_classes(real):
    """A synthetic 5-class target with MNIST-1D's input shape (labels y mod 5)."""
    def load(name, *args):
        if name != "mnist1d5":
            return real(name, *args)
        d = load_dataset("mnist1d")
        split = lambda s: Split(s.x, s.y % 5)
        return Dataset("mnist1d5", split(d.train), split(d.val), split(d.test), 5, d.input_shape)
    return load


@pytest.mark.parametrize("policy", ["auto", "dense"])
def test_class_count_change_reinitialises_the_output_layer(source, monkeypatch, policy):
    store, src = source
    from ticketlab.domains import classify
    monkeypatch.setattr(classify, "_dataset", five_classes(classify._dataset))
    res = run(store, src, levels=(2,), target={"dataset": "mnist1d5"}, output_layer=policy, replicates=1)
    exp = store / res["experiment"].split("/")[-1]
    assert T.links(exp)["output_layer"] == ("reinit_sparse" if policy == "auto" else "dense")
    src_mask = load_masks(f"{src}/replicate_0/level_2/mask.pt")
    mask = load_masks(exp / "replicate_0" / "level_2" / "mask.pt")
    assert mask["fc3.weight"].shape == (5, 32)
    for n in ("fc1.weight", "fc2.weight"):  # every layer but the output keeps the source mask
        assert torch.equal(mask[n], src_mask[n])
    kept = int(mask["fc3.weight"].sum())
    if policy == "auto":  # the ticket's output-layer density on the new shape
        assert kept == n_to_keep(5 * 32, int(src_mask["fc3.weight"].sum()) / 320) < 5 * 32
    else:
        assert kept == 5 * 32
    start = load_state(exp / "replicate_0" / "level_2" / "snapshot_0.pt")["model"]
    theta0 = load_state(f"{src}/replicate_0/level_0/snapshot_0.pt")["model"]
    assert torch.equal(start["fc1.weight"], theta0["fc1.weight"] * mask["fc1.weight"])
    fresh = T.Transfer(T.prepare(TransferConfig(source=src, target={"dataset": "mnist1d5"}, output_layer=policy,
                                                replicates=1, levels=(2,)), store=store)[0], 0)
    init = fresh.trainer.build(fresh.seed).state_dict()  # the target replicate's own init
    assert torch.equal(start["fc3.weight"], init["fc3.weight"] * mask["fc3.weight"])
    assert torch.equal(start["fc3.bias"], init["fc3.bias"])
    with pytest.raises(ConfigError, match="keep.*same number of classes"):
        run(store, src, levels=(2,), target={"dataset": "mnist1d5"}, output_layer="keep")


def test_input_shape_mismatch_and_bad_targets_are_clear_errors(source):
    store, src = source
    before = sorted(p.name for p in store.iterdir())
    with pytest.raises(TicketlabError, match=r"input shape mismatch.*mnist1d \(inputs \(40,\)\).*digits has inputs "
                                             r"\(1, 8, 8\)"):
        run(store, src, target={"dataset": "digits"})
    with pytest.raises(ConfigError, match="target.model"):
        run(store, src, target={"model": "lenet300_100"})
    with pytest.raises(ConfigError, match="unknown key 'learning_rate'"):
        run(store, src, target={"learning_rate": 0.1})
    with pytest.raises(TicketlabError, match="cannot give level 5"):
        run(store, src, levels=(5,))
    with pytest.raises(TicketlabError, match="has 2"):
        run(store, src, replicates=3)
    assert sorted(p.name for p in store.iterdir()) == before  # nothing written for a refused transfer


def test_transfer_onto_the_source_recipe_reproduces_the_lottery(source):
    store, src = source
    cfg = TransferConfig(source=src, levels=(1,), replicates=1, controls=())
    res = api.transfer(cfg, store=store, progress=False, stack=1)
    a = load_state(f"{src}/replicate_0/level_1/final.pt")["model"]
    b = load_state(f"{res['experiment']}/replicate_0/level_1/final.pt")["model"]
    assert all(torch.equal(a[n], b[n]) for n in a)


def test_cli_transfer_with_controls_and_plots(source, tmp_path, capsys):
    store, src = source
    name = src.split("/")[-1]
    argv = ["transfer", name[len("lottery-"):][:6], "--store", str(store), "--quiet", "--workers", "1",
            "--target-optimizer", "sgd", "--target-lr", "0.05", "--target-momentum", "0.9", "--levels", "2",
            "--replicates", "1", "-o", str(tmp_path / "plots")]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "transfer_%" in out and "random_%" in out and "dense on the target" in out
    assert (tmp_path / "plots" / "gap_heatmap.png").exists() and (tmp_path / "plots" / "runs.csv").exists()
    res = api.transfer(TransferConfig(source=name, target=SGD, levels=(2,), replicates=1), store=store, progress=False)
    own = store / res["own"]  # the own ticket is a lottery on the target, with the source's pruning recipe
    own_cfg = json.loads((own / "config.json").read_text())["config"]
    src_cfg = json.loads((store / name / "config.json").read_text())["config"]
    assert own_cfg["train"]["optimizer"] == "sgd" and own_cfg["lottery"]["prune_fraction"] == src_cfg["lottery"]["prune_fraction"]
    assert {r["branch"] for r in res["rows"]} == {"transfer", "random", "own", "dense"}
    assert cli.main(["transfer", name, "--store", str(store), "--quiet", "--target-dataset", "digits"]) == 2
    assert "input shape mismatch" in capsys.readouterr().err


def test_matrix_runs_lotteries_and_pairs(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text("""
[base]
dataset = "mnist1d"
model = "mlp"
model_args = { widths = [32, 16] }
iterations = 100
batch_size = 50
eval_every = 50
levels = 1
[transfer]
levels = [1]
[recipes.adam]
optimizer = "adam"
[recipes.sgd]
optimizer = "sgd"
lr = 0.05
[recipes.small]
optimizer = "adam"
train_fraction = 0.5
[matrix]
sources = ["adam", "sgd"]
targets = ["adam", "sgd"]
pairs = [["small", "sgd"]]
""")
    res = api.transfer(matrix=path, store=tmp_path / "store", progress=False)
    assert set(res["lotteries"]) == {"adam", "sgd", "small"}  # a recipe's lottery is source and own ticket
    assert [(t["source"], t["target"]) for t in res["transfers"]] == [("adam", "sgd"), ("sgd", "adam"), ("small", "sgd")]
    assert len(list((tmp_path / "store").glob("lottery-*"))) == 3
    from ticketlab.experiments.transfer_matrix import summary
    rows = summary(res["transfers"])
    assert len(rows) == 3 and all(r["own_acc_%"] is not None and r["random_acc_%"] is not None for r in rows)
    # two sources, one target, the same per-layer counts: one set of random tickets, shared
    paths = [{r["path"] for r in T.transfer_rows(t["experiment"]) if r["branch"] == "random"}
             for t in res["transfers"] if t["target"] == "sgd"]
    assert paths[0] == paths[1] and len(paths[0]) == 1
    # read back without training: the same experiments, in pair order; paired gaps agree with the means
    from ticketlab.experiments.transfer_matrix import load_matrix, paired, stored_transfers
    m = load_matrix(path)
    stored = stored_transfers(m, tmp_path / "store")
    assert [(t["source"], t["target"], t["experiment"]) for t in stored] == \
        [(t["source"], t["target"], str(t["experiment"])) for t in res["transfers"]]
    pr = paired(stored)
    assert len(pr) == 3 and all(p["vs_random_n"] == 1 and p["vs_own_n"] == 1 for p in pr)
    for p, r in zip(pr, rows):  # one replicate, one draw: the paired gap is the gap of the means
        assert p["vs_random_mean"] * 100 == pytest.approx(r["gap_vs_random_pp"])
        assert p["vs_own_mean"] * 100 == pytest.approx(r["gap_vs_own_pp"])
        assert p["vs_random_wins"] == int(p["vs_random_mean"] > 0)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert stored_transfers(m, empty) == [] and not any(empty.iterdir())  # nothing trains, nothing is created
    bad = tmp_path / "bad.toml"
    bad.write_text(path.read_text().replace('targets = ["adam", "sgd"]', 'targets = ["adamw"]'))
    with pytest.raises(ConfigError, match="recipe 'adamw'"):
        api.transfer(matrix=bad, store=tmp_path / "store")


def test_paired_stats_compare_replicate_by_replicate():
    from ticketlab.experiments.transfer_matrix import paired_stats
    st = paired_stats({0: 0.90, 1: 0.80, 2: 0.85}, {0: 0.88, 1: 0.81, 2: 0.80, 3: 0.5})  # replicate 3: unpaired
    assert st["n"] == 3 and st["wins"] == 2
    assert st["mean"] == pytest.approx((0.02 - 0.01 + 0.05) / 3)
    assert st["std"] == pytest.approx(torch.tensor([0.02, -0.01, 0.05], dtype=torch.float64).std().item())
    assert paired_stats({0: 1.0}, {}) == {"n": 0, "mean": None, "std": None, "wins": 0}
    assert paired_stats({0: 1.0}, {0: 0.5})["std"] == 0.0
