"""Language modelling as a lottery task (`ticketlab lottery --task lm`): Yu et al. 2019 §NLP.

Yu, Edunov, Tian & Morcos 2019, "Playing the lottery with rewards and multiple languages"
(arXiv 1906.02768) run IMP with late rewinding on recurrent LSTM language models. Here the
recipe is Zaremba et al. 2014 §4 on the Penn Treebank (or WikiText-2, when the user supplies
its training file; or Tiny Shakespeare at the character level):

| preset      | layers × units | dropout | init  | BPTT | batch | SGD lr | epochs | decay                  | clip |
|-------------|----------------|---------|-------|------|-------|--------|--------|------------------------|------|
| lstm_small  | 2 × 200        | 0       | ±0.1  | 20   | 20    | 1      | 13     | ×0.5/epoch after 4     | 5    |
| lstm_medium | 2 × 650        | 0.5     | ±0.05 | 35   | 20    | 1      | 39     | ÷1.2/epoch after 6     | 5    |
| lstm_large  | 2 × 1500       | 0.65    | ±0.04 | 35   | 20    | 1      | 55     | ÷1.15/epoch after 14   | 10   |
| transformer | 4 × 256, 4 heads, ffn 1024 | 0.2 | N(0, 0.02) | 64 | 32 | Adam 1e-3 | 10 | cosine, 500 warmup | 1 |

(Zaremba et al. report test perplexities of 114.5, 82.7 and 78.4 on PTB for the three LSTMs.)
The LSTMs' objective is Zaremba et al.'s: the cross-entropy summed over the BPTT segment and
averaged over the batch (their learning rate 1 and clipping norm 5 apply to that sum: the same
step as the PyTorch example's lr 20 and clip 0.25 on the per-token mean); the Transformer's is the
per-token mean. A field left at None takes the model's preset. Training walks the corpus as `batch_size`
contiguous streams in BPTT segments, carrying the LSTM state across segments (reset at each
epoch and at the start of each run, so a rewound ticket starts from a zero state); perplexity is
exp(mean cross-entropy per token) over the whole validation or test stream, evaluated the same way
with `eval_batch_size` streams.

What is pruned: every weight matrix, i.e. the LSTM's input and recurrent matrices
(`rnn.weight_ih_l*`, `rnn.weight_hh_l*`) or the Transformer's projections, and, by the options,
the embedding (`prune_embeddings`, default off) and the softmax layer (`prune_softmax`, default
on; it is the output layer, pruned at half rate in layerwise pruning). Biases and LayerNorms
never. With tied embeddings the one shared matrix is pruned only if both options say so.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from ticketlab.core.config import Config, param
from ticketlab.core.errors import ConfigError
from ticketlab.domains.nlp import corpora
from ticketlab.domains.nlp.lm_models import LSTMLM, TransformerLM
from ticketlab.core.schedules import lr_factor
from ticketlab.domains.nlp.loop import fit
from ticketlab.training.optim import make_optimizer
from ticketlab.domains.nlp.vocab import Vocab, batchify, char_tokens, n_segments, segment, word_tokens
from ticketlab.engine.tasks import Domain, register_task
from ticketlab.training import device as _device

PRESETS: dict[str, dict] = {
    "lstm_small": dict(hidden=200, n_layers=2, dropout=0.0, init_scale=0.1, bptt=20, batch_size=20,
                       optimizer="sgd", lr=1.0, epochs=13.0, schedule="zaremba", decay_start=4.0,
                       lr_decay=0.5, clip=5.0, warmup=0, sum_over_time=True),
    "lstm_medium": dict(hidden=650, n_layers=2, dropout=0.5, init_scale=0.05, bptt=35, batch_size=20,
                        optimizer="sgd", lr=1.0, epochs=39.0, schedule="zaremba", decay_start=6.0,
                        lr_decay=1 / 1.2, clip=5.0, warmup=0, sum_over_time=True),
    "lstm_large": dict(hidden=1500, n_layers=2, dropout=0.65, init_scale=0.04, bptt=35, batch_size=20,
                       optimizer="sgd", lr=1.0, epochs=55.0, schedule="zaremba", decay_start=14.0,
                       lr_decay=1 / 1.15, clip=10.0, warmup=0, sum_over_time=True),
    "transformer": dict(hidden=256, n_layers=4, dropout=0.2, init_scale=0.02, bptt=64, batch_size=32,
                        optimizer="adam", lr=1e-3, epochs=10.0, schedule="cosine", decay_start=0.0,
                        lr_decay=1.0, clip=1.0, warmup=500, sum_over_time=False),
}
# Published PTB test perplexities (Zaremba et al. 2014, Table 1), for the benchmark's comparison.
PUBLISHED_PTB_TEST_PPL = {"lstm_small": 114.5, "lstm_medium": 82.7, "lstm_large": 78.4}


@dataclass(frozen=True)
class LMConfig(Config):
    """A language-modelling recipe. Fields left at None take the model's preset (see the module)."""

    dataset: str = param("ptb", "corpus: ptb, wikitext2 (needs a user-supplied train.txt), shakespeare (characters)",
                         choices=("ptb", "wikitext2", "shakespeare"))
    model: str = param("lstm_small", "model preset (Zaremba et al. 2014 LSTMs, or a causal Transformer)",
                       choices=tuple(PRESETS))
    hidden: int | None = param(None, "LSTM units = embedding size, or Transformer d_model (None: the model's preset)",
                               min=1)
    n_layers: int | None = param(None, "LSTM or Transformer layers (None: the model's preset)", min=1)
    heads: int = param(4, "Transformer attention heads", min=1)
    ffn: int = param(1024, "Transformer feed-forward width", min=1)
    dropout: float | None = param(None, "dropout on non-recurrent connections (None: the model's preset)",
                                  min=0.0, max=0.99)
    init_scale: float | None = param(None, "LSTM: uniform init in ±scale; Transformer: normal init std "
                                     "(None: the model's preset)", min=0.0)
    tie_embeddings: bool = param(False, "share the embedding and softmax matrices (not in Zaremba et al.)")
    prune_embeddings: bool = param(False, "prune the embedding matrix (else it stays dense)")
    prune_softmax: bool = param(True, "prune the softmax (output) layer (else it stays dense)")
    bptt: int | None = param(None, "truncated-BPTT length (tokens per segment) (None: the model's preset)", min=1)
    batch_size: int | None = param(None, "contiguous streams trained in parallel (None: the model's preset)", min=1)
    eval_batch_size: int = param(10, "streams when evaluating perplexity", min=1)
    sum_over_time: bool | None = param(
        None, "train on the cross-entropy summed over each BPTT segment (mean over the batch), as Zaremba et "
        "al.'s code, so lr and clip apply to that sum; else on the mean per token (None: the model's preset)")
    optimizer: str | None = param(None, "optimizer (None: the model's preset)", choices=(None, "sgd", "adam", "adamw"))
    lr: float | None = param(None, "base learning rate (None: the model's preset)", min=0.0)
    weight_decay: float = param(0.0, "weight decay", min=0.0)
    schedule: str | None = param(None, "learning-rate schedule (None: the model's preset)",
                                 choices=(None, "zaremba", "cosine", "inverse_sqrt", "constant"))
    decay_start: float | None = param(None, "zaremba schedule: epochs at the full rate (None: the model's preset)",
                                      min=0.0)
    decay_every: float = param(1.0, "zaremba schedule: epochs between decays", min=1e-6)
    lr_decay: float | None = param(None, "zaremba schedule: factor per decay (None: the model's preset)",
                                   min=0.0, max=1.0)
    warmup: int | None = param(None, "linear warmup steps (None: the model's preset)", min=0)
    clip: float | None = param(None, "max global gradient norm (0: no clipping) (None: the model's preset)", min=0.0)
    epochs: float | None = param(None, "training length in epochs, may be fractional (None: the model's preset)",
                                 min=1e-6)
    eval_every: int | None = param(None, "evaluate validation and test perplexity every N steps (None: each epoch)",
                                   min=1)
    init_seed: int = param(0, "seed of the weight initialisation", min=0)
    data_seed: int = param(0, "seed of dropout (the corpus is read in order, as in Zaremba et al.)", min=0)

    def check(self):
        if self.tie_embeddings and self.prune_embeddings != self.prune_softmax:
            raise ConfigError("prune_embeddings/prune_softmax: with tie_embeddings the embedding is the softmax "
                              "matrix; set both to the same value")

    def resolved(self) -> dict:
        """Every hyper-parameter, with the preset filling the fields left at None."""
        preset = PRESETS[self.model]
        return {f.name: preset[f.name] if getattr(self, f.name) is None and f.name in preset else getattr(self, f.name)
                for f in fields(self)}


