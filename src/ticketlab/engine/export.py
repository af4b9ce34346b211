"""Export a ticket (a trained, masked network) as a compact sparse model for CPU inference.

    from ticketlab.engine.export import export_experiment, SparseModel
    export_experiment("lottery-1a2b3c4d5e6f", "ticket.pt", level=7)      # a store folder or ref
    model = SparseModel.load("ticket.pt")                                 # no model class needed
    with torch.inference_mode():
        logits = model(x)

What the export does (see docs/performance.md §7 for the measurements):

- Every ``nn.Linear`` whose weight sparsity is at least `min_sparsity` (default 0: all of them) runs
  as a `CSRLinear`: a CSR weight with int32 indices (faster than int64 with MKL), ``torch.addmv(b, W,
  x)`` at batch 1 and ``torch.addmm(b, W, xᵀ)`` otherwise. `F.linear(x, W_csr)` is never used
  (0.1–0.8x of dense at batch 64 below 98% sparsity).
- Sequential networks (MLP, LeNet, Conv-2/4/6, VGG) run through a small plan instead of one module
  call per layer: activations stay a vector at batch 1 and [features, batch] between CSR layers
  (only the first one transposes its input), and element-wise activations are plain function
  calls. At LeNet size and batch 1 a module call costs about as much as a sparse layer, so this
  matters as much as the kernels. Outputs are bit-identical to the module path. Other networks
  (ResNet) run their own forward with the CSR layers swapped in.
- Break-even (`benchmarks/speed/sparse_inference.py`, 1 thread, against the masked dense model
  called as usual): the 4096² layer wins from ≈80% sparsity at batch 1 (1.5x) and ≈85–90% at batch
  64 (2x at 90%, 9x at 98%); LeNet-300-100 wins from ≈80% at batch 64 (1.15x; 4x at 98%) and from
  ≈70–80% at batch 1 (1.4x at 80%, 2.3x at 98%, of which ≈1.5x is the kernels and the rest the
  saved module calls). Below ≈50–80% CSR loses (0.3–0.8x): pass ``min_sparsity`` (e.g. 0.8) to
  keep denser layers dense.
- Convolutions, BatchNorm and everything else stay dense (eval mode: BN uses its running
  statistics). Measured: a conv as unfold + CSR addmm loses on early, large-map layers (64→64 ch at
  32x32: 0.6–0.8x at batch 1, 0.13–0.2x at batch 64, 90–98% sparsity) and wins only on late,
  small-map ones at batch 1 (256→256 ch at 8x8: 1.2x at 90%, 2.6x at 98%; batch 64: 0.64x / 1.4x),
  so convs are kept dense. A masked conv weight is *stored* in CSR form when that is smaller and
  densified on load, so the file stays compact for conv nets too.

File format (one file, written atomically, loadable with ``torch.load(path, weights_only=True)``:
only tensors, str, int, float, bool, None, lists and dicts, never a pickled class)::

    {"format": "ticketlab.sparse_model", "version": 1,
     "spec":  JSON str or None   how to rebuild the skeleton: {"builder": "ticketlab.models",
                                 "model", "input_shape", "num_classes", "init", "model_args"}
     "info":  JSON str           provenance and per-layer sparsity (SparseModel.info)
     "csr":   {module name: {"shape": [out, in], "crow_indices", "col_indices", "values",
                             "bias": Tensor | None}}             the layers run as CSRLinear
                                 (row pointers int32, column indices int16 when there are at most
                                 32768 columns, else int32; values in the weight's dtype)
     "packed": {state_dict key: {"shape": [...], "crow_indices", "col_indices", "values"}}
                                 dense-run tensors stored as CSR of weight.reshape(shape[0], -1)
     "dense": {state_dict key: Tensor}}                          every other parameter / buffer

`SparseModel.load` rebuilds the skeleton with `ticketlab.models.create_model` on the meta device (no
memory, no init), swaps in the CSR layers and assigns the remaining tensors: any registered
architecture works (LeNet, MLP, Conv-2/4/6, ResNet, VGG), with no pickled code in the file. A model
built outside the registry (``export_run(..., build_model=f)``) has no spec; load it with
``SparseModel.load(path, build_model=f)``.

At 90% sparsity the file is ≈15–20% of the dense state dict (6 bytes per kept weight against 4 per
weight). Outputs equal the masked dense model's up to float rounding (the sparse kernels sum in
another order): the tests check ``allclose(atol=1e-5, rtol=1e-5)``.
"""

