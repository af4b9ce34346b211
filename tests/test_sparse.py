"""Dynamic sparse training: the updater's exact counts, optimizer-state handling, schedules, resume."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ticketlab.core import distributions as D
from ticketlab.core.errors import ConfigError
from ticketlab.core.schedules import drop_fraction, gmp_sparsity
from ticketlab.methods.sparse import GMP, SET, SNFS, RigL, Static, Updater, sparsify, top_k
from ticketlab.methods.sparse.bench import update_cost
from ticketlab.methods.sparse.updater import _sorted_top_k

from gpu_marks import gpu, needs_cuda

torch.set_num_threads(1)


# --- selection ---------------------------------------------------------------------------------------

def naive_top(v, k, pos, largest=True):
    """Reference: sort by (score, position) and take k."""
    key = sorted(range(len(v)), key=lambda i: ((-v[i] if largest else v[i]), pos[i]))
    return sorted(pos[i] for i in key[:k])


@pytest.mark.parametrize("select", ["per row", "sorted"])
@pytest.mark.parametrize("n", [7, 300, 40000])
def test_top_k_is_exact_with_ties_to_the_lower_position(n, select):
    # "sorted": the batched path of a stack on an accelerator (`_sorted_top_k`), here on the CPU
    pick = top_k if select == "per row" else _sorted_top_k
    g = torch.Generator().manual_seed(n)
    for trial in range(4):
        v = torch.randint(0, 5 if trial % 2 else 1000, (2, n), generator=g).float()  # many ties, or few
        pos = torch.stack([torch.randperm(n, generator=g) for _ in range(2)])
        for k in (1, n // 3, n - 1):
            for largest in (True, False):
                for p in (pos, None):  # by the given positions, or by column
                    cols = pick(v, k, largest=largest, positions=p)
                    assert cols.shape == (2, k)
                    for r in range(2):
                        at = p[r] if p is not None else torch.arange(n)
                        got = sorted(at[cols[r]].tolist())
                        assert got == naive_top(v[r].tolist(), k, at.tolist(), largest), (k, largest)


@pytest.mark.parametrize("meth", [RigL(update_interval=2, end_step=20), SET(update_interval=2, end_step=20),
                                  GMP(begin_step=2, end_step=10, frequency=2)], ids=["rigl", "set", "gmp"])
def test_the_sorted_selection_updates_masks_as_the_per_row_one(meth, monkeypatch):
    from ticketlab.methods.sparse import updater
    targets = [D.uniform(MLP_SHAPES, 0.8), D.erdos_renyi_kernel(MLP_SHAPES, 0.9), D.uniform(MLP_SHAPES, 0.8)]
    per_row = stacked_and_alone(meth, targets, 13)[0]
    monkeypatch.setattr(updater, "top_k", lambda scores, k, largest=True, positions=None:
                        _sorted_top_k(scores, k, largest, positions) if k else top_k(scores, k))
    batched = stacked_and_alone(meth, targets, 13)[0]
    assert all(torch.equal(per_row.masks[n], batched.masks[n]) for n in MLP_SHAPES)
    assert per_row.history == batched.history


@gpu
@needs_cuda
def test_top_k_on_cuda_picks_what_the_cpu_picks():
    g = torch.Generator().manual_seed(0)
    v = torch.randint(0, 7, (16, 50_000), generator=g).float()
    pos = torch.stack([torch.randperm(50_000, generator=g) for _ in range(16)])
    for largest in (True, False):
        on_cpu = top_k(v, 999, largest=largest, positions=pos)
        on_cuda = top_k(v.cuda(), 999, largest=largest, positions=pos.cuda()).cpu()
        assert torch.equal(pos.gather(1, on_cpu).sort(1).values, pos.gather(1, on_cuda).sort(1).values)


# --- a hand-computed RigL update (jaxpruner style) --------------------------------------------------

W0 = [0.9, -0.1, 0.0, 0.5, 0.0, 0.0, -0.3, 0.0]
MASK0 = [1, 1, 0, 1, 0, 0, 1, 0]
GRAD = [0.0, 0.8, 0.2, -0.05, -0.6, 0.1, 0.05, 0.3]
# drop the k smallest |w| of the active {0, 1, 3, 6}; grow the k largest |g| among the rest and the
# just-dropped: k = floor(4 f)
EXPECTED = {0.0: [0, 1, 3, 6], 0.25: [0, 1, 3, 6], 0.5: [0, 1, 3, 4], 0.75: [0, 1, 4, 7], 1.0: [1, 2, 4, 7]}


@pytest.mark.parametrize("f", sorted(EXPECTED))
def test_rigl_update_by_hand(f):
    w = nn.Parameter(torch.tensor(W0))
    opt = torch.optim.Adam([w], lr=0.0)  # lr 0: the state fills, the weights stay put
    meth = RigL(update_interval=1, begin_step=1, drop_fraction=f, drop_fraction_decay="constant")
    u = Updater(meth, masks={"w": torch.tensor(MASK0, dtype=torch.bool)}, seed=0).attach(opt, {"w": w})
    w.grad = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])  # step 0: no update; masked grad
    opt.step()
    st = opt.state[w]
    assert (st["exp_avg"][[2, 4, 5, 7]] == 0).all() and (st["exp_avg"][[0, 1, 3, 6]] != 0).all()
    before = {k: v.clone() for k, v in st.items()}
    w.grad = torch.tensor(GRAD)
    opt.step()  # step 1: update step; RigL skips the optimizer step
    assert sorted(u.masks["w"].nonzero().squeeze(1).tolist()) == EXPECTED[f]
    assert int(st["step"]) == 1  # Adam did not step
    new = set(EXPECTED[f]) - {0, 1, 3, 6}
    gone = {0, 1, 3, 6} - set(EXPECTED[f])
    for i in range(8):
        if i in new or i in gone or not MASK0[i]:
            assert w[i] == 0 and st["exp_avg"][i] == 0 and st["exp_avg_sq"][i] == 0, i
        else:  # kept, or dropped and regrown at once: value and state untouched
            assert w[i] == W0[i] and st["exp_avg"][i] == before["exp_avg"][i], i
    assert u.dense_grad_captures == 1
    row = u.history[-1]
    assert row["grown"]["w"] == [len(new)] and row["dropped"]["w"] == [len(gone)]


def test_grown_weights_start_at_zero_even_if_stale_values_were_there():
    w = nn.Parameter(torch.tensor(W0))
    opt = torch.optim.SGD([w], lr=0.1, momentum=0.9)
    u = Updater(RigL(update_interval=1, begin_step=1, drop_fraction=0.5, drop_fraction_decay="constant"),
                masks={"w": torch.tensor(MASK0, dtype=torch.bool)}, seed=0).attach(opt, {"w": w})
    w.grad = torch.ones(8)
    opt.step()
    with torch.no_grad():  # corrupt inactive entries: growth must still start from exact zeros
        w[4] = 5.0
        opt.state[w]["momentum_buffer"][4] = 3.0
    w.grad = torch.tensor(GRAD)
    opt.step()
    assert bool(u.masks["w"][4]) and w[4] == 0 and opt.state[w]["momentum_buffer"][4] == 0


# --- properties over methods, optimizers, plain and stacked parameters --------------------------------

def mlp(seed, R=None):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 5))


def stacked_params(models):
    """[R, ...] parameters of R MLPs and a functional forward on x [R, B, 20]."""
    names = [n for n, _ in models[0].named_parameters()]
    ps = {n: nn.Parameter(torch.stack([dict(m.named_parameters())[n].detach() for m in models])) for n in names}

    def forward(x):
        for i in (0, 2, 4):
            x = torch.baddbmm(ps[f"{i}.bias"].unsqueeze(1), x, ps[f"{i}.weight"].transpose(1, 2))
            if i < 4:
                x = x.relu()
        return x
    return ps, forward


METHODS = {
    "rigl": lambda: RigL(update_interval=3, end_step=30),
    "set": lambda: SET(update_interval=3, end_step=30),
    "snfs": lambda: SNFS(update_interval=3, end_step=30),
    "gmp": lambda: GMP(begin_step=2, end_step=20, frequency=4),
}


@pytest.mark.parametrize("optim", ["sgd", "adam"])
@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("R", [None, 3])
def test_density_exact_and_pruned_state_zero_after_every_step(method, optim, R):
    models = [mlp(s) for s in range(R or 1)]
    if R is None:
        ps = {n: p for n, p in models[0].named_parameters()}
        fwd = lambda x: models[0](x[0]).unsqueeze(0)  # noqa: E731
        seed = 0
    else:
        ps, fwd = stacked_params(models)
        seed = [10, 11, 12]
    weights = {n: p for n, p in ps.items() if n.endswith("weight")}
    shapes = {n: tuple(p.shape[1:] if R else p.shape) for n, p in weights.items()}
    targets = D.erdos_renyi_kernel(shapes, 0.85)
    opt = (torch.optim.SGD(ps.values(), lr=0.05, momentum=0.9, weight_decay=1e-3) if optim == "sgd"
           else torch.optim.Adam(ps.values(), lr=1e-2, amsgrad=True))
    meth = METHODS[method]()
    u = Updater(meth, targets, seed=seed).attach(opt, weights)
    g = torch.Generator().manual_seed(0)
    n_upd, last, checked = 0, None, 0
    for t in range(32):
        x = torch.randn(R or 1, 16, 20, generator=g)
        y = torch.randint(0, 5, (R or 1, 16), generator=g)
        opt.zero_grad()
        F.cross_entropy(fwd(x).transpose(1, 2), y).backward()
        opt.step()
        n_upd += meth.is_update(t)
        last = t if meth.is_update(t) else last
        for n, p in weights.items():
            m = u.masks[n]
            N = math.prod(shapes[n])
            if method == "gmp":
                want = D.nnz(N, meth.sparsity_at(last, targets[n])) if last is not None else N
            else:
                want = D.nnz(N, targets[n])
            per_slice = m.view(R or 1, -1).sum(1)
            assert (per_slice == want).all(), (n, t, per_slice.tolist(), want)
            assert (p[~m] == 0).all()
            moments = {k: v for k, v in opt.state[p].items() if torch.is_tensor(v) and v.shape == p.shape}
            checked += len(moments)  # none before the first step taken (RigL skips its update steps' steps)
            for k, v in moments.items():
                assert (v[~m] == 0).all(), (n, k, t)
    assert checked >= len(weights) * 20  # the state was there to check on most steps
    assert len(u.history) == n_upd > 2
    if method == "gmp":  # reached the final targets
        assert all(int(u.masks[n].view(R or 1, -1).sum(1)[0]) == D.nnz(math.prod(shapes[n]), targets[n])
                   for n in weights)
    assert u.dense_grad_captures == (n_upd if method == "rigl" else 0)


MLP_SHAPES = {"0.weight": (64, 20), "2.weight": (32, 64), "4.weight": (5, 32)}  # `mlp`'s weights


def stacked_and_alone(meth, targets, steps, make=lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9)):
    """A stacked updater over R = len(targets) MLPs (seeds 5, 6, ...; model r at sparsities targets[r])
    and R plain updaters of the same models alone, stepped `steps` times with the same gradients.
    Returns (stacked updater, plain updaters, stacked weights, plain weights, layer shapes)."""
    R = len(targets)
    ps, _ = stacked_params([mlp(s) for s in range(R)])
    sw = {n: p for n, p in ps.items() if n.endswith("weight")}
    shapes = {n: tuple(p.shape[1:]) for n, p in sw.items()}
    plain = [{n: nn.Parameter(p.detach()[r].clone()) for n, p in sw.items()} for r in range(R)]
    opts = [make(pp.values()) for pp in plain]
    ups = [Updater(meth, targets[r], seed=5 + r).attach(o, pp) for r, (o, pp) in enumerate(zip(opts, plain))]
    stacked = {n: nn.Parameter(p.detach().clone()) for n, p in sw.items()}
    sopt = make(stacked.values())
    sup = Updater(meth, targets if len({repr(t) for t in targets}) > 1 else targets[0],
                  seed=[5 + r for r in range(R)]).attach(sopt, stacked)
    g = torch.Generator().manual_seed(1)
    for t in range(steps):
        grads = {n: torch.randn(R, *shapes[n], generator=g) for n in sw}
        for n in sw:
            stacked[n].grad = grads[n].clone()
            for r in range(R):
                plain[r][n].grad = grads[n][r].clone()
        sopt.step()
        for o in opts:
            o.step()
    return sup, ups, stacked, plain, shapes


def test_stacked_slices_match_separate_models():
    """A stacked updater with seeds [a, b] does to slice r exactly what a plain one with seed r does."""
    shapes = MLP_SHAPES
    for meth in (RigL(update_interval=2, end_step=20), SET(update_interval=2, end_step=20)):
        sup, ups, stacked, plain, _ = stacked_and_alone(meth, [D.uniform(shapes, 0.8)] * 2, 12)
        for r in range(2):
            for n in shapes:
                assert torch.equal(sup.masks[n][r], ups[r].masks[n])
                assert torch.equal(stacked[n].detach()[r], plain[r][n].detach())


@pytest.mark.parametrize("meth", [RigL(update_interval=2, end_step=20), SET(update_interval=2, end_step=20),
                                  SNFS(update_interval=2, end_step=20), GMP(begin_step=2, end_step=10, frequency=2),
                                  Static()], ids=["rigl", "set", "snfs", "gmp", "static"])
@pytest.mark.parametrize("optim", ["sgd", "adam"])
def test_models_at_different_sparsities_stack_and_match_separate_models(meth, optim):
    """The points of a sparse sweep in one stack: slices with their own sparsities (one of them keeping a
    layer dense) get exactly what each model gets alone: masks, weights, counts and log rows."""
    R = 4
    shapes = MLP_SHAPES
    # slices 0-1 share a point (one block); slice 2 keeps the output layer dense; slice 3 is ERK
    targets = [D.uniform(shapes, 0.8), D.uniform(shapes, 0.8), {**D.uniform(shapes, 0.5), "4.weight": 0.0},
               D.erdos_renyi_kernel(shapes, 0.9)]
    make = (lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9)) if optim == "sgd" else \
        (lambda ps: torch.optim.Adam(ps, lr=0.01))
    sup, ups, stacked, plain, _ = stacked_and_alone(meth, targets, 13, make)
    assert [len(L.blocks) for L in sup.layers.values()] == [3, 3, 3]  # slices 0-1 share one
    shares = sup.replica_state_dicts()
    for r in range(R):
        alone = ups[r].state_dict()
        for n in shapes:
            want = alone["masks"].get(n, torch.ones(shapes[n], dtype=torch.bool))  # a dense layer is not masked
            assert torch.equal(sup.masks[n][r], want), (r, n)
            assert torch.allclose(stacked[n].detach()[r], plain[r][n].detach(), atol=1e-6), (r, n)
        assert len(shares[r]["history"]) == len(alone["history"]) == (0 if meth.name == "static" else
                                                                     5 if meth.name == "gmp" else 7)
        for mine, own in zip(shares[r]["history"], alone["history"]):
            for key in ("dropped", "grown", "nnz"):
                assert mine[key] == own[key], (r, key)  # a layer the model keeps dense is not in its share
        assert set(shares[r]["masks"]) == set(alone["masks"]) and set(shares[r]["buffers"]) == set(alone["buffers"])
    with pytest.raises(ConfigError, match="one sparsity dict per model"):
        Updater(meth, targets[:2], seed=[5, 6, 7])
    if meth.name != "static":
        # the stacked log keeps one count per slice where the slices differ, and the shares join back
        assert isinstance(sup.history[-1]["nnz"]["0.weight"], list)
        joined = Updater.join_states(shares)
        assert joined["history"] == sup.state_dict()["history"]


@pytest.mark.parametrize("meth", [SNFS(update_interval=2, end_step=20), SET(update_interval=2, end_step=20)],
                         ids=["snfs", "set"])
def test_a_stacked_updater_saves_each_model_what_it_would_save_alone(meth):
    """Each run of a stacked group saves its own share of the updater's state (not R models' masks),
    equal to the state of the model trained alone; the shares join back into the stacked state, and a
    checkpoint written before the split (every run holding the group's state) still loads."""
    shapes = MLP_SHAPES
    sup, ups, _, _, _ = stacked_and_alone(meth, [D.uniform(shapes, 0.8)] * 2, 7)
    shares = sup.replica_state_dicts()
    assert len(shares) == 2
    for r, (share, alone) in enumerate(zip(shares, (u.state_dict() for u in ups))):
        assert share["seeds"] == alone["seeds"] == [5 + r] and share["step"] == alone["step"]
        assert share["history"] == alone["history"] and len(alone["history"]) == 4  # updates at steps 0, 2, 4, 6
        for part in ("masks", "buffers"):
            assert set(share[part]) == set(alone[part])
            assert all(torch.allclose(share[part][n].float(), alone[part][n].float()) for n in share[part])
    assert bool(shares[0]["buffers"]) == (meth.name == "snfs")  # SNFS keeps a momentum buffer per layer
    whole = sup.state_dict()
    for old_style in (False, True):  # the shares, or every run holding the group's state
        joined = Updater.join_states([whole, whole] if old_style else shares)
        assert joined["seeds"] == [5, 6] and joined["history"] == whole["history"]
        assert all(torch.equal(joined["masks"][n], whole["masks"][n]) for n in whole["masks"])
        assert all(torch.equal(joined["buffers"][n], whole["buffers"][n]) for n in whole["buffers"])
    alone = ups[0].replica_state_dicts()  # not stacked: its one state, unchanged by the join
    assert len(alone) == 1 and Updater.join_states(alone) is alone[0] and alone[0]["seeds"] == [5]


def test_rigl_skips_the_whole_optimizer_step_only_on_update_steps():
    model = mlp(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    params = {n: p for n, p in model.named_parameters() if n.endswith("weight")}
    u = Updater(RigL(update_interval=5, end_step=100), D.uniform({n: p.shape for n, p in params.items()}, 0.5),
                seed=0).attach(opt, params)
    x, y = torch.randn(8, 20), torch.randint(0, 5, (8,))
    for t in range(7):
        bias = model[0].bias.detach().clone()
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        assert torch.equal(model[0].bias, bias) == (t in (0, 5))  # biases too: the whole step is skipped
    assert u.dense_grad_captures == 2


def test_snfs_grows_by_momentum_not_by_the_last_gradient():
    w = nn.Parameter(torch.tensor([1.0, 0.0, 0.0, 0.0]))
    opt = torch.optim.SGD([w], lr=0.0)
    meth = SNFS(update_interval=1, begin_step=2, drop_fraction=1.0, drop_fraction_decay="constant", momentum=0.9)
    u = Updater(meth, masks={"w": torch.tensor([True, False, False, False])}, seed=0).attach(opt, {"w": w})
    for g in ([0.0, 5.0, 0.0, 0.0], [0.0, 5.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0]):
        w.grad = torch.tensor(g)
        opt.step()
    # momentum at step 2: [0, 5·0.81 + 5·0.9, 3, 0] -> grow index 1, although the last gradient favours 2
    assert u.masks["w"].nonzero().squeeze(1).tolist() == [1]


def test_set_growth_is_random_but_deterministic():
    def run(seed):
        w = nn.Parameter(torch.randn(50, 40, generator=torch.Generator().manual_seed(0)))
        opt = torch.optim.SGD([w], lr=0.0)
        u = Updater(SET(update_interval=1, drop_fraction=0.5, drop_fraction_decay="constant"), {"w": 0.9},
                    seed=seed).attach(opt, {"w": w})
        w.grad = torch.zeros_like(w)
        opt.step()
        return u.masks["w"], u.dense_grad_captures
    (a, ca), (b, _), (c, _) = run(1), run(1), run(2)
    assert torch.equal(a, b) and not torch.equal(a, c) and ca == 0
    assert int(a.sum()) == D.nnz(2000, 0.9)


# --- schedules ----------------------------------------------------------------------------------------

def test_cosine_drop_fraction_values():
    kw = dict(initial=0.3, decay="cosine", end_step=1000)
    assert drop_fraction(0, **kw) == 0.3
    assert drop_fraction(250, **kw) == pytest.approx(0.15 * (1 + math.cos(math.pi / 4)))
    assert drop_fraction(500, **kw) == pytest.approx(0.15)
    assert drop_fraction(1000, **kw) == 0.0 and drop_fraction(5000, **kw) == 0.0
    # official quirk: t is the raw step, T = end - begin
    quirk = drop_fraction(300, initial=0.3, begin_step=200, end_step=800)
    assert quirk == pytest.approx(0.15 * (1 + math.cos(math.pi / 2)))
    assert drop_fraction(123, initial=0.3, decay="constant") == 0.3
    m = RigL(update_interval=100, end_step=750)
    assert [t for t in range(1000) if m.is_update(t)] == [0, 100, 200, 300, 400, 500, 600, 700]
    assert m.drop_fraction_at(375) == pytest.approx(0.15)
    with pytest.raises(ConfigError):
        RigL(end_step=None)  # cosine needs an end
    with pytest.raises(ConfigError):
        SET(update_interval=0, end_step=10)


def test_gmp_cubic_values():
    kw = dict(final=0.9, begin_step=100, end_step=1100)
    assert gmp_sparsity(0, **kw) == 0.0 and gmp_sparsity(100, **kw) == 0.0
    assert gmp_sparsity(600, **kw) == pytest.approx(0.9 * (1 - 0.5 ** 3))
    assert gmp_sparsity(350, **kw) == pytest.approx(0.9 * (1 - 0.75 ** 3))
    assert gmp_sparsity(1100, **kw) == pytest.approx(0.9) and gmp_sparsity(9999, **kw) == pytest.approx(0.9)
    assert gmp_sparsity(600, initial=0.5, **kw) == pytest.approx(0.9 + (0.5 - 0.9) * 0.125)
    g = GMP(begin_step=100, end_step=1050, frequency=200)
    assert [t for t in range(2000) if g.is_update(t)] == [100, 300, 500, 700, 900, 1050]  # end step included


# --- state, resume, plain user code ----------------------------------------------------------------

def train(model, opt, steps, start=0):
    g = torch.Generator().manual_seed(42)
    data = [(torch.randn(16, 20, generator=g), torch.randint(0, 5, (16,), generator=g)) for _ in range(steps)]
    for x, y in data[start:]:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()


@pytest.mark.parametrize("method", ["rigl", "snfs"])
def test_state_dict_resume_keeps_connections_grown_at_zero(method):
    meth = RigL(update_interval=4, end_step=40) if method == "rigl" else SNFS(update_interval=4, end_step=40)

    def setup():
        model = mlp(0)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        params = {n: p for n, p in model.named_parameters() if n.endswith("weight")}
        return model, opt, params, Updater(meth, D.uniform({n: p.shape for n, p in params.items()}, 0.9), seed=0)

    model, opt, params, u = setup()
    u.attach(opt, params)
    train(model, opt, 30)

    model2, opt2, params2, u2 = setup()
    u2.attach(opt2, params2)
    train(model2, opt2, 9)  # the update at step 8 just grew connections at zero
    grown_at_zero = sum(int(((p == 0) & u2.masks[n]).sum()) for n, p in params2.items())
    assert grown_at_zero > 0  # rebuilding masks from weight != 0 would lose these
    saved = (model2.state_dict(), opt2.state_dict(), u2.state_dict())
    model3, opt3, params3, u3 = setup()
    model3.load_state_dict(saved[0])
    opt3.load_state_dict(saved[1])
    u3.load_state_dict(saved[2])  # before attach, as fit does
    u3.attach(opt3, params3)
    assert u3.step == 9 and all(torch.equal(u3.masks[n], u2.masks[n]) for n in params)
    train(model3, opt3, 30, start=9)
    for n in params:
        assert torch.equal(u.masks[n], u3.masks[n])
        assert torch.equal(params[n], params3[n])
    assert u.history == u3.history
    with pytest.raises(ValueError):
        Updater(SET(update_interval=4, end_step=40), {"0.weight": 0.5}).load_state_dict(saved[2])


def test_sparsify_plain_user_loop_and_static():
    model = mlp(0)
    model.output_layer = "4.weight"
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    u = sparsify(model, opt, Static(), 0.9, distribution="uniform", dense_last=True, seed=3)
    assert set(u.masks) == {"0.weight", "2.weight"}  # the output layer is dense: not masked
    first = {n: m.clone() for n, m in u.masks.items()}
    train(model, opt, 10)
    assert all(torch.equal(first[n], u.masks[n]) for n in first) and u.history == []
    assert all((model.get_parameter(n)[~first[n]] == 0).all() for n in first)
    assert int(first["0.weight"].sum()) == D.nnz(64 * 20, 0.9)
    u.detach()
    train(model, opt, 2)  # detached: no more masking
    assert any((model.get_parameter(n)[~first[n]] != 0).any() for n in first)


def test_update_cost_measures_one_run():
    r = update_cost("mlp", input_shape=(40,), batch=32, interval=4, updates=3, amortise_at=100,
                    model_args={"widths": (64, 64)})
    assert r["step_ms"] > 0 and r["update_ms"] > 0
    assert r["overhead"] == pytest.approx(r["update_ms"] / (100 * r["step_ms"]))


# --- grow_state: what becomes of the optimizer state of inactive weights (issue #18) -------------------

@pytest.mark.parametrize("grow_state", ["zero", "keep"])
def test_grow_state_by_hand(grow_state):
    """The hand-computed RigL update above (f = 0.5: 4 grown, 6 dropped), under Adam: "zero" zeroes a
    grown position's moments, "keep" leaves the moments the dense gradient built there while inactive."""
    w = nn.Parameter(torch.tensor(W0))
    opt = torch.optim.Adam([w], lr=0.0)  # lr 0: the state fills, the weights stay put
    meth = RigL(update_interval=1, begin_step=1, drop_fraction=0.5, drop_fraction_decay="constant")
    u = Updater(meth, masks={"w": torch.tensor(MASK0, dtype=torch.bool)}, seed=0,
                grow_state=grow_state).attach(opt, {"w": w})
    w.grad = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])  # step 0: no update
    opt.step()
    st = opt.state[w]
    inactive = [2, 4, 5, 7]
    if grow_state == "keep":  # the dense gradient reached the inactive positions' moments
        assert torch.equal(st["exp_avg"], 0.1 * torch.arange(1.0, 9.0))
    else:
        assert (st["exp_avg"][inactive] == 0).all()
    before = {k: v.clone() for k, v in st.items()}
    w.grad = torch.tensor(GRAD)
    opt.step()  # step 1: update step, RigL skips the optimizer step: grows 4 (new), drops 6
    assert sorted(u.masks["w"].nonzero().squeeze(1).tolist()) == EXPECTED[0.5]
    for k in ("exp_avg", "exp_avg_sq"):
        if grow_state == "keep":  # grown 4 and dropped 6 keep their moments, nonzero
            assert torch.equal(st[k], before[k]) and st[k][4] > 0 and st[k][6] > 0
        else:
            assert st[k][4] == 0 and st[k][6] == 0 and st[k][0] == before[k][0]
    assert w[4] == 0 and w[6] == 0 and torch.equal(w[[0, 1, 3]], torch.tensor(W0)[[0, 1, 3]])


