"""Translation as a lottery task (`ticketlab lottery --task translate`): Yu et al. 2019 §NLP.

Yu, Edunov, Tian & Morcos 2019 (arXiv 1906.02768) prune Transformer translation models (WMT'14
En→De in the paper) with IMP and late rewinding and find tickets "one-third the size" that nearly
match the dense model. The CPU-sized stand-in: Multi30k task 1 (Elliott et al. 2016), 29,000
training pairs, a small encoder–decoder Transformer (`ticketlab.domains.nlp.seq2seq`), a joint
sentencepiece BPE vocabulary trained on the training split (`ticketlab.domains.nlp.tokenizer`),
label-smoothed cross-entropy and Adam with β = (0.9, 0.98) (Vaswani et al. 2017 §5.3–5.4).

Evaluation: teacher-forced cross-entropy on the validation pairs, and corpus BLEU
(sacrebleu, its default 13a tokenisation, on detokenised text against the raw references) of the
test translations decoded by beam search (`beam_size` 1: greedy). The early-stopping row is the
one of lowest validation cross-entropy; the headline metric is its test BLEU.

Sources end with EOS (as in fairseq), so no source is empty. Batches: each epoch the training
pairs are shuffled (seeded by data seed and epoch), cut into pools of 50 batches, sorted by
length within a pool (less padding) and batched `batch_size` pairs at a time; the batch order is
shuffled too. So the batch of any step is a pure function of the step, which makes runs
resumable and late rewinding exact.

What is pruned: every weight matrix (attention projections, feed-forward layers) and, by the
options, the embeddings and the pre-softmax projection. With `tie_embeddings` (the default, §3.4)
they are one matrix, pruned only if both `prune_embeddings` and `prune_softmax` say so.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from ticketlab.core.config import Config, param
from ticketlab.core.seeds import stream_seed
from ticketlab.core.errors import ConfigError, TicketlabError
from ticketlab.domains.nlp import corpora
from ticketlab.domains.nlp.decode import beam_search
from ticketlab.domains.nlp.lm_task import prunable_weights
from ticketlab.core.schedules import lr_factor
from ticketlab.domains.nlp.loop import fit
from ticketlab.training.optim import make_optimizer
from ticketlab.training import device as _device
from ticketlab.domains.nlp.seq2seq import Seq2SeqTransformer
from ticketlab.domains.nlp.tokenizer import BOS, EOS, PAD, Tokenizer, cached_tokenizer
from ticketlab.engine.tasks import Domain, register_task


@dataclass(frozen=True)
class TranslateConfig(Config):
    """A translation recipe: corpus, tokenizer, Transformer, optimisation and decoding."""

    dataset: str = param("multi30k", "parallel corpus", choices=("multi30k",))
    src_lang: str = param("en", "source language", choices=("en", "de"))
    tgt_lang: str = param("de", "target language", choices=("en", "de"))
    tokenizer: str = param("bpe", "sentencepiece model type, trained on the training split", choices=("bpe", "unigram"))
    vocab_size: int = param(8000, "joint source-target subword vocabulary size", min=300)
    model: str = param("transformer", "encoder-decoder model", choices=("transformer",))
    hidden: int = param(256, "d_model", min=1)
    n_layers: int = param(3, "encoder layers = decoder layers", min=1)
    heads: int = param(4, "attention heads", min=1)
    ffn: int = param(1024, "feed-forward width", min=1)
    dropout: float = param(0.1, "dropout (residual, attention, feed-forward)", min=0.0, max=0.99)
    init_scale: float = param(0.02, "std of the normal init of weight matrices", min=0.0)
    tie_embeddings: bool = param(True, "one matrix for source and target embeddings and the softmax (Vaswani §3.4)")
    prune_embeddings: bool = param(True, "prune the embedding matrices (else they stay dense)")
    prune_softmax: bool = param(True, "prune the pre-softmax projection (else it stays dense)")
    label_smoothing: float = param(0.1, "label smoothing of the training loss (Vaswani §5.4)", min=0.0, max=0.99)
    optimizer: str = param("adam", "optimizer", choices=("sgd", "adam", "adamw"))
    lr: float = param(7e-4, "peak learning rate", min=0.0)
    betas: tuple[float, ...] = param((0.9, 0.98), "Adam betas", min=0.0, max=1.0)
    weight_decay: float = param(0.0, "weight decay", min=0.0)
    schedule: str = param("inverse_sqrt", "learning-rate schedule", choices=("inverse_sqrt", "cosine", "constant"))
    warmup: int = param(1000, "linear warmup steps", min=0)
    clip: float = param(1.0, "max global gradient norm (0: no clipping)", min=0.0)
    batch_size: int = param(64, "sentence pairs per step", min=1)
    epochs: float = param(10.0, "training length in epochs (may be fractional)", min=1e-6)
    max_len: int = param(100, "subword tokens kept per training sentence", min=1)
    eval_every: int | None = param(None, "evaluate every N steps (None: each epoch)", min=1)
    beam_size: int = param(4, "beam width of the test decoding (1: greedy)", min=1)
    length_penalty: float = param(0.6, "GNMT length penalty alpha of beam search", min=0.0)
    decode_batch: int = param(200, "sentences decoded at once", min=1)
    init_seed: int = param(0, "seed of the weight initialisation", min=0)
    data_seed: int = param(0, "seed of the batch order and dropout", min=0)

    def check(self):
        if self.src_lang == self.tgt_lang:
            raise ConfigError(f"tgt_lang: got {self.tgt_lang!r}, the same as src_lang")
        if self.tie_embeddings and self.prune_embeddings != self.prune_softmax:
            raise ConfigError("prune_embeddings/prune_softmax: with tie_embeddings the embedding is the softmax "
                              "matrix; set both to the same value")
        if self.hidden % self.heads:
            raise ConfigError(f"hidden: {self.hidden} is not divisible by heads ({self.heads})")
        if self.optimizer != "sgd" and len(self.betas) != 2:
            raise ConfigError(f"betas: got {self.betas!r}, expected two numbers")


def corpus_bleu(hypotheses: list[str], references: list[list[str]]) -> float:
    """Corpus BLEU of detokenised `hypotheses` against one or more reference streams (sacrebleu,
    13a tokenisation): `references[j][i]` is the j-th reference of sentence i."""
    import sacrebleu
    return float(sacrebleu.corpus_bleu(hypotheses, references).score)


@dataclass(frozen=True)
class ParallelData:
    """Tokenised pairs per split, and the raw test references."""

    tokenizer: Tokenizer
    train: tuple[list[list[int]], list[list[int]]]
    valid: tuple[list[list[int]], list[list[int]]]
    test: tuple[list[list[int]], list[list[int]]]
    test_refs: list[str]


@functools.lru_cache(maxsize=2)
def load_parallel_data(dataset: str, src: str, tgt: str, data_dir: str | None, tokenizer: str, vocab_size: int,
                       max_len: int) -> ParallelData:
    """Read and verify the corpus, train (or load the cached) tokenizer on the training split of
    both languages, and encode every split (cached per process)."""
    text = corpora.read_parallel(dataset, src, tgt, data_dir)
    tok = cached_tokenizer(text["train"][0] + text["train"][1], vocab_size=vocab_size, model_type=tokenizer)
    enc = {s: (tok.encode(a), tok.encode(b)) for s, (a, b) in text.items()}
    train = ([x[:max_len] for x in enc["train"][0]], [y[:max_len] for y in enc["train"][1]])
    return ParallelData(tok, train, enc["valid"], enc["test"], text["test"][1])


def pad(seqs: list[list[int]], *, bos: bool = False, eos: bool = False) -> torch.Tensor:
    """[B, max length] int64, right-padded with PAD, optionally with BOS first / EOS last."""
    rows = [([BOS] if bos else []) + s + ([EOS] if eos else []) for s in seqs]
    out = torch.full((len(rows), max(map(len, rows))), PAD, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, :len(r)] = torch.tensor(r, dtype=torch.long)
    return out


class TranslateObjective:
    """Label-smoothed training loss of step `it`; validation loss and test BLEU as evaluation."""

    POOL = 50  # batches per length-sorted pool

    def __init__(self, data: ParallelData, cfg: TranslateConfig, data_seed: int):
        self.data, self.cfg, self.data_seed = data, cfg, data_seed
        self.steps_per_epoch = max(1, len(data.train[0]) // cfg.batch_size)
        self._epoch: tuple[int, list] | None = None

    def batch_ids(self, it: int) -> list[int]:
        """Indices of the training pairs of step `it` (a pure function of it and the data seed)."""
        epoch, pos = divmod(it, self.steps_per_epoch)
        if self._epoch is None or self._epoch[0] != epoch:
            g = torch.Generator().manual_seed(stream_seed(self.data_seed, epoch))
            n, B = len(self.data.train[0]), self.cfg.batch_size
            perm = torch.randperm(n, generator=g).tolist()[:self.steps_per_epoch * B]
            src = self.data.train[0]
            batches = []
            for a in range(0, len(perm), self.POOL * B):
                pool = sorted(perm[a:a + self.POOL * B], key=lambda i: len(src[i]))
                batches += [pool[b:b + B] for b in range(0, len(pool), B)]
            order = torch.randperm(len(batches), generator=g).tolist()
            self._epoch = (epoch, [batches[i] for i in order])
        return self._epoch[1][pos]

    def train_loss(self, model, it: int, carry):
        idx = self.batch_ids(it)
        dev = next(model.parameters()).device  # batches are padded and counted on the CPU, then moved
        tgt = [self.data.train[1][i] for i in idx]
        y = pad(tgt, eos=True)
        n_tok = int((y != PAD).sum())
        src = _device.upload(pad([self.data.train[0][i] for i in idx], eos=True), dev)
        logits = model(src, _device.upload(pad(tgt, bos=True), dev))
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), _device.upload(y, dev).reshape(-1),
                               ignore_index=PAD, label_smoothing=self.cfg.label_smoothing)
        return loss, n_tok, None

    @torch.no_grad()
    def loss(self, model, pairs, batch: int = 200) -> float:
        """Mean cross-entropy per target token (no label smoothing), teacher-forced."""
        model.eval()
        dev = next(model.parameters()).device
        nll, n = 0.0, 0
        for a in range(0, len(pairs[0]), batch):
            src, tgt = pad(pairs[0][a:a + batch], eos=True).to(dev), pairs[1][a:a + batch]
            logits = model(src, pad(tgt, bos=True).to(dev))
            y = pad(tgt, eos=True).to(dev)
            nll += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=PAD,
                                         reduction="sum"))
            n += int((y != PAD).sum())
        return nll / n

    @torch.no_grad()
    def translate(self, model, sources: list[list[int]]) -> list[str]:
        """Detokenised translations of tokenised sources, decoded in length-sorted batches."""
        model.eval()
        order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
        out: list[list[int]] = [[] for _ in sources]
        for a in range(0, len(order), self.cfg.decode_batch):
            chunk = order[a:a + self.cfg.decode_batch]
            src = pad([sources[i] for i in chunk], eos=True).to(next(model.parameters()).device)
            hyps = beam_search(model, src, bos=BOS, eos=EOS,
                               beam=self.cfg.beam_size,
                               alpha=self.cfg.length_penalty if self.cfg.beam_size > 1 else 0.0)
            for i, h in zip(chunk, hyps):
                out[i] = h
        return self.data.tokenizer.decode(out)

    def evaluate(self, model) -> dict:
        val = self.loss(model, self.data.valid)
        bleu = corpus_bleu(self.translate(model, self.data.test[0]), [self.data.test_refs])
        return {"val_loss": val, "test_bleu": bleu, "val_ppl": math.exp(val)}


class TranslateTrainer:
    """The lottery engine's Trainer for translation (`ticketlab.domains.classify.Trainer`)."""

    def __init__(self, cfg: TranslateConfig, *, data_dir=None, progress: bool = False, checkpoint_every: int = 1000):
        self.cfg = cfg
        self.data = load_parallel_data(cfg.dataset, cfg.src_lang, cfg.tgt_lang,
                                       None if data_dir is None else str(data_dir), cfg.tokenizer, cfg.vocab_size,
                                       cfg.max_len)
        self.progress, self.checkpoint_every = progress, checkpoint_every

    @property
    def steps_per_epoch(self) -> int:
        return max(1, len(self.data.train[0]) // self.cfg.batch_size)

    @property
    def total_iterations(self) -> int:
        return max(1, round(self.cfg.epochs * self.steps_per_epoch))

    def build(self, seed: int) -> torch.nn.Module:
        c = self.cfg
        g = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):
            m = Seq2SeqTransformer(len(self.data.tokenizer), c.hidden, c.n_layers, c.heads, c.ffn, c.dropout,
                                   pad=PAD, tie=c.tie_embeddings)
            m.init_normal(g, c.init_scale)
        return m

    def prunable(self, model):
        c = self.cfg
        if c.tie_embeddings:
            return prunable_weights(model, embedding="embed.weight", softmax="embed.weight",
                                    prune_embeddings=c.prune_embeddings, prune_softmax=c.prune_softmax)
        return prunable_weights(model, embedding="src_embed.weight", embeddings=("tgt_embed.weight",),
                                softmax="out.weight", prune_embeddings=c.prune_embeddings,
                                prune_softmax=c.prune_softmax)

    def output_layer(self, model):
        name = "embed.weight" if self.cfg.tie_embeddings else "out.weight"
        return name if name in self.prunable(model) else None

    def lr_at(self, it: int) -> float:
        c = self.cfg
        return lr_factor(it, schedule=c.schedule, total=self.total_iterations, steps_per_epoch=self.steps_per_epoch,
                         warmup_iters=c.warmup)

    def fit(self, model, run_dir: Path, *, masks=None, start_iter: int = 0, start_optimizer=None, lr_offset: int = 0,
            snapshot_iters: Sequence[int] = (), data_seed: int | None = None, desc: str = "") -> dict:
        c = self.cfg
        data_seed = c.data_seed if data_seed is None else data_seed
        run_dir = Path(run_dir)
        if not (run_dir / "tokenizer.model").exists():  # the run keeps the tokenizer it was trained with
            run_dir.mkdir(parents=True, exist_ok=True)
            self.data.tokenizer.save(run_dir / "tokenizer.model")
        opt = make_optimizer(c.optimizer, model.parameters(), lr=c.lr, weight_decay=c.weight_decay, betas=c.betas)
        return fit(model, run_dir, TranslateObjective(self.data, c, data_seed), optimizer=opt,
                   total=self.total_iterations, lr=c.lr, lr_at=self.lr_at, clip=c.clip,
                   eval_every=c.eval_every or self.steps_per_epoch, select="val_loss", metric="test_bleu",
                   higher_is_better=True, masks=masks, prunable=self.prunable(model), start_iter=start_iter,
                   start_optimizer=start_optimizer, lr_offset=lr_offset, snapshot_iters=snapshot_iters,
                   seed=data_seed * 7919 + c.init_seed + start_iter, progress=self.progress,
                   desc=desc or "translate", checkpoint_every=self.checkpoint_every,
                   extra_summary={"parameters": sum(p.numel() for p in model.parameters()),
                                  "vocab": len(self.data.tokenizer), "tokenizer_sha256": self.data.tokenizer.sha256,
                                  "steps_per_epoch": self.steps_per_epoch})


