"""Tests for ticketlab.core.pruning and ticketlab.core.scores: exact counts, ties, purity, controls, selection."""

from __future__ import annotations

import doctest
import hashlib
import os
import subprocess
import sys

import pytest
import torch

from ticketlab.core import pruning, scores
from ticketlab.core.errors import TicketlabError
from ticketlab.core.masks import count, ones_masks
from ticketlab.core.pruning import (
    PruningError,
    jaccard,
    ladder,
    layer_jaccard,
    n_to_prune,
    prune_global,
    prune_layerwise,
    prune_to_density,
    random_mask_like,
    select,
)
from ticketlab.core.scores import magnitude, random_scores

torch.set_num_threads(1)

LENET = {"fc1.weight": (300, 784), "fc2.weight": (100, 300), "fc3.weight": (10, 100)}
LENET_FRACTIONS = {"fc1.weight": 0.2, "fc2.weight": 0.2, "fc3.weight": 0.1}
SMALL = {"a": (7, 13), "b": (40,), "c": (3, 4, 5)}


def make(shapes, seed, *, ties=True, density=0.7):
    """Random weights (rounded to 1 decimal when `ties`: many equal |w|) and random prior masks."""
    g = torch.Generator().manual_seed(seed)
    params, masks = {}, {}
    for n, s in shapes.items():
        w = torch.randn(s, generator=g)
        params[n] = torch.round(w, decimals=1) if ties else w
        masks[n] = torch.rand(s, generator=g) < density
    return params, masks


def naive_lowest(sc, masks, layers, n):
    """Reference: sort surviving (score, layer position, flat index) in Python, prune the first n."""
    entries = []
    for li, name in enumerate(layers):
        flat_s, flat_m = sc[name].reshape(-1).tolist(), masks[name].reshape(-1).tolist()
        entries += [(s, li, i) for i, (s, m) in enumerate(zip(flat_s, flat_m)) if m]
    entries.sort()
    out = {name: masks[name].clone() for name in masks}
    for _, li, i in entries[:n]:
        out[layers[li]].view(-1)[i] = False
    return out


def naive_remaining(masks, layers):
    return sum(int(masks[n].sum()) for n in layers)


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)


def clones(d):
    return {n: t.clone() for n, t in d.items()}


def checksum(masks):
    h = hashlib.sha256()
    for n in sorted(masks):
        h.update(n.encode())
        h.update(masks[n].numpy().tobytes())
    return h.hexdigest()


# --- global / layerwise equal the naive reference ---------------------------------------------------

@pytest.mark.parametrize("seed,fraction,layers", [
    (0, 0.2, ["a", "b", "c"]),
    (1, 0.5, ["a", "b", "c"]),
    (2, 0.13, ["c", "a"]),          # subset, non-default order: order decides ties
    (3, 0.0, ["a", "b", "c"]),
    (4, 1.0, ["b", "c"]),
    (5, 0.9, ["a", "b", "c"]),
    (6, 0.05, ["b"]),
    (7, 0.37, ["b", "a", "c"]),
])
def test_global_equals_naive_sort(seed, fraction, layers):
    params, masks = make(SMALL, seed)
    sc = magnitude(params)
    n = n_to_prune(naive_remaining(masks, layers), fraction)
    got = prune_global(sc, masks, fraction, layers)
    assert same(got, naive_lowest(sc, masks, layers, n))
    assert naive_remaining(masks, layers) - naive_remaining(got, layers) == n


@pytest.mark.parametrize("seed,fracs", [
    (10, {"a": 0.2, "b": 0.2, "c": 0.1}),
    (11, {"a": 0.5, "c": 1.0}),
    (12, {"b": 0.0, "c": 0.33}),
    (13, {"a": 0.07, "b": 0.91, "c": 0.5}),
])
def test_layerwise_equals_naive_sort(seed, fracs):
    params, masks = make(SMALL, seed)
    sc = magnitude(params)
    want = clones(masks)
    for name, f in fracs.items():
        want[name] = naive_lowest(sc, masks, [name], n_to_prune(int(masks[name].sum()), f))[name]
    assert same(prune_layerwise(sc, masks, fracs), want)


@pytest.mark.parametrize("seed,density", [(20, 0.5), (21, 0.1), (22, 0.7)])
def test_prune_to_density_equals_naive_sort(seed, density):
    params, masks = make(SMALL, seed, density=0.8)
    sc = magnitude(params)
    total = sum(m.numel() for m in masks.values())
    keep = int(density * total + 0.5)
    got = prune_to_density(sc, masks, density)
    assert same(got, naive_lowest(sc, masks, list(SMALL), naive_remaining(masks, SMALL) - keep))
    assert count(got)[0] == keep
    per_layer = prune_to_density(sc, masks, {"a": 0.25, "c": 0.5})
    assert int(per_layer["a"].sum()) == round(0.25 * 91) and int(per_layer["c"].sum()) == 30
    assert torch.equal(per_layer["b"], masks["b"])
    with pytest.raises(ValueError, match="cannot reach density"):
        prune_to_density(sc, masks, 0.95)


