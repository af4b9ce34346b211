"""The drop-and-grow machinery shared by every sparse-training method, attached to any torch optimizer.

`Updater(method, sparsities, seed=...).attach(optimizer, params)` registers two optimizer step hooks
(`Optimizer.register_step_pre_hook` / `register_step_post_hook`), so the training code keeps calling
``optimizer.step()``. With `ticketlab.training.loop.fit` the updater is passed as a hook: `fit` calls `attach`
once the optimizer exists and saves `state_dict()` in every checkpoint.

What happens at optimizer step t (t counts the `step()` calls, from 0):

- **pre-step**: SNFS folds the dense gradient into its momentum (every step). On an update step the
  method's grow score is captured: RigL's |dense gradient| **only on update steps**
  (`dense_grad_captures` counts them). Weights are zero in place at inactive positions, so
  ``p.grad`` before masking is exactly dL/d(w·m), the gradient RigL grows by (docs/sparse_training.md §4, §9).
  Then the gradients are masked, so inactive positions never get an update or optimizer state. If
  the method skips the optimizer step on update steps (RigL, as the official code does: its
  ``apply_gradients`` is ``cond(update step, mask update, gradient step)``, docs/sparse_training.md §4), every gradient of
  the optimizer is set to None instead, so ``step()`` moves nothing (biases included, as in the
  official code) and no moment or step count advances.
- **post-step**: inactive weights are re-zeroed (weight decay or any optimizer that moves a weight
  with zero gradient cannot revive them); on an update step the masks are updated (below).

A mask update of one layer (google-research/rigl ``_get_update_op``; docs/sparse_training.md §3), per model slice:
1. k = the method's drop count (RigL/SET/SNFS: ⌊nnz · drop_fraction(t)⌋; GMP: down to its cubic
   target). The k active entries with the smallest |w| are dropped.
2. Growth (not GMP): the k entries with the highest grow score among the inactive *and just-dropped*
   entries are activated. A connection dropped and regrown in the same update keeps its value and
   optimizer state (official ``reinit_when_same=False``); every other grown connection starts at
   exactly zero with every optimizer-state tensor of the parameter's shape zeroed (momentum, both Adam
   moments, amsgrad's max). Dropped weights and their state are zeroed (the official code leaves
   them stale: harmless in TF's w·m forward, not with in-place masks). So nnz is exact after every
   update: drop k, grow exactly k. Adam's per-tensor ``step`` cannot be reset per entry (docs/sparse_training.md §9).
3. Ties: among equal scores, the entry with the lower flat index is dropped (or grown) first. The
   official code breaks drop ties with 1e-5 Gaussian noise, which also reorders near-ties; here the
   choice is exact and does not depend on the order in which active entries are stored, so a resumed
   run, whose active lists are rebuilt from the saved masks, makes the same choices.

Cost (docs/performance.md §6). Nothing is sorted. Each layer keeps its active positions as an index
tensor [R, nnz], so the drop looks only at the nnz active weights (a gather). The grow threshold is
found on a candidate set: a fixed random sample of the scores estimates a value safely below the k-th
largest, the entries above it (typically ~1.3–1.6k of them) are compacted, and `kthvalue` runs on those
only; the result is exact (if the estimate were ever too high, the full row is used). The update writes
only the 2k changed positions of the weights, masks and optimizer state (gather/scatter), never a
full pass per state tensor. Off the CPU (a stack on an accelerator, where the per-row loop would be
R small kernel sequences) the choice is one stable sort of all rows (`_sorted_top_k`): the same entries.

Stacked parameters ([R, ...], R models trained together by `fit_many`): pass one seed per model;
each slice gets its own mask, counts and random draws, identical to what that model would get alone.
With one sparsity dict per model (the points of a sparse sweep, issue 16), each layer's slices form
blocks of consecutive models with one target and one count; each block keeps its own active lists
and is updated with its own top-k, and a model whose target for a layer is 0 keeps it dense. The
state splits by model (`replica_state_dicts`), so each run of a stack saves what it would alone.

Optimizer state of inactive positions (`grow_state`, issue #18: "does Adam blunt RigL?"):
- ``"zero"`` (default; the semantics above): gradients are masked before the step and the state of
  dropped and grown-new positions is zeroed, so the state at every inactive position is exactly zero
  and a grown weight starts with zero moments. Adam then makes its first steps large whatever the
  gradient's size: with m = v = 0 and the tensor's step count already large, the first update is
  lr · (1 − β1)/√(1 − β2) ≈ 3.2 lr (docs/sparse_training.md §8, "Adam state").
- ``"keep"``: the optimizer sees the *dense* gradient dL/d(w·m) at every position (gradients are not
  masked before the step), and neither a drop nor a grow touches the optimizer state. So the state at
  an inactive position (SGD momentum; Adam's exp_avg, exp_avg_sq) keeps tracking the gradient that
  position would get, while the weight there stays exactly zero: the post-step hook re-zeroes it
  after every step, whatever the optimizer moved. A grown weight starts at zero with the moments of
  its recent gradient history, and a dropped one's moments go on tracking. This is what
  TimDettmers/sparse_learning does (unmasked gradients, "removed momentum reset",
  docs/sparse_training.md §3, §8); the official RigL code masks the gradient of w and overwrites a grown
  connection's slots with 0, i.e. ``"zero"``. A "keep" that only skipped the zeroing at grow time would
  change nothing here: with masked gradients and zeroed drops, the state it would keep is exactly zero.
  The weights and masks follow the same rules under both; under "keep" an inactive weight is moved by
  the step and then re-zeroed, so the active weights see exactly what they see under "zero" for an
  elementwise optimizer (SGD, Adam): Static and GMP train identically under both.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Mapping, Sequence

import torch
from torch import Tensor

from ticketlab.core.config import Config, param
from ticketlab.core.errors import ConfigError
from ticketlab.core.optimizers import StateInOptimizer, scaler_skipped, unwrap_optimizer


# --- selection -------------------------------------------------------------------------------------

_SAMPLES: dict[int, Tensor] = {}
_SAMPLE_SIZE = 4096
_SAMPLE_MIN = 4 * _SAMPLE_SIZE  # below this the candidate filter does not pay


def _sample_index(n: int) -> Tensor:
    """A fixed pseudo-random sample of positions in [0, n) (only speed depends on it, not results)."""
    idx = _SAMPLES.get(n)
    if idx is None:
        if len(_SAMPLES) > 512:
            _SAMPLES.clear()
        g = torch.Generator().manual_seed(n)
        idx = _SAMPLES[n] = torch.randint(0, n, (_SAMPLE_SIZE,), generator=g)
    return idx


def _row_top(v: Tensor, k: int) -> tuple[Tensor, bool]:
    """(columns of the k largest entries of the 1-D `v`, ties to the lower column; whether some
    entries tied at the threshold were left out). Columns unordered. 0 < k <= n."""
    n = v.numel()
    cand = None
    if n >= _SAMPLE_MIN and 2 * k < n:
        # Candidate filter: a threshold safely below the k-th largest, estimated on a fixed sample,
        # keeps ~1.3k entries; kthvalue then runs on those only. Exact whatever the sample.
        sv = v[_sample_index(n)]
        m = sv.numel()
        expect = k * m / n
        j = math.ceil(1.25 * expect + 4.0 * math.sqrt(expect) + 8)  # >= 8 sigma above expect
        if j < m:
            t_est = torch.kthvalue(sv, m - j + 1).values  # j-th largest of the sample
            c = (v >= t_est).nonzero().squeeze(1)
            if c.numel() >= k:  # else the estimate was too high: use the whole row
                cand = c
    cv = v if cand is None else v[cand]
    t = torch.kthvalue(cv, cv.numel() - k + 1).values  # the k-th largest value
    ge = cv >= t
    n_ge = int(ge.sum())
    if n_ge == k:  # no choice to make among ties (the common case)
        sel, split = ge.nonzero().squeeze(1), False
    else:  # candidates are in ascending column order: the first ties by column
        gt = cv > t
        need = k - int(gt.sum())
        tied = (ge & ~gt).nonzero().squeeze(1)[:need]
        sel, split = torch.cat([gt.nonzero().squeeze(1), tied]), True
    return (sel if cand is None else cand[sel]), split


def top_k(scores: Tensor, k: int, *, largest: bool = True, positions: Tensor | None = None) -> Tensor:
    """Per row of `scores` [R, n], the columns of the k largest (or smallest) scores: [R, k] int64.

    Exact counts; ties go to the lower position, where `positions` [R, n] gives each column's flat
    position (default: the column itself), so the chosen *positions* do not depend on the order of
    the columns. The columns in a row of the result are unordered.

    >>> top_k(torch.tensor([[0.5, 2.0, 1.0, 2.0]]), 2).sort().values
    tensor([[1, 3]])
    >>> top_k(torch.tensor([[1.0, 0.0, 0.0, 3.0]]), 1, largest=False)
    tensor([[1]])
    """
    R, n = scores.shape
    if not 0 <= k <= n:
        raise ValueError(f"top_k: k={k} outside [0, {n}]")
    if k == 0:
        return torch.empty(R, 0, dtype=torch.long, device=scores.device)
    if scores.device.type != "cpu":
        return _sorted_top_k(scores, k, largest, positions)
    rows = []
    for r in range(R):
        v = scores[r] if largest else -scores[r]
        cols, split = _row_top(v, k)
        if split and positions is not None:  # ties split by column order: redo them by position
            order = positions[r].argsort()
            cols = order[_row_top(v[order], k)[0]]
        rows.append(cols)
    return torch.stack(rows)


def _sorted_top_k(scores: Tensor, k: int, largest: bool = True, positions: Tensor | None = None) -> Tensor:
    """`top_k`'s choice for every row at once: a stable descending sort of the rows, with their columns
    first put in position order, so that ties go to the lower position. One sort of [R, n] in place of
    R short selections, each a few kernel launches: the path for a stack on an accelerator, where those
    launches, not the arithmetic, would bound a large stack's update. The same columns as the per-row
    path (tests/test_sparse.py), which stays on the CPU, where selecting beats sorting."""
    v = scores if largest else -scores
    order = None
    if positions is not None:
        order = positions.argsort(dim=1)  # [R, n] the columns in position order
        v = v.gather(1, order)
    cols = torch.sort(v, dim=1, descending=True, stable=True).indices[:, :k]  # ties keep position order
    return cols if order is None else order.gather(1, cols)


# --- methods ---------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class LayerContext:
    """What a method sees of one layer when scoring growth: views of shape [R, n]."""

    name: str
    step: int
    weight: Tensor  # [R, n]
    grad: Tensor | None  # the captured dense gradient [R, n] (RigL), owned by the update
    buffer: Tensor | None  # the method's per-layer buffer [R, n] (SNFS momentum)
    seeds: tuple[int, ...]  # one per row


def training_fraction(step: str, help: str):
    """A method field that gives its field `step` as a fraction of training instead, resolved by
    `Method.resolve(total)` to ⌊fraction · total⌋ (e.g. RigL's end at 75 % of training)."""
    return param(None, f"{help} as a fraction of training; sets {step} to ⌊fraction · steps⌋", min=0.0, max=1.0,
                 step=step)


class Method(Config):
    """Base of the sparse-training methods. A method is a frozen dataclass whose fields are its
    hyper-parameters, declared with `param()` (help, range: validated on construction, and the
    source of `ticketlab sparse-train`'s per-method flags); it is stateless: the masks, counters and
    buffers live in the `Updater`. A step given as a fraction of training (`training_fraction`) is
    resolved against the run length by `resolve(total)` before the method trains."""

    name = "method"
    skip_step = False  # skip the optimizer step on update steps
    observes = False  # needs the dense gradient every step (`observe`)
    regrows = True  # grows as many connections as it drops
    dense_start = False  # starts from all-ones masks (GMP)
    updates = False  # ever changes its masks (else: per-slice counts may differ, e.g. global SNIP masks)

    def check(self) -> None:
        for name in self.unresolved():  # a fraction set: its step must be left at its default
            step = self.__dataclass_fields__[name].metadata["step"]
            if getattr(self, step) != self.__dataclass_fields__[step].default:
                raise ConfigError(f"{name}: got {getattr(self, name)!r} and {step} {getattr(self, step)!r}; "
                                  f"expected one of the two")

    def final_from(self) -> int:
        """The first iteration count (steps taken) at which the network has its final sparsity: 0,
        except for a dense-to-sparse method (GMP), whose network is denser until its last pruning step.
        Early stopping looks no earlier (issue #18: an evaluation of a denser network must not stand
        for the sparse one)."""
        return 0

    def unresolved(self) -> list[str]:
        """The fraction-of-training fields still set (the method needs `resolve(total)` first)."""
        return [f.name for f in dataclasses.fields(self) if f.metadata.get("step") and getattr(self, f.name) is not None]

    def resolve(self, total: int) -> "Method":
        """This method for a run of `total` steps: every fraction-of-training field becomes its step."""
        changes = {}
        for name in self.unresolved():
            changes[name] = None
            changes[self.__dataclass_fields__[name].metadata["step"]] = math.floor(getattr(self, name) * total)
        return dataclasses.replace(self, **changes) if changes else self

    def is_update(self, step: int) -> bool:
        return False

    def drop_fraction_at(self, step: int) -> float:
        return 0.0

    def n_drop(self, step: int, nnz: int, numel: int, sparsity: float) -> int:
        return 0

    def needs_grad(self, step: int) -> bool:
        """Whether the pre-step hook captures the dense gradient at `step`."""
        return False

    def grow_scores(self, ctx: LayerContext) -> Tensor:
        """[R, n] scores, higher = grown first; a new tensor the update may modify."""
        raise NotImplementedError

    def new_buffer(self, weight: Tensor) -> Tensor | None:
        return None

    def observe(self, buffer: Tensor, grad: Tensor) -> None:
        pass


# --- the updater -----------------------------------------------------------------------------------

class _Block:
    """Consecutive model slices of one layer that share a target and a count: one `top_k` per update."""
    __slots__ = ("rows", "target", "idx", "nnz")

    def __init__(self, rows: slice, target: float):
        self.rows, self.target = rows, target
        self.idx = None  # [rows, nnz] flat positions of the active entries, in no particular order
        self.nnz = 0  # -1: a fixed mask whose counts may differ by slice (no active lists)


class _Layer:
    __slots__ = ("name", "p", "fm", "numel", "buffer", "captured", "blocks")

    def __init__(self, name, p, fm, buffer):
        self.name, self.p, self.fm, self.buffer = name, p, fm, buffer
        self.captured = None
        self.numel = 0  # per model slice
        self.blocks: list[_Block] = []  # one, unless the stacked models have different targets here


class Updater:
    """Keeps the masks of a sparse-training `method` through training (see the module docstring).

    - `sparsities`: {layer name: target sparsity}. Layers at 0 (dense) are not masked and cost nothing.
      Build it with `ticketlab.core.distributions` (uniform / ER / ERK, first/last-layer policy).
      Stacked, it may be a sequence of R such dicts, one per model: models at different sparsities
      (the points of a sparse sweep) then train as one stack, each slice exactly as alone.
    - `masks`: optional initial boolean masks (parameter-shaped), e.g. from SNIP; else random masks with
      exact counts from (seed, layer name) (`distributions.random_masks`), or all-ones for GMP.
    - `seed`: an int for plain parameters; a sequence of R ints for stacked [R, ...] parameters (one
      model per slice; slice r is masked, updated and drawn exactly as a model with seed[r] alone).
    - `on_update`: called with each update's log row (also kept in `history`).
    - `grow_state`: "zero" (default) or "keep": the optimizer state of inactive positions (see the
      module docstring: "keep" lets it track the dense gradient; weights stay exactly zero under both).
    """

    def __init__(self, method: Method, sparsities: Mapping[str, float] | None = None, *,
                 masks: Mapping[str, Tensor] | None = None, seed: int | Sequence[int] = 0,
                 on_update: Callable[[dict], None] | None = None, grow_state: str = "zero"):
        if grow_state not in GROW_STATES:
            raise ConfigError(f"grow_state: got {grow_state!r}, expected one of {', '.join(GROW_STATES)}")
        if sparsities is None and masks is None:
            raise ConfigError("Updater needs sparsities or initial masks")
        if not callable(getattr(method, "is_update", None)):  # e.g. Dense, or a one-shot SNIP config
            raise ConfigError(f"Updater: got {type(method).__name__}, expected a sparse-training Method "
                              f"(a one-shot mask trains with Static and masks=...)")
        if isinstance(method, Method) and method.unresolved():
            name = method.unresolved()[0]
            raise ConfigError(f"{name}: got {getattr(method, name)!r}, a fraction of training: pass "
                              f"method.resolve(total_steps) to the Updater")
        self.method = method
        self.keep_state = grow_state == "keep"
        self.stacked = not isinstance(seed, int)
        self.seeds = tuple(int(s) for s in (seed if self.stacked else (seed,)))
        if not self.seeds:
            raise ConfigError("Updater: stacked parameters need one seed per model")
        self.R = len(self.seeds)
        if sparsities is not None and not isinstance(sparsities, Mapping):
            sparsities = [dict(d) for d in sparsities]
            if not self.stacked or len(sparsities) != self.R:
                raise ConfigError(f"Updater: one sparsity dict per model, got {len(sparsities)} for {self.R} "
                                  f"{'stacked models' if self.stacked else 'plain parameters (pass one dict)'}")
        else:
            sparsities = None if sparsities is None else dict(sparsities)
        self.sparsities = sparsities
        self._init_masks = dict(masks) if masks is not None else None
        self.on_update = on_update
        self.step = 0
        self.history: list[dict] = []
        self.dense_grad_captures = 0
        self.update_seconds = 0.0  # wall time spent in mask updates (not saved)
        self.layers: dict[str, _Layer] = {}
        self._optimizer = None
        self._handles: list = []
        self._loaded: dict | None = None
        self._update_now = False
        self._skipped = False
        self._inf_skip = False

    # ---- setup ----
    def _row(self, t: Tensor) -> Tensor:
        return t.view(self.R, -1)

    def _targets(self, params: Mapping[str, Tensor]) -> dict[str, list[float]]:
        """{masked layer: its target sparsity for each model slice}; a layer is masked where some
        slice's target is above 0."""
        if self.sparsities is not None:
            rows = self.sparsities if isinstance(self.sparsities, list) else [self.sparsities] * self.R
            for d in rows:
                for n in d:
                    if n not in params:
                        raise ConfigError(f"sparsity given for {n!r}, which is not among the parameters "
                                          f"{', '.join(params)}")
            names = [n for n in params if any(float(d.get(n, 0.0)) > 0 for d in rows)]
            return {n: [max(float(d.get(n, 0.0)), 0.0) for d in rows] for n in names}
        out = {}
        for n, m in self._init_masks.items():
            m = m.bool()
            if not bool(m.all()):
                out[n] = [1.0 - float(r.float().mean()) for r in self._row(m)]
        return out

    def _initial_masks(self, params: Mapping[str, Tensor], targets: dict[str, list[float]]) -> dict[str, Tensor]:
        if self._init_masks is not None:
            missing = [n for n in targets if n not in self._init_masks]
            if missing:
                raise ConfigError(f"no initial mask given for {', '.join(missing)}")
            return {n: self._init_masks[n].bool() for n in targets}
        shape = {n: tuple(params[n].shape[1:] if self.stacked else params[n].shape) for n in targets}
        if self.method.dense_start:
            per = [{n: torch.ones(s, dtype=torch.bool) for n, s in shape.items()} for _ in self.seeds]
        else:
            from ticketlab.core.distributions import random_masks
            per = [random_masks(shape, {n: t[r] for n, t in targets.items()}, s) for r, s in enumerate(self.seeds)]
        if not self.stacked:
            return per[0]
        return {n: torch.stack([m[n] for m in per]) for n in targets}

    def attach(self, optimizer: torch.optim.Optimizer, params: Mapping[str, Tensor], *,
               in_state_dict: bool = False) -> "Updater":
        """Install the masks on `params` (weights and optimizer state zeroed at inactive positions)
        and register the optimizer step hooks. Returns self.

        A wrapped optimizer (accelerate's `AcceleratedOptimizer`, Lightning's `LightningOptimizer`:
        the real one in `.optimizer`) is unwrapped, so the hooks land on the optimizer that steps.
        Under `torch.distributed`, rank 0's seeds and initial masks are broadcast, so every rank
        draws and updates the same masks (docs/architecture/byo.md). `in_state_dict`: the updater's
        state (masks, step, seeds, buffers) also rides in `optimizer.state_dict()` under
        "ticketlab_sparse" and is restored by `optimizer.load_state_dict`."""
        if self._optimizer is not None:
            raise RuntimeError("Updater is already attached; call detach() first")
        optimizer = unwrap_optimizer(optimizer)
        if _distributed() and self._loaded is None:
            self._share_seeds(next(iter(params.values())).device)
        self._install(optimizer, params)
        self._handles = [optimizer.register_step_pre_hook(self._pre_step),
                         optimizer.register_step_post_hook(self._post_step)]
        if in_state_dict:  # installed once the optimizer state is loaded, so its inactive positions are zeroed too
            self._handles.append(StateInOptimizer(optimizer, STATE_KEY, self.state_dict, self.load_state_dict))
        return self

    @torch.no_grad()
    def _install(self, optimizer: torch.optim.Optimizer, params: Mapping[str, Tensor]) -> None:
        in_opt = {id(p) for g in optimizer.param_groups for p in g["params"]}
        targets = self._targets(params)
        loaded = self._loaded
        masks = loaded["masks"] if loaded is not None else self._initial_masks(params, targets)
        if _distributed() and loaded is None:  # user-given masks may differ by rank: rank 0's win
            masks = {n: _broadcast(m.to(params[n].device, torch.uint8)).to("cpu", torch.bool) for n, m in masks.items()}
        if loaded is not None and set(masks) != set(targets):
            raise ValueError(f"saved sparse state masks {sorted(masks)}, this run masks {sorted(targets)}")
        self.layers = {}
        for n in targets:
            p = params[n]
            if id(p) not in in_opt:
                raise ConfigError(f"parameter {n!r} is not in the optimizer")
            if self.stacked and (p.dim() < 2 or p.shape[0] != self.R):
                raise ConfigError(f"{n!r}: stacked parameters need shape [{self.R}, ...], got {tuple(p.shape)}")
            if not p.is_contiguous():
                raise ConfigError(f"{n!r}: parameter must be contiguous")
            m = masks[n].to(p.device)  # masks are made and saved on the CPU; they act where p lives
            if m.shape != p.shape or m.dtype != torch.bool:
                raise ValueError(f"mask {n!r} must be bool of shape {tuple(p.shape)}, got {m.dtype} {tuple(m.shape)}")
            fm = m.to(p.dtype).clone()
            buf = self.method.new_buffer(p)
            if loaded is not None and n in loaded.get("buffers", {}):
                buf = loaded["buffers"][n].to(p.device, p.dtype).clone()
            L = _Layer(n, p, fm, buf)
            L.numel = p[0].numel() if self.stacked else p.numel()
            L.blocks = self._blocks(self._row(m), targets[n])
            p.mul_(fm)
            for v in ([] if self.keep_state else optimizer.state.get(p, {}).values()):
                if torch.is_tensor(v) and v.shape == p.shape:
                    v.mul_(fm)
            self.layers[n] = L
        if loaded is not None:
            self.step = int(loaded["step"])
            self.history = list(loaded.get("history", []))
            self.dense_grad_captures = int(loaded.get("dense_grad_captures", 0))
        self._optimizer = optimizer

    def _blocks(self, m: Tensor, targets: list[float]) -> list[_Block]:
        """The blocks of one layer's masks `m` [R, n]: maximal runs of consecutive slices with one
        target and, for a method that updates its masks, one count, each with its active positions.
        One block when every slice has the same target (the replicates of one experiment). A fixed
        mask keeps no active lists: its counts may differ by slice (global SNIP)."""
        counts = m.sum(1).tolist() if self.method.updates else [0] * self.R
        blocks, a = [], 0
        for r in range(1, self.R + 1):
            if r == self.R or targets[r] != targets[a] or counts[r] != counts[a]:
                b = _Block(slice(a, r), targets[a])
                blocks.append(b)
                if self.method.updates:
                    b.nnz = counts[a]
                    b.idx = m[b.rows].nonzero()[:, 1].view(r - a, b.nnz)
                else:
                    b.nnz, b.idx = -1, None
                a = r
        return blocks

    def _share_seeds(self, device) -> None:
        self.seeds = tuple(int(s) for s in _broadcast(torch.tensor(self.seeds, dtype=torch.int64, device=device)))

    def detach(self) -> None:
        """Remove the optimizer hooks (the masks stay on the weights)."""
        for h in self._handles:
            h.remove()
        self._handles, self._optimizer = [], None

    # ---- the hooks ----
    @torch.no_grad()
    def _pre_step(self, optimizer, args, kwargs) -> None:
        # A step a GradScaler skips (inf/NaN gradients) is no step: the step count (RigL's schedule)
        # and the masks stay as they are (`scaler_skipped`; a non-fused optimizer is not even stepped).
        self._inf_skip = scaler_skipped(optimizer)
        if self._inf_skip:
            return
        t, m = self.step, self.method
        upd = self._update_now = m.is_update(t)
        if m.observes:
            for L in self.layers.values():
                if L.p.grad is not None:
                    m.observe(L.buffer, L.p.grad)
        skip = upd and m.skip_step
        if upd and m.needs_grad(t):
            for L in self.layers.values():
                g = L.p.grad
                L.captured = None if g is None else (g.detach() if skip else g.detach().clone())
            self.dense_grad_captures += 1
        self._skipped = skip
        if skip:  # the official RigL step: this batch's gradient only chooses the grown connections
            for group in optimizer.param_groups:
                for p in group["params"]:
                    p.grad = None
        elif not self.keep_state:  # one foreach call over every masked gradient: fewer dispatches than a loop (issue #16)
            have = [L for L in self.layers.values() if L.p.grad is not None]
            if have:
                torch._foreach_mul_([L.p.grad for L in have], [L.fm for L in have])

    @torch.no_grad()
    def _post_step(self, optimizer, args, kwargs) -> None:
        if self._inf_skip:
            return
        if not self._skipped and self.layers:
            torch._foreach_mul_([L.p for L in self.layers.values()], [L.fm for L in self.layers.values()])
        if self._update_now:
            self.update_masks(self.step)
        self.step += 1

    # ---- the update ----
    @torch.no_grad()
    def update_masks(self, t: int) -> dict:
        """Drop and grow at step `t` (called by the post-step hook on update steps). Returns the log row."""
        t0 = time.perf_counter()
        m = self.method
        state = self._optimizer.state if self._optimizer is not None else {}
        row = {"step": int(t), "drop_fraction": float(m.drop_fraction_at(t)), "nnz": {}, "dropped": {},
               "grown": {}}
        for n, L in self.layers.items():
            dropped, grown, nnz = [], [], []
            for blk in L.blocks:
                d, g = self._update_block(n, L, blk, t, state)
                dropped += d
                grown += g
                nnz += [blk.nnz] * (blk.rows.stop - blk.rows.start)
            row["nnz"][n] = nnz[0] if len(set(nnz)) == 1 else nnz  # one count per slice where they differ
            row["dropped"][n], row["grown"][n] = dropped, grown
        for L in self.layers.values():
            L.captured = None
        self.history.append(row)
        self.update_seconds += time.perf_counter() - t0
        if self.on_update is not None:
            self.on_update(row)
        return row

    @torch.no_grad()
    def _update_block(self, n: str, L: _Layer, blk: _Block, t: int, state) -> tuple[list[int], list[int]]:
        """Drop and grow in the slices `blk.rows` of layer `L`; returns (dropped, grown) per slice."""
        m, R = self.method, blk.rows.stop - blk.rows.start
        k = 0 if blk.target <= 0 else m.n_drop(t, blk.nnz, L.numel, blk.target)  # target 0: dense in these slices
        if k <= 0:
            return [0] * R, [0] * R
        rows = blk.rows
        w = self._row(L.p)[rows]
        fm = self._row(L.fm)[rows]
        # 1. drop: the k smallest |w| among the active entries
        cols = top_k(w.gather(1, blk.idx).abs_(), k, largest=False, positions=blk.idx)
        D = blk.idx.gather(1, cols)  # flat positions of the dropped entries
        # 2. grow: the k best scores among the inactive and just-dropped entries
        if m.regrows:
            ctx = LayerContext(n, t, w, None if L.captured is None else self._row(L.captured)[rows],
                               None if L.buffer is None else self._row(L.buffer)[rows], self.seeds[rows])
            s = m.grow_scores(ctx)
            s_dropped = s.gather(1, D)
            s.scatter_(1, blk.idx, -math.inf)  # the kept entries cannot be grown...
            s.scatter_(1, D, s_dropped)  # ...the just-dropped ones can
            G = top_k(s, k)
            was = fm.gather(1, G)  # 1: dropped just now and regrown (keeps value and state)
        fm.scatter_(1, D, 0.0)
        if m.regrows:
            fm.scatter_(1, G, 1.0)
        kept_d = fm.gather(1, D)  # 1: regrown
        pos, fac = (torch.cat([D, G], 1), torch.cat([kept_d, was], 1)) if m.regrows else (D, kept_d)
        # 3. zero dropped weights and grown-new weights, and (unless grow_state "keep") their
        # optimizer state (2k positions)
        slots = [] if self.keep_state else state.get(L.p, {}).values()
        for v in [L.p] + [v for v in slots if torch.is_tensor(v) and v.shape == L.p.shape]:
            vv = self._row(v)[rows]
            vv.scatter_(1, pos, vv.gather(1, pos).mul_(fac if fac.dtype == v.dtype else fac.to(v.dtype)))
        if m.regrows:  # the grown positions take the dropped ones' columns: no compaction
            blk.idx.scatter_(1, cols, G)
        else:
            keep = torch.ones(R, blk.nnz, dtype=torch.bool, device=blk.idx.device)
            keep.scatter_(1, cols, False)
            blk.idx = blk.idx[keep].view(R, blk.nnz - k)
        blk.nnz = blk.idx.shape[1]
        return (kept_d == 0).sum(1).tolist(), ((was == 0).sum(1).tolist() if m.regrows else [0] * R)

    # ---- inspection and state ----
    @property
    def masks(self) -> dict[str, Tensor]:
        """The current boolean masks, parameter-shaped ([R, ...] when stacked), of the masked layers."""
        return {n: L.fm != 0 for n, L in self.layers.items()}

    def replica_masks(self, r: int) -> dict[str, Tensor]:
        """Model r's masks (plain shapes); r = 0 for plain parameters."""
        return {n: (m[r] if self.stacked else m).clone() for n, m in self.masks.items()}

    def state_dict(self) -> dict:
        """The updater's state (method name, step, seeds, masks, the methods' buffers, the update
        history): what a checkpoint holds to resume the schedule and the masks exactly. Before
        `attach`, a loaded state is given back as it was loaded."""
        if not self.layers and self._loaded is not None:
            return self._loaded
        return {"method": self.method.name, "step": self.step, "seeds": list(self.seeds),
                "masks": self.masks,
                "buffers": {n: L.buffer.clone() for n, L in self.layers.items() if L.buffer is not None},
                "history": list(self.history), "dense_grad_captures": self.dense_grad_captures}

    def replica_state_dicts(self) -> list[dict]:
        """The state split by model: entry r is what an updater of model r alone would save (its
        seed, the masks and buffers of the layers it masks, its share of each history row), so that
        each run of a stacked group saves its own share and not the group's (R runs × R models'
        masks). A layer that model r keeps dense (target 0 in its slice, while other models mask it)
        is left out, as alone it is not masked. One entry when not stacked. `join_states` is the inverse."""
        st = self.state_dict()
        R = len(st["seeds"])
        if R == 1:
            return [st]

        def mine(n: str, r: int) -> bool:  # whether model r masks layer n
            L = self.layers.get(n)
            return L is None or not any(b.rows.start <= r < b.rows.stop and b.target <= 0 for b in L.blocks)

        def row_of(h: dict, r: int) -> dict:
            return {**h, "nnz": {n: v[r] if isinstance(v, list) else v for n, v in h["nnz"].items() if mine(n, r)},
                    "dropped": {n: [v[r]] for n, v in h["dropped"].items() if mine(n, r)},
                    "grown": {n: [v[r]] for n, v in h["grown"].items() if mine(n, r)}}
        return [{**st, "seeds": [st["seeds"][r]],
                 "masks": {n: m[r].clone() for n, m in st["masks"].items() if mine(n, r)},
                 "buffers": {n: b[r].clone() for n, b in st["buffers"].items() if mine(n, r)},
                 "history": [row_of(h, r) for h in st["history"]]} for r in range(R)]

    @staticmethod
    def join_states(states: Sequence[dict]) -> dict:
        """One stacked state from the models' own (`replica_state_dicts`), in group order: a layer
        that a model keeps dense comes back all-ones in its slice (zero buffer, full count). States
        that each hold the whole group (checkpoints written before the split) give the first."""
        if len(states) == 1 or len(states[0]["seeds"]) == len(states) > 1:
            return states[0]
        names = list(dict.fromkeys(n for st in states for n in st["masks"]))
        ref = {n: next(st["masks"][n] for st in states if n in st["masks"]) for n in names}

        def joined(i: int, n: str) -> int | list[int]:  # one count, or one per model where they differ
            counts = [st["history"][i]["nnz"].get(n, ref[n].numel()) for st in states]
            return counts[0] if len(set(counts)) == 1 else counts

        def per_model(i: int, key: str, n: str) -> list[int]:
            return [st["history"][i][key].get(n, [0])[0] for st in states]
        buffers = list(dict.fromkeys(n for st in states for n in st["buffers"]))
        return {**states[0], "seeds": [int(st["seeds"][0]) for st in states],
                "masks": {n: torch.stack([st["masks"].get(n, torch.ones_like(ref[n])) for st in states]) for n in names},
                "buffers": {n: torch.stack([st["buffers"][n] if n in st["buffers"] else
                                            torch.zeros_like(next(s["buffers"][n] for s in states if n in s["buffers"]))
                                            for st in states]) for n in buffers},
                "history": [{**h, "nnz": {n: joined(i, n) for n in names},
                             "dropped": {n: per_model(i, "dropped", n) for n in names},
                             "grown": {n: per_model(i, "grown", n) for n in names}}
                            for i, h in enumerate(states[0]["history"])]}

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict`'s state; a state of another method or other seeds is a ValueError."""
        if state.get("method") != self.method.name:
            raise ValueError(f"sparse state of method {state.get('method')!r}, this updater runs {self.method.name!r}")
        if list(state.get("seeds", [])) != list(self.seeds):
            raise ValueError(f"sparse state of models with seeds {state.get('seeds')}, this updater has "
                             f"{list(self.seeds)}: resume with the same group of models")
        self._loaded = state
        if self._optimizer is not None:  # already attached: reinstall from the state, hooks kept
            params = {n: L.p for n, L in self.layers.items()}
            per = [{} for _ in range(self.R)]  # the targets of the masked layers, per slice
            for n, L in self.layers.items():
                for b in L.blocks:
                    for r in range(b.rows.start, b.rows.stop):
                        per[r][n] = b.target
            self.sparsities = per if self.stacked else per[0]
            self._install(self._optimizer, params)


GROW_STATES = ("zero", "keep")  # the optimizer state of inactive positions (`Updater`'s grow_state)
STATE_KEY = "ticketlab_sparse"  # where `sparsify`'s state rides in `optimizer.state_dict()`


def _distributed() -> bool:
    d = torch.distributed
    return d.is_available() and d.is_initialized() and d.get_world_size() > 1


def _broadcast(t: Tensor) -> Tensor:
    torch.distributed.broadcast(t, src=0)
    return t