def make_trainer(cfg: TranslateConfig, *, data_dir=None, progress: bool = False,
                 checkpoint_every: int = 1000) -> TranslateTrainer:
    """The translation trainer of one replicate (`ticketlab.engine.tasks`)."""
    return TranslateTrainer(cfg, data_dir=data_dir, progress=progress, checkpoint_every=checkpoint_every)


def validate(cfg: TranslateConfig, data_dir=None) -> None:
    """Check the packages and the corpus files, and train (or load) the tokenizer, before a store
    folder is made."""
    for pkg in ("sentencepiece", "sacrebleu"):
        try:
            __import__(pkg)
        except ModuleNotFoundError:
            raise TicketlabError(f"task 'translate' needs the {pkg!r} package: "
                                 "pip install -c constraints.txt -e '.[nlp]'") from None
    corpora.check_present(cfg.dataset, data_dir)
    load_parallel_data(cfg.dataset, cfg.src_lang, cfg.tgt_lang, None if data_dir is None else str(data_dir),
                       cfg.tokenizer, cfg.vocab_size, cfg.max_len)


register_task(Domain("translate", TranslateConfig, make_trainer, metric="test_bleu", higher_is_better=True,
                   extra="nlp", validate=validate))

__all__ = ["TranslateConfig", "TranslateTrainer", "TranslateObjective", "ParallelData", "corpus_bleu",
           "load_parallel_data", "make_trainer", "validate"]
