"""Magnitude-style pruning of masks by scores: per layer, global, one-shot, random controls.

Frankle & Carbin, "The Lottery Ticket Hypothesis", ICLR 2019, §2 and App. (iterative magnitude
pruning: each level removes a fraction of the *surviving* weights with the lowest |w|, per layer for
LeNet and Conv-2/4/6, globally for VGG-19 and ResNet-18); open_lth ``pruning/sparse_global.py``.
Scores come from `ticketlab.core.scores` (higher = more important).

Conventions, shared by every function here:
- Pure: inputs are never modified; every function returns new masks (``torch.bool``), with clones of
  the masks it did not touch. A pruned entry (mask False) always stays pruned.
- Exact counts. A fraction p of n surviving entries removes ``n_to_prune(n, p)`` =
  round-half-up(p·n) entries, with p read as the decimal it prints as (0.1 is exactly 1/10, so
  0.1 · 5 = 0.5 rounds up to 1). Densities convert to kept counts the same way.
- Deterministic ties: among equal scores, the entry with the lower flat (row-major) index is pruned
  first; in global pruning, entries of layers earlier in `layers` go before later ones. So a
  selection equals "sort the surviving entries by (score, layer position, flat index), remove the
  first n".

Difference from open_lth ``sparse_global``: open_lth removes ceil(p · remaining) where *remaining*
also counts the weights of ignored layers, and keeps only |w| > threshold, so ties at the threshold
are pruned too (at least one more than the count). Here remaining counts only the selected layers and
exactly n entries go, so `fraction` is the true per-level rate on the selected layers. With a dense
ignored layer (LeNet's output layer) open_lth's effective rate creeps above `fraction` as sparsity
grows, and the two ladders drift apart (docs/lottery.md §4).
"""

from __future__ import annotations

import fnmatch
import math
import numbers
from fractions import Fraction
from functools import reduce
from typing import Iterable, Mapping, Sequence

import torch
from torch import Tensor

from ticketlab.core.errors import ConfigError
from ticketlab.core.masks import Masks
from ticketlab.core.scores import random_scores


class PruningError(ConfigError, ValueError):
    """Bad pruning input: unknown layer, fraction out of range, pattern matching nothing, ..."""


# --- counts ----------------------------------------------------------------------------------------

