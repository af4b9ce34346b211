"""Teacher–student lab: the correlation metric on a hand-computed case, an exact copy of the teacher
scoring success 1 with L-shape points at (1, teacher fan-out norm), strength decay's fan-out norms,
node pruning's counts and equivalence, hand-written gradients and optimizers against torch, a
checkpoint teacher, resume and stacking, the CLI. Tiny sizes; the full reproduction is in
benchmarks/teacher_student/."""

import json
import math
from pathlib import Path

import pytest
import torch
from crash import interrupt_teacher_student

from ticketlab import api
from ticketlab.cli.commands import main
from ticketlab.core.errors import ConfigError
from ticketlab.experiments.teacher_student import metrics as Mx, prune as P
from ticketlab.experiments.teacher_student.experiment import TeacherStudentConfig, prepare_run, run
from ticketlab.experiments.teacher_student.net import Net
from ticketlab.experiments.teacher_student.optim import StackedOptimizer
from ticketlab.experiments.teacher_student.student import make_student
from ticketlab.experiments.teacher_student.teacher import GRID, compact, grid_rows, load_teacher, make_teacher
from ticketlab.engine.store import Store
from ticketlab.training.loop import load_state

torch.set_num_threads(1)

TINY = dict(input_dim=12, teacher_widths=(4,), output_dim=6, steps=300, log_every=100, seeds=2,
            train_size=500, eval_size=600, batch_size=8, lr=0.02)


# ---- the metric -----------------------------------------------------------------------------

def test_pearson_hand_computed():
    # a = (1, 2, 3): centred (-1, 0, 1); b1 = (1, 3, 2): centred (-1, 1, 0)
    # ρ = ((-1)(-1) + 0·1 + 1·0) / √(2·2) = 0.5; b2 = (3, 2, 1) gives -1; a constant column gives 0
    a = torch.tensor([[1.0], [2.0], [3.0]])
    b = torch.tensor([[1.0, 3.0, 5.0], [3.0, 2.0, 5.0], [2.0, 1.0, 5.0]])
    r = Mx.pearson(a, b)
    assert r.shape == (1, 3)
    assert r[0, 0].item() == pytest.approx(0.5, abs=1e-12)
    assert r[0, 1].item() == pytest.approx(-1.0, abs=1e-12)
    assert r[0, 2].item() == 0.0
    best, idx = Mx.best_match(r)
    assert best.item() == pytest.approx(0.5) and idx.item() == 0
    assert Mx.success_rate(torch.tensor([0.99, 0.95, 0.5, 0.2])).item() == 0.5  # ≥ τ counts


def test_streaming_correlation_matches_two_pass():
    g = torch.Generator().manual_seed(0)
    a = (torch.randn(2, 1000, 3, generator=g) * 4 + 7).relu()
    b = (torch.randn(2, 1000, 5, generator=g) + a[:, :, :1]).relu()
    b[:, :, 4] = 0.0  # a dead student node
    cs = Mx.CorrStats()
    for i in range(0, 1000, 300):
        cs.update(a[:, i:i + 300], b[:, i:i + 300])
    assert torch.allclose(cs.corr(), Mx.pearson(a, b), atol=1e-6)
    assert bool((cs.corr()[:, :, 4] == 0).all())


def test_luck_ranks_hand_computed():
    init = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.3, 0.1]])
    final = torch.tensor([[0.2, 0.1, 0.99], [0.1, 0.97, 0.0]])
    lk = Mx.luck(init, final)
    assert lk["winner"] == [2, 1]
    assert lk["init_rank"] == [1, 0]  # node 2 was second closest to teacher 0; node 1 closest to teacher 1
    assert lk["init_corr"] == pytest.approx([0.5, 0.3])


# ---- teacher, student ----------------------------------------------------------------------

