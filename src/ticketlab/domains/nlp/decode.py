"""Greedy and beam-search decoding for `Seq2SeqTransformer`, batched, with cached keys/values.

Beam search (Vaswani et al. 2017 §6.1: beam 4, length penalty α = 0.6) keeps, per sentence, the
`beam` best unfinished prefixes by total log-probability; a prefix that emits `eos` becomes a
finished hypothesis, ranked by the GNMT length-normalised score log p / ((5 + |y|) / 6)^α (Wu et
al. 2016, eq. 14; |y| counts the tokens after `bos`, `eos` included). A sentence stops once it
has `beam` finished hypotheses (fairseq's rule) or at the length limit, where its unfinished
beams are finished as they stand. With beam 1 and α = 0 beam search is exactly greedy decoding.

Length limit per sentence: `max_len_a · source length + max_len_b` tokens (fairseq's form).
"""

from __future__ import annotations

import torch

from ticketlab.domains.nlp.transformer import reorder_cache


def _limit(src: torch.Tensor, pad: int, a: float, b: int) -> torch.Tensor:
    return ((src != pad).sum(1).float() * a + b).long()  # [B]


@torch.no_grad()
def greedy(model, src: torch.Tensor, *, bos: int, eos: int, max_len_a: float = 1.5,
           max_len_b: int = 10) -> list[list[int]]:
    """The most probable next token at every step, until `eos` or the length limit; ids without bos/eos."""
    model.eval()
    B = src.shape[0]
    memory, mask = model.encode(src)
    limit = _limit(src, model.pad, max_len_a, max_len_b)
    cache = [{} for _ in model.decoder]
    dev = src.device  # the decoder's state lives where the source does
    tok = torch.full((B, 1), bos, dtype=torch.long, device=dev)
    out = torch.full((B, int(limit.max())), eos, dtype=torch.long, device=dev)
    done = torch.zeros(B, dtype=torch.bool, device=dev)
    for t in range(int(limit.max())):
        logits = model.decode(tok, memory, mask, cache=cache, offset=t)[:, -1]  # [B, V]
        nxt = logits.argmax(-1)
        nxt = torch.where(done | (t >= limit), torch.full_like(nxt, eos), nxt)
        out[:, t] = nxt
        done |= nxt == eos
        if bool(done.all()):
            break
        tok = nxt[:, None]
    return [_strip(row, eos) for row in out.tolist()]


def _strip(ids: list[int], eos: int) -> list[int]:
    return ids[:ids.index(eos)] if eos in ids else ids


def length_penalty(length: int, alpha: float) -> float:
    """GNMT's ((5 + |y|) / 6)^α."""
    return ((5.0 + length) / 6.0) ** alpha


@torch.no_grad()
def beam_search(model, src: torch.Tensor, *, bos: int, eos: int, beam: int = 4, alpha: float = 0.6,
                max_len_a: float = 1.5, max_len_b: int = 10) -> list[list[int]]:
    """The best finished hypothesis per sentence (see the module docstring); ids without bos/eos."""
    if beam == 1 and alpha == 0.0:
        return greedy(model, src, bos=bos, eos=eos, max_len_a=max_len_a, max_len_b=max_len_b)
    model.eval()
    B, K = src.shape[0], beam
    memory, mask = model.encode(src)
    memory, mask = memory.repeat_interleave(K, 0), mask.repeat_interleave(K, 0)  # [B·K, S, d]
    limit = _limit(src, model.pad, max_len_a, max_len_b).tolist()
    cache = [{} for _ in model.decoder]
    dev = src.device  # the decoder's state lives where the source does
    tokens = torch.full((B * K, 1), bos, dtype=torch.long, device=dev)  # prefixes, bos first
    scores = torch.full((B, K), float("-inf"), device=dev)
    scores[:, 0] = 0.0  # all beams start equal: keep one, or the first step would pick K copies
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]
    alive = [True] * B
    for t in range(max(limit)):
        logp = model.decode(tokens[:, -1:], memory, mask, cache=cache, offset=t)[:, -1].log_softmax(-1)
        V = logp.shape[-1]
        cand = (scores[:, :, None] + logp.view(B, K, V)).view(B, K * V)
        top, idx = cand.topk(2 * K, dim=1)  # enough that K of them do not end the sentence
        beam_of, tok_of = idx // V, idx % V
        # filled element by element below: on the CPU, then moved once per step
        new_scores = torch.full((B, K), float("-inf"))
        src_beam = torch.zeros(B, K, dtype=torch.long)
        new_tok = torch.full((B, K), eos, dtype=torch.long)
        top_l, beam_l, tok_l = top.tolist(), beam_of.tolist(), tok_of.tolist()
        host = None  # the prefixes on the CPU, copied once in a step that finishes a hypothesis
        for b in range(B):
            if not alive[b]:
                continue
            k = 0
            last = t + 1 >= limit[b]
            for s, j, w in zip(top_l[b], beam_l[b], tok_l[b]):
                # candidates best first; only those ranked above the K-th live prefix count
                if s == float("-inf") or k == K or len(finished[b]) >= K:
                    break
                if w == eos or last:
                    host = tokens.cpu() if host is None else host
                    ids = host[b * K + j, 1:].tolist() + ([] if w == eos else [w])
                    finished[b].append((s / length_penalty(t + 1, alpha), ids))
                else:
                    new_scores[b, k], src_beam[b, k], new_tok[b, k] = s, j, w
                    k += 1
            if len(finished[b]) >= K or last:
                alive[b] = False
        if not any(alive):
            break
        rows = (torch.arange(B)[:, None] * K + src_beam).view(-1).to(dev)
        tokens = torch.cat([tokens[rows], new_tok.view(-1, 1).to(dev)], 1)
        cache = reorder_cache(cache, rows)
        scores = new_scores.to(dev)
    return [max(f, key=lambda h: h[0])[1] if f else [] for f in finished]


__all__ = ["greedy", "beam_search", "length_penalty"]
