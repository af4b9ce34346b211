"""Word and character vocabularies, and corpora as contiguous token streams in [batch, length] tensors.

Language modelling as in Zaremba et al. 2014 §4 (and the TF/PyTorch PTB examples): each line of a
word-level corpus is split on whitespace and ends with an `<eos>` token (PTB's 929,589 training
tokens count one `<eos>` per line); the whole split is one stream of token ids, cut into `batch`
contiguous rows. Truncated BPTT then walks the rows left to right in segments of `bptt` tokens,
carrying the recurrent state from one segment to the next. Character-level corpora (Tiny
Shakespeare) are streams of characters.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import cached_property

import torch

from ticketlab.core.errors import DataError

EOS, UNK = "<eos>", "<unk>"


def word_tokens(text: str) -> list[str]:
    """Whitespace tokens, with `<eos>` closing every line (empty lines give a lone `<eos>`)."""
    out: list[str] = []
    for line in text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"):
        out += line.split()
        out.append(EOS)
    return out


def char_tokens(text: str) -> list[str]:
    """The characters of `text`."""
    return list(text)


@dataclass(frozen=True)
class Vocab:
    """Token <-> id. Ids are ordered by decreasing training frequency, ties by the token itself,
    so the same corpus always gives the same ids."""

    itos: tuple[str, ...]

    @classmethod
    def build(cls, tokens: list[str]) -> "Vocab":
        counts = Counter(tokens)
        return cls(tuple(sorted(counts, key=lambda t: (-counts[t], t))))

    def __len__(self) -> int:
        return len(self.itos)

    @cached_property
    def stoi(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.itos)}

    def encode(self, tokens: list[str], where: str = "") -> torch.Tensor:
        """int64 ids of `tokens`; an out-of-vocabulary token maps to `<unk>` if the vocabulary has it."""
        stoi, unk = self.stoi, self.stoi.get(UNK)
        try:
            return torch.tensor([stoi[t] if unk is None else stoi.get(t, unk) for t in tokens], dtype=torch.int64)
        except KeyError as e:
            raise DataError(f"{where or 'text'}: token {e.args[0]!r} is not in the training vocabulary "
                            "(and the vocabulary has no <unk>)") from None

    def decode(self, ids) -> list[str]:
        return [self.itos[int(i)] for i in ids]


def batchify(ids: torch.Tensor, batch: int) -> torch.Tensor:
    """[batch, N // batch]: the stream cut into `batch` contiguous rows (the remainder is dropped)."""
    n = ids.numel() // batch
    if n < 2:
        raise DataError(f"a stream of {ids.numel()} tokens is too short for {batch} rows")
    return ids[:n * batch].view(batch, n).contiguous()


def n_segments(stream: torch.Tensor, bptt: int) -> int:
    """Full BPTT segments in a [batch, L] stream: each needs bptt inputs and the next-token targets."""
    return (stream.shape[1] - 1) // bptt


def segment(stream: torch.Tensor, i: int, bptt: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets), each [batch, ≤ bptt], of segment i: targets are inputs shifted by one token."""
    a = i * bptt
    b = min(a + bptt, stream.shape[1] - 1)
    return stream[:, a:b], stream[:, a + 1:b + 1]


__all__ = ["EOS", "UNK", "Vocab", "word_tokens", "char_tokens", "batchify", "n_segments", "segment"]