@pytest.mark.parametrize("optim", ["sgd", "adam"])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_keep_inactive_weights_stay_exactly_zero_after_every_step(method, optim):
    """Under "keep" the optimizer moves inactive weights (their state tracks the dense gradient), and
    the post-step hook re-zeroes them: after every step, pruned weights are exactly zero, counts exact."""
    torch.manual_seed(0)
    model = mlp(0)
    opt = (torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)
           if optim == "sgd" else torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-3))
    weights = {n: p for n, p in model.named_parameters() if n.endswith("weight")}
    targets = D.erdos_renyi_kernel({n: tuple(p.shape) for n, p in weights.items()}, 0.85)
    meth = METHODS[method]()
    u = Updater(meth, targets, seed=0, grow_state="keep").attach(opt, weights)
    g = torch.Generator().manual_seed(0)
    stale = 0.0
    for t in range(32):
        opt.zero_grad()
        F.cross_entropy(model(torch.randn(16, 20, generator=g)), torch.randint(0, 5, (16,), generator=g)).backward()
        opt.step()
        for n, p in weights.items():
            m = u.masks[n]
            assert (p[~m] == 0).all(), (n, t)
            if method != "gmp":
                assert int(m.sum()) == D.nnz(p.numel(), targets[n])
            key = "momentum_buffer" if optim == "sgd" else "exp_avg"
            if key in opt.state[p]:  # RigL skips the optimizer step at step 0: no state yet
                stale += float(opt.state[p][key][~m].abs().sum())
    assert stale > 0  # the state at inactive positions is not zero: "keep" is not "zero"
    assert len(u.history) > 2