def test_grid_rows_distinct_nonzero_and_normalised_teacher():
    w = grid_rows(20, 3, (-1.0, 0.0, 1.0), torch.Generator().manual_seed(1))  # 26 rows possible
    assert set(w.unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert bool(w.abs().sum(1).gt(0).all())
    assert len({tuple(r) for r in w.tolist()}) == 20
    t = make_teacher(10, (8, 6), 4, seed=3)
    for l in range(2):  # hidden rows unit norm
        assert torch.allclose(t.weights[l][0].norm(dim=1), torch.ones(t.weights[l].shape[1]), atol=1e-6)
    with pytest.raises(ConfigError):
        grid_rows(5, 1, (-1.0, 0.0, 1.0), torch.Generator().manual_seed(0))  # only 2 nonzero rows exist


def test_strength_decay_fan_out_norms():
    t0 = make_teacher(20, (10, 7), 5, seed=4, strength_decay=0.0)
    t2 = make_teacher(20, (10, 7), 5, seed=4, strength_decay=2.0)
    for l in range(2):
        n = t0.widths[l]
        expected = t0.fan_out_norm(l)[0] / torch.arange(1, n + 1).float() ** 2
        assert torch.allclose(t2.fan_out_norm(l)[0], expected, rtol=1e-5)
    assert torch.equal(t0.weights[0], t2.weights[0])  # p changes only fan-outs, same grid draw


def test_tuned_teacher_fires_half_the_time_and_standardised_output():
    t = make_teacher(10, (6, 5), 3, seed=2, bias="uniform", tune_bias=True, standardize=True, data_std=10.0)
    x = torch.randn(10240, 10, generator=torch.Generator().manual_seed(2)) * 10.0  # the tuning sample's law
    y, _, post = t.forward(x)
    for h in post:
        assert bool(((h > 0).float().mean(1) - 0.5).abs().lt(0.05).all())
    assert bool(y.mean(1).abs().lt(0.1).all()) and bool((y.std(1) - 1).abs().lt(0.1).all())


def test_exact_copy_scores_success_one_and_lshape_at_teacher_norm():
    t = make_teacher(16, (5, 4), 3, seed=0, tune_bias=True, data_std=1.5)  # tuned: no dead teacher node
    x = torch.randn(2000, 16) * 1.5
    copy = make_student(t, 1, seed=0, init="perturbed", perturb_std=0.0)
    wide = make_student(t, 3, seed=0, init="perturbed", perturb_std=0.0)
    assert torch.allclose(copy(x), t(x), atol=1e-5) and torch.allclose(wide(x), t(x), atol=1e-5)
    for s in (copy, wide):
        corr = Mx.layer_correlations(t, s, x)
        for l, c in enumerate(corr):
            best, idx = Mx.best_match(c["post"][0])
            assert Mx.success_rate(best, 0.95).item() == 1.0
            assert torch.allclose(best, torch.ones_like(best), atol=1e-6)
            m = t.widths[l]
            assert idx.tolist() == list(range(m))
            # L-shape: the planted nodes sit at (1, the teacher node's fan-out norm)
            xs = Mx.student_max_corr(c["post"][0])
            ys = s.fan_out_norm(l)[0]
            assert torch.allclose(xs[:m], torch.ones(m, dtype=xs.dtype), atol=1e-6)
            assert torch.allclose(ys[:m], t.fan_out_norm(l)[0], atol=1e-6)
    assert torch.count_nonzero(wide.fan_out_norm(1)[0][4:]) == 0  # extra nodes: no fan-out into the output
    assert torch.count_nonzero(wide.weights[1][0][4:, :5]) == 0 and torch.count_nonzero(wide.weights[1][0][:4, 5:]) == 0


# ---- pruning ---------------------------------------------------------------------------------

def test_node_pruning_keeps_requested_count_and_equals_masking():
    t = make_teacher(9, (4, 3), 2, seed=1)
    s = Net.stack([make_student(t, 5, seed=k) for k in range(3)])  # widths 20, 15; a stack of 3
    keep = [6, 2]
    for score in P.SCORES:
        masks = P.node_masks(s, keep, score)
        assert [m.sum(1).tolist() for m in masks] == [[6] * 3, [2] * 3]
        small = P.compact(s, masks)
        assert small.widths == (6, 2)
        # the compact net computes what the masked full net computes
        wm = P.weight_masks(s, masks)
        masked = Net([w * wm[f"fc{l + 1}.weight"] for l, w in enumerate(s.weights)],
                     [b * (masks[l] if l < 2 else 1) for l, b in enumerate(s.biases)], s.activation)
        x = torch.randn(3, 50, 9)
        assert torch.allclose(small(x), masked(x), atol=1e-5)
    # the top-scoring nodes are kept: give node 7 of layer 1 a huge fan-out
    s.weights[1][:, :, 7] = 100.0
    assert bool(P.node_masks(s, keep)[0][:, 7].all())
    with pytest.raises(ConfigError):
        P.node_masks(s, [21, 2])


# ---- merging co-aligned nodes before pruning (issue #18) ----------------------------------------

def _split_copies(t: Net, shares=(0.5, 0.3, 0.2), seed: int = 0) -> Net:
    """A student in which each hidden node of the teacher `t` is split into len(shares) positively
    scaled copies (node c·m + i is copy c of teacher node i, its fan-in × a random a > 0) that share
    its fan-out in the given proportions: it computes exactly the teacher's function."""
    g = torch.Generator().manual_seed(seed)
    c = len(shares)
    scale = [torch.rand(c * w, generator=g) * 2 + 0.25 for w in t.widths]  # a_k > 0 per student node
    share = [torch.tensor(shares).repeat_interleave(w) for w in t.widths]   # copy c of every node: shares[c]
    ws, bs = [], []
    for l, (w, b) in enumerate(zip(t.weights, t.biases)):
        w, b = w[0], b[0]
        if l > 0:  # columns: copies of the nodes below, their share undone by their scale
            w = w.repeat(1, c) * (share[l - 1] / scale[l - 1]).unsqueeze(0)
        if l < len(t.widths):  # rows: scaled copies of the teacher node
            w, b = w.repeat(c, 1) * scale[l].unsqueeze(1), b.repeat(c) * scale[l]
        ws.append(w.unsqueeze(0))
        bs.append(b.unsqueeze(0))
    return Net(ws, bs, t.activation, t.slope)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_merging_exact_copies_keeps_the_function_and_removes_the_copies(activation):
    # seed 0: no two teacher nodes of a layer are co-aligned (max cosine 0.33 and 0.03)
    t = make_teacher(10, (4, 3), 5, seed=0, activation=activation, tune_bias=True, data_std=1.5)
    s = _split_copies(t)
    x = torch.randn(400, 10) * 1.5
    assert torch.allclose(s(x), t(x), atol=1e-4)  # the construction is the teacher's function
    merged, alive = P.merge_coaligned(s, 0.95)
    assert [int(a.sum()) for a in alive] == [4, 3]  # one node per teacher node survives
    assert torch.allclose(merged(x), s(x), atol=1e-4)
    small = P.compact(merged, alive)  # the copies removed: the teacher's width and function
    assert small.widths == (4, 3) and torch.allclose(small(x), t(x), atol=1e-4)
    for l in range(2):  # merged-away nodes lose their fan-out, and rank below every kept node
        assert torch.count_nonzero(merged.weights[l + 1][0][:, ~alive[l][0]]) == 0
        assert torch.equal(P.node_masks(merged, [4, 3], alive=alive)[l], alive[l])
    # pruning to the teacher's width keeps the fit only after the merge (every copy holds a share)
    err = lambda n: float((n(x) - t(x)).pow(2).mean() / t(x).var(1).mean())  # noqa: E731
    assert err(P.compact(merged, P.node_masks(merged, [4, 3], alive=alive))) < 1e-8
    assert err(P.compact(s, P.node_masks(s, [4, 3]))) > 1e-2


def test_nodes_below_the_merge_threshold_are_untouched():
    t = make_teacher(10, (4,), 5, seed=3)
    s = make_student(t, 3, seed=0)  # 12 random nodes in d = 10 + bias
    u = torch.cat([s.weights[0][0], s.biases[0][0].unsqueeze(1)], 1)
    cos = torch.nn.functional.cosine_similarity(u.unsqueeze(1), u.unsqueeze(0), dim=2)
    assert float((cos - torch.eye(12)).max()) < 0.9  # no random pair is co-aligned
    # plant node 5 at cosine 0.92 to node 2: 2u/|u| rotated by a unit vector orthogonal to it
    u2 = u[2] / u[2].norm()
    v = torch.randn(11, generator=torch.Generator().manual_seed(1))
    v = v - (v @ u2) * u2
    new = 1.7 * (0.92 * u2 + math.sqrt(1 - 0.92 ** 2) * v / v.norm())
    s.weights[0][0, 5], s.biases[0][0, 5] = new[:10], new[10]
    merged, alive = P.merge_coaligned(s, 0.95)
    assert bool(alive[0].all())
    assert all(torch.equal(a, b) for a, b in zip(merged.weights + merged.biases, s.weights + s.biases))
    merged, alive = P.merge_coaligned(s, 0.9)  # at a lower threshold the pair merges, nothing else
    assert (~alive[0][0]).nonzero().squeeze(1).tolist() in ([2], [5])
    untouched = [k for k in range(12) if k not in (2, 5)]
    assert torch.equal(merged.weights[1][0][:, untouched], s.weights[1][0][:, untouched])
    with pytest.raises(ConfigError, match="prune_merge_cos"):
        P.merge_coaligned(s, 1.5)


def test_merge_option_keeps_the_hash_and_works_from_the_cli_and_api(tmp_path, capsys):
    from ticketlab.core.config import config_hash
    base = TeacherStudentConfig()
    assert config_hash("teacher_student", base) == "f3b799cf4f0b"  # as tests/test_hashes.py pins it
    # a readout of the trained students, like prune_score: the same experiment, not a new one
    assert config_hash("teacher_student", TeacherStudentConfig(prune_merge=True, prune_merge_cos=0.9)) == \
        "f3b799cf4f0b"
    with pytest.raises(ConfigError, match="prune_merge_cos"):
        TeacherStudentConfig(prune_merge_cos=1.5)
    args = ["teacher-student", "--store", str(tmp_path), "--quiet", "--input-dim", "12", "--teacher-widths", "4",
            "--output-dim", "6", "--steps", "300", "--log-every", "100", "--seeds", "2", "--train-size", "500",
            "--eval-size", "600", "--batch-size", "8", "--lr", "0.02", "--multi", "3", "--init", "small",
            "--prune", "--no-prune-retrain"]
    assert main(args) == 0
    assert main(args + ["--prune-merge", "--prune-merge-cos", "0.9"]) == 0
    out = capsys.readouterr().out
    assert "merge_cos" in out and "rel_mse_merged" in out
    (exp,) = Path(tmp_path).glob("teacher_student-*")
    plain = json.loads((exp / "seed_0" / "prune_fanout_norm_keep1" / "pruned.json").read_text())
    merged = json.loads((exp / "seed_0" / "prune_fanout_norm_keep1_merge0.9" / "pruned.json").read_text())
    assert "merge_cos" not in plain and merged["merge_cos"] == 0.9
    assert merged["eval_rel_mse_full"] == plain["eval_rel_mse_full"]  # the same trained student
    assert merged["layers"][0]["merged_away"] >= 0 and len(merged["layers"][0]["kept"]) == 4
    cfg = TeacherStudentConfig(**TINY, multi=3, init="small", prune=True, prune_retrain=False, prune_merge=True,
                               prune_merge_cos=0.9)
    res = api.teacher_student(cfg, store=tmp_path)  # the API reads the same folders: nothing trains
    assert res["experiments"] == [str(exp)]
    assert [p["merge_cos"] for p in res["rows"][0]["prune"]] == [0.9, 0.9]


# ---- gradients and optimizers ------------------------------------------------------------------

@pytest.mark.parametrize("activation,loss", [("relu", "half_sse"), ("leaky_relu", "mse")])
def test_hand_gradients_match_autograd(activation, loss):
    t = make_teacher(7, (5, 4), 3, seed=0, activation=activation, slope=0.1)
    s = Net.stack([make_student(t, 2, seed=k) for k in range(2)])
    x, y = torch.randn(2, 11, 7), torch.randn(2, 11, 3)
    per_run, grads = s.loss_and_grads(x, y, loss)
    params = [p.clone().requires_grad_(True) for p in s.params()]
    ref = Net(params[0::2], params[1::2], s.activation, s.slope)
    err = ref(x) - y
    l = 0.5 * err.pow(2).sum(2).mean(1) if loss == "half_sse" else err.pow(2).mean((1, 2))
    l.sum().backward()
    assert torch.allclose(per_run, l.detach(), atol=1e-6)
    for g, p in zip(grads, params):
        assert torch.allclose(g, p.grad, atol=1e-5)


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_stacked_optimizer_matches_torch(kind):
    g = torch.Generator().manual_seed(0)
    p0 = torch.randn(2, 3, 4, generator=g)
    grads = [torch.randn(2, 3, 4, generator=g) for _ in range(5)]
    mine = p0.clone()
    opt = StackedOptimizer([mine], kind, lr=0.1, momentum=0.9)
    ref = p0.clone().requires_grad_(True)
    topt = (torch.optim.SGD([ref], lr=0.1, momentum=0.9) if kind == "sgd"
            else torch.optim.Adam([ref], lr=0.1, foreach=False))
    for i, gr in enumerate(grads):
        if i == 3:  # checkpoint round trip per network mid-run
            states = [opt.state(0), opt.state(1)]
            opt = StackedOptimizer([mine], kind, lr=0.1, momentum=0.9)
            opt.load(states)
        opt.step([gr])
        ref.grad = gr.clone()
        topt.step()
    assert torch.allclose(mine, ref.detach(), atol=1e-6)


# ---- a trained, pruned network as the teacher ---------------------------------------------------

def test_checkpoint_teacher_from_a_lottery_level(tmp_path):
    from ticketlab.experiments.lottery.trunk import save_masks
    from ticketlab.models import create_model
    from ticketlab.training.loop import save_state
    model = create_model("mlp", input_shape=(8,), num_classes=3, seed=0, widths=(6, 5))
    masks = {n: torch.ones_like(p, dtype=torch.bool) for n, p in model.named_parameters() if n.endswith("weight")}
    masks["fc1.weight"][2] = False      # hidden node 2 of layer 1: no fan-in (a constant node)
    masks["fc2.weight"][:, 4] = False   # hidden node 4 of layer 1: no fan-out
    masks["fc3.weight"][:, 0] = False   # hidden node 0 of layer 2: no fan-out
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in masks:
                p.mul_(masks[n])
    level = tmp_path / "lottery-abc" / "replicate_0" / "level_3"
    level.mkdir(parents=True)
    (tmp_path / "lottery-abc" / "config.json").write_text(json.dumps(
        {"kind": "lottery", "config": {"train": {"model": "mlp", "model_args": {"widths": [6, 5]}}}}))
    save_state(level / "final.pt", model=model, optimizer=None, iteration=10)
    save_masks(level / "mask.pt", masks)
    t = load_teacher(level)
    assert t.widths == (4, 4) and t.input_dim == 8 and t.output_dim == 3
    x = torch.randn(100, 8)
    assert torch.allclose(t(x)[0], model(x), atol=1e-5)
    cfg = TeacherStudentConfig(**{**TINY, "teacher_checkpoint": str(level), "multi": 2, "seeds": 1, "steps": 50,
                                  "log_every": 50})
    res = api.teacher_student(cfg, store=tmp_path / "store", out=tmp_path / "plots")
    assert res["rows"][0]["teacher_widths"] == [4, 4]
    assert {"lshape_layers.png", "best_over_training_layers.svg", "luck_layer1.png"} <= {
        p.split("/")[-1] for p in res["files"]}
    other = tmp_path / "lottery-abc" / "replicate_0" / "level_9"
    with pytest.raises(ConfigError):
        load_teacher(other)


# ---- experiments: store, resume, stacking, pruning, CLI -------------------------------------------

def test_resume_is_exact_and_stacking_matches_alone(tmp_path):
    cfg = TeacherStudentConfig(**{**TINY, "lr": 0.01}, multi=2, optimizer="adam")
    done = run(cfg, store=tmp_path / "a")
    exp_a = done["experiments"][0]

    exp = Store(tmp_path / "b").experiment("teacher_student", cfg)
    interrupt_teacher_student([prepare_run(exp, cfg, s) for s in (0, 1)], at_step=200, checkpoint_every=100)
    assert load_state(exp.path / "seed_0" / "checkpoint.pt")["iteration"] == 100
    resumed = run(cfg, store=tmp_path / "b")
    for s in (0, 1):
        a = load_state(f"{exp_a}/seed_{s}/final.pt")["student"]["weights"]
        b = load_state(f"{resumed['experiments'][0]}/seed_{s}/final.pt")["student"]["weights"]
        assert all(torch.equal(u, v) for u, v in zip(a, b))
    # seed 1 trained alone lands (to float rounding) where it landed in a stack of two
    alone = run(TeacherStudentConfig(**{**TINY, "seed": 1, "seeds": 1, "lr": 0.01}, multi=2, optimizer="adam"),
                store=tmp_path / "c")
    a = load_state(f"{exp_a}/seed_1/final.pt")["student"]["weights"]
    c = load_state(f"{alone['experiments'][0]}/seed_1/final.pt")["student"]["weights"]
    assert all(torch.allclose(u, v, atol=1e-4) for u, v in zip(a, c))
    # a finished experiment is read, not retrained
    again = run(cfg, store=tmp_path / "a")
    assert again["rows"] == done["rows"]


def test_sweep_with_pruning_tables_and_plots(tmp_path):
    cfgs = [TeacherStudentConfig(**TINY, multi=m, strength_decay=p, prune=True, init="small")
            for m in (1, 3) for p in (0.0, 2.0)]
    res = api.teacher_student(cfgs, store=tmp_path / "s", out=tmp_path / "out")
    assert len(res["rows"]) == 4
    for row in res["rows"]:
        assert row["seeds"] == 2 and 0.0 <= row["layers"][0]["success"] <= 1.0
        assert len(row["prune"]) == 2
        for pr in row["prune"]:
            assert pr["layers"][0]["keep"] == 4 and "ticket_eval_rel_mse" in pr and "reinit_eval_rel_mse" in pr
    # the ticket starts from the kept nodes' own initial weights
    exp = res["experiments"][2]
    init = Net.from_state(load_state(f"{exp}/seed_0/init.pt"))
    final = Net.from_state(load_state(f"{exp}/seed_0/final.pt")["student"])
    ticket0 = Net.from_state(load_state(f"{exp}/seed_0/prune_fanout_norm_keep1/ticket/init.pt"))
    expect = P.compact(init, P.node_masks(final, [4]))
    assert all(torch.equal(u, v) for u, v in zip(ticket0.weights, expect.weights))
    names = {p.split("/")[-1] for p in res["files"]}
    assert {"points.csv", "per_node.csv", "prune.csv", "luck.csv", "success_by_node.png", "success_vs_multi.svg",
            "lshape.png", "lshape_scaled.png", "luck.png", "nodes_over_training.png"} <= names
    metrics = [json.loads(x) for x in open(f"{exp}/seed_0/metrics.jsonl")]
    assert [r["iter"] for r in metrics] == [0, 100, 200, 300]


def test_cli_sweep_and_errors(tmp_path, capsys):
    args = ["teacher-student", "--store", str(tmp_path), "--quiet", "--input-dim", "8", "--teacher-widths", "3",
            "--output-dim", "4", "--steps", "40", "--log-every", "20", "--seeds", "1", "--train-size", "100",
            "--eval-size", "200", "--sweep", "multi=1,2", "--sweep", "teacher_widths=3/2,2"]
    assert main(args[:-2]) == 0
    out = capsys.readouterr().out
    assert out.count("teacher_student-") == 2 and "success" in out
    assert main(args) == 2  # teacher_widths both set and swept
    assert "both set and swept" in capsys.readouterr().err
    assert main(args[:-4] + ["--sweep", "nope=1"]) == 2
    assert "unknown key 'nope'" in capsys.readouterr().err
    assert main(args[:-4] + ["--multi", "0"]) == 2
    assert "multi" in capsys.readouterr().err


@pytest.mark.slow
def test_groups_in_worker_processes_match_inline(tmp_path):
    cfgs = [TeacherStudentConfig(**TINY, multi=m) for m in (1, 2)]
    a = run(cfgs, store=tmp_path / "a", workers=1)
    b = run(cfgs, store=tmp_path / "b", workers=2)
    for ea, eb in zip(a["experiments"], b["experiments"]):
        for s in (0, 1):
            wa = load_state(f"{ea}/seed_{s}/final.pt")["student"]["weights"]
            wb = load_state(f"{eb}/seed_{s}/final.pt")["student"]["weights"]
            assert all(torch.equal(u, v) for u, v in zip(wa, wb))


def test_training_shows_a_progress_bar(tmp_path, capsys):
    """Teacher–student training draws the package's progress bar (`ticketlab.core.progress.bar`)
    like every other loop (issue 17), and none when progress is off."""
    from ticketlab.api import teacher_student
    cfg = TeacherStudentConfig(**{**TINY, "seeds": 1, "steps": 40, "log_every": 20})
    teacher_student(cfg, store=tmp_path / "quiet", verbose=False)
    assert "step" not in capsys.readouterr().err
    teacher_student(cfg, store=tmp_path / "loud", verbose=True)
    err = capsys.readouterr().err
    assert "/40 [" in err and "step/s" in err


def test_on_an_accelerator_divergence_is_read_at_each_record(tmp_path, monkeypatch):
    # issue #16: a per-step read of the loss waits for an accelerator; there the stack's running loss
    # is read where it records or checkpoints. The same code path, forced on the CPU: the same results,
    # and a diverging stack stops at the first record after its losses became infinite.
    from ticketlab.training import device as _device
    each = api.teacher_student(TeacherStudentConfig(**TINY), store=tmp_path / "each", out=tmp_path / "o1")
    monkeypatch.setattr(_device, "reads_are_free", lambda dev: False)
    late = api.teacher_student(TeacherStudentConfig(**TINY), store=tmp_path / "late", out=tmp_path / "o2")
    untimed = lambda rows: [{k: v for k, v in r.items() if not k.startswith("stack_wall")} for r in rows]
    assert untimed(late["rows"]) == untimed(each["rows"])
    res = api.teacher_student(TeacherStudentConfig(**{**TINY, "lr": 1e12}), store=tmp_path / "bad", out=tmp_path / "o3")
    exp = Path(res["experiments"][0])
    for s in (0, 1):
        summary = json.loads((exp / f"seed_{s}" / "summary.json").read_text(), parse_constant=lambda c: 1 / 0)
        assert summary["diverged"]["iteration"] == TINY["log_every"]  # the first read, not the first bad step
        rows = [json.loads(r) for r in (exp / f"seed_{s}" / "metrics.jsonl").read_text().splitlines()]
        assert [r["iter"] for r in rows] == [0, TINY["log_every"]] and rows[-1]["eval_mse"] is None
    assert res["rows"][0]["n_diverged"] == 2


def test_a_diverging_run_stops_at_once_and_is_counted_not_averaged(tmp_path, capsys):
    """Divergence is a result (issue 17): a huge learning rate makes the loss infinite; each run's
    summary says `diverged at iteration N`, the stack stops at once, the tables count the runs as
    diverged instead of averaging them, `ls` shows it, and plots leave them out without failing."""
    from ticketlab.reports.teacher_student_tables import short_points
    cfg = TeacherStudentConfig(**{**TINY, "lr": 1e12})
    res = api.teacher_student(cfg, store=tmp_path / "s", out=tmp_path / "out")
    exp = Path(res["experiments"][0])
    for s in (0, 1):
        summary = json.loads((exp / f"seed_{s}" / "summary.json").read_text(), parse_constant=lambda c: 1 / 0)
        n = summary["diverged"]["iteration"]
        assert 1 <= n < 20 and summary["steps"] <= n  # stopped at once, not after 300 steps
        rows = [json.loads(r) for r in (exp / f"seed_{s}" / "metrics.jsonl").read_text().splitlines()]
        assert rows[0]["eval_mse"] is not None and rows[-1]["eval_mse"] is None
    [row] = res["rows"]
    assert row["seeds"] == 0 and row["n_diverged"] == 2 and "layers" not in row
    assert short_points(res["rows"])[0]["seeds"] == "0 + 2 diverged"
    main(["ls", "--store", str(tmp_path / "s")])
    assert "2 runs, 2 diverged" in capsys.readouterr().out