def _unit(x: float, what: str) -> Fraction:
    """`x` in [0, 1] as the exact decimal it prints as (0.2 -> 1/5), else PruningError."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real) or not 0 <= x <= 1:
        raise PruningError(f"{what} must be a number in [0, 1], got {x!r}")
    return Fraction(repr(float(x)))


def _round_half_up(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))


def n_to_prune(remaining: int, fraction: float) -> int:
    """Entries a level removes from `remaining` survivors: round-half-up(fraction · remaining).

    `fraction` is taken as the decimal it prints as, so the product is exact (no float artefacts):

    >>> n_to_prune(100, 0.2), n_to_prune(5, 0.1), n_to_prune(4, 0.1), n_to_prune(15, 0.1)
    (20, 1, 0, 2)
    """
    if isinstance(remaining, bool) or not isinstance(remaining, numbers.Integral) or remaining < 0:
        raise PruningError(f"remaining must be a non-negative integer, got {remaining!r}")
    return _round_half_up(_unit(fraction, "pruning fraction") * int(remaining))


def n_to_keep(numel: int, density: float) -> int:
    """Entries kept at `density` out of `numel`: round-half-up(density · numel), exact as above."""
    return _round_half_up(_unit(density, "density") * int(numel))


# --- layer selection -------------------------------------------------------------------------------

def _patterns(p: str | Sequence[str], what: str) -> tuple[str, ...]:
    pats = (p,) if isinstance(p, str) else tuple(p)
    if not all(isinstance(x, str) for x in pats):
        raise PruningError(f"{what} patterns must be strings, got {p!r}")
    return pats


def select(names: Iterable[str], include: str | Sequence[str] = ("*",),
           exclude: str | Sequence[str] = ()) -> list[str]:
    """The names matching any `include` pattern and no `exclude` pattern, in the given order.

    Patterns are shell-style (``fnmatch.fnmatchcase``: ``*``, ``?``, ``[seq]``; case-sensitive).
    Every pattern, include or exclude, must match at least one name, else PruningError: a typo must
    not silently prune nothing (or, in `exclude`, the output layer).

    >>> select(["fc1.weight", "fc2.weight", "fc3.weight"], exclude=["fc3.*"])
    ['fc1.weight', 'fc2.weight']
    """
    names = list(names)
    inc, exc = _patterns(include, "include"), _patterns(exclude, "exclude")
    for kind, pats in (("include", inc), ("exclude", exc)):
        for p in pats:
            if not any(fnmatch.fnmatchcase(n, p) for n in names):
                raise PruningError(f"{kind} pattern {p!r} matches no layer; layers are {names}")
    return [n for n in names
            if any(fnmatch.fnmatchcase(n, p) for p in inc)
            and not any(fnmatch.fnmatchcase(n, p) for p in exc)]


# --- validation ------------------------------------------------------------------------------------

def _check_layers(masks: Mapping[str, Tensor], layers: Iterable[str],
                  scores: Mapping[str, Tensor] | None = None) -> list[str]:
    layers = list(layers)
    if len(set(layers)) != len(layers):
        raise PruningError(f"duplicate layer names in {layers}")
    for n in layers:
        if n not in masks:
            raise PruningError(f"unknown layer {n!r}: no mask with that name")
        m = masks[n]
        if m.dtype != torch.bool:
            raise PruningError(f"mask {n!r} must be torch.bool, got {m.dtype}")
        if scores is not None:
            if n not in scores:
                raise PruningError(f"no score for layer {n!r}")
            if scores[n].shape != m.shape:
                raise PruningError(f"score {n!r} has shape {tuple(scores[n].shape)}, "
                                   f"mask has {tuple(m.shape)}")
    return layers


def _layer_list(masks: Mapping[str, Tensor], layers: Sequence[str] | None) -> list[str]:
    if isinstance(layers, str):
        raise PruningError(f"layers must be a sequence of names, not the string {layers!r}")
    return list(masks) if layers is None else list(layers)


# --- the one selection primitive -------------------------------------------------------------------

def _lowest(s: Tensor, k: int) -> Tensor:
    """Bool vector marking the k smallest entries of the 1-D `s`, ties to the lower index.

    kthvalue gives the threshold t (the k-th smallest value, O(n)); everything below t goes, and of
    the entries equal to t the first (k - #below) by index. No full sort.
    """
    n = s.numel()
    if k <= 0:
        return torch.zeros(n, dtype=torch.bool, device=s.device)
    if k >= n:
        return torch.ones(n, dtype=torch.bool, device=s.device)
    t = torch.kthvalue(s, k).values
    out = s < t
    need = k - int(out.sum())
    eq = s == t
    out |= eq & (eq.cumsum(0) <= need)
    return out


def _prune_lowest(scores: Mapping[str, Tensor], masks: Mapping[str, Tensor],
                  layers: Sequence[str], k: int) -> dict[str, Tensor]:
    """New masks of `layers` with the k lowest-scored survivors, taken over all `layers`, removed."""
    parts = []
    for n in layers:
        s = scores[n].detach()
        s = s[masks[n].to(s.device)]              # survivors, row-major order (scores and masks may differ in device)
        if s.dtype.is_floating_point and bool(torch.isnan(s).any()):
            raise PruningError(f"scores of layer {n!r} contain NaN")
        parts.append(s)
    dtype = reduce(torch.promote_types, (p.dtype for p in parts), torch.float32)
    flat = torch.cat([p.to(dtype) for p in parts]) if parts else torch.zeros(0)
    pruned = _lowest(flat, k)
    out = {}
    for n, gone in zip(layers, pruned.split([p.numel() for p in parts])):
        m = masks[n]
        new = m.clone()
        new[m] = ~gone.to(m.device)
        out[n] = new
    return out


def _merge(masks: Mapping[str, Tensor], changed: Mapping[str, Tensor]) -> Masks:
    """All masks in their original order: the changed ones, clones of the rest."""
    return {n: changed[n] if n in changed else m.clone() for n, m in masks.items()}


# --- public pruning functions ----------------------------------------------------------------------

def prune_layerwise(scores: Mapping[str, Tensor], masks: Mapping[str, Tensor],
                    fractions: Mapping[str, float]) -> Masks:
    """Each tensor in `fractions` loses ``n_to_prune(its survivors, its fraction)`` of its surviving
    entries, those with the lowest score (LTH per-layer pruning). Other tensors are unchanged.

    >>> keep = {"w": torch.ones(4, dtype=torch.bool)}
    >>> prune_layerwise({"w": torch.tensor([3., 1., 2., 1.])}, keep, {"w": 0.5})["w"]
    tensor([ True, False,  True, False])
    """
    layers = _check_layers(masks, fractions, scores)
    changed: dict[str, Tensor] = {}
    for n in layers:
        k = n_to_prune(int(masks[n].sum()), fractions[n])
        changed.update(_prune_lowest(scores, masks, [n], k))
    return _merge(masks, changed)


def prune_global(scores: Mapping[str, Tensor], masks: Mapping[str, Tensor], fraction: float,
                 layers: Sequence[str]) -> Masks:
    """Remove exactly ``n_to_prune(survivors of layers, fraction)`` of the surviving entries of
    `layers` taken together: those with the lowest score, one threshold for all (LTH §4, open_lth
    sparse_global; see the module docstring for how the count differs from open_lth's).

    Tensors not in `layers` are unchanged and not counted.
    """
    layers = _check_layers(masks, _layer_list(masks, layers), scores)
    if not layers:
        raise PruningError("prune_global needs at least one layer")
    remaining = sum(int(masks[n].sum()) for n in layers)
    k = n_to_prune(remaining, fraction)
    return _merge(masks, _prune_lowest(scores, masks, layers, k))


def prune_to_density(scores: Mapping[str, Tensor], masks: Mapping[str, Tensor],
                     density: float | Mapping[str, float],
                     layers: Sequence[str] | None = None) -> Masks:
    """One-shot pruning to a target density: keep exactly ``n_to_keep(numel, density)`` entries,
    the highest-scored survivors.

    A mapping `density` gives one target per layer (its keys; others unchanged). A number is a
    global target over `layers` (default: every mask), numel being their total size; per-layer
    densities then follow the scores. PruningError if a layer (or the selection) already keeps fewer
    entries than the target, since pruned entries cannot come back. Typical use: one-shot pruning to
    the sparsity of an IMP level, e.g. ``density=ladder(...)[k]`` or that level's `layer_density`.
    """
    if isinstance(density, Mapping):
        if layers is not None:
            raise PruningError("layers applies only to a single (global) density, "
                               "not to a per-layer mapping")
        groups = [[n] for n in _check_layers(masks, density, scores)]
        targets = [density[g[0]] for g in groups]
    else:
        sel = _check_layers(masks, _layer_list(masks, layers), scores)
        if not sel:
            raise PruningError("prune_to_density needs at least one layer")
        groups, targets = [sel], [density]
    changed: dict[str, Tensor] = {}
    for group, d in zip(groups, targets):
        keep = n_to_keep(sum(masks[n].numel() for n in group), d)
        alive = sum(int(masks[n].sum()) for n in group)
        if keep > alive:
            raise PruningError(f"cannot reach density {d!r} on {group}: only {alive} entries "
                               f"survive, {keep} would be kept")
        changed.update(_prune_lowest(scores, masks, group, alive - keep))
    return _merge(masks, changed)


def random_mask_like(masks: Mapping[str, Tensor], seed: int, strategy: str = "layerwise",
                     layers: Sequence[str] | None = None) -> Masks:
    """A random mask with the same number of kept entries, the random-sparsity control
    (LTH Fig. 1 / App. E; open_lth ``randomly_prune``).

    - ``"layerwise"``: each tensor in `layers` keeps exactly its own kept count, at random positions.
    - ``"global"``: the tensors in `layers` together keep the same total, at random positions, so
      per-layer counts change.
    `layers` defaults to every mask; the others are copied unchanged. Positions are the top scores of
    ``random_scores(masks, seed, dtype=float64)``, so the result depends only on (seed, names, shapes,
    counts), in any process.
    """
    if strategy not in ("layerwise", "global"):
        raise PruningError(f"unknown random-mask strategy {strategy!r}; use 'layerwise' or 'global'")
    sel = _check_layers(masks, _layer_list(masks, layers))
    # drawn and chosen on the CPU, wherever the masks live: the same control on every device
    scores = random_scores({n: masks[n] for n in sel}, seed, dtype=torch.float64)
    full = {n: torch.ones(masks[n].shape, dtype=torch.bool) for n in sel}
    groups = [[n] for n in sel] if strategy == "layerwise" else ([sel] if sel else [])
    changed: dict[str, Tensor] = {}
    for group in groups:
        numel = sum(masks[n].numel() for n in group)
        kept = sum(int(masks[n].sum()) for n in group)
        changed.update(_prune_lowest(scores, full, group, numel - kept))
    return _merge(masks, {n: m.to(masks[n].device) for n, m in changed.items()})


# --- comparing masks and planning levels -----------------------------------------------------------

def _shared(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> list[str]:
    names = [n for n in a if n in b]
    if not names:
        raise PruningError("the two mask sets share no tensor name")
    for n in names:
        if a[n].shape != b[n].shape:
            raise PruningError(f"mask {n!r} has shapes {tuple(a[n].shape)} and {tuple(b[n].shape)}")
    return names


def _ratio(inter: int, union: int) -> float:
    return inter / union if union else 1.0


def layer_jaccard(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> dict[str, float]:
    """Per shared tensor, |a ∩ b| / |a ∪ b| of the kept entries (1.0 when both keep nothing)."""
    out = {}
    for n in _shared(a, b):
        x, y = a[n].bool(), b[n].bool()
        out[n] = _ratio(int((x & y).sum()), int((x | y).sum()))
    return out


def jaccard(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> float:
    """|a ∩ b| / |a ∪ b| of the kept entries over all shared tensors (1.0 when both keep nothing).

    >>> t, f = True, False
    >>> jaccard({"w": torch.tensor([t, t, f, f])}, {"w": torch.tensor([t, f, t, f])})
    0.3333333333333333
    """
    inter = union = 0
    for n in _shared(a, b):
        x, y = a[n].bool(), b[n].bool()
        inter += int((x & y).sum())
        union += int((x | y).sum())
    return _ratio(inter, union)


def ladder(sizes: Mapping[str, int], fractions: Mapping[str, float], levels: int) -> list[float]:
    """Density after each level 0..levels of per-layer IMP, from exact integer counts.

    Each level, layer l keeps ``r - n_to_prune(r, fractions[l])`` of its r survivors (the counts
    `prune_layerwise` produces); layers not in `fractions` stay dense but count in the total. Use it
    to find how many levels reach a target sparsity without training. LeNet-300-100 (LTH §2):

    >>> d = ladder({"fc1": 235200, "fc2": 30000, "fc3": 1000}, {"fc1": .2, "fc2": .2, "fc3": .1}, 3)
    >>> [round(100 * x, 1) for x in d]
    [100.0, 80.0, 64.1, 51.3]
    """
    if isinstance(levels, bool) or not isinstance(levels, numbers.Integral) or levels < 0:
        raise PruningError(f"levels must be a non-negative integer, got {levels!r}")
    for n, s in sizes.items():
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 0:
            raise PruningError(f"size of {n!r} must be a non-negative integer, got {s!r}")
    for n, f in fractions.items():
        if n not in sizes:
            raise PruningError(f"fraction given for unknown layer {n!r}")
        _unit(f, f"pruning fraction of {n!r}")
    total = sum(sizes.values())
    alive = dict(sizes)
    out = [sum(alive.values()) / total if total else 1.0]
    for _ in range(levels):
        for n, f in fractions.items():
            alive[n] -= n_to_prune(alive[n], f)
        out.append(sum(alive.values()) / total if total else 1.0)
    return out