from __future__ import annotations

import copy
import json
import math
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Mapping

import torch
from torch import nn

from ticketlab.core import atomic as _atomic
from ticketlab.core.errors import TicketlabError
from ticketlab.training.rundir import read_json

FORMAT = "ticketlab.sparse_model"
VERSION = 1
_INT32_MAX = 2**31 - 1
_INT16_COLS = 2**15  # at most this many columns: column indices fit in int16


@contextmanager
def _quiet_sparse() -> Iterator[None]:
    """Silence torch's "sparse CSR support is in beta" warnings (the API used here is stable)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
        yield


# ---- the sparse layer --------------------------------------------------------------------

class CSRLinear(nn.Module):
    """``y = x Wᵀ + b`` with W in CSR form (inference only).

    Batch 1 uses ``torch.addmv`` (≈1.6–2x faster than the matrix forms); larger batches use
    ``torch.addmm(b, W, xᵀ)`` and return the [out, batch] result as a transposed view, so a following
    element-wise op and the next CSRLinear see [features, batch] memory without a copy.
    Inputs of any shape ``[..., in_features]`` are accepted.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        if weight.layout != torch.sparse_csr or weight.dim() != 2:
            raise ValueError("CSRLinear needs a 2-D sparse CSR weight")
        self.out_features, self.in_features = int(weight.shape[0]), int(weight.shape[1])
        if bias is not None and tuple(bias.shape) != (self.out_features,):
            raise ValueError(f"bias of shape {tuple(bias.shape)} does not match {self.out_features} outputs")
        # Non-persistent buffers: they follow .to()/.double() but stay out of state_dict (the
        # file format stores CSR components explicitly).
        self.register_buffer("weight", weight, persistent=False)
        self.register_buffer("bias", bias, persistent=False)

    @classmethod
    def from_dense(cls, weight: torch.Tensor, bias: torch.Tensor | None = None) -> "CSRLinear":
        """A CSRLinear holding the non-zero entries of a dense [out, in] weight."""
        return cls(_to_csr(weight.detach()), None if bias is None else bias.detach().clone())

    @property
    def nnz(self) -> int:
        return int(self.weight.values().numel())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2:  # [..., in]: fold the leading dims into the batch
            lead = x.shape[:-1]
            return self.forward(x.reshape(-1, x.shape[-1])).reshape(*lead, self.out_features)
        if x.shape[0] == 1:
            v = x[0]
            y = torch.mv(self.weight, v) if self.bias is None else torch.addmv(self.bias, self.weight, v)
            return y.unsqueeze(0)
        xt = x.t()
        if self.bias is None:
            return torch.mm(self.weight, xt).t()
        return torch.addmm(self.bias.unsqueeze(1), self.weight, xt).t()

    def extra_repr(self) -> str:
        density = self.nnz / max(1, self.out_features * self.in_features)
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, density={density:.4f}")


def _index_dtype(n: int) -> torch.dtype:
    return torch.int32 if n <= _INT32_MAX else torch.int64


def _to_csr(w2d: torch.Tensor) -> torch.Tensor:
    """CSR of a dense 2-D tensor (its non-zeros), with int32 indices when they fit."""
    with _quiet_sparse():
        csr = w2d.to_sparse_csr()
        dt = _index_dtype(max(csr.values().numel(), w2d.shape[1]))
        if dt == torch.int64:
            return csr
        return torch.sparse_csr_tensor(csr.crow_indices().to(dt), csr.col_indices().to(dt),
                                       csr.values(), tuple(w2d.shape))


def _components(csr: torch.Tensor, shape) -> dict:
    """CSR components for the file. Column indices are stored as int16 when every column fits
    (at most 32768 columns: any LeNet/MLP/conv-net layer), a quarter off the file size at high
    sparsity; they are widened back to the row pointers' dtype on load."""
    col = csr.col_indices()
    col = col.to(torch.int16) if csr.shape[1] <= _INT16_COLS else col.clone()
    return {"shape": [int(s) for s in shape], "crow_indices": csr.crow_indices().clone(),
            "col_indices": col, "values": csr.values().clone()}


