"""Readers for the text corpora of the NLP lottery experiments, checked against their checksums.

Corpora (provenance: shared/data/SOURCES.md), in `<data dir>/text/<folder>/` (the data dir is
`--data-dir`, then $TICKETLAB_DATA, then ~/.cache/ticketlab: `ticketlab.data.resolve_data_dir`):

| name        | folder           | splits                                   | reference                            |
|-------------|------------------|------------------------------------------|--------------------------------------|
| ptb         | ptb/             | ptb.{train,valid,test}.txt               | Mikolov et al. 2010 (Zaremba 2014 §4) |
| wikitext2   | wikitext-2/      | {train,valid,test}.txt = wiki.*.tokens   | Merity et al. 2016, v1 tokenised     |
| shakespeare | tinyshakespeare/ | input.txt, cut 90/5/5 % by characters    | Karpathy's char-rnn                  |
| multi30k    | multi30k/        | {train,val,test_2016_flickr}.{en,de}[.gz]| Elliott et al. 2016, task 1, raw     |

Every file is read whole and its content md5 compared with the canonical one (for gzipped
Multi30k files: the md5 of the decompressed text, so a plain or a re-gzipped copy is accepted).
WikiText-2's training file is not redistributed with the shared data: a user supplies it, and it
is verified by its git blob sha1 (`git hash-object`), the checksum SOURCES.md records for it.
A missing or bad file raises a one-line `DataError` naming the file and how to get it.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

from ticketlab.data.registry import resolve_data_dir
from ticketlab.core.errors import DataError


@dataclass(frozen=True)
class TextFile:
    """One file of a corpus: its name, and the md5 (or git blob sha1) of its decompressed content."""

    name: str
    md5: str | None = None
    git_sha1: str | None = None  # when no md5 is published (WikiText-2 train)
    lines: int | None = None


@dataclass(frozen=True)
class Corpus:
    """A corpus: its folder under `<data dir>/text/`, its files by split, and where to get them."""

    name: str
    folder: str
    files: dict  # split -> TextFile (LM) or split -> {lang: TextFile} (parallel)
    how_to_get: str
    kind: str  # "word", "char" or "parallel"


CORPORA: dict[str, Corpus] = {c.name: c for c in (
    Corpus("ptb", "ptb", {
        "train": TextFile("ptb.train.txt", "f26c4b92c5fdc7b3f8c7cdcb991d8420", lines=42068),
        "valid": TextFile("ptb.valid.txt", "aa0affc06ff7c36e977d7cd49e3839bf", lines=3370),
        "test": TextFile("ptb.test.txt", "8b80168b89c18661a38ef683c0dc3721", lines=3761)},
        "the Mikolov LM version in simple-examples.tgz (data/ptb.*.txt), "
        "http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz", "word"),
    Corpus("wikitext2", "wikitext-2", {
        "train": TextFile("train.txt", git_sha1="2d84b35af79e411d73ea7cae83c73964c6ac83b4", lines=36718),
        "valid": TextFile("valid.txt", "d756d22ab2310e7e60c094bea5c5a8eb", lines=3760),
        "test": TextFile("test.txt", "781c9418ab9414bd09e4aad825aae752", lines=4358)},
        "wiki.{train,valid,test}.tokens of wikitext-2-v1.zip (Merity et al. 2016), renamed to "
        "{train,valid,test}.txt", "word"),
    Corpus("shakespeare", "tinyshakespeare", {
        "all": TextFile("input.txt", "6fb458f1232090904fb40fe944165e91")},
        "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt", "char"),
    Corpus("multi30k", "multi30k", {
        split: {"en": TextFile(f"{stem}.en", en, lines=n), "de": TextFile(f"{stem}.de", de, lines=n)}
        for split, stem, en, de, n in (
            ("train", "train", "053a34ece7c904dbc8c7361799afbe4c", "d3b4bc1671cfb805267f97f16884beba", 29000),
            ("valid", "val", "2234730e7925354b766681b029b347ec", "9f139b15d9d11936dea7af2904e57d8c", 1014),
            ("test", "test_2016_flickr", "2022a6c31e2418047a0511333d55ed42",
             "cde61d7401b116652ee84099c7858ca3", 1000))},
        "data/task1/raw/ of https://github.com/multi30k/dataset (plain or .gz)", "parallel"),
)}

# Tiny Shakespeare has one file; its splits are contiguous character ranges (nanoGPT cuts 90/10;
# a test split is needed too, so 90/5/5).
SHAKESPEARE_SPLITS = {"train": (0.0, 0.9), "valid": (0.9, 0.95), "test": (0.95, 1.0)}


def get_corpus(name: str) -> Corpus:
    """The corpus called `name`; an unknown name raises DataError listing the known ones."""
    if name not in CORPORA:
        raise DataError(f"dataset: got {name!r}, expected one of {', '.join(CORPORA)}")
    return CORPORA[name]


def corpus_dir(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """`<data dir>/text/<folder>` of corpus `name`."""
    return resolve_data_dir(data_dir) / "text" / get_corpus(name).folder


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def _missing(corpus: Corpus, path: Path, spec: TextFile) -> DataError:
    if corpus.name == "wikitext2" and spec.name == "train.txt":
        return DataError(
            f"{path} is missing: WikiText-2's training split is not in the shared data; supply "
            f"wiki.train.tokens of wikitext-2-v1.zip there as train.txt ({spec.lines:,} lines, "
            f"git blob sha1 {spec.git_sha1})")
    return DataError(f"{path} is missing; get {corpus.how_to_get}")


def read_file(corpus: Corpus, spec: TextFile, folder: Path) -> str:
    """The verified UTF-8 text of one corpus file (`name`, or `name.gz` if only that exists)."""
    path = folder / spec.name
    gz = folder / (spec.name + ".gz")
    if not path.is_file() and gz.is_file():
        path = gz
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise _missing(corpus, folder / spec.name, spec) from None
    except OSError as e:
        raise DataError(f"cannot read {path}: {e}") from None
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path} does not gunzip ({e}): delete it and get {corpus.how_to_get}") from None
    if spec.md5 is not None:
        actual, expected, what = hashlib.md5(data, usedforsecurity=False).hexdigest(), spec.md5, "md5"
    else:
        actual, expected, what = _git_blob_sha1(data), spec.git_sha1, "git blob sha1"
    if actual != expected:
        raise DataError(f"{path} fails its checksum: {what} {actual}, expected {expected} (of the "
                        f"{'decompressed ' if path.suffix == '.gz' else ''}text); it is truncated, "
                        f"corrupt or not the original: get {corpus.how_to_get}")
    return data.decode("utf-8")


def read_lm_splits(name: str, data_dir=None) -> dict[str, str]:
    """{"train", "valid", "test"} -> text of a language-modelling corpus (ptb, wikitext2, shakespeare)."""
    corpus = get_corpus(name)
    if corpus.kind == "parallel":
        raise DataError(f"dataset: {name!r} is a translation corpus, not a language-modelling one")
    folder = corpus_dir(name, data_dir)
    if corpus.kind == "char":
        text = read_file(corpus, corpus.files["all"], folder)
        return {s: text[int(a * len(text)):int(b * len(text))] for s, (a, b) in SHAKESPEARE_SPLITS.items()}
    return {s: read_file(corpus, spec, folder) for s, spec in corpus.files.items()}


def read_parallel(name: str, src: str, tgt: str, data_dir=None) -> dict[str, tuple[list[str], list[str]]]:
    """{"train", "valid", "test"} -> (source sentences, target sentences) of a translation corpus."""
    corpus = get_corpus(name)
    if corpus.kind != "parallel":
        raise DataError(f"dataset: {name!r} is a language-modelling corpus, not a translation one")
    folder = corpus_dir(name, data_dir)
    out = {}
    for split, langs in corpus.files.items():
        for lang in (src, tgt):
            if lang not in langs:
                raise DataError(f"{name} has no {lang!r} side; languages: {', '.join(langs)}")
        a = read_file(corpus, langs[src], folder).rstrip("\n").split("\n")
        b = read_file(corpus, langs[tgt], folder).rstrip("\n").split("\n")
        if len(a) != len(b):
            raise DataError(f"{folder}: {split} has {len(a)} {src} lines but {len(b)} {tgt} lines")
        out[split] = (a, b)
    return out


def check_present(name: str, data_dir=None, splits=None) -> None:
    """Raise the one-line DataError of the first missing file of corpus `name` (no hashing)."""
    corpus = get_corpus(name)
    folder = corpus_dir(name, data_dir)
    for split, spec in corpus.files.items():
        if splits is not None and split not in splits:
            continue
        for s in (spec.values() if isinstance(spec, dict) else (spec,)):
            if not (folder / s.name).is_file() and not (folder / (s.name + ".gz")).is_file():
                raise _missing(corpus, folder / s.name, s)


def corpus_status(data_dir=None) -> list[dict]:
    """Per corpus: {"name", "present", "verified", "problem"} (every present file is hashed)."""
    rows = []
    for name, corpus in CORPORA.items():
        row = {"name": name, "present": True, "verified": True, "problem": None}
        try:
            check_present(name, data_dir)
        except DataError as e:
            row.update(present=False, verified=False, problem=str(e))
        else:
            try:
                if corpus.kind == "parallel":
                    read_parallel(name, "en", "de", data_dir)
                else:
                    read_lm_splits(name, data_dir)
            except DataError as e:
                row.update(verified=False, problem=str(e))
        rows.append(row)
    return rows


__all__ = ["CORPORA", "Corpus", "TextFile", "get_corpus", "corpus_dir", "read_lm_splits", "read_parallel",
           "check_present", "corpus_status"]
