"""Language models and translation as lottery tasks (ticketlab.domains.nlp), on tiny corpora written to tmp dirs:
perplexity against a hand-checked case, corpora checksums and errors, tokenizer round trip and
determinism, BLEU against sacrebleu's own example, decoding, exact masks, resume, 2-level lotteries."""

import dataclasses
import hashlib
import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import requires
from ticketlab import api
from ticketlab.core.errors import ConfigError, DataError
from ticketlab.experiments.lottery.trunk import LotteryConfig
from ticketlab.domains.nlp import corpora
from ticketlab.domains.nlp.lm_models import LSTMLM, TransformerLM
from ticketlab.domains.nlp.lm_task import LMConfig, LMTrainer, perplexity
from ticketlab.domains.nlp.loop import lr_factor
from ticketlab.domains.nlp.vocab import Vocab, batchify, n_segments, segment, word_tokens
from ticketlab.training.loop import load_state

torch.set_num_threads(1)

WORDS = ["the", "cat", "dog", "sat", "on", "mat", "ran", "to", "a", "big", "red", "house", "<unk>"]


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _sentences(n: int, seed: int) -> list[str]:
    """A low-entropy language: each word is followed by a fixed successor 85 % of the time."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        i = rng.randrange(len(WORDS))
        words = []
        for _ in range(rng.randint(3, 9)):
            words.append(WORDS[i])
            i = (3 * i + 1) % len(WORDS) if rng.random() < 0.85 else rng.randrange(len(WORDS))
        out.append(" ".join(words))
    return out


@pytest.fixture
def tiny_ptb(tmp_path, monkeypatch):
    """A PTB-shaped corpus of a few thousand tokens in tmp/text/ptb, registered with its md5s."""
    folder = tmp_path / "data" / "text" / "ptb"
    folder.mkdir(parents=True)
    files = {}
    for split, n, seed in (("train", 300, 0), ("valid", 40, 1), ("test", 40, 2)):
        text = "".join(f" {s} \n" for s in _sentences(n, seed))
        (folder / f"ptb.{split}.txt").write_text(text)
        files[split] = corpora.TextFile(f"ptb.{split}.txt", _md5(text))
    monkeypatch.setitem(corpora.CORPORA, "ptb", dataclasses.replace(corpora.CORPORA["ptb"], files=files))
    return tmp_path / "data"


@pytest.fixture
def tiny_multi30k(tmp_path, monkeypatch):
    """A synthetic translation task (a word mapping with reordering) shaped like Multi30k, gzipped."""
    import gzip
    folder = tmp_path / "data" / "text" / "multi30k"
    folder.mkdir(parents=True)
    lexicon = {w: w[::-1].upper() + "x" for w in WORDS}
    files = {}
    for split, stem, n, seed in (("train", "train", 400, 0), ("valid", "val", 20, 1),
                                 ("test", "test_2016_flickr", 20, 2)):
        en = _sentences(n, seed)
        de = [" ".join(lexicon[w] for w in reversed(s.split())) for s in en]
        files[split] = {}
        for lang, lines in (("en", en), ("de", de)):
            text = "\n".join(lines) + "\n"
            (folder / f"{stem}.{lang}.gz").write_bytes(gzip.compress(text.encode()))
            files[split][lang] = corpora.TextFile(f"{stem}.{lang}", _md5(text))
    monkeypatch.setitem(corpora.CORPORA, "multi30k", dataclasses.replace(corpora.CORPORA["multi30k"], files=files))
    monkeypatch.setenv("TICKETLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "data"


# Adam: SGD at Zaremba's rate learns a 16-unit LSTM too slowly for a test of seconds
TINY_LM = LMConfig(model="lstm_small", hidden=16, n_layers=2, bptt=8, batch_size=4, eval_batch_size=2,
                   epochs=2.0, eval_every=20, optimizer="adam", lr=0.01, sum_over_time=False)


# ---- perplexity, streams, schedule ---------------------------------------------------------------

def test_perplexity_matches_a_hand_checked_case():
    # A "model" that ignores its input: softmax bias log(1/2, 1/4, 1/4), zero weights. Targets of the
    # stream [2, 0, 1, 2, 0 | 1, 1, 0, 2, 0] (two rows) are 0,1,2,0 and 1,0,2,0: mean NLL
    # = (ln2 + ln4 + ln4 + ln2 + ln4 + ln2 + ln4 + ln2)/8 = 1.5 ln 2, so perplexity 2^1.5 = 2.828.
    model = LSTMLM(3, 4, 1, 0.0)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.decoder.bias.copy_(torch.tensor([0.5, 0.25, 0.25]).log())
    stream = batchify(torch.tensor([2, 0, 1, 2, 0, 1, 1, 0, 2, 0]), 2)
    for bptt in (1, 3, 4, 10):  # the segmentation must not change what is counted
        ppl, n = perplexity(model, stream, bptt)
        assert n == 8
        assert ppl == pytest.approx(2 ** 1.5, rel=1e-6)


def test_word_streams_and_segments():
    toks = word_tokens(" a b \n \n c \n")
    assert toks == ["a", "b", "<eos>", "<eos>", "c", "<eos>"]
    v = Vocab.build(toks)
    assert v.itos[0] == "<eos>" and v.decode(v.encode(toks)) == toks
    stream = batchify(torch.arange(23), 4)  # 5 per row; 3 tokens dropped
    assert stream.shape == (4, 5) and stream[1].tolist() == [5, 6, 7, 8, 9]
    assert n_segments(stream, 2) == 2
    x, y = segment(stream, 1, 2)
    assert x[0].tolist() == [2, 3] and y[0].tolist() == [3, 4]


def test_zaremba_schedule_is_the_papers():
    # small: 13 epochs, rate 1 for 4 epochs, then halved every epoch (TF ptb_word_lm: lr_decay ** max(i+1-4, 0))
    f = [lr_factor(e * 100, schedule="zaremba", total=1300, steps_per_epoch=100, decay_start=4, lr_decay=0.5)
         for e in range(13)]
    assert f == [1, 1, 1, 1, 0.5, 0.25, 0.125, 0.0625, 2 ** -5, 2 ** -6, 2 ** -7, 2 ** -8, 2 ** -9]
    # compressed to one epoch: same decays at 1/13 of the steps
    g = [lr_factor(math.ceil(e * 100 / 13), schedule="zaremba", total=100, steps_per_epoch=100, decay_start=4 / 13,
                   decay_every=1 / 13, lr_decay=0.5) for e in range(13)]
    assert g == f


# ---- corpora -----------------------------------------------------------------------------------

def test_real_corpora_are_verified_and_wikitext_train_is_named_when_missing(tmp_path):
    data = os.environ.get("TICKETLAB_DATA") or str(Path(__file__).resolve().parents[2] / "shared" / "data")
    requires.data((corpora.corpus_dir("ptb", data) / "ptb.valid.txt").exists(),
                  f"no text corpora in {data} (set TICKETLAB_DATA)")
    status = {r["name"]: r for r in corpora.corpus_status(data)}
    assert status["ptb"]["verified"] and status["multi30k"]["verified"] and status["shakespeare"]["verified"]
    ptb = corpora.read_lm_splits("ptb", data)
    assert len(word_tokens(ptb["train"])) == 929_589 and len(Vocab.build(word_tokens(ptb["train"]))) == 10_000
    chars = corpora.read_lm_splits("shakespeare", data)
    assert [len(chars[s]) for s in ("train", "valid", "test")] == [1_003_854, 55_770, 55_770]
    if not status["wikitext2"]["present"]:
        with pytest.raises(DataError, match=r"wikitext-2/train\.txt is missing.*wiki\.train\.tokens.*36,718 lines.*"
                                            r"2d84b35af79e411d73ea7cae83c73964c6ac83b4"):
            corpora.check_present("wikitext2", data)
        from ticketlab.cli.commands import main
        assert main(["lottery", "--task", "lm", "--dataset", "wikitext2", "--data-dir", data,
                     "--store", str(tmp_path), "--quiet"]) == 2


def test_corrupt_and_missing_files_raise_one_line_errors(tiny_ptb):
    folder = tiny_ptb / "text" / "ptb"
    (folder / "ptb.valid.txt").write_text("tampered\n")
    with pytest.raises(DataError, match=r"ptb\.valid\.txt fails its checksum: md5 \w+, expected") as e:
        corpora.read_lm_splits("ptb", tiny_ptb)
    assert "\n" not in str(e.value)
    (folder / "ptb.test.txt").unlink()
    with pytest.raises(DataError, match=r"ptb\.test\.txt is missing; get .*simple-examples"):
        corpora.check_present("ptb", tiny_ptb)


# ---- tokenizer, BLEU, decoding -----------------------------------------------------------------

def test_tokenizer_round_trips_and_is_deterministic_across_processes(tiny_multi30k, tmp_path):
    from ticketlab.domains.nlp.tokenizer import train_tokenizer
    text = corpora.read_parallel("multi30k", "en", "de", tiny_multi30k)["train"]
    sents = text[0] + text[1]
    tok = train_tokenizer(sents, vocab_size=300)
    odd = ["  Zwei  Männer,  ein Hund!  ", "naïve café – 😀 ß", "", "the big red house"]
    assert tok.decode(tok.encode(odd)) == odd  # byte fallback and identity normalisation: exact
    assert train_tokenizer(sents, vocab_size=300).sha256 == tok.sha256
    corpus = tmp_path / "sents.json"
    corpus.write_text(json.dumps(sents))
    code = ("import json,sys; from ticketlab.domains.nlp.tokenizer import train_tokenizer; "
            f"print(train_tokenizer(json.load(open({str(corpus)!r})), vocab_size=300).sha256)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == tok.sha256


def test_bleu_matches_sacrebleus_readme_example():
    from ticketlab.domains.nlp.translate_task import corpus_bleu
    refs = [["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
            ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."]]
    hyps = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
    assert round(corpus_bleu(hyps, refs), 2) == 48.53  # "BLEU = 48.53 82.4/50.0/45.5/37.5 ..."


def test_cached_decoding_equals_teacher_forcing_and_beam1_is_greedy():
    from ticketlab.domains.nlp.decode import beam_search, greedy
    from ticketlab.domains.nlp.seq2seq import Seq2SeqTransformer
    torch.manual_seed(0)
    m = Seq2SeqTransformer(40, 16, 2, 2, 32, 0.0, pad=0, tie=False).eval()
    src = torch.tensor([[5, 6, 7, 3, 0], [8, 9, 10, 11, 3]])
    tgt = torch.tensor([[2, 12, 13, 14], [2, 15, 16, 17]])
    full = m(src, tgt)
    memory, mask = m.encode(src)
    cache = [{} for _ in m.decoder]
    steps = [m.decode(tgt[:, t:t + 1], memory, mask, cache=cache, offset=t) for t in range(tgt.shape[1])]
    assert torch.allclose(torch.cat(steps, 1), full, atol=1e-5)
    g = greedy(m, src, bos=2, eos=3)
    assert beam_search(m, src, bos=2, eos=3, beam=1, alpha=0.0) == g


@torch.no_grad()
def test_a_wide_beam_finds_the_exhaustive_best_with_length_penalty():
    from ticketlab.domains.nlp.decode import beam_search, greedy, length_penalty
    from ticketlab.domains.nlp.seq2seq import Seq2SeqTransformer
    V, bos, eos, L, alpha = 6, 2, 3, 3, 0.6
    src = torch.tensor([[4, 5, 3], [5, 1, 3]])
    differs = 0
    for seed in (1, 3, 4):  # random models whose best sequence is often not the greedy one
        torch.manual_seed(seed)
        m = Seq2SeqTransformer(V, 8, 1, 2, 16, 0.0, pad=0, tie=False).eval()
        m.out.weight.mul_(3)
        got = beam_search(m, src, bos=bos, eos=eos, beam=300, alpha=alpha, max_len_a=0.0, max_len_b=L)
        g = greedy(m, src, bos=bos, eos=eos, max_len_a=0.0, max_len_b=L)
        for i in range(2):
            def logp(seq):  # log p(seq | src) by teacher forcing
                lp = m(src[i:i + 1], torch.tensor([[bos] + seq[:-1]])).log_softmax(-1)[0]
                return float(sum(lp[t, w] for t, w in enumerate(seq)))
            best, best_ids = -math.inf, None
            prefixes = [[]]
            for t in range(L):  # every hypothesis: eos after a prefix, or any token at the last step
                for p in prefixes:
                    for w in range(V):
                        if w == eos or t == L - 1:
                            s = logp(p + [w]) / length_penalty(t + 1, alpha)
                            if s > best + 1e-6:
                                best, best_ids = s, p if w == eos else p + [w]
                prefixes = [p + [w] for p in prefixes for w in range(V) if w != eos]
            assert got[i] == best_ids
            differs += got[i] != g[i]
    assert differs >= 2


# ---- pruning options, masks, resume ------------------------------------------------------------

def test_prune_options_choose_the_prunable_matrices(tiny_ptb):
    def names(**kw):
        t = LMTrainer(dataclasses.replace(TINY_LM, **kw), data_dir=tiny_ptb)
        m = t.build(0)
        return sorted(t.prunable(m)), t.output_layer(m)
    rnn = ["rnn.weight_hh_l0", "rnn.weight_hh_l1", "rnn.weight_ih_l0", "rnn.weight_ih_l1"]
    assert names() == (sorted(rnn + ["decoder.weight"]), "decoder.weight")
    assert names(prune_embeddings=True, prune_softmax=False) == (sorted(rnn + ["embed.weight"]), None)
    assert names(tie_embeddings=True, prune_embeddings=True) == (sorted(rnn + ["embed.weight"]), "embed.weight")
    with pytest.raises(ConfigError, match="tie_embeddings"):
        LMConfig(tie_embeddings=True, prune_embeddings=False, prune_softmax=True)
    t = LMTrainer(dataclasses.replace(TINY_LM, model="transformer", hidden=16, heads=2, ffn=32), data_dir=tiny_ptb)
    m = t.build(0)
    assert isinstance(m, TransformerLM) and "blocks.0.attn.q.weight" in t.prunable(m)
    assert "embed.weight" not in t.prunable(m) and t.output_layer(m) == "decoder.weight"
    assert torch.equal(t.build(3).blocks[0].ff.fc1.weight, t.build(3).blocks[0].ff.fc1.weight)


def test_transformer_lm_trains_with_exact_masks(tiny_ptb, tmp_path):
    cfg = dataclasses.replace(TINY_LM, model="transformer", hidden=16, heads=2, ffn=32, n_layers=1, lr=1e-2,
                              warmup=5, epochs=3.0, eval_every=1000, prune_embeddings=True)
    t = LMTrainer(cfg, data_dir=tiny_ptb)
    m = t.build(0)
    before = perplexity(m, t.data.valid, 8)[0]
    g = torch.Generator().manual_seed(1)
    masks = {n: torch.rand(p.shape, generator=g) < 0.5 for n, p in t.prunable(m).items()}
    s = t.fit(m, tmp_path / "run", masks=masks)
    assert s["final"]["val_ppl"] < 0.5 * before
    final = load_state(tmp_path / "run" / "final.pt")["model"]
    assert all(torch.count_nonzero(final[n][~mk]) == 0 for n, mk in masks.items())


class Interrupt(Exception):
    pass


def test_masks_stay_exact_and_an_interrupted_run_resumes_exactly(tiny_ptb, tmp_path, monkeypatch):
    cfg = dataclasses.replace(TINY_LM, dropout=0.3, lr=3e-3, schedule="cosine")
    t = LMTrainer(cfg, data_dir=tiny_ptb, checkpoint_every=7)
    g = torch.Generator().manual_seed(0)
    params = t.prunable(t.build(0))
    masks = {n: torch.rand(p.shape, generator=g) < 0.3 for n, p in params.items()}
    t.fit(t.build(0), tmp_path / "a", masks=masks, snapshot_iters=(5,))
    final = load_state(tmp_path / "a" / "final.pt")
    for n, m in masks.items():
        w = final["model"][n]
        assert torch.count_nonzero(w[~m]) == 0 and torch.count_nonzero(w[m]) > 0.99 * m.sum(), n
    names = [n for n, _ in t.build(0).named_parameters()]
    for n, m in masks.items():  # Adam moments of pruned weights stay zero
        moments = [v for v in final["optimizer"]["state"][names.index(n)].values() if v.shape == m.shape]
        assert len(moments) == 2, n
        for v in moments:
            assert torch.count_nonzero(v[~m]) == 0, n
    assert load_state(tmp_path / "a" / "snapshot_5.pt")["iteration"] == 5
    # interrupt at step 17 (the last checkpoint is at 14: LSTM state, RNG and optimizer restored)
    calls = {"n": 0}
    orig = t.objective.train_loss

    def flaky(model, it, carry):
        calls["n"] += 1
        if calls["n"] == 18:
            raise Interrupt
        return orig(model, it, carry)
    monkeypatch.setattr(t.objective, "train_loss", flaky)
    with pytest.raises(Interrupt):
        t.fit(t.build(0), tmp_path / "b", masks=masks, snapshot_iters=(5,))
    assert load_state(tmp_path / "b" / "checkpoint.pt")["iteration"] == 14
    s = t.fit(t.build(0), tmp_path / "b", masks=masks, snapshot_iters=(5,))
    resumed = load_state(tmp_path / "b" / "final.pt")
    assert all(torch.equal(resumed["model"][k], final["model"][k]) for k in final["model"])
    a_rows = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    b_rows = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["test_ppl"] for r in a_rows] == [json.loads(r)["test_ppl"] for r in b_rows]
    assert s["metric"] == "test_ppl" and s["early_stop"]["val_ppl"] == min(json.loads(r)["val_ppl"] for r in a_rows)
    assert s["tokens_per_s"] > 0 and s["train_tokens"] == t.total_iterations * 4 * 8


# ---- the lottery, end to end -------------------------------------------------------------------

def test_lm_lottery_two_levels_with_late_rewinding_and_controls(tiny_ptb, tmp_path):
    res = api.lottery(TINY_LM, LotteryConfig(strategy="global", prune_fraction=0.5, levels=2, rewind_iter=6,
                                             controls=("reinit", "random_mask")),
                      store=tmp_path / "store", data_dir=tiny_ptb, progress=False)
    agg = {(a["branch"], a["level"]): a for a in res["aggregate"]}
    assert set(agg) == {("ticket", 0), ("ticket", 1), ("ticket", 2), ("reinit", 1), ("reinit", 2),
                        ("random_mask", 1), ("random_mask", 2)}
    assert [round(agg["ticket", L]["density"], 4) for L in range(3)] == [1.0, 0.5, 0.25]
    # the language's words have 14 choices (13 words and <eos>); all branches learn its bigrams
    assert all(a["metric"] == "test_ppl" and 1 < a["es_score"] < 10 for a in agg.values())
    level2 = next(r for r in res["rows"] if r["branch"] == "ticket" and r["level"] == 2)
    summary = json.loads(open(level2["path"] + "/summary.json").read())
    steps = LMTrainer(TINY_LM, data_dir=tiny_ptb).total_iterations
    assert summary["start_iter"] == 6 and summary["iterations"] == steps and summary["train_tokens"] == (steps - 6) * 32
    # the ticket starts from the rewound weights θ6 of level 0, masked
    exp = res["experiment"]
    theta_k = load_state(f"{exp}/replicate_0/level_0/snapshot_6.pt")["model"]
    start = load_state(f"{exp}/replicate_0/level_2/snapshot_6.pt")
    for n, m in start["masks"].items():
        assert torch.equal(start["model"][n], theta_k[n] * m)
    again = api.lottery(TINY_LM, LotteryConfig(strategy="global", prune_fraction=0.5, levels=2, rewind_iter=6,
                                               controls=("reinit", "random_mask")),
                        store=tmp_path / "store", data_dir=tiny_ptb, progress=False)
    assert again["rows"] == res["rows"]  # cached: nothing re-run


def test_translate_lottery_two_levels(tiny_multi30k, tmp_path):
    from ticketlab.domains.nlp.translate_task import TranslateConfig
    cfg = TranslateConfig(vocab_size=300, hidden=16, n_layers=1, heads=2, ffn=32, batch_size=40, epochs=2.0,
                          warmup=5, lr=3e-3, eval_every=10, beam_size=2, dropout=0.0)
    res = api.lottery(cfg, LotteryConfig(levels=2, prune_fraction=0.4, rewind_iter=4, controls=("random_mask",)),
                      store=tmp_path / "store", data_dir=tiny_multi30k, progress=False)
    agg = {(a["branch"], a["level"]): a for a in res["aggregate"]}
    assert set(agg) == {("ticket", 0), ("ticket", 1), ("ticket", 2), ("random_mask", 1), ("random_mask", 2)}
    assert all(a["metric"] == "test_bleu" and 0 <= a["es_score"] <= 100 for a in agg.values())
    run = res["rows"][0]["path"]
    s = json.loads(open(f"{run}/summary.json").read())
    assert s["early_stop"]["val_loss"] == min(json.loads(r)["val_loss"] for r in open(f"{run}/metrics.jsonl"))
    from ticketlab.domains.nlp.tokenizer import Tokenizer
    assert Tokenizer.load(f"{run}/tokenizer.model").sha256 == s["tokenizer_sha256"]


# ---- divergence (issue 17) --------------------------------------------------------------------

def test_on_an_accelerator_the_loss_is_read_at_evaluations_and_checkpoints(tiny_ptb, tmp_path, monkeypatch):
    # issue #16: a per-step read of the loss waits for an accelerator; there the loop sums it on the
    # device and reads it at each evaluation and checkpoint. The same code path, forced on the CPU:
    # the metrics are those of the per-step path (the running loss up to float rounding), and a NaN
    # at step 25 is caught at the evaluation of step 40.
    from ticketlab.training import device as _device
    t = LMTrainer(TINY_LM, data_dir=tiny_ptb)
    each = t.fit(t.build(0), tmp_path / "each")
    monkeypatch.setattr(_device, "reads_are_free", lambda dev: False)
    late = t.fit(t.build(0), tmp_path / "late")
    rows = [[json.loads(r) for r in (tmp_path / n / "metrics.jsonl").read_text().splitlines()] for n in ("each", "late")]
    assert len(rows[0]) == len(rows[1]) > 1
    for a, b in zip(*rows):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
        assert {k: v for k, v in a.items() if k not in ("train_loss", "tokens_per_s")} == \
            {k: v for k, v in b.items() if k not in ("train_loss", "tokens_per_s")}
    assert late["train_tokens"] == each["train_tokens"] and late["final"]["test_ppl"] == each["final"]["test_ppl"]
    orig = t.objective.train_loss
    monkeypatch.setattr(t.objective, "train_loss",
                        lambda model, it, carry: (lambda l, n, c: (l * math.nan if it == 24 else l, n, c))(
                            *orig(model, it, carry)))
    s = t.fit(t.build(0), tmp_path / "bad")
    assert s["diverged"] == {"iteration": 40}
    bad = [json.loads(r) for r in (tmp_path / "bad" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in bad] == [20, 40] and bad[-1]["test_ppl"] is None
    assert {k: v for k, v in bad[0].items() if k != "tokens_per_s"} == \
        {k: v for k, v in rows[1][0].items() if k != "tokens_per_s"}


def test_a_nan_loss_stops_the_run_at_once_and_is_recorded_as_diverged(tiny_ptb, tmp_path, monkeypatch):
    from ticketlab.engine.results import aggregate, diverged_at, summary_metrics
    t = LMTrainer(TINY_LM, data_dir=tiny_ptb)
    good = t.fit(t.build(0), tmp_path / "good")
    orig, calls = t.objective.train_loss, {"n": 0}

    def poisoned(model, it, carry):  # the loss of step 25 (1-based) is NaN; rows are at 20, 40, ...
        loss, n_tok, carry = orig(model, it, carry)
        calls["n"] += 1
        return (loss * math.nan if it == 24 else loss), n_tok, carry
    monkeypatch.setattr(t.objective, "train_loss", poisoned)
    s = t.fit(t.build(0), tmp_path / "bad")
    assert t.total_iterations > 40
    assert s["diverged"] == {"iteration": 25} and calls["n"] == 25  # stopped at once
    on_disk = json.loads((tmp_path / "bad" / "summary.json").read_text(), parse_constant=lambda c: 1 / 0)
    assert on_disk["diverged"] == {"iteration": 25}
    rows = [json.loads(r) for r in (tmp_path / "bad" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in rows] == [20, 25] and rows[-1]["test_ppl"] is None and rows[0]["test_ppl"] > 1
    assert s["early_stop"]["iter"] == 20 and s["best_score"] == rows[0]["test_ppl"]
    runs = [{"branch": "ticket", "level": 0, "density": 1.0, **summary_metrics(x), "diverged": diverged_at(x)}
            for x in (good, s)]
    [a] = aggregate(runs)
    assert a["n"] == 1 and a["n_diverged"] == 1 and a["es_score"] == good["early_stop"]["test_ppl"]