def _from_components(c: Mapping, where: str) -> tuple[torch.Tensor, list[int]]:
    """(2-D CSR tensor, original shape) from stored components, with torch's invariant checks on
    (a corrupt file must raise, not crash the process)."""
    try:
        shape = [int(s) for s in c["shape"]]
        rows = shape[0] if shape else 1
        cols = 1
        for s in shape[1:]:
            cols *= s
        crow, col, values = c["crow_indices"], c["col_indices"], c["values"]
        if not all(isinstance(t, torch.Tensor) for t in (crow, col, values)):
            raise TypeError("CSR components must be tensors")
        if crow.dtype not in (torch.int32, torch.int64) or col.dtype not in (
                torch.int16, torch.int32, torch.int64):
            raise TypeError(f"CSR indices must be integers, got {crow.dtype} and {col.dtype}")
        col = col.to(crow.dtype)
        with _quiet_sparse():
            csr = torch.sparse_csr_tensor(crow, col, values, (rows, cols), check_invariants=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise TicketlabError(f"{where}: invalid CSR tensor ({e})") from None
    return csr, shape


def _pays_to_pack(t: torch.Tensor, nnz: int) -> bool:
    """True if CSR storage (values + int32 column indices + row pointers) is smaller than dense."""
    if t.dim() < 2 or not t.is_floating_point() or t.numel() == 0:
        return False
    cols = t[0].numel()
    idx = 4 if _index_dtype(max(nnz, cols)) == torch.int32 else 8
    col_idx = 2 if cols <= _INT16_COLS else idx
    return nnz * (t.element_size() + col_idx) + (t.shape[0] + 1) * idx < t.numel() * t.element_size()


# ---- module surgery ------------------------------------------------------------------------

def _replace_modules(root: nn.Module, replacements: Mapping[int, nn.Module]) -> nn.Module:
    """Replace every reference to the modules whose id() is a key (shared modules included);
    return the root, itself replaced if it is a key (a bare ``nn.Linear``)."""
    for parent in list(root.modules()):
        for name, child in list(parent.named_children()):
            if id(child) in replacements:
                setattr(parent, name, replacements[id(child)])
    return replacements.get(id(root), root)


def _linear_modules(net: nn.Module) -> dict[str, nn.Linear]:
    # Exact type: subclasses such as MultiheadAttention's out_proj are used through their
    # .weight by their parent's code, not through forward(), and must stay dense.
    return {n: m for n, m in net.named_modules() if type(m) is nn.Linear}


def _check_not_meta(net: nn.Module, where: str) -> None:
    for name, t in list(net.named_parameters()) + list(net.named_buffers()):
        if t is not None and t.is_meta:
            raise TicketlabError(f"{where}: {name} was not restored (the model holds state the file lacks)")


# ---- a fast path for sequential networks -----------------------------------------------------

# Element-wise modules the plan applies as plain functions (any tensor layout works for them).
def _elementwise(m: nn.Module):
    t = type(m)
    if t is nn.ReLU:
        return torch.relu
    if t is nn.Tanh:
        return torch.tanh
    if t is nn.Sigmoid:
        return torch.sigmoid
    if t is nn.LeakyReLU:
        slope = m.negative_slope
        return lambda h: torch.nn.functional.leaky_relu(h, slope)
    return None


_SKIP = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout)  # identities in eval mode

_ROW, _COL, _VEC = 0, 1, 2  # activation layouts: [batch, ...]; [features, batch]; [features] (batch 1)


def _make_plan(net: nn.Module) -> list | None:
    """Steps running an ``nn.Sequential`` network without a module call per layer, or None.

    At LeNet size and batch 1 a module call costs as much as a sparse layer (≈3–5 µs against
    ≈5–7 µs for the addmv), so LeNet-300-100 runs ≈2–3x faster this way. The plan calls exactly the
    kernels the modules would (same inputs, same memory layout), so its outputs are bit-identical
    to ``net(x)``; it carries the activations as a vector at batch 1 and as [features, batch]
    between CSR layers otherwise. Any other module (conv, pool, norm, ...) is called as is.
    """
    if not isinstance(net, nn.Sequential) or type(net).forward is not nn.Sequential.forward:
        return None
    plan = []
    for m in net:
        if isinstance(m, CSRLinear):
            b = m.bias
            plan.append(("csr", m.weight, b, None if b is None else b.unsqueeze(1), m))
        elif isinstance(m, _SKIP):
            if m.training:
                return None
        elif _elementwise(m) is not None:
            plan.append(("ew", _elementwise(m)))
        elif type(m) is nn.Flatten and m.start_dim == 1 and m.end_dim == -1:
            plan.append(("flatten",))
        elif type(m) is nn.Linear:  # kept dense (below min_sparsity): nn.Linear.forward, inlined
            plan.append(("module", lambda h, w=m.weight, b=m.bias: torch.nn.functional.linear(h, w, b)))
        else:
            plan.append(("module", m))
    return plan