@dataclass(frozen=True)
class LMData:
    """A corpus as token streams: train [batch, L], valid and test [eval_batch, L]."""

    vocab: Vocab
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor


@functools.lru_cache(maxsize=4)
def load_lm_data(dataset: str, data_dir: str | None, batch: int, eval_batch: int) -> LMData:
    """Read, verify, tokenize and batchify a corpus (cached per process: a lottery's runs share it)."""
    text = corpora.read_lm_splits(dataset, data_dir)
    tokenize = char_tokens if corpora.get_corpus(dataset).kind == "char" else word_tokens
    toks = {s: tokenize(t) for s, t in text.items()}
    vocab = Vocab.build(toks["train"] if dataset != "shakespeare" else char_tokens(
        text["train"] + text["valid"] + text["test"]))  # characters: nanoGPT's vocabulary of the whole text
    ids = {s: vocab.encode(t, f"{dataset} {s}") for s, t in toks.items()}
    return LMData(vocab, batchify(ids["train"], batch), batchify(ids["valid"], eval_batch),
                  batchify(ids["test"], eval_batch))


@torch.no_grad()
def perplexity(model: torch.nn.Module, stream: torch.Tensor, bptt: int) -> tuple[float, int]:
    """(exp of the mean cross-entropy per predicted token, tokens predicted) over a [batch, L] stream,
    segment by segment, carrying the recurrent state; every token after the first of each row is
    predicted exactly once."""
    was = model.training
    model.eval()
    stream = _device.to_device(stream, next(model.parameters()).device)  # moved once, then cached
    nll, n, state = 0.0, 0, None
    for i in range(math.ceil((stream.shape[1] - 1) / bptt)):
        x, y = segment(stream, i, bptt)
        logits, state = model(x, state)
        nll += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum"))
        n += y.numel()
    model.train(was)
    return math.exp(nll / n), n