# --- exact counts and the LeNet ladder (LTH §2) -----------------------------------------------------

PAPER_PM = {3: 51.3, 7: 21.1, 9: 13.5, 12: 7.0, 15: 3.6, 18: 1.9}


def test_layerwise_counts_follow_integer_recursion_and_ladder_matches_paper():
    params, _ = make(LENET, 30, ties=True)
    masks = ones_masks(params)
    sc = magnitude(params)
    sizes = {n: params[n].numel() for n in LENET}
    alive = dict(sizes)
    lad = ladder(sizes, LENET_FRACTIONS, 20)
    assert len(lad) == 21 and lad[0] == 1.0
    for level in range(1, 21):
        masks = prune_layerwise(sc, masks, LENET_FRACTIONS)
        for n, f in LENET_FRACTIONS.items():
            alive[n] -= int(f * alive[n] + 0.5)   # round half up (no exact .5 ties in float here)
            assert int(masks[n].sum()) == alive[n], (level, n)
        assert count(masks)[0] / 266_200 == pytest.approx(lad[level], abs=1e-12)
    for k, pm in PAPER_PM.items():
        assert round(100 * lad[k], 1) == pm, k
    # The survivors after 20 levels are the largest |w| of each layer: nothing smaller survives.
    for n in LENET:
        kept, gone = sc[n][masks[n]], sc[n][~masks[n]]
        assert kept.min() >= gone.max()


def test_n_to_prune_rounds_half_up_exactly():
    assert [n_to_prune(r, 0.1) for r in (5, 15, 25, 4)] == [1, 2, 3, 0]
    assert n_to_prune(235_200, 0.2) == 47_040 and n_to_prune(0, 0.5) == 0 and n_to_prune(7, 1.0) == 7
    # In floats 0.7 * 45 = 31.499999999999996 would round down; the decimal reading is exact.
    assert 0.7 * 45 < 31.5 and n_to_prune(45, 0.7) == 32 and n_to_prune(90, 0.35) == 32
    for bad in (-0.1, 1.5, float("nan"), "0.2", None):
        with pytest.raises(ValueError, match="fraction"):
            n_to_prune(10, bad)
    with pytest.raises(ValueError, match="remaining"):
        n_to_prune(-1, 0.2)


# --- purity, pruned stays pruned, ties ----------------------------------------------------------------

def test_pure_pruned_stays_pruned_smallest_removed():
    params, masks = make(SMALL, 40, ties=False)
    sc = magnitude(params)
    sc_before, masks_before, params_before = clones(sc), clones(masks), clones(params)
    results = [
        prune_global(sc, masks, 0.3, ["a", "b", "c"]),
        prune_layerwise(sc, masks, {"a": 0.3, "b": 0.6}),
        prune_to_density(sc, masks, 0.2, layers=["a", "c"]),
        random_mask_like(masks, seed=1),
    ]
    assert same(sc, sc_before) and same(masks, masks_before) and same(params, params_before)
    for out in results:
        assert out.keys() == masks.keys()
        for n in masks:
            assert out[n].dtype == torch.bool and out[n] is not masks[n]
    for out in results[:3]:
        for n in masks:
            assert not (out[n] & ~masks[n]).any()      # no pruned entry revived
    glob = results[0]
    removed = torch.cat([sc[n][masks[n] & ~glob[n]] for n in masks])
    kept = torch.cat([sc[n][glob[n]] for n in masks])
    assert removed.numel() == n_to_prune(naive_remaining(masks, SMALL), 0.3)
    assert removed.max() <= kept.min()
    # Pruned entries stay pruned even if their score is the highest of all.
    big = {n: torch.where(masks[n], sc[n], torch.full_like(sc[n], 1e9)) for n in sc}
    assert not (prune_global(big, masks, 0.5, ["a", "b", "c"])["a"] & ~masks["a"]).any()
    # Output masks are independent of the inputs (no aliasing).
    results[1]["c"][:] = False
    assert same(masks, masks_before)


