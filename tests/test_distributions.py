"""Sparsity distributions (uniform, ER, ERK with re-solve), the first/last-layer policy, exact random masks."""

import hashlib
import math
import os
import subprocess
import sys

import pytest
import torch

from ticketlab.core import distributions as D
from ticketlab.core.errors import ConfigError
from ticketlab.models import create_model, prunable_parameters

torch.set_num_threads(1)


def shapes_of(name):
    model = create_model(name, input_shape=(1, 28, 28), num_classes=10)
    return {n: tuple(p.shape) for n, p in prunable_parameters(model).items()}


# sparse_training.md §5: layer sparsity (4 decimals) and nnz, per S.
LENET300 = {
    0.80: [(0.8378, 38160), (0.5306, 14081), (0.0, 1000)],
    0.90: [(0.9204, 18715), (0.7698, 6906), (0.0, 1000)],
    0.95: [(0.9615, 9052), (0.8887, 3341), (0.0815, 919)],
    0.98: [(0.9846, 3621), (0.9555, 1337), (0.6326, 368)],
    0.99: [(0.9923, 1811), (0.9777, 669), (0.8163, 184)],
}
LENET5 = {
    0.80: [(0.0, 500), (0.8131, 4673), (0.8102, 75928), (0.0, 5000)],
    0.90: [(0.0, 500), (0.9129, 2177), (0.9116, 35374), (0.0, 5000)],
    0.95: [(0.2739, 364), (0.9625, 937), (0.9619, 15226), (0.0, 5000)],
    0.98: [(0.7221, 139), (0.9857, 359), (0.9854, 5827), (0.5428, 2286)],
    0.99: [(0.8611, 70), (0.9928, 180), (0.9927, 2914), (0.7714, 1143)],
}


@pytest.mark.parametrize("model,table", [("lenet300_100", LENET300), ("lenet5", LENET5)])
def test_erk_matches_the_worked_tables(model, table):
    shapes = shapes_of(model)
    assert sum(math.prod(s) for s in shapes.values()) == {"lenet300_100": 266200, "lenet5": 430500}[model]
    for S, expected in table.items():
        s = D.erdos_renyi_kernel(shapes, S)
        got = [(round(v, 4), D.nnz(math.prod(shapes[n]), v)) for n, v in s.items()]
        assert got == expected, (model, S)
        assert D.achieved_sparsity(shapes, s) == pytest.approx(S, abs=2e-5)  # only the floors differ


def test_er_uses_the_first_two_dims_and_solves_the_budget():
    shapes = {"conv": (16, 8, 3, 3), "fc": (10, 64)}
    s = D.erdos_renyi(shapes, 0.8)
    # density ∝ (n_in + n_out)/(n_in n_out): conv from (16, 8) only, unlike ERK
    ratio = (1 - s["conv"]) / (1 - s["fc"])
    assert ratio == pytest.approx(((16 + 8) / (16 * 8)) / ((10 + 64) / (10 * 64)))
    assert D.achieved_sparsity(shapes, s) == pytest.approx(0.8, abs=1e-3)
    k = D.erdos_renyi_kernel(shapes, 0.8)
    assert k["conv"] != pytest.approx(s["conv"])  # ERK counts the kernel dims


def test_erk_resolve_never_overflows_and_power_zero_is_uniform():
    shapes = {"first": (16, 3, 3, 3), "mid": (64, 64, 3, 3), "short": (64, 16, 1, 1), "fc": (10, 64)}
    for S in (0.5, 0.8, 0.9, 0.99):
        s = D.erdos_renyi_kernel(shapes, S)
        assert all(0.0 <= v <= 1.0 for v in s.values())
        assert D.achieved_sparsity(shapes, s) == pytest.approx(S, abs=1e-3)
    # all raw scores 1: every layer at the same sparsity, S up to the floors of the budget
    assert D.erdos_renyi_kernel(shapes, 0.9, power_scale=0.0) == pytest.approx(D.uniform(shapes, 0.9), abs=1e-4)


def test_dense_policy_is_outside_the_budget():
    shapes = shapes_of("lenet300_100")
    names = list(shapes)
    assert D.dense_layers(names, dense_first=True, dense_last=True) == ["fc1.weight", "fc3.weight"]
    assert D.dense_layers(names, dense_last=True, last="fc2.weight") == ["fc2.weight"]
    with pytest.raises(ConfigError):
        D.dense_layers(names, extra=["nope"])
    u = D.uniform(shapes, 0.9, dense=["fc3.weight"])
    assert u == {"fc1.weight": 0.9, "fc2.weight": 0.9, "fc3.weight": 0.0}
    # ERK with the output layer forced dense: the others are solved as if it did not exist
    e = D.erdos_renyi_kernel(shapes, 0.95, dense=["fc3.weight"])
    rest = {n: v for n, v in shapes.items() if n != "fc3.weight"}
    assert {n: e[n] for n in rest} == pytest.approx(D.erdos_renyi_kernel(rest, 0.95))
    assert e["fc3.weight"] == 0.0 and D.achieved_sparsity(shapes, e) < 0.95
    with pytest.raises(ConfigError):
        D.uniform(shapes, 0.9, dense=["fc9.weight"])
    with pytest.raises(ConfigError):
        D.sparsities("gaussian", shapes, 0.9)
    with pytest.raises(ConfigError):
        D.uniform(shapes, 1.5)


def test_counts_are_exact_decimals():
    assert D.nnz(100, 0.29) == 71  # 0.29 * 100 is 28.999999999999996 in floats
    assert D.nnz(1000, 0.0815) == 919 and D.nnz(7, 0.0) == 7 and D.nnz(7, 1.0) == 0


def test_random_masks_exact_and_independent_per_layer():
    shapes = {"a": (30, 40), "b": (7, 5, 3, 3), "c": (10, 30)}
    sp = {"a": 0.9, "b": 0.5, "c": 0.0}
    m = D.random_masks(shapes, sp, seed=3)
    for n, s in sp.items():
        assert m[n].dtype == torch.bool and m[n].shape == shapes[n]
        assert int(m[n].sum()) == D.nnz(math.prod(shapes[n]), s)
    # a layer's mask depends only on (seed, name, shape, sparsity)
    alone = D.random_masks({"a": (30, 40)}, {"a": 0.9}, seed=3)
    assert torch.equal(alone["a"], m["a"])
    assert not torch.equal(D.random_masks(shapes, sp, seed=4)["a"], m["a"])


_CHILD = """
import hashlib, torch
from ticketlab.core import distributions as D
m = D.random_masks({"fc1.weight": (300, 784), "fc2.weight": (100, 300)}, {"fc1.weight": 0.9, "fc2.weight": 0.8}, seed=7)
h = hashlib.sha256()
for n in sorted(m):
    h.update(n.encode()); h.update(m[n].numpy().tobytes())
print(h.hexdigest())
"""


def test_masks_are_the_same_across_processes():
    digests = []
    for hashseed in ("1", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=hashseed, OMP_NUM_THREADS="1")
        out = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, check=True)
        digests.append(out.stdout.strip())
    m = D.random_masks({"fc1.weight": (300, 784), "fc2.weight": (100, 300)},
                       {"fc1.weight": 0.9, "fc2.weight": 0.8}, seed=7)
    h = hashlib.sha256()
    for n in sorted(m):
        h.update(n.encode())
        h.update(m[n].numpy().tobytes())
    assert digests[0] == digests[1] == h.hexdigest()