class LMObjective:
    """Training loss of step `it` (segment `it mod steps_per_epoch` of the training stream) and evaluation."""

    def __init__(self, data: LMData, bptt: int, sum_over_time: bool = False):
        self.data, self.bptt = data, bptt
        self.steps_per_epoch = n_segments(data.train, bptt)
        self.loss_scale = float(bptt) if sum_over_time else 1.0  # training segments are all bptt long

    def train_loss(self, model, it: int, carry):
        i = it % self.steps_per_epoch
        if i == 0:
            carry = None  # each epoch starts the streams from a zero state
        stream = _device.to_device(self.data.train, next(model.parameters()).device)  # moved once, then cached
        x, y = segment(stream, i, self.bptt)
        logits, state = model(x, carry)
        if state is not None:  # truncated BPTT: keep the state, not its history
            state = tuple(s.detach() for s in state)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        return loss, y.numel(), state

    def evaluate(self, model) -> dict:
        val, _ = perplexity(model, self.data.valid, self.bptt)
        test, _ = perplexity(model, self.data.test, self.bptt)
        return {"val_ppl": val, "test_ppl": test, "val_loss": math.log(val), "test_loss": math.log(test)}


def build_model(r: dict, vocab: int, seed: int) -> torch.nn.Module:
    """The model of resolved recipe `r`, initialised from `seed` (the global RNG is left untouched)."""
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        if r["model"].startswith("lstm"):
            m = LSTMLM(vocab, r["hidden"], r["n_layers"], r["dropout"], tie=r["tie_embeddings"])
            m.init_uniform(r["init_scale"], g)
        else:
            m = TransformerLM(vocab, r["hidden"], r["n_layers"], r["heads"], r["ffn"], r["dropout"],
                              tie=r["tie_embeddings"])
            m.init_normal(g, r["init_scale"])
    return m


def prunable_weights(model: torch.nn.Module, *, embedding: str, softmax: str, prune_embeddings: bool,
                     prune_softmax: bool, embeddings: Sequence[str] = ()) -> dict[str, torch.nn.Parameter]:
    """Every weight matrix of `model`, minus the embedding(s) and the softmax matrix unless they are
    to be pruned. `named_parameters` lists a tied matrix once, under the embedding's name."""
    emb = {embedding, *embeddings}
    out = {}
    for n, p in model.named_parameters():
        if p.dim() < 2:
            continue
        if n in emb and not prune_embeddings or n == softmax and not prune_softmax:
            continue
        out[n] = p
    return out