@pytest.mark.parametrize("method", ["static", "gmp"])
def test_no_regrowth_trains_identically_under_zero_and_keep(method):
    """Static and GMP never grow: "keep" changes only the state at inactive positions, so with an
    elementwise optimizer the weights come out bit for bit the same (the docstring's claim)."""
    out = {}
    for gs in ("zero", "keep"):
        model = mlp(0)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-4)
        weights = {n: p for n, p in model.named_parameters() if n.endswith("weight")}
        meth = Static() if method == "static" else GMP(begin_step=2, end_step=14, frequency=4)
        Updater(meth, D.uniform({n: p.shape for n, p in weights.items()}, 0.9), seed=0,
                grow_state=gs).attach(opt, weights)
        train(model, opt, 20)
        out[gs] = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert all(torch.equal(out["zero"][n], out["keep"][n]) for n in out["zero"])


def test_keep_resume_keeps_the_inactive_state():
    """A "keep" run resumed from a checkpoint: attach does not zero the saved state at inactive
    positions, so the resumed run equals the uninterrupted one."""
    meth = RigL(update_interval=4, end_step=40)

    def setup():
        model = mlp(0)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        params = {n: p for n, p in model.named_parameters() if n.endswith("weight")}
        u = Updater(meth, D.uniform({n: p.shape for n, p in params.items()}, 0.9), seed=0, grow_state="keep")
        return model, opt, params, u

    model, opt, params, u = setup()
    u.attach(opt, params)
    train(model, opt, 30)
    model2, opt2, params2, u2 = setup()
    u2.attach(opt2, params2)
    train(model2, opt2, 10)
    saved = (model2.state_dict(), opt2.state_dict(), u2.state_dict())
    model3, opt3, params3, u3 = setup()
    model3.load_state_dict(saved[0])
    opt3.load_state_dict(saved[1])
    u3.load_state_dict(saved[2])
    u3.attach(opt3, params3)
    train(model3, opt3, 30, start=10)
    for n in params:
        assert torch.equal(u.masks[n], u3.masks[n]) and torch.equal(params[n], params3[n])


def test_grow_state_is_checked():
    with pytest.raises(ConfigError, match="grow_state"):
        Updater(Static(), {"w": 0.5}, grow_state="stale")
