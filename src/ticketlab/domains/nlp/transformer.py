"""Transformer building blocks (Vaswani et al. 2017, §3), shared by the causal LM and the translation model.

- Multi-head attention with separate query/key/value/output projections (as fairseq), so each
  projection is its own prunable matrix and layerwise pruning treats them as the layers they are.
- Pre-layer-norm residual blocks (Xiong et al. 2020: trains without the careful warmup that the
  paper's post-LN needs, which matters at the few epochs a CPU affords); a final LayerNorm closes
  each stack.
- Sinusoidal position encodings (§3.5): no parameters, so nothing to prune or keep dense.
- Incremental decoding: attention takes a `cache` dict that keeps the keys and values of the
  positions decoded so far (and the encoder's projected memory for cross-attention), so greedy and
  beam search cost O(T) projections per sentence instead of O(T²).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sinusoidal(length: int, d: int, offset: int = 0, device: torch.device | None = None) -> torch.Tensor:
    """[length, d] position encodings of positions offset..offset+length-1 (§3.5), on `device`."""
    pos = torch.arange(offset, offset + length, dtype=torch.float32, device=device)[:, None]
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / d))
    pe = torch.zeros(length, d, device=device)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div[: d // 2])
    return pe


class Attention(nn.Module):
    """Multi-head scaled dot-product attention (§3.2)."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        if d % heads:
            raise ValueError(f"d_model {d} is not divisible by {heads} heads")
        self.heads, self.dropout = heads, dropout
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, d] -> [B, h, T, d/h]
        B, T, d = x.shape
        return x.view(B, T, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None, *, mask: torch.Tensor | None = None,
                causal: bool = False, cache: dict | None = None) -> torch.Tensor:
        """Self-attention over `x` [B, T, d], or cross-attention to `memory` [B, S, d].

        `mask` [B, 1, 1, S] is True where a key may be attended to (padding masks). `causal`
        hides later positions. With `cache`, `x` holds only new positions: self-attention appends
        their keys/values to the cached ones; cross-attention projects `memory` once."""
        q = self._split(self.q(x))
        if memory is None:
            k, v = self._split(self.k(x)), self._split(self.v(x))
            if cache is not None:
                if "k" in cache:
                    k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
                cache["k"], cache["v"] = k, v
                causal = causal and q.shape[2] > 1  # one new query may see every cached key
        elif cache is not None and "k" in cache:
            k, v = cache["k"], cache["v"]
        else:
            k, v = self._split(self.k(memory)), self._split(self.v(memory))
            if cache is not None:
                cache["k"], cache["v"] = k, v
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                             dropout_p=self.dropout if self.training else 0.0)
        B, h, T, dh = out.shape
        return self.o(out.transpose(1, 2).reshape(B, T, h * dh))


class FeedForward(nn.Module):
    """Position-wise feed-forward network (§3.3), ReLU."""

    def __init__(self, d: int, ffn: int, dropout: float):
        super().__init__()
        self.fc1, self.fc2, self.drop = nn.Linear(d, ffn), nn.Linear(ffn, d), nn.Dropout(dropout)

    def forward(self, x):
        return self.fc2(self.drop(F.relu(self.fc1(x))))


class EncoderLayer(nn.Module):
    """Self-attention and feed-forward, each as x + dropout(f(LayerNorm(x)))."""

    def __init__(self, d: int, heads: int, ffn: int, dropout: float):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(d), Attention(d, heads, dropout)
        self.norm2, self.ff = nn.LayerNorm(d), FeedForward(d, ffn, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, mask=None, causal: bool = False):
        x = x + self.drop(self.attn(self.norm1(x), mask=mask, causal=causal))
        return x + self.drop(self.ff(self.norm2(x)))


class DecoderLayer(nn.Module):
    """Causal self-attention, cross-attention to the encoder's output, feed-forward (§3.1)."""

    def __init__(self, d: int, heads: int, ffn: int, dropout: float):
        super().__init__()
        self.norm1, self.self_attn = nn.LayerNorm(d), Attention(d, heads, dropout)
        self.norm2, self.cross_attn = nn.LayerNorm(d), Attention(d, heads, dropout)
        self.norm3, self.ff = nn.LayerNorm(d), FeedForward(d, ffn, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, memory, memory_mask=None, cache: dict | None = None):
        c_self = c_cross = None
        if cache is not None:
            c_self, c_cross = cache.setdefault("self", {}), cache.setdefault("cross", {})
        x = x + self.drop(self.self_attn(self.norm1(x), causal=True, cache=c_self))
        x = x + self.drop(self.cross_attn(self.norm2(x), memory, mask=memory_mask, cache=c_cross))
        return x + self.drop(self.ff(self.norm3(x)))


def reorder_cache(cache, index: torch.Tensor):
    """The cache with its batch rows picked by `index` (beam search keeps the surviving beams)."""
    if isinstance(cache, dict):
        return {k: reorder_cache(v, index) for k, v in cache.items()}
    if isinstance(cache, list):
        return [reorder_cache(v, index) for v in cache]
    return cache.index_select(0, index)


@torch.no_grad()
def init_transformer(module: nn.Module, generator: torch.Generator, std: float = 0.02) -> None:
    """Normal(0, std) for every weight matrix and embedding, zero biases, LayerNorm at (1, 0)
    (the GPT-2/BERT initialisation), drawn from `generator` so equal seeds give equal weights."""
    for name, p in module.named_parameters():
        if p.dim() >= 2:
            p.normal_(0.0, std, generator=generator)
        elif name.endswith("weight"):  # LayerNorm gains
            p.fill_(1.0)
        else:
            p.zero_()


__all__ = ["sinusoidal", "Attention", "FeedForward", "EncoderLayer", "DecoderLayer", "reorder_cache",
           "init_transformer"]