class LMTrainer:
    """The lottery engine's Trainer for language models (`ticketlab.domains.classify.Trainer`)."""

    def __init__(self, cfg: LMConfig, *, data_dir=None, progress: bool = False, checkpoint_every: int = 1000):
        self.cfg, self.r = cfg, cfg.resolved()
        self.data = load_lm_data(cfg.dataset, None if data_dir is None else str(data_dir),
                                 self.r["batch_size"], cfg.eval_batch_size)
        self.objective = LMObjective(self.data, self.r["bptt"], self.r["sum_over_time"])
        self.progress, self.checkpoint_every = progress, checkpoint_every

    @property
    def steps_per_epoch(self) -> int:
        return self.objective.steps_per_epoch

    @property
    def total_iterations(self) -> int:
        return max(1, round(self.r["epochs"] * self.steps_per_epoch))

    def build(self, seed: int) -> torch.nn.Module:
        return build_model(self.r, len(self.data.vocab), seed)

    def prunable(self, model):
        tied = self.r["tie_embeddings"]
        return prunable_weights(model, embedding="embed.weight", softmax="embed.weight" if tied else "decoder.weight",
                                prune_embeddings=self.r["prune_embeddings"], prune_softmax=self.r["prune_softmax"])

    def output_layer(self, model):
        name = "embed.weight" if self.r["tie_embeddings"] else "decoder.weight"
        return name if name in self.prunable(model) else None

    def lr_at(self, it: int) -> float:
        r = self.r
        return lr_factor(it, schedule=r["schedule"], total=self.total_iterations, steps_per_epoch=self.steps_per_epoch,
                         warmup_iters=r["warmup"], decay_start=r["decay_start"], decay_every=r["decay_every"],
                         lr_decay=r["lr_decay"])

    def fit(self, model, run_dir: Path, *, masks=None, start_iter: int = 0, start_optimizer=None, lr_offset: int = 0,
            snapshot_iters: Sequence[int] = (), data_seed: int | None = None, desc: str = "") -> dict:
        r = self.r
        seed = (self.cfg.data_seed if data_seed is None else data_seed) * 7919 + self.cfg.init_seed + start_iter
        opt = make_optimizer(r["optimizer"], model.parameters(), lr=r["lr"], weight_decay=r["weight_decay"])
        n_params = sum(p.numel() for p in model.parameters())
        return fit(model, run_dir, self.objective, optimizer=opt, total=self.total_iterations, lr=r["lr"],
                   lr_at=self.lr_at, clip=r["clip"], eval_every=r["eval_every"] or self.steps_per_epoch,
                   select="val_ppl", metric="test_ppl", higher_is_better=False, masks=masks,
                   prunable=self.prunable(model), start_iter=start_iter, start_optimizer=start_optimizer,
                   lr_offset=lr_offset, snapshot_iters=snapshot_iters, seed=seed, progress=self.progress,
                   desc=desc or "lm", checkpoint_every=self.checkpoint_every,
                   extra_summary={"parameters": n_params, "vocab": len(self.data.vocab),
                                  "steps_per_epoch": self.steps_per_epoch})


def make_trainer(cfg: LMConfig, *, data_dir=None, progress: bool = False, checkpoint_every: int = 1000) -> LMTrainer:
    """The language-model trainer of one replicate (`ticketlab.engine.tasks`)."""
    return LMTrainer(cfg, data_dir=data_dir, progress=progress, checkpoint_every=checkpoint_every)


def validate(cfg: LMConfig, data_dir=None) -> None:
    """Check the corpus files (a missing WikiText-2 train.txt is named), then that the data and the
    model fit the recipe, before a store folder is made."""
    corpora.check_present(cfg.dataset, data_dir)
    r = cfg.resolved()
    if r["model"] == "transformer" and r["hidden"] % r["heads"]:
        raise ConfigError(f"hidden: {r['hidden']} is not divisible by heads ({r['heads']})")
    data = load_lm_data(cfg.dataset, None if data_dir is None else str(data_dir), r["batch_size"],
                        cfg.eval_batch_size)
    if n_segments(data.train, r["bptt"]) < 1:
        raise ConfigError(f"bptt: {r['bptt']} is longer than the training streams ({data.train.shape[1]} tokens)")


register_task(Domain("lm", LMConfig, make_trainer, metric="test_ppl", higher_is_better=False, extra="nlp",
                   validate=validate))

__all__ = ["LMConfig", "LMTrainer", "LMObjective", "PRESETS", "PUBLISHED_PTB_TEST_PPL", "load_lm_data",
           "perplexity", "build_model", "make_trainer", "validate"]
