"""Dynamic sparse training: RigL, SET, SNFS, static sparse and gradual magnitude pruning.

A method is a frozen dataclass whose fields are its hyper-parameters (jaxpruner style), declared with
`param()` (help, range; validated on construction); `RigL` and `SNFS` subclass `SET` and change only
the grow score. `METHODS` is the one registry of method names: every way the sparse-training
experiment trains, from `dense` (no mask) through the `Method`s an `Updater` runs to the one-shot
pruning-at-init methods (`ticketlab.methods.saliency`: their mask trains as `Static`). An `Updater` holds the masks and attaches to any
torch optimizer through its step hooks, so the training loop keeps calling ``optimizer.step()``:

    from ticketlab.core import distributions
    from ticketlab.methods import sparse
    from ticketlab.models import prunable_parameters, output_layer_name

    params = prunable_parameters(model)
    shapes = {n: p.shape for n, p in params.items()}
    s = distributions.erdos_renyi_kernel(shapes, 0.9)
    updater = sparse.Updater(sparse.RigL(end_step=int(0.75 * total)), s, seed=0).attach(optimizer, params)
    for x, y in batches:                      # unchanged user code
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()                      # masks gradients, steps (or not), updates masks

or `sparsify(model, optimizer, method, 0.9)` for the same in one call. With `ticketlab.training.loop.fit`,
pass the (unattached) updater in `hooks=[...]`: fit attaches it and checkpoints its state.
See `ticketlab.methods.sparse.updater` for the exact update semantics and their cost.
"""

from __future__ import annotations

from typing import Sequence

from ticketlab.methods.saliency import SNIP, GraSP, PruneAtInit, SynFlow
from ticketlab.methods.sparse.gmp import GMP
from ticketlab.methods.sparse.rigl import RigL
from ticketlab.methods.sparse.set import SET
from ticketlab.methods.sparse.snfs import SNFS
from ticketlab.methods.sparse.static import Dense, Static
from ticketlab.methods.sparse.updater import LayerContext, Method, Updater, top_k, training_fraction

# name -> class: a `Method` (run by an `Updater`), a `PruneAtInit` (a one-shot mask, trained as
# `Static`) or `Dense` (no mask). The order is the order of `ticketlab sparse-train --method`'s choices.
METHODS: dict[str, type] = {
    "dense": Dense,
    "static": Static,
    "set": SET,
    "snfs": SNFS,
    "rigl": RigL,
    "gmp": GMP,
    "snip": SNIP,
    "grasp": GraSP,
    "synflow": SynFlow,
}


def register_method(cls: type) -> type:
    """Add a method class (a `Method` or `PruneAtInit` dataclass) to `METHODS` under its `name`
    (usable as a decorator)."""
    if cls.name in METHODS and METHODS[cls.name] is not cls:
        raise ValueError(f"sparse method {cls.name!r} is already registered")
    METHODS[cls.name] = cls
    return cls


def sparsify(model, optimizer, method: Method, sparsity: float, *, distribution: str = "erk",
             dense_first: bool = False, dense_last: bool = False, dense: Sequence[str] = (),
             seed: int = 0, grow_state: str = "zero") -> Updater:
    """Mask `model`'s prunable weights at `sparsity` (`distribution` over layers, first/last-layer
    policy) and attach `method` to `optimizer`. Returns the attached `Updater`.

    Works on a wrapped optimizer (accelerate, Lightning), under a `GradScaler` (a skipped step moves
    neither the masks nor the step count) and under DistributedDataParallel (every rank holds the same
    masks); the updater's state rides in `optimizer.state_dict()`, so a checkpoint of the optimizer
    resumes the same schedule. `grow_state`: "zero" or "keep", the optimizer state of inactive
    weights (`Updater`)."""
    updater, params = updater_for(model, method, sparsity, distribution=distribution, dense_first=dense_first,
                                  dense_last=dense_last, dense=dense, seed=seed, grow_state=grow_state)
    return updater.attach(optimizer, params, in_state_dict=True)


def updater_for(model, method: Method, sparsity: float, *, distribution: str = "erk",
                dense_first: bool = False, dense_last: bool = False, dense: Sequence[str] = (),
                seed: int = 0, grow_state: str = "zero") -> tuple[Updater, dict]:
    """What `sparsify` attaches, not attached yet: the `Updater` and the {name: parameter} it masks
    (a framework integration attaches it later, e.g. once a checkpoint's state is loaded)."""
    from ticketlab.core import distributions
    from ticketlab.models import output_layer_name, prunable_parameters

    params = prunable_parameters(model)
    last = output_layer_name(model) if dense_last and hasattr(model, "output_layer") else None
    policy = distributions.dense_layers(list(params), dense_first=dense_first, dense_last=dense_last,
                                        last=last, extra=dense)
    s = distributions.sparsities(distribution, {n: tuple(p.shape) for n, p in params.items()}, sparsity,
                                 dense=policy)
    return Updater(method, s, seed=seed, grow_state=grow_state), params


__all__ = ["Method", "Updater", "LayerContext", "top_k", "training_fraction", "Dense", "Static", "SET", "RigL",
           "SNFS", "GMP", "PruneAtInit", "SNIP", "GraSP", "SynFlow", "METHODS", "register_method", "sparsify", "updater_for"]
