"""An encoder–decoder Transformer for translation (Vaswani et al. 2017, §3), small enough for a CPU.

Source and target share one subword vocabulary (a joint sentencepiece model, §5.1 uses a shared
BPE vocabulary for En–De), and with `tie` one matrix serves as source embedding, target
embedding and pre-softmax projection (§3.4: "we share the same weight matrix between the two
embedding layers and the pre-softmax linear transformation"); embeddings are scaled by √d_model.
Pre-LN blocks and sinusoidal positions (`ticketlab.domains.nlp.transformer`).

Parameter names the pruning options refer to: tied, `embed.weight` is the one shared matrix;
untied, `src_embed.weight` and `tgt_embed.weight` are the embeddings and `out.weight` the softmax.
"""

from __future__ import annotations

import torch
from torch import nn

from ticketlab.domains.nlp.transformer import DecoderLayer, EncoderLayer, init_transformer, sinusoidal


class Seq2SeqTransformer(nn.Module):
    """Encoder ×L, decoder ×L, shared subword vocabulary of size `vocab`; `pad` is the padding id."""

    def __init__(self, vocab: int, hidden: int, n_layers: int, heads: int, ffn: int, dropout: float,
                 *, pad: int, tie: bool = True):
        super().__init__()
        self.hidden, self.pad, self.tie = hidden, pad, tie
        if tie:
            self.embed = nn.Embedding(vocab, hidden)
        else:
            self.src_embed, self.tgt_embed = nn.Embedding(vocab, hidden), nn.Embedding(vocab, hidden)
            self.out = nn.Linear(hidden, vocab, bias=False)
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.ModuleList(EncoderLayer(hidden, heads, ffn, dropout) for _ in range(n_layers))
        self.decoder = nn.ModuleList(DecoderLayer(hidden, heads, ffn, dropout) for _ in range(n_layers))
        self.enc_norm, self.dec_norm = nn.LayerNorm(hidden), nn.LayerNorm(hidden)

    def _embed(self, ids: torch.Tensor, table: nn.Embedding, offset: int = 0) -> torch.Tensor:
        x = table(ids) * self.hidden ** 0.5 + sinusoidal(ids.shape[1], self.hidden, offset, ids.device)
        return self.drop(x)

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(memory [B, S, d], key mask [B, 1, 1, S], True at real tokens) of source ids [B, S]."""
        mask = (src != self.pad)[:, None, None, :]
        x = self._embed(src, self.embed if self.tie else self.src_embed)
        for layer in self.encoder:
            x = layer(x, mask=mask)
        return self.enc_norm(x), mask

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor,
               cache: list | None = None, offset: int = 0) -> torch.Tensor:
        """Logits [B, T, V] of the next token after each target prefix position (teacher forcing);
        with `cache` (one dict per layer), `tgt` holds only the new positions, starting at `offset`."""
        x = self._embed(tgt, self.embed if self.tie else self.tgt_embed, offset)
        for i, layer in enumerate(self.decoder):
            x = layer(x, memory, mask, cache=None if cache is None else cache[i])
        x = self.dec_norm(x)
        return x @ self.embed.weight.t() if self.tie else self.out(x)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        memory, mask = self.encode(src)
        return self.decode(tgt_in, memory, mask)

    def init_normal(self, generator: torch.Generator, std: float = 0.02) -> None:
        init_transformer(self, generator, std)


__all__ = ["Seq2SeqTransformer"]
