"""Language models: Zaremba et al. 2014's LSTM and a small causal Transformer.

`LSTMLM` is the model of Zaremba, Sutskever & Vinyals 2014, "Recurrent Neural Network
Regularization" (arXiv 1409.2329), §4: a word embedding, an L-layer LSTM whose hidden size equals
the embedding size, dropout on the non-recurrent connections only (embedding output, between
layers, before the softmax), a linear softmax layer, every parameter initialised uniformly in
[-init_scale, init_scale]. `TransformerLM` is a decoder-only (causal) Transformer with pre-LN
blocks and sinusoidal positions (`ticketlab.domains.nlp.transformer`).

Both take ids [B, T] and a recurrent state, and return (logits [B, T, V], state). The LSTM's state
carries across BPTT segments; the Transformer's is always None (each segment is a fresh context).
Parameter names the pruning options refer to: `embed.weight` (the embedding), `decoder.weight`
(the softmax layer; absent when tied, the embedding then being the softmax matrix too).
"""

from __future__ import annotations

import torch
from torch import nn

from ticketlab.domains.nlp.transformer import EncoderLayer, init_transformer, sinusoidal


class LSTMLM(nn.Module):
    """Zaremba et al. 2014 §4: embedding → dropout → LSTM ×L (dropout between layers) → dropout → softmax."""

    def __init__(self, vocab: int, hidden: int, n_layers: int, dropout: float, *, tie: bool = False):
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.drop = nn.Dropout(dropout)
        self.rnn = nn.LSTM(hidden, hidden, n_layers, dropout=dropout if n_layers > 1 else 0.0, batch_first=True)
        self.decoder = nn.Linear(hidden, vocab)
        if tie:  # Press & Wolf 2017 / Inan et al. 2017; not in Zaremba et al.
            self.decoder.weight = self.embed.weight

    def forward(self, x: torch.Tensor, state=None):
        h, state = self.rnn(self.drop(self.embed(x)), state)  # [B, T, hidden]
        return self.decoder(self.drop(h)), state

    @torch.no_grad()
    def init_uniform(self, scale: float, generator: torch.Generator) -> None:
        """Every parameter (biases too) uniform in [-scale, scale] (Zaremba et al. §4)."""
        for p in self.parameters():
            p.uniform_(-scale, scale, generator=generator)


class TransformerLM(nn.Module):
    """A causal Transformer language model: embedding ·√d + positions → pre-LN blocks → LayerNorm → softmax."""

    def __init__(self, vocab: int, hidden: int, n_layers: int, heads: int, ffn: int, dropout: float,
                 *, tie: bool = False):
        super().__init__()
        self.hidden = hidden
        self.embed = nn.Embedding(vocab, hidden)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(EncoderLayer(hidden, heads, ffn, dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(hidden)
        self.decoder = nn.Linear(hidden, vocab)
        if tie:
            self.decoder.weight = self.embed.weight

    def forward(self, x: torch.Tensor, state=None):
        T = x.shape[1]
        h = self.drop(self.embed(x) * self.hidden ** 0.5 + sinusoidal(T, self.hidden, device=x.device))
        for block in self.blocks:
            h = block(h, causal=True)
        return self.decoder(self.norm(h)), None

    def init_normal(self, generator: torch.Generator, std: float = 0.02) -> None:
        init_transformer(self, generator, std)


__all__ = ["LSTMLM", "TransformerLM"]
