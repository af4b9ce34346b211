"""Pruning at init: SNIP, GraSP and SynFlow scores against direct computations; exact one-shot masks."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ticketlab.core import distributions as D
from ticketlab.core.errors import ConfigError
from ticketlab.methods.saliency import grasp, masks_from_scores, prune_at_init, snip, synflow, synflow_masks

torch.set_num_threads(1)


def tiny(seed=0, bias=True):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 3, bias=bias), nn.Tanh(), nn.Linear(3, 2, bias=bias))


def weights(model):
    return {n: p for n, p in model.named_parameters() if n.endswith("weight")}


def batch(seed=1, n=6):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g), torch.randint(0, 2, (n,), generator=g)


def test_snip_is_abs_grad_times_weight():
    model, (x, y) = tiny(), batch()
    s = snip(model, x, y, weights(model))
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    for n, p in weights(model).items():
        assert torch.allclose(s[n], (p.grad * p).abs().detach())
        assert not s[n].requires_grad


def test_grasp_is_weight_times_hessian_gradient():
    model, (x, y) = tiny(bias=False), batch()
    T = 3.0
    w = weights(model)
    names = list(w)
    sizes = [w[n].numel() for n in names]
    flat0 = torch.cat([w[n].detach().reshape(-1) for n in names])

    def loss_of(flat):  # the same network as a function of all its weights
        a, b = flat.split(sizes)
        h = torch.tanh(x @ a.view(3, 4).T)
        return F.cross_entropy((h @ b.view(2, 3).T) / T, y)

    g = torch.autograd.functional.jacobian(loss_of, flat0)
    H = torch.autograd.functional.hessian(loss_of, flat0)
    want = (flat0 * (H @ g)).split(sizes)
    s = grasp(model, x, y, w, temperature=T)
    for n, v in zip(names, want):
        assert torch.allclose(s[n].reshape(-1), v, atol=1e-6, rtol=1e-4)


def test_synflow_closed_form_and_model_untouched():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3, bias=False), nn.ReLU(), nn.Linear(3, 2, bias=False))
    model[0].weight.data[0, 0] = -2.0  # a negative weight: SynFlow uses |w|
    before = {k: v.clone() for k, v in model.state_dict().items()}
    s = synflow(model, (4,), weights(model))
    A, B = model[0].weight.detach().double().abs(), model[2].weight.detach().double().abs()
    # R = 1ᵀ|B||A|1: dR/dA_ij = (1ᵀ|B|)_i, dR/dB_ki = (|A|1)_i
    assert torch.allclose(s["0.weight"], A * B.sum(0)[:, None])
    assert torch.allclose(s["2.weight"], B * A.sum(1)[None, :])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    masked = synflow(model, (4,), weights(model), masks={"0.weight": torch.zeros(3, 4, dtype=torch.bool)})
    assert (masked["0.weight"] == 0).all() and (masked["2.weight"] == 0).all()  # no flow left


def test_masks_from_scores_global_and_per_layer_counts():
    g = torch.Generator().manual_seed(0)
    scores = {"a": torch.rand(30, 20, generator=g), "b": torch.rand(10, 30, generator=g) * 0.1,
              "c": torch.rand(5, 10, generator=g)}
    m = masks_from_scores(scores, 0.9, dense=["c"])
    assert m["c"].all()
    kept = int(m["a"].sum()) + int(m["b"].sum())
    assert kept == D.nnz(900, 0.9)
    # global: one threshold over a and b; b's small scores lose everything (layer collapse)
    kept_s = torch.cat([scores[n][m[n]] for n in ("a", "b")])
    gone_s = torch.cat([scores[n][~m[n]] for n in ("a", "b")])
    assert kept_s.min() >= gone_s.max()
    assert int(m["b"].sum()) == 0
    e = masks_from_scores(scores, 0.9, distribution="erk")
    target = D.erdos_renyi_kernel({n: tuple(s.shape) for n, s in scores.items()}, 0.9)
    for n in scores:
        assert int(e[n].sum()) == D.nnz(scores[n].numel(), target[n])
        assert (scores[n][e[n]].min() >= scores[n][~e[n]].max()) if (~e[n]).any() else True
    with pytest.raises(ConfigError):
        masks_from_scores(scores, 0.9, distribution="gaussian")


@pytest.mark.parametrize("method", ["snip", "grasp", "synflow"])
def test_prune_at_init_exact_global_density(method):
    from ticketlab.models import create_model, prunable_parameters
    model = create_model("lenet5", input_shape=(1, 16, 16), num_classes=4, seed=0)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 1, 16, 16, generator=g), torch.randint(0, 4, (16,), generator=g)
    m = prune_at_init(method, model, 0.95, x=x, y=y, input_shape=(1, 16, 16), synflow_iterations=5,
                      dense=["fc2.weight"])
    sizes = {n: p.numel() for n, p in prunable_parameters(model).items()}
    assert m["fc2.weight"].all()
    sparse_total = sum(v for n, v in sizes.items() if n != "fc2.weight")
    assert sum(int(m[n].sum()) for n in sizes if n != "fc2.weight") == D.nnz(sparse_total, 0.95)


def test_synflow_iterations_prune_progressively():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16, bias=False), nn.ReLU(), nn.Linear(16, 4, bias=False))
    one = synflow_masks(model, (8,), 0.9, iterations=1)
    many = synflow_masks(model, (8,), 0.9, iterations=10)
    for m in (one, many):
        assert sum(int(v.sum()) for v in m.values()) == D.nnz(8 * 16 + 16 * 4, 0.9)
    one_shot = masks_from_scores(synflow(model, (8,), weights(model)), 0.9)
    assert all(torch.equal(one[n], one_shot[n]) for n in one)
    assert math.isclose(sum(int(v.sum()) for v in many.values()), 20)
    with pytest.raises(ConfigError):
        prune_at_init("snip", model, 0.9)  # needs a batch