def test_ties_broken_by_lower_flat_index_then_layer_order():
    ones = torch.ones(6, dtype=torch.bool)
    s = {"w": torch.tensor([2.0, 1.0, 1.0, 3.0, 1.0, 1.0])}
    out = prune_layerwise(s, {"w": ones}, {"w": 0.5})["w"]
    assert out.tolist() == [True, False, False, True, False, True]
    # Already-pruned entries do not take a tie slot.
    m = torch.tensor([True, False, True, True, True, True])
    out = prune_layerwise(s, {"w": m}, {"w": 0.4})["w"]   # 5 alive -> prune 2: indices 2 and 4
    assert out.tolist() == [True, False, False, True, False, True]
    # 2-D: flat row-major index; globally, the earlier layer in `layers` loses its ties first.
    s2 = {"x": torch.zeros(2, 2), "y": torch.zeros(3)}
    m2 = {"x": torch.ones(2, 2, dtype=torch.bool), "y": torch.ones(3, dtype=torch.bool)}
    out = prune_global(s2, m2, 0.43, ["y", "x"])         # prune round(3.01) = 3 of 7: all of y
    assert out["y"].tolist() == [False] * 3 and out["x"].all()
    out = prune_global(s2, m2, 0.43, ["x", "y"])
    assert out["x"].tolist() == [[False, False], [False, True]] and out["y"].all()
    # Deterministic: repeated calls agree bit for bit.
    params, masks = make(SMALL, 50)
    sc = magnitude(params)
    assert same(prune_global(sc, masks, 0.4, list(SMALL)), prune_global(sc, masks, 0.4, list(SMALL)))


def test_scores_magnitude_and_random():
    w = torch.tensor([[-2.0, 0.5], [0.0, -0.25]], requires_grad=True)
    m = magnitude({"w": w})["w"]
    assert not m.requires_grad and m.tolist() == [[2.0, 0.5], [0.0, 0.25]]
    m.zero_()
    assert w[0, 0].item() == -2.0                     # a copy, not a view
    p = {"a": torch.empty(3, 4), "b": torch.empty(5)}
    r1, r2 = random_scores(p, 7), random_scores({"b": p["b"]}, 7)
    assert torch.equal(r1["b"], r2["b"])              # depends on the name, not on the other tensors
    assert not torch.equal(r1["a"].reshape(-1)[:5], r1["b"])
    assert not torch.equal(random_scores(p, 8)["a"], r1["a"])
    assert r1["a"].shape == (3, 4) and r1["a"].dtype == torch.float32
    assert ((r1["a"] >= 0) & (r1["a"] < 1)).all()
    assert random_scores(p, 7, dtype=torch.float64)["a"].dtype == torch.float64


# --- random masks ----------------------------------------------------------------------------------

def test_random_mask_like_counts_and_determinism():
    _, masks = make(LENET, 60, density=0.3)
    lay = random_mask_like(masks, seed=3)
    for n in masks:
        assert int(lay[n].sum()) == int(masks[n].sum())
    assert jaccard(lay, masks) < 0.5                   # positions are new, not the old mask
    glob = random_mask_like(masks, seed=3, strategy="global")
    assert count(glob) == count(masks)
    assert any(int(glob[n].sum()) != int(masks[n].sum()) for n in masks)
    assert same(random_mask_like(masks, seed=3), lay)
    assert not same(random_mask_like(masks, seed=4), lay)
    assert not same(random_mask_like(masks, seed=4, strategy="global"), glob)
    # A subset: the other layers are copied; the selected ones keep their total.
    sub = random_mask_like(masks, seed=3, strategy="global", layers=["fc2.weight", "fc3.weight"])
    assert not same(sub, masks)
    assert torch.equal(sub["fc1.weight"], masks["fc1.weight"])
    two = ["fc2.weight", "fc3.weight"]
    assert naive_remaining(sub, two) == naive_remaining(masks, two)
    with pytest.raises(ValueError, match="strategy"):
        random_mask_like(masks, seed=3, strategy="even")


CHILD = """
import hashlib, sys, torch
from ticketlab.core.pruning import random_mask_like
masks = {n: torch.arange(torch.Size(s).numel()).reshape(s) % 3 == 0
         for n, s in [("fc1.weight", (30, 20)), ("fc2.weight", (10, 30)), ("out", (7,))]}
h = hashlib.sha256()
for strategy in ("layerwise", "global"):
    m = random_mask_like(masks, seed=11, strategy=strategy)
    for n in sorted(m):
        h.update(n.encode()); h.update(m[n].numpy().tobytes())
print(h.hexdigest())
"""


def test_random_mask_same_in_another_process_with_other_hash_seed():
    ns: dict = {}
    exec(compile(CHILD.replace("print(h.hexdigest())", "out = h.hexdigest()"), "<child>", "exec"), ns)
    # A hash seed different from this process's (random, unless PYTHONHASHSEED is set), and
    # another thread count: the mask must not depend on either.
    other = "4242" if os.environ.get("PYTHONHASHSEED") != "4242" else "7"
    child = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": other, "OMP_NUM_THREADS": "2"})
    assert child.stdout.strip() == ns["out"]