def _run_plan(plan: list, x: torch.Tensor) -> torch.Tensor:
    h, layout = x, _ROW
    for step in plan:
        kind = step[0]
        if kind == "csr":
            _, w, b, bcol, module = step
            if layout == _ROW:
                if h.dim() != 2:  # [..., in] input (rare): the module folds the leading dims
                    h = module(h)
                    continue
                if h.shape[0] == 1:
                    h, layout = h[0], _VEC
                else:
                    h, layout = h.t(), _COL
            if layout == _VEC:
                h = torch.mv(w, h) if b is None else torch.addmv(b, w, h)
            else:
                h = torch.mm(w, h) if b is None else torch.addmm(bcol, w, h)
        elif kind == "ew":
            h = step[1](h)
        elif kind == "flatten":
            if layout == _ROW:
                h = h.flatten(1)
        else:
            if layout != _ROW:
                h, layout = (h.unsqueeze(0) if layout == _VEC else h.t()), _ROW
            h = step[1](h)
    if layout == _VEC:
        return h.unsqueeze(0)
    return h.t() if layout == _COL else h


# ---- the model -----------------------------------------------------------------------------

class SparseModel(nn.Module):
    """A network whose Linear layers run as CSR (`CSRLinear`); inference only, CPU.

    ``model(x)`` maps ``[B, *input_shape]`` to the logits, like the dense model. The network is
    kept in eval mode (dropout off, BatchNorm on running statistics); gradients are never taken.

    Attributes: ``net`` (the converted network), ``spec`` (how to rebuild its skeleton, or None),
    ``info`` (per-layer shapes, kept entries and sparsity, provenance).
    """

    def __init__(self, net: nn.Module, *, spec: dict | None = None, info: dict | None = None) -> None:
        super().__init__()
        self.net = net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.spec = spec
        self.info = dict(info or {})
        self._plan = _make_plan(self.net)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            with torch.no_grad():
                return self.forward(x)
        if self._plan is not None:
            return _run_plan(self._plan, x)
        return self.net(x)

    def _apply(self, fn, *args, **kwargs):  # .to(), .double(), ...: the plan holds the tensors
        out = super()._apply(fn, *args, **kwargs)
        self._plan = _make_plan(self.net)
        return out

    def train(self, mode: bool = True) -> "SparseModel":
        if mode:
            raise TicketlabError("SparseModel is inference-only: it cannot be put in training mode")
        return super().train(False)

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        return tuple(self.spec["input_shape"]) if self.spec else getattr(self.net, "input_shape", None)

    @property
    def num_classes(self) -> int | None:
        return int(self.spec["num_classes"]) if self.spec else getattr(self.net, "num_classes", None)

    def csr_layers(self) -> dict[str, CSRLinear]:
        """The layers running as CSR, by module name."""
        return {n: m for n, m in self.net.named_modules() if isinstance(m, CSRLinear)}

    # ---- file ----
    def to_payload(self) -> dict:
        """The file's content: a plain dict of tensors, str, numbers, lists, dicts and None."""
        csr, packed, dense = {}, {}, {}
        for name, m in self.csr_layers().items():
            w = m.weight
            csr[name] = {**_components(w, w.shape),
                         "bias": None if m.bias is None else m.bias.detach().clone()}
        for key, t in self.net.state_dict().items():
            t = t.detach()
            nnz = int(torch.count_nonzero(t)) if t.is_floating_point() and t.dim() >= 2 else t.numel()
            if _pays_to_pack(t, nnz):
                packed[key] = _components(_to_csr(t.reshape(t.shape[0], -1)), t.shape)
            else:
                dense[key] = t.clone()  # clone: never write a larger shared storage
        return {"format": FORMAT, "version": VERSION,
                "spec": None if self.spec is None else json.dumps(self.spec, sort_keys=True),
                "info": json.dumps(self.info, sort_keys=True),
                "csr": csr, "packed": packed, "dense": dense}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model atomically to `path` (see the module docstring for the format)."""
        path = Path(path)
        payload = self.to_payload()
        with _atomic.atomic_open(path, "wb") as f:
            torch.save(payload, f)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, *, build_model: Callable[[], nn.Module] | None = None
             ) -> "SparseModel":
        """Load a file written by `save` / `export_run` / `export_experiment`.

        The file is read with ``weights_only=True``: nothing but tensors and plain values is
        unpickled. The skeleton comes from the file's spec (`ticketlab.models.create_model`, on the
        meta device) or from `build_model` (required when the file has no spec).
        """
        path = Path(path)
        if not path.is_file():
            raise TicketlabError(f"{path}: no such file")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # pickle refusals, truncation, not a torch file
            raise TicketlabError(f"{path}: not a readable ticketlab sparse model ({type(e).__name__}: "
                                 f"{str(e).splitlines()[0] if str(e) else ''})") from None
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise TicketlabError(f"{path}: not a ticketlab sparse model file")
        if payload.get("version") != VERSION:
            raise TicketlabError(f"{path}: sparse model format version {payload.get('version')!r}; "
                                 f"this ticketlab reads version {VERSION}")
        try:
            spec = json.loads(payload["spec"]) if payload["spec"] is not None else None
            info = json.loads(payload["info"])
            csr, packed, dense = payload["csr"], payload["packed"], payload["dense"]
        except (KeyError, TypeError, ValueError) as e:
            raise TicketlabError(f"{path}: malformed sparse model file ({e})") from None
        if build_model is not None:
            net = build_model()
        elif spec is not None:
            net = build_skeleton(spec)
        else:
            raise TicketlabError(f"{path}: the file has no model spec (it was exported from a custom "
                                 f"model): pass build_model= to SparseModel.load")
        return cls(_assemble(net, csr, packed, dense, str(path)), spec=spec, info=info)


def _assemble(net: nn.Module, csr: Mapping, packed: Mapping, dense: Mapping, where: str) -> nn.Module:
    """Swap the CSR layers into a skeleton and assign every other tensor (strictly)."""
    modules = dict(net.named_modules())
    replacements = {}
    for name, c in csr.items():
        old = modules.get(name)
        if type(old) is not nn.Linear:
            raise TicketlabError(f"{where}: CSR layer {name!r} is not a Linear layer of the model")
        w, shape = _from_components(c, f"{where}: {name}")
        if shape != [old.out_features, old.in_features]:
            raise TicketlabError(f"{where}: CSR layer {name!r} has shape {shape}, the model expects "
                                 f"{[old.out_features, old.in_features]}")
        bias = c.get("bias")
        if bias is not None and not isinstance(bias, torch.Tensor):
            raise TicketlabError(f"{where}: CSR layer {name!r}: bias is not a tensor")
        if (bias is None) != (old.bias is None):
            raise TicketlabError(f"{where}: CSR layer {name!r}: bias presence differs from the model")
        try:
            replacements[id(old)] = CSRLinear(w, bias)
        except ValueError as e:
            raise TicketlabError(f"{where}: CSR layer {name!r}: {e}") from None
    net = _replace_modules(net, replacements)
    state = dict(dense)
    for key, c in packed.items():
        w, shape = _from_components(c, f"{where}: {key}")
        with _quiet_sparse():
            state[key] = w.to_dense().reshape(shape)
    try:
        net.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        raise TicketlabError(f"{where}: the stored tensors do not match the model: "
                             f"{str(e).splitlines()[0]} ...") from None
    _check_not_meta(net, where)
    return net


def build_skeleton(spec: Mapping) -> nn.Module:
    """The model described by `spec`, built on the meta device (no memory, no initialisation)."""
    if spec.get("builder") != "ticketlab.models":
        raise TicketlabError(f"unknown model builder {spec.get('builder')!r} in the model spec")
    from ticketlab.models import create_model
    with torch.device("meta"):
        return create_model(spec["model"], input_shape=tuple(spec["input_shape"]),
                            num_classes=int(spec["num_classes"]), init=spec.get("init"),
                            **dict(spec.get("model_args") or {}))


def sparse_from_dense(model: nn.Module, masks: Mapping[str, torch.Tensor] | None = None, *,
                      min_sparsity: float = 0.0, spec: dict | None = None) -> SparseModel:
    """A `SparseModel` computing what `model` computes with `masks` applied (in eval mode).

    - `masks`: boolean masks by parameter name (``model.named_parameters()``); pruned entries are
      zeroed in a copy (`model` is not modified). Without masks the weights' zeros are the pattern.
    - Every ``nn.Linear`` whose weight has at least `min_sparsity` zeros becomes a `CSRLinear`;
      the others (and all convs, norms, ...) stay dense.
    - `spec`: how to rebuild the skeleton when the model is saved (see `build_skeleton`); without
      it, the saved file needs ``SparseModel.load(path, build_model=...)``.
    """
    net = copy.deepcopy(model).cpu()
    return _convert(net, masks, min_sparsity, spec)


def _convert(net: nn.Module, masks: Mapping[str, torch.Tensor] | None, min_sparsity: float,
             spec: dict | None) -> SparseModel:
    """Mask `net` in place, swap its sparse-enough Linear layers for CSRLinear, wrap it."""
    try:
        value = float(min_sparsity)
    except (TypeError, ValueError):
        value = math.nan
    if not 0.0 <= value <= 1.0:  # NaN fails it too
        raise TicketlabError(f"min_sparsity: got {min_sparsity!r}, expected a value in [0, 1]")
    min_sparsity = value
    params = dict(net.named_parameters())
    dense_bytes = sum(t.numel() * t.element_size() for t in net.state_dict().values())
    with torch.no_grad():
        for name, m in (masks or {}).items():
            p = params.get(name)
            if p is None:
                raise TicketlabError(f"mask {name!r} matches no parameter of the model")
            if tuple(m.shape) != tuple(p.shape):
                raise TicketlabError(f"mask {name!r} has shape {tuple(m.shape)}, the parameter "
                                     f"{tuple(p.shape)}")
            p.masked_fill_(~m.to(p.device, torch.bool), 0)  # the model was copied to the CPU; masks may be on a GPU
    layers, replacements = {}, {}
    for name, mod in _linear_modules(net).items():
        w = mod.weight.detach()
        nnz = int(torch.count_nonzero(w))
        sparsity = 1.0 - nnz / max(1, w.numel())
        run_csr = sparsity >= min_sparsity
        layers[name] = {"shape": list(w.shape), "nnz": nnz, "sparsity": round(sparsity, 6),
                        "compute": "csr" if run_csr else "dense"}
        if run_csr:
            replacements[id(mod)] = CSRLinear.from_dense(w, mod.bias)
    for name, mod in net.named_modules():
        if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            w = mod.weight.detach()
            nnz = int(torch.count_nonzero(w))
            layers[name] = {"shape": list(w.shape), "nnz": nnz,
                            "sparsity": round(1.0 - nnz / max(1, w.numel()), 6), "compute": "dense"}
    net = _replace_modules(net, replacements)
    from ticketlab.core.version import __version__
    info = {"min_sparsity": min_sparsity, "layers": layers, "dense_bytes": dense_bytes,
            "torch": torch.__version__, "ticketlab": __version__}
    return SparseModel(net, spec=spec, info=info)


# ---- from the results store ---------------------------------------------------------------

def model_spec(cfg: Mapping) -> dict:
    """The skeleton spec of a training config (a `TrainConfig` as a dict: model, dataset,
    model_args, init). The input shape and class count come from the dataset registry, without
    loading any data."""
    from ticketlab.data.registry import get_info
    try:
        model, dataset = cfg["model"], cfg["dataset"]
    except (KeyError, TypeError):
        raise TicketlabError("the experiment's config names no model and dataset") from None
    info = get_info(dataset)
    return {"builder": "ticketlab.models", "model": model, "input_shape": list(info.input_shape),
            "num_classes": int(info.num_classes), "init": cfg.get("init"),
            "model_args": dict(cfg.get("model_args") or {}), "dataset": dataset}


def _train_config(body: Mapping) -> Mapping:
    cfg = body.get("config", {})
    return cfg["train"] if isinstance(cfg.get("train"), dict) else cfg


def _read_config(exp: Path) -> dict:
    path = exp / "config.json"
    if not path.is_file():
        raise TicketlabError(f"{path}: no such file (not an experiment folder)")
    body = read_json(path)  # checked against its folder's manifest, one line when damaged
    if not isinstance(body, dict):
        raise TicketlabError(f"{path}: expected a JSON object")
    return body


def _find_experiment(run_dir: Path) -> Path:
    """The experiment folder holding `run_dir` (the nearest ancestor with a config.json)."""
    for p in [run_dir, *run_dir.parents][:5]:
        if (p / "config.json").is_file():
            return p
    raise TicketlabError(f"{run_dir}: no config.json in it or its parents; pass build_model= to export "
                         f"a run outside the results store")


def export_run(run_dir: str | os.PathLike, out: str | os.PathLike, *,
               build_model: Callable[[], nn.Module] | None = None, spec: dict | None = None,
               min_sparsity: float = 0.0) -> Path:
    """Export one finished run (a folder with ``final.pt``) to a sparse model file at `out`.

    The model skeleton comes from `build_model` (a no-argument callable returning the model), else
    from `spec`, else from the config.json of the experiment folder holding `run_dir`. The weights
    are ``final.pt``'s, masked with its masks (or the folder's ``mask.pt``). Returns `out`.
    """
    run_dir, out = Path(run_dir), Path(out)
    final = run_dir / "final.pt"
    if not final.is_file():
        what = "the run has not finished" if run_dir.is_dir() else "no such run folder"
        raise TicketlabError(f"{final}: no such file ({what})")
    from ticketlab.training.loop import load_state
    from ticketlab.training.rundir import load_tensors
    try:
        state = load_state(final)
        weights = state["model"]
    except TicketlabError:
        raise
    except Exception as e:
        raise TicketlabError(f"{final}: unreadable checkpoint ({type(e).__name__}: {e})") from None
    masks = state.get("masks") or {}
    if not masks and (run_dir / "mask.pt").is_file():
        masks = load_tensors(run_dir / "mask.pt")
    if build_model is not None:
        net = build_model()
    else:
        if spec is None:
            spec = model_spec(_train_config(_read_config(_find_experiment(run_dir))))
        net = build_skeleton(spec)
    try:
        net.load_state_dict(weights, strict=True, assign=True)
    except RuntimeError as e:
        raise TicketlabError(f"{final}: the weights do not fit the model: {str(e).splitlines()[0]}") from None
    _check_not_meta(net, str(final))
    sm = _convert(net.cpu(), masks, min_sparsity, spec)
    sm.info["source"] = str(run_dir)
    return sm.save(out)


def _resolve_experiment(exp, store) -> Path:
    p = Path(getattr(exp, "path", exp))
    if (p / "config.json").is_file():
        return p
    from ticketlab.engine.store import Store
    return Store(store).get(str(exp)).path


def _available(folder: Path, prefix: str) -> str:
    found = sorted((d.name for d in folder.glob(f"{prefix}*") if d.is_dir()),
                   key=lambda s: (len(s), s)) if folder.is_dir() else []
    return ", ".join(found) if found else "none"


def export_experiment(exp_path, out: str | os.PathLike, *, level: int, replicate: int = 0, branch: str = "",
                      store=None, min_sparsity: float = 0.0) -> Path:
    """Export level `level` of a lottery experiment (or a `train` experiment, level 0) to `out`.

    `exp_path`: the experiment folder, or a name / hash prefix resolved in `store`. `branch`: a
    control branch folder (``reinit_0``, ``random_mask_0``, ``oneshot``, ...); empty for the ticket.
    Raises TicketlabError naming the path when the level (or replicate, branch) does not exist or
    has not finished. Returns `out`.
    """
    exp = _resolve_experiment(exp_path, store)
    body = _read_config(exp)
    kind = body.get("kind")
    if kind == "lottery":
        rep = exp / f"replicate_{int(replicate)}"
        if not rep.is_dir():
            raise TicketlabError(f"{rep}: no such replicate (found: {_available(exp, 'replicate_')})")
        base = rep / branch if branch else rep
        if not base.is_dir():
            raise TicketlabError(f"{base}: no such branch")
        run_dir = base / f"level_{int(level)}"
        if not run_dir.is_dir():
            raise TicketlabError(f"{run_dir}: no such level (found: {_available(base, 'level_')})")
    elif kind == "train":
        if level != 0 or replicate != 0 or branch:
            raise TicketlabError(f"{exp}: a train experiment has one run: level 0, replicate 0, no branch")
        run_dir = exp
    else:
        raise TicketlabError(f"{exp}: cannot export a {kind!r} experiment (lottery and train only)")
    spec = model_spec(_train_config(body))
    path = export_run(run_dir, out, spec=spec, min_sparsity=min_sparsity)
    return path


__all__ = ["SparseModel", "CSRLinear", "sparse_from_dense", "export_run", "export_experiment",
           "build_skeleton", "model_spec", "FORMAT", "VERSION"]
