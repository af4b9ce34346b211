"""How many runs to stack on a GPU: from its free memory and one model's footprint, not the CPU constant.

Issue 16 ("Speed on every device", *Stacked runs on the GPU*): on the CPU the stack size is a measured
constant (8; docs/performance.md §2), but on a GPU one step of 1 or of 100 stacked LeNets costs about
the same, so a stack should be as large as memory allows. One stacked model costs, in bytes:

    params × 4 × (weight + gradient + mask + optimizer slots)   Adam: 2 slots, SGD with momentum: 1
    + batch × activations per example × 4 × 2                    kept for backward, and their gradients

`footprint` and `stack_for_memory` are pure arithmetic (tested on the CPU with given numbers);
`activations_per_example` counts a model's layer outputs on the `meta` device (no memory, no compute);
`cuda_stack` reads the free memory of a CUDA device and puts them together.
"""

from __future__ import annotations

import copy

import torch

BYTES = 4          # fp32: parameters, masks and optimizer state stay fp32 under bf16 autocast too
HEADROOM = 0.7     # of the free memory: the allocator's fragmentation, cuBLAS workspaces, eval batches
CAP = 512          # the largest stack issue 16's benchmark measures


def optimizer_slots(optimizer: str, momentum: float = 0.0) -> int:
    """State tensors per parameter: Adam/AdamW 2 (the two moments), SGD 1 with momentum, else 0."""
    if optimizer in ("adam", "adamw"):
        return 2
    return 1 if momentum else 0


def footprint(n_params: int, batch_size: int, activations: int, *, slots: int = 2, bytes_per: int = BYTES) -> int:
    """Bytes one stacked model needs in training: weights, gradients, masks and `slots` optimizer
    states per parameter, plus `activations` values per example at `batch_size`, kept for backward
    and matched by their gradients."""
    return n_params * bytes_per * (3 + slots) + 2 * batch_size * activations * bytes_per


def stack_for_memory(free_bytes: int, model_bytes: int, *, headroom: float = HEADROOM, cap: int = CAP) -> int:
    """The stack size that fits `headroom` of `free_bytes` at `model_bytes` per model: at least 1
    (a model too large still trains alone), at most `cap`."""
    return max(1, min(cap, int(free_bytes * headroom) // max(1, model_bytes)))


def activations_per_example(model: torch.nn.Module, input_shape: tuple[int, ...]) -> int:
    """The values one example leaves behind in the leaf modules' outputs: a forward pass of a copy of
    `model` on the `meta` device, so nothing is allocated or computed."""
    meta = copy.deepcopy(model).to("meta")
    total = 0

    def count(_module, _inputs, out):
        nonlocal total
        if torch.is_tensor(out):
            total += out[0].numel()

    hooks = [m.register_forward_hook(count) for m in meta.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            meta(torch.empty((1, *input_shape), device="meta"))
    finally:
        for h in hooks:
            h.remove()
    return total


def cuda_stack(model: torch.nn.Module, input_shape: tuple[int, ...], batch_size: int, dev: torch.device, *,
               slots: int = 2) -> int:
    """The stack size for `model` trained at `batch_size` on the CUDA device `dev`, from its free memory."""
    free, _total = torch.cuda.mem_get_info(dev)
    n_params = sum(p.numel() for p in model.parameters())
    return stack_for_memory(free, footprint(n_params, batch_size, activations_per_example(model, input_shape),
                                            slots=slots))


__all__ = ["optimizer_slots", "footprint", "stack_for_memory", "activations_per_example", "cuda_stack"]
