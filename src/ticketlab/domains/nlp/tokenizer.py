"""A subword tokenizer for translation: a sentencepiece BPE or unigram model trained on the training split.

Kudo & Richardson 2018 (sentencepiece); BPE as in Sennrich et al. 2016, one vocabulary shared
by source and target (Vaswani et al. 2017 §5.1). Choices that make it exact and reproducible:

- `identity` normalisation, no whitespace folding and byte fallback: `decode(encode(s)) == s` for
  any string, so BLEU is scored against the untouched reference text;
- one training thread, every sentence used (no sampling) and a fixed random seed: the same
  sentences and options give the same model file, byte for byte, in any process;
- ids: 0 pad, 1 unk, 2 bos, 3 eos.

The trained model is cached under `tokenizer_cache_dir()/<key>.model`, the key being a hash of the
training text, the options and the sentencepiece version, so the runs of an experiment (and its
worker processes) share one model; each run also keeps a copy in its folder (`tokenizer.model`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

from ticketlab.core import atomic as _atomic
from ticketlab.data.registry import resolve_cache_dir
from ticketlab.core.errors import ConfigError

PAD, UNK, BOS, EOS = 0, 1, 2, 3


def tokenizer_cache_dir() -> Path:
    """$TICKETLAB_CACHE/tokenizers, else ~/.cache/ticketlab/tokenizers."""
    return resolve_cache_dir() / "tokenizers"


class Tokenizer:
    """A trained sentencepiece model: text <-> ids, and its serialized bytes."""

    def __init__(self, model_bytes: bytes):
        import sentencepiece as spm
        self.model_bytes = model_bytes
        self.sp = spm.SentencePieceProcessor(model_proto=model_bytes)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Tokenizer":
        return cls(Path(path).read_bytes())

    def save(self, path: str | os.PathLike) -> None:
        with _atomic.atomic_open(path, "wb") as f:
            f.write(self.model_bytes)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.model_bytes).hexdigest()

    def __len__(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, texts: list[str]) -> list[list[int]]:
        return self.sp.encode(texts)

    def decode(self, ids: list[list[int]]) -> list[str]:
        return self.sp.decode(ids)


def train_tokenizer(sentences: list[str], *, vocab_size: int, model_type: str = "bpe", seed: int = 0) -> Tokenizer:
    """Train a sentencepiece model on `sentences` (deterministic: see the module docstring)."""
    import sentencepiece as spm
    if model_type not in ("bpe", "unigram"):
        raise ConfigError(f"tokenizer: got {model_type!r}, expected bpe or unigram")
    spm.set_random_generator_seed(seed)
    buf = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences), model_writer=buf, vocab_size=vocab_size, model_type=model_type,
            character_coverage=1.0, byte_fallback=True, normalization_rule_name="identity",
            remove_extra_whitespaces=False, split_digits=False, num_threads=1, input_sentence_size=0,
            shuffle_input_sentence=False, pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS,
            minloglevel=2)
    except RuntimeError as e:  # e.g. a vocabulary larger than the corpus supports
        raise ConfigError(f"vocab_size: sentencepiece could not train a {vocab_size}-piece "
                          f"{model_type} model: {str(e).splitlines()[-1]}") from None
    return Tokenizer(buf.getvalue())


def cached_tokenizer(sentences: list[str], *, vocab_size: int, model_type: str = "bpe", seed: int = 0) -> Tokenizer:
    """`train_tokenizer`, trained once per (text, options, sentencepiece version) and cached on disk."""
    import sentencepiece as spm
    h = hashlib.sha256()
    h.update(json.dumps({"vocab_size": vocab_size, "model_type": model_type, "seed": seed,
                         "sentencepiece": spm.__version__, "format": 1}, sort_keys=True).encode())
    for s in sentences:
        h.update(s.encode("utf-8") + b"\n")
    path = tokenizer_cache_dir() / f"{h.hexdigest()[:20]}.model"
    if path.is_file():
        return Tokenizer.load(path)
    tok = train_tokenizer(sentences, vocab_size=vocab_size, model_type=model_type, seed=seed)
    tok.save(path)  # atomic: concurrent workers write the same bytes
    return tok


__all__ = ["PAD", "UNK", "BOS", "EOS", "Tokenizer", "train_tokenizer", "cached_tokenizer", "tokenizer_cache_dir"]