# --- selection, jaccard, validation ---------------------------------------------------------------

NAMES = ["conv1.weight", "layer1.0.conv1.weight", "layer1.0.conv2.weight", "shortcut.weight",
         "fc.weight"]


def test_select_patterns_exclude_and_typos():
    assert select(NAMES) == NAMES
    assert select(NAMES, include=["layer1.*", "conv1.weight"]) == NAMES[:3]   # given order kept
    assert select(NAMES, exclude=["fc.weight", "shortcut.*"]) == NAMES[:3]
    assert select(NAMES, include="*conv?.weight", exclude="conv1.weight") == NAMES[1:3]
    assert select(iter(NAMES), include=["*.weight"], exclude=["*"]) == []
    with pytest.raises(ValueError, match="'fc1.weight'"):
        select(NAMES, exclude=["fc1.weight"])        # typo in exclude must not prune the output layer
    with pytest.raises(ValueError, match="'Layer1.*'"):
        select(NAMES, include=["Layer1.*"])           # case-sensitive
    with pytest.raises(ValueError, match="strings"):
        select(NAMES, include=[3])


def test_jaccard_hand_computed():
    t, f = True, False
    a = {"x": torch.tensor([[t, t], [f, f]]), "y": torch.tensor([t, t, t]), "only_a": torch.tensor([t])}
    b = {"x": torch.tensor([[t, f], [t, f]]), "y": torch.tensor([t, t, f])}
    # x: inter 1, union 3; y: inter 2, union 3; only_a is not shared.
    assert layer_jaccard(a, b) == {"x": pytest.approx(1 / 3), "y": pytest.approx(2 / 3)}
    assert jaccard(a, b) == pytest.approx(3 / 6)
    assert jaccard(a, a) == 1.0
    empty = {"x": torch.zeros(2, 2, dtype=torch.bool)}
    assert jaccard(empty, empty) == 1.0
    with pytest.raises(ValueError, match="share no"):
        jaccard({"p": torch.ones(1, dtype=torch.bool)}, b)
    with pytest.raises(ValueError, match="shapes"):
        jaccard({"y": torch.ones(2, dtype=torch.bool)}, b)


def test_validation_errors_name_the_problem():
    params, masks = make(SMALL, 70)
    sc = magnitude(params)
    with pytest.raises(ValueError, match="unknown layer 'zz'"):
        prune_global(sc, masks, 0.2, ["a", "zz"])
    with pytest.raises(ValueError, match="unknown layer 'zz'"):
        prune_layerwise(sc, masks, {"zz": 0.2})
    with pytest.raises(ValueError, match="fraction"):
        prune_layerwise(sc, masks, {"a": 1.2})
    with pytest.raises(ValueError, match="fraction"):
        prune_global(sc, masks, -0.2, ["a"])
    with pytest.raises(ValueError, match="no score for layer 'b'"):
        prune_global({"a": sc["a"]}, masks, 0.2, ["a", "b"])
    with pytest.raises(ValueError, match="shape"):
        prune_global({**sc, "a": sc["a"].T}, masks, 0.2, ["a"])
    with pytest.raises(ValueError, match="torch.bool"):
        prune_global(sc, {**masks, "a": masks["a"].float()}, 0.2, ["a"])
    with pytest.raises(ValueError, match="NaN"):
        prune_global({**sc, "b": torch.full((40,), float("nan"))}, masks, 0.2, ["a", "b"])
    with pytest.raises(ValueError, match="not the string"):
        prune_global(sc, masks, 0.2, "a")
    with pytest.raises(ValueError, match="at least one"):
        prune_global(sc, masks, 0.2, [])
    with pytest.raises(ValueError, match="density"):
        prune_to_density(sc, masks, 1.5)
    with pytest.raises(ValueError, match="layers applies only"):
        prune_to_density(sc, masks, {"a": 0.5}, layers=["a"])
    with pytest.raises(ValueError, match="unknown layer"):
        ladder({"a": 10}, {"b": 0.2}, 3)
    with pytest.raises(ValueError, match="levels"):
        ladder({"a": 10}, {"a": 0.2}, -1)
    assert issubclass(PruningError, TicketlabError)    # the CLI prints it as a one-line error


def test_global_pruning_of_lenet_removes_a_fifth_of_its_weights():
    params, masks = make(LENET, 80, ties=False, density=1.0)
    out = prune_global(magnitude(params), masks, 0.2, list(LENET))
    assert count(out)[0] == 266_200 - 53_240


def test_docstring_examples():
    for mod in (pruning, scores):
        result = doctest.testmod(mod, extraglobs={"torch": torch})
        assert result.failed == 0 and result.attempted > 0, mod.__name__
