"""Per-layer sparsity distributions and random sparse masks with exact counts.

How a global sparsity S is spread over the masked layers (Evci et al. 2020, "Rigging the Lottery",
§3 and App.; google-research/rigl ``sparse_utils.get_sparsities_*``; jaxpruner ``sparsity_distributions``):

- `uniform`: every masked layer at S.
- `erdos_renyi` (ER, Mocanu et al. 2018): layer l's density ∝ (n_in + n_out) / (n_in · n_out), from
  the first two dims of the PyTorch layout ([out, in, ...]; the official code reads the last two of
  TF's [..., in, out]: the same numbers).
- `erdos_renyi_kernel` (ERK): density ∝ (Σ dims / Π dims)^power_scale over every kernel dim
  (conv: (kh + kw + c_in + c_out) / (kh · kw · c_in · c_out)).

All three share one signature ``f(shapes, sparsity, *, dense=()) -> {name: layer sparsity}``, with
every name of `shapes` in the result. ER and ERK solve ε in

    ε · Σ_{l∉D} p_l N_l = Σ_{l∉D} (N_l − ⌊S·N_l⌋) − Σ_{l∈D} ⌊S·N_l⌋

so that the achieved sparsity over all layers is S; if some ε·p_l > 1, every layer with the maximal
raw score joins D (dense) and ε is re-solved, until none overflows (docs/sparse_training.md §8).

**First/last-layer policy.** Layers named in `dense` (see `dense_layers`: ``dense_first``,
``dense_last``) are kept dense and left *out of the budget on both sides*, as the official code
treats its custom sparsity map (`first_layer_sparsity=0`, MNIST's dense output layer): the other
layers are at S as if the dense ones did not exist, so the achieved sparsity over all layers is below
S. Report the achieved number (`achieved_sparsity`).

**Counts.** A layer of N weights at sparsity s keeps nnz = N − ⌊s·N⌋ (`nnz`), s read as the decimal it
prints as (so 0.29 · 100 is 29, not 28.999...). `random_masks` draws exactly that many positions,
deterministically from (seed, layer name) in any process (SHA-256 seeds, `scores.name_seed`; never
Python's salted ``hash()``).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Callable, Mapping, Sequence

import torch

from ticketlab.core.errors import ConfigError

Shapes = Mapping[str, Sequence[int]]


# --- counts ----------------------------------------------------------------------------------------

def _check_sparsity(s: float, what: str = "sparsity") -> float:
    if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0.0 <= s <= 1.0 or math.isnan(s):
        raise ConfigError(f"{what} must be a number in [0, 1], got {s!r}")
    return float(s)


def n_zeros(numel: int, sparsity: float) -> int:
    """⌊s·N⌋ with s read as the decimal it prints as (exact: no float artefacts)."""
    return math.floor(Fraction(repr(float(sparsity))) * int(numel))


def nnz(numel: int, sparsity: float) -> int:
    """Weights kept by a layer of `numel` weights at `sparsity`: N − ⌊s·N⌋ (the official count).

    >>> nnz(1000, 0.0815), nnz(100, 0.29)
    (919, 71)
    """
    return int(numel) - n_zeros(numel, sparsity)


def _numel(shape: Sequence[int]) -> int:
    return math.prod(int(d) for d in shape)


def achieved_sparsity(shapes: Shapes, sparsities: Mapping[str, float]) -> float:
    """Sparsity over all layers of `shapes` (those missing from `sparsities` count as dense)."""
    total = sum(_numel(s) for s in shapes.values())
    kept = sum(nnz(_numel(s), sparsities.get(n, 0.0)) for n, s in shapes.items())
    return 1.0 - kept / total if total else 0.0


# --- the first/last-layer policy -------------------------------------------------------------------

def dense_layers(names: Sequence[str], *, dense_first: bool = False, dense_last: bool = False,
                 last: str | None = None, extra: Sequence[str] = ()) -> list[str]:
    """The layers to keep dense: the first of `names` if `dense_first`, the output layer `last`
    (default: the last of `names`) if `dense_last`, and any `extra` names.

    >>> dense_layers(["fc1.weight", "fc2.weight", "fc3.weight"], dense_last=True)
    ['fc3.weight']
    """
    names = list(names)
    out = []
    if dense_first and names:
        out.append(names[0])
    if dense_last and names:
        out.append(last if last is not None else names[-1])
    for n in extra:
        out.append(n)
    for n in out:
        if n not in names:
            raise ConfigError(f"dense layer {n!r} is not one of the masked layers: {', '.join(names)}")
    return list(dict.fromkeys(out))


def _dense_set(shapes: Shapes, dense: Sequence[str]) -> set[str]:
    if isinstance(dense, str):
        raise ConfigError(f"dense must be a sequence of layer names, not the string {dense!r}")
    d = set(dense)
    unknown = sorted(d - set(shapes))
    if unknown:
        raise ConfigError(f"dense layer(s) {', '.join(map(repr, unknown))} not in the layers "
                          f"{', '.join(shapes)}")
    return d


# --- the distributions -----------------------------------------------------------------------------

def uniform(shapes: Shapes, sparsity: float, *, dense: Sequence[str] = ()) -> dict[str, float]:
    """Every layer at `sparsity`, except the `dense` ones at 0.

    >>> uniform({"a": (10, 10), "b": (5, 10)}, 0.9, dense=["b"])
    {'a': 0.9, 'b': 0.0}
    """
    S = _check_sparsity(sparsity)
    d = _dense_set(shapes, dense)
    return {n: 0.0 if n in d else S for n in shapes}


def _er_family(shapes: Shapes, sparsity: float, dense: Sequence[str],
               raw: Callable[[Sequence[int]], float]) -> dict[str, float]:
    S = _check_sparsity(sparsity)
    fixed = _dense_set(shapes, dense)  # policy-dense: outside the budget on both sides
    layers = [n for n in shapes if n not in fixed]
    numel = {n: _numel(shapes[n]) for n in layers}
    p = {n: raw(shapes[n]) for n in layers}
    solved_dense: set[str] = set()  # made dense by the re-solve: inside the budget
    while True:
        free = [n for n in layers if n not in solved_dense]
        if not free:  # S = 0 with every layer dense
            eps = 0.0
            break
        rhs = (sum(numel[n] - n_zeros(numel[n], S) for n in free)
               - sum(n_zeros(numel[n], S) for n in solved_dense))
        divisor = sum(p[n] * numel[n] for n in free)
        eps = rhs / divisor
        top = max(p[n] for n in free)
        if eps * top <= 1.0:
            break
        solved_dense |= {n for n in free if p[n] == top}
    out = {}
    for n in shapes:
        if n in fixed or n in solved_dense:
            out[n] = 0.0
        else:
            out[n] = min(max(1.0 - eps * p[n], 0.0), 1.0)
    return out


def _er_raw(shape: Sequence[int]) -> float:
    if len(shape) < 2:
        raise ConfigError(f"Erdős–Rényi needs a weight with at least 2 dims, got shape {tuple(shape)}")
    n_out, n_in = int(shape[0]), int(shape[1])
    return (n_in + n_out) / (n_in * n_out)


def erdos_renyi(shapes: Shapes, sparsity: float, *, dense: Sequence[str] = ()) -> dict[str, float]:
    """ER: layer density ∝ (n_in + n_out)/(n_in · n_out) (dims 0 and 1), achieved sparsity S
    (module docstring for the solve and the `dense` policy)."""
    return _er_family(shapes, sparsity, dense, _er_raw)


def erdos_renyi_kernel(shapes: Shapes, sparsity: float, *, dense: Sequence[str] = (),
                       power_scale: float = 1.0) -> dict[str, float]:
    """ERK: layer density ∝ (Σ dims / Π dims)^power_scale over all kernel dims (power 0: uniform).

    LeNet-300-100 at 90% (docs/sparse_training.md §8): fc1 0.9204, fc2 0.7698, and the output layer dense
    (the re-solve moves it into the budget's dense set):

    >>> s = erdos_renyi_kernel({"fc1": (300, 784), "fc2": (100, 300), "fc3": (10, 100)}, 0.9)
    >>> {n: round(v, 4) for n, v in s.items()}
    {'fc1': 0.9204, 'fc2': 0.7698, 'fc3': 0.0}
    """
    if isinstance(power_scale, bool) or not isinstance(power_scale, (int, float)) or power_scale < 0:
        raise ConfigError(f"power_scale must be a non-negative number, got {power_scale!r}")
    return _er_family(shapes, sparsity, dense,
                      lambda sh: (sum(int(d) for d in sh) / _numel(sh)) ** power_scale)


DISTRIBUTIONS: dict[str, Callable[..., dict[str, float]]] = {
    "uniform": uniform,
    "er": erdos_renyi,
    "erk": erdos_renyi_kernel,
}


def sparsities(distribution: str, shapes: Shapes, sparsity: float, *, dense: Sequence[str] = (),
               **kwargs) -> dict[str, float]:
    """Dispatch to `DISTRIBUTIONS[distribution]` (``"uniform"``, ``"er"``, ``"erk"``)."""
    try:
        fn = DISTRIBUTIONS[distribution]
    except KeyError:
        raise ConfigError(f"unknown distribution {distribution!r}; known: {', '.join(DISTRIBUTIONS)}") from None
    return fn(shapes, sparsity, dense=dense, **kwargs)


# --- random masks ----------------------------------------------------------------------------------

def random_masks(shapes: Shapes, sparsities: Mapping[str, float], seed: int) -> dict[str, torch.Tensor]:
    """Boolean masks keeping exactly ``nnz(N, s)`` entries of each layer, at random positions.

    Positions are the top ``random_scores(seed, float64)`` of each layer (`ticketlab.core.scores`), selected
    with `ticketlab.core.pruning`'s exact, tie-breaking selection: the mask of a layer depends only on
    (seed, name, shape, sparsity), in any process. Layers of `shapes` missing from `sparsities` are
    dense.
    """
    from ticketlab.core.pruning import prune_to_density
    from ticketlab.core.scores import random_scores

    for n in sparsities:
        if n not in shapes:
            raise ConfigError(f"sparsity given for unknown layer {n!r}")
    ones = {n: torch.ones(tuple(s), dtype=torch.bool) for n, s in shapes.items()}
    keep = {}
    for n, s in sparsities.items():
        N = _numel(shapes[n])
        k = nnz(N, _check_sparsity(s, f"sparsity of {n!r}"))
        if k < N:
            keep[n] = k / N  # prune_to_density rounds density·N half-up: exactly k
    if not keep:
        return ones
    scores = random_scores({n: ones[n] for n in keep}, seed, dtype=torch.float64)
    return prune_to_density(scores, ones, keep)


__all__ = ["uniform", "erdos_renyi", "erdos_renyi_kernel", "DISTRIBUTIONS", "sparsities", "dense_layers",
           "random_masks", "nnz", "n_zeros", "achieved_sparsity"]
