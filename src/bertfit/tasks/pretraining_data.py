"""Pretraining data: a corpus tokenized once into an on-disk token file, the MLM blocks and NSP pairs cut
from it (memory-mapped files too, so memory does not grow with the corpus), and BERT's dynamic masking.

A token file is a folder of flat arrays: `tokens` end to end, `paragraph_offsets` (paragraph p is
tokens[P[p]:P[p+1]]) and `document_offsets` (document d is paragraphs D[d]..D[d+1]). Every folder is
written under a temporary name and renamed into place once complete, so a folder with its final name
is always a finished one.
"""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from tokenizers import Tokenizer

from ..batching import Features
from ..errors import ConfigError, DataError
from ..files import replace_folder, temporary_folder, write_json
from ..tokenization import TOKEN_NAMES, longest_first, prepare
from .text import CorpusStats, hub_dataset, is_hub_name, read_documents

# part of every cache key: a change to the layout below, or to what is cut into it, makes old caches misses
# (2: NSP pairs truncate by tokenization.longest_first, whose odd token goes to the longer side, B on a tie)
FORMAT_VERSION = 2
HASH_BLOCK = 1 << 20  # bytes of a source file hashed at a time
PIECE_TOKENS = 1 << 20  # tokens gathered before one write, when packing blocks and pairs
PROGRESS_SECONDS = 10.0


@dataclass
class TokenFile:
    """A tokenized corpus on disk; the arrays are memory-mapped, read-only."""

    folder: Path
    tokens: np.ndarray  # uint16 (uint32 for vocabularies over 65,536)
    paragraph_offsets: np.ndarray  # int64, paragraphs + 1 boundaries into tokens
    document_offsets: np.ndarray  # int64, documents + 1 boundaries into paragraphs
    stats: dict  # documents, paragraphs, tokens, words, characters, skipped_lines, sources
    digest: str  # the cache key: format, tokenizer, text field and the sources' bytes

    @property
    def num_documents(self) -> int:
        return len(self.document_offsets) - 1

    @property
    def num_paragraphs(self) -> int:
        return len(self.paragraph_offsets) - 1

    def document_bounds(self, documents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Token start and end of each document: a document's paragraphs lie end to end."""
        documents = np.asarray(documents, dtype=np.int64)
        return (np.asarray(self.paragraph_offsets[self.document_offsets[documents]]),
                np.asarray(self.paragraph_offsets[self.document_offsets[documents + 1]]))

    def document_tokens(self, d: int) -> np.ndarray:
        start, end = self.document_bounds(np.array([d]))
        return self.tokens[int(start[0]) : int(end[0])]

    @classmethod
    def open(cls, folder: str | Path) -> "TokenFile":
        folder = Path(folder)
        stats = json.loads((folder / "stats.json").read_text(encoding="utf-8"))
        if stats.get("format") != FORMAT_VERSION:
            raise ValueError(f"{folder}: token file format {stats.get('format')}, not {FORMAT_VERSION}")
        tokens = np.memmap(folder / "tokens.bin", dtype=np.dtype(stats["dtype"]), mode="r")
        paragraphs = np.memmap(folder / "paragraph_offsets.bin", dtype=np.int64, mode="r")
        documents = np.memmap(folder / "document_offsets.bin", dtype=np.int64, mode="r")
        if (len(tokens), len(paragraphs) - 1, len(documents) - 1) != (stats["tokens"], stats["paragraphs"],
                                                                       stats["documents"]):
            raise ValueError(f"{folder}: the arrays do not match stats.json")
        return cls(folder, tokens, paragraphs, documents, stats, stats["digest"])


def corpus_digest(sources: Sequence[str], tokenizer: Tokenizer, text_field: str) -> str:
    """The cache key: a change to any source's bytes, to the tokenizer or to the text field gives a new one."""
    digest = hashlib.sha256(f"bertfit token file {FORMAT_VERSION}\n".encode())
    digest.update(tokenizer.to_str().encode())
    digest.update(f"\ntext field {text_field}\n".encode())
    for source in sources:
        if is_hub_name(source):
            name, config = hub_dataset(source)
            digest.update(f"hub {name} {config}\n".encode())
            continue
        digest.update(b"file\n")
        try:
            with open(source, "rb") as f:
                while block := f.read(HASH_BLOCK):
                    digest.update(block)
        except FileNotFoundError:
            raise DataError(f"{source}: no such file") from None
        except IsADirectoryError:
            raise DataError(f"{source}: is a folder, not a text file") from None
        digest.update(b"\nend of file\n")
    return digest.hexdigest()[:20]


def tokenize_corpus(sources: Sequence[str], tokenizer: Tokenizer, cache_dir: str | Path, text_field: str = "text",
                    chunk_paragraphs: int = 2000, quiet: bool = False) -> tuple[TokenFile, bool]:
    """Tokenize every paragraph of `sources` (no special tokens) into cache_dir/DIGEST, streaming; True when
    the same text and tokenizer were tokenized before and the finished folder is opened instead."""
    if not sources:
        raise ConfigError("give at least one training file")
    tokenizer = prepare(Tokenizer.from_str(tokenizer.to_str()))  # a copy: the caller's padding settings stay
    digest = corpus_digest(sources, tokenizer, text_field)
    folder = Path(cache_dir) / digest
    if folder.is_dir():
        try:
            token_file = TokenFile.open(folder)
            token_file.stats["sources"] = [str(s) for s in sources]  # the same bytes may have moved
            return token_file, True
        except (OSError, ValueError, KeyError):
            pass  # damaged by hand: tokenize again, and the new folder replaces it whole
    _build_folder(folder, lambda tmp: _write_token_file(tmp, sources, tokenizer, text_field, digest,
                                                        max(1, chunk_paragraphs), quiet), "stats.json")
    return TokenFile.open(folder), False


def encode_paragraphs(tokenizer: Tokenizer, paragraphs: list[str]) -> list[list[int]]:
    """Token ids of each paragraph, without [CLS]/[SEP]: those come when blocks and pairs are cut."""
    # encode_batch_fast skips the character offsets, which pretraining never reads (tokenizers 0.21+)
    encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
    return [e.ids for e in encode(paragraphs, add_special_tokens=False)]


def _write_token_file(folder: Path, sources: Sequence[str], tokenizer: Tokenizer, text_field: str, digest: str,
                      chunk_paragraphs: int, quiet: bool) -> None:
    vocab_size = tokenizer.get_vocab_size()
    dtype = np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)
    corpus = CorpusStats()
    totals = {"tokens": 0, "paragraphs": 0}
    start, last_report = time.perf_counter(), time.perf_counter()
    with open(folder / "tokens.bin", "wb") as tokens_out, \
            open(folder / "paragraph_offsets.bin", "wb") as paragraphs_out, \
            open(folder / "document_offsets.bin", "wb") as documents_out:
        paragraphs_out.write(np.zeros(1, np.int64).tobytes())
        documents_out.write(np.zeros(1, np.int64).tobytes())

        def write(paragraphs: list[str], sizes: list[int]) -> None:
            ids = encode_paragraphs(tokenizer, paragraphs)
            lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
            flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
            tokens_out.write(flat.astype(dtype).tobytes())
            paragraphs_out.write((totals["tokens"] + np.cumsum(lengths)).tobytes())
            documents_out.write((totals["paragraphs"] + np.cumsum(np.asarray(sizes, np.int64))).tobytes())
            totals["tokens"] += int(lengths.sum())
            totals["paragraphs"] += len(paragraphs)

        pending, sizes = [], []
        for source in sources:
            for document in read_documents(source, text_field, corpus):
                pending.extend(document)
                sizes.append(len(document))
                if len(pending) >= chunk_paragraphs:
                    write(pending, sizes)
                    pending, sizes = [], []
                    if not quiet and time.perf_counter() - last_report >= PROGRESS_SECONDS:
                        last_report = time.perf_counter()
                        rate = totals["paragraphs"] / (last_report - start)
                        print(f"tokenizing: {totals['paragraphs']:,} paragraphs, {totals['tokens']:,} tokens "
                              f"({rate:,.0f} paragraphs/s)", file=sys.stderr, flush=True)
        if pending:
            write(pending, sizes)
    if not totals["tokens"]:
        raise DataError(f"{', '.join(map(str, sources))}: no text to tokenize (read {corpus.summary()})")
    write_json(folder / "stats.json", {
        "format": FORMAT_VERSION, "digest": digest, "dtype": dtype.name, "vocab_size": vocab_size,
        "documents": corpus.documents, "paragraphs": corpus.paragraphs, "tokens": totals["tokens"],
        "words": corpus.words, "characters": corpus.characters, "skipped_lines": corpus.skipped_lines,
        "sources": [str(s) for s in sources], "seconds": round(time.perf_counter() - start, 2)})


def _build_folder(folder: Path, write: Callable[[Path], None], marker: str) -> None:
    """Write a folder under a temporary name and rename it into place when `write` returns: never half a cache."""
    tmp = temporary_folder(folder)  # this run's own: removing it on failure removes nothing else
    try:
        write(tmp)
        replace_folder(tmp, folder, marker)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def split_documents(token_file: TokenFile, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Document indices (each sorted) for training and held out: `fraction` of the documents, at least one
    when fraction > 0, chosen at random by `seed`. Whole documents, so no held-out text is trained on."""
    if not 0 <= fraction < 1:
        raise ConfigError(f"the held-out fraction must be in [0, 1), not {fraction}")
    n = token_file.num_documents
    held = 0 if fraction == 0 else max(1, round(fraction * n))
    if held >= n:
        raise ConfigError(f"the corpus has {n} document{'s' if n != 1 else ''}: too few to hold out {fraction:.1%} "
                          f"and train on the rest; give more documents (a blank line, or a ` = Title = ` line, "
                          f"between them) or a smaller held-out fraction")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[held:]).astype(np.int64), np.sort(order[:held]).astype(np.int64)


def _selection(token_file: TokenFile, documents) -> tuple[np.ndarray, str]:
    """The documents (all by default) and a short key naming the choice in cache folder names."""
    if documents is None:
        return np.arange(token_file.num_documents, dtype=np.int64), "all"
    documents = np.asarray(documents, dtype=np.int64)
    if documents.ndim != 1 or not len(documents):
        raise ConfigError("choose at least one document")
    if documents.min() < 0 or documents.max() >= token_file.num_documents:
        raise ConfigError(f"document indices must be in [0, {token_file.num_documents}), "
                          f"found {documents.min()}..{documents.max()}")
    return documents, hashlib.sha256(documents.tobytes()).hexdigest()[:12]


def packed_features(token_file: TokenFile, seq_len: int, cls_id: int, sep_id: int, documents: np.ndarray | None = None,
                    cache: bool = True) -> tuple[Features, dict]:
    """MLM blocks: the documents' tokens end to end, one [SEP] between documents, cut into blocks of seq_len - 2
    tokens, each `[CLS] block [SEP]`: every example exactly seq_len tokens, no padding.

    The last partial block is dropped; the counts say how many tokens (`tokens_used` and `tokens_dropped`
    count the [SEP]s between documents too). `ids` is a memmap of an int32 file in the token file's folder,
    cached by seq_len and the document selection (`cache=False` writes it afresh).
    """
    if seq_len < 3:
        raise ConfigError(f"the sequence length must be at least 3 ([CLS], a token, [SEP]), not {seq_len}")
    documents, key = _selection(token_file, documents)
    starts, ends = token_file.document_bounds(documents)
    width = seq_len - 2
    stream = int((ends - starts).sum()) + len(documents) - 1
    blocks = stream // width
    counts = {"blocks": blocks, "documents": len(documents), "tokens_used": blocks * width,
              "tokens_dropped": stream - blocks * width}
    if not blocks:
        sources = ", ".join(token_file.stats.get("sources") or [str(token_file.folder)])
        raise DataError(f"{sources}: no blocks to train or evaluate on: {len(documents):,} documents of "
                        f"{stream:,} tokens, fewer than one block of {width} (sequence length {seq_len} less [CLS] "
                        f"and [SEP]); give more text or a shorter --max-seq-length")
    folder = token_file.folder / f"packed-{seq_len}-{key}"
    ids_path = folder / "ids.int32"
    if not (cache and ids_path.is_file() and ids_path.stat().st_size == 4 * blocks * seq_len):
        _build_folder(folder, lambda tmp: _write_packed(tmp, token_file, documents, seq_len, cls_id, sep_id, blocks),
                      "ids.int32")
    ids = np.memmap(ids_path, dtype=np.int32, mode="r")
    type_ids = np.memmap(folder / "type_ids.int8", dtype=np.int8, mode="r")
    return Features(ids, type_ids, np.arange(blocks + 1, dtype=np.int64) * seq_len), counts


def _write_packed(folder: Path, token_file: TokenFile, documents: np.ndarray, seq_len: int, cls_id: int,
                  sep_id: int, blocks: int) -> None:
    out = np.memmap(folder / "ids.int32", dtype=np.int32, mode="w+", shape=(blocks, seq_len))
    out[:, 0], out[:, -1] = cls_id, sep_id
    content = out[:, 1:-1]
    position, limit = 0, blocks * (seq_len - 2)
    for piece in _token_stream(token_file, documents, sep_id):
        piece = piece[: limit - position]
        position = _put(content, position, piece)
        if position == limit:
            break
    out.flush()
    del out
    with open(folder / "type_ids.int8", "wb") as f:
        f.truncate(blocks * seq_len)  # all zeros, and sparse on disk


def _token_stream(token_file: TokenFile, documents: np.ndarray, sep_id: int) -> Iterator[np.ndarray]:
    """The documents' tokens with [SEP] between documents, in pieces of about PIECE_TOKENS tokens."""
    starts, ends = token_file.document_bounds(documents)
    pending, size = [], 0
    for i, (start, end) in enumerate(zip(starts.tolist(), ends.tolist())):
        if i:
            pending.append(np.array([sep_id], dtype=np.int32))
        for begin in range(start, end, PIECE_TOKENS):  # a long document in pieces too
            pending.append(token_file.tokens[begin : min(end, begin + PIECE_TOKENS)])
            size += min(end, begin + PIECE_TOKENS) - begin
            if size >= PIECE_TOKENS:
                yield np.concatenate(pending).astype(np.int32)
                pending, size = [], 0
    if pending:
        yield np.concatenate(pending).astype(np.int32)


def _put(content: np.ndarray, position: int, piece: np.ndarray) -> int:
    """Write `piece` into the blocks' content from flat position `position`; the position after it."""
    width = content.shape[1]
    while len(piece):
        row, column = divmod(position, width)
        if column == 0 and len(piece) >= width:
            rows = len(piece) // width
            content[row : row + rows] = piece[: rows * width].reshape(rows, width)
            n = rows * width
        else:
            n = min(width - column, len(piece))
            content[row, column : column + n] = piece[:n]
        piece, position = piece[n:], position + n
    return position


def full_sentence_features(token_file: TokenFile, seq_len: int, cls_id: int, sep_id: int,
                           documents: np.ndarray | None = None, cache: bool = True) -> tuple[Features, dict]:
    """RoBERTa's FULL-SENTENCES inputs: whole paragraphs (a line of text: its unit of a sentence or more) packed
    one after another into `<s> ... </s>` of at most seq_len tokens, across documents, with one more `</s>`
    between two documents in the same sequence (none at a sequence's start).

    A paragraph that does not fit in what is left of a sequence starts the next one; one longer than a whole
    sequence is cut into pieces of seq_len - 2 tokens (`paragraphs_cut` counts them). Nothing is dropped, so
    sequences end where a paragraph would overflow them: they are padded in batches (`padding` counts the
    positions short of seq_len). Token types are all 0. Written to files in the token file's folder
    (memory-mapped), cached by seq_len and the document selection.
    """
    if seq_len < 3:
        raise ConfigError(f"the sequence length must be at least 3 (<s>, a token, </s>), not {seq_len}")
    documents, key = _selection(token_file, documents)
    folder = token_file.folder / f"full-sentences-{seq_len}-{key}"
    if not (cache and (folder / "counts.json").is_file()):
        _build_folder(folder, lambda tmp: _write_full_sentences(tmp, token_file, documents, seq_len, cls_id, sep_id),
                      "counts.json")
    counts = json.loads((folder / "counts.json").read_text(encoding="utf-8"))
    if not counts["sequences"]:
        sources = ", ".join(token_file.stats.get("sources") or [str(token_file.folder)])
        raise DataError(f"{sources}: no sequences to train or evaluate on: {len(documents):,} documents of no tokens")

    def array(name: str, dtype) -> np.ndarray:
        return np.memmap(folder / name, dtype=dtype, mode="r")

    return Features(array("ids.int32", np.int32), array("type_ids.int8", np.int8), array("offsets.int64", np.int64)), \
        counts


def full_sentences(token_file: TokenFile, seq_len: int, documents: np.ndarray, sep_id: int,
                   counts: dict) -> Iterator[list[np.ndarray]]:
    """The contents of each sequence (without `<s>` and `</s>`), as `full_sentence_features` cuts them."""
    budget = seq_len - 2
    paragraphs, tokens = np.asarray(token_file.paragraph_offsets), token_file.tokens
    offsets = np.asarray(token_file.document_offsets)
    separator = np.array([sep_id], dtype=np.int32)
    current, size = [], 0
    for d in documents.tolist():
        new_document = True
        for p in range(int(offsets[d]), int(offsets[d + 1])):
            piece = tokens[paragraphs[p] : paragraphs[p + 1]]
            if not len(piece):
                continue
            counts["paragraphs"] += 1
            between = new_document and size > 0  # another document goes on in this sequence
            new_document = False
            if size and size + between + len(piece) > budget:
                yield current
                current, size, between = [], 0, False
            if between:
                current.append(separator)
                size += 1
            counts["paragraphs_cut"] += len(piece) > budget - size
            while len(piece) > budget - size:  # longer than a whole sequence: whole pieces, the rest goes on
                cut = budget - size
                yield current + [piece[:cut]]
                current, size, piece = [], 0, piece[cut:]
            current.append(piece)
            size += len(piece)
    if size:
        yield current


def _write_full_sentences(folder: Path, token_file: TokenFile, documents: np.ndarray, seq_len: int, cls_id: int,
                          sep_id: int) -> None:
    counts = {"sequences": 0, "documents": len(documents), "paragraphs": 0, "paragraphs_cut": 0, "tokens_used": 0,
              "padding": 0}
    ends = (np.array([cls_id], dtype=np.int32), np.array([sep_id], dtype=np.int32))
    with open(folder / "ids.int32", "wb") as ids_out, open(folder / "offsets.int64", "wb") as offsets_out:
        offsets_out.write(np.zeros(1, np.int64).tobytes())
        pending, lengths, written = [], [], 0
        for content in full_sentences(token_file, seq_len, documents, sep_id, counts):
            sequence = np.concatenate([ends[0], *content, ends[1]]).astype(np.int32)
            pending.append(sequence)
            lengths.append(len(sequence))
            counts["sequences"] += 1
            counts["tokens_used"] += len(sequence) - 2
            counts["padding"] += seq_len - len(sequence)
            if sum(lengths) >= PIECE_TOKENS:
                ids_out.write(np.concatenate(pending).tobytes())
                offsets_out.write((written + np.cumsum(lengths)).tobytes())
                written += sum(lengths)
                pending, lengths = [], []
        if pending:
            ids_out.write(np.concatenate(pending).tobytes())
            offsets_out.write((written + np.cumsum(lengths)).tobytes())
            written += sum(lengths)
    with open(folder / "type_ids.int8", "wb") as f:
        f.truncate(written)  # all zeros: no token types, and sparse on disk
    write_json(folder / "counts.json", counts)


def nsp_features(token_file: TokenFile, seq_len: int, cls_id: int, sep_id: int, seed: int,
                 documents: np.ndarray | None = None, cache: bool = True) -> tuple[Features, dict]:
    """Next-sentence-prediction pairs `[CLS] A [SEP] B [SEP]` with column `next_sentence_label` (int64; 0: B
    follows A in the same document, 1: B comes from another document, as in Hugging Face's heads).

    Each document is walked paragraph by paragraph: A is one or more consecutive paragraphs up to about half
    of the seq_len - 3 token budget; then, with probability 0.5, B is the paragraphs after A (label 0, and
    the walk goes on after B), else paragraphs from a random other chosen document (label 1, and the walk
    goes on right after A, so no paragraph is skipped). A document's last paragraph alone can only get a
    random B (`forced_random` counts those). A pair too long is cut longest side first (`longest_first`, as the
    fast tokenizers do), A from its start and B from its end, so the seam between them that NSP judges stays. Token types: 0 for [CLS] A [SEP], 1 for
    B [SEP]. Deterministic for a seed.

    The pairs are written to files in the token file's folder (memory-mapped, not held), cached by seq_len,
    seed and the document selection; the counts come back with them.
    """
    if seq_len < 5:
        raise ConfigError(f"the sequence length must be at least 5 for a pair, not {seq_len}")
    documents, key = _selection(token_file, documents)
    if len(np.unique(documents)) < 2:
        raise ConfigError("next-sentence prediction needs at least two documents, to draw random second segments "
                          "from; give more documents (a blank line, or a ` = Title = ` line, between them)")
    folder = token_file.folder / f"nsp-{seq_len}-seed{seed}-{key}"
    if not (cache and (folder / "counts.json").is_file()):
        _build_folder(folder, lambda tmp: _write_nsp(tmp, token_file, documents, seq_len, cls_id, sep_id, seed),
                      "counts.json")
    counts = json.loads((folder / "counts.json").read_text(encoding="utf-8"))
    def array(name: str, dtype) -> np.ndarray:
        return np.memmap(folder / name, dtype=dtype, mode="r")

    features = Features(array("ids.int32", np.int32), array("type_ids.int8", np.int8), array("offsets.int64", np.int64),
                        {"next_sentence_label": array("next_sentence_label.int64", np.int64)})
    return features, counts


def nsp_pairs(token_file: TokenFile, seq_len: int, seed: int, documents: np.ndarray,
              counts: dict) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """(A tokens, B tokens, label) before truncation, as `nsp_features` describes; counts what it chose."""
    rng = np.random.default_rng(seed)
    budget = seq_len - 3
    paragraphs, tokens = token_file.paragraph_offsets, token_file.tokens
    offsets = np.asarray(token_file.document_offsets)
    for position, d in enumerate(documents.tolist()):
        i, end = int(offsets[d]), int(offsets[d + 1])
        while i < end:
            is_random = bool(rng.random() < 0.5)
            j = _take(paragraphs, i, end, budget // 2)
            if not is_random and j == end:  # A took the document's rest: leave B its last paragraph
                if j - i >= 2:
                    j -= 1
                else:
                    is_random = True
                    counts["forced_random"] += 1
            a = tokens[paragraphs[i] : paragraphs[j]]
            if is_random:
                other = d
                while other == d:
                    other = int(documents[(position + rng.integers(1, len(documents))) % len(documents)])
                first = int(rng.integers(offsets[other], offsets[other + 1]))
                last = _take(paragraphs, first, int(offsets[other + 1]), budget - len(a))
                b, i = tokens[paragraphs[first] : paragraphs[last]], j
            else:
                last = _take(paragraphs, j, end, budget - len(a))
                b, i = tokens[paragraphs[j] : paragraphs[last]], last
            yield a, b, int(is_random)


def _take(paragraphs: np.ndarray, start: int, end: int, limit: int) -> int:
    """End (exclusive) of the paragraphs from `start` that fit in `limit` tokens; the first one always."""
    fits = np.searchsorted(paragraphs[start + 1 : end + 1], paragraphs[start] + limit, side="right")
    return start + max(1, int(fits))


def _write_nsp(folder: Path, token_file: TokenFile, documents: np.ndarray, seq_len: int, cls_id: int, sep_id: int,
               seed: int) -> None:
    counts = {"pairs": 0, "next": 0, "random": 0, "forced_random": 0, "truncated": 0, "documents": len(documents)}
    budget = seq_len - 3
    names = ("ids.int32", "type_ids.int8", "offsets.int64", "next_sentence_label.int64")
    with contextlib.ExitStack() as stack:
        ids_out, types_out, offsets_out, labels_out = (stack.enter_context(open(folder / n, "wb")) for n in names)
        offsets_out.write(np.zeros(1, np.int64).tobytes())
        ids, types, labels, written = [], [], [], 0

        def flush() -> int:
            lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
            ids_out.write(np.concatenate(ids).tobytes())
            types_out.write(np.concatenate(types).tobytes())
            offsets_out.write((written + np.cumsum(lengths)).tobytes())
            labels_out.write(np.asarray(labels, np.int64).tobytes())
            return written + int(lengths.sum())

        for a, b, label in nsp_pairs(token_file, seq_len, seed, documents, counts):
            na, nb = longest_first(len(a), len(b), budget)
            counts["truncated"] += (na, nb) != (len(a), len(b))
            pair = np.empty(na + nb + 3, dtype=np.int32)
            pair[0], pair[na + 1], pair[-1] = cls_id, sep_id, sep_id
            pair[1 : na + 1] = a[len(a) - na :]
            pair[na + 2 : -1] = b[:nb]
            pair_types = np.zeros(len(pair), dtype=np.int8)
            pair_types[na + 2 :] = 1
            ids.append(pair)
            types.append(pair_types)
            labels.append(label)
            counts["pairs"] += 1
            counts["random" if label else "next"] += 1
            if len(ids) * seq_len >= PIECE_TOKENS:
                written = flush()
                ids, types, labels = [], [], []
        if ids:
            flush()
    write_json(folder / "counts.json", counts)


def special_token_ids(tokenizer: Tokenizer) -> list[int]:
    """Ids never to mask: the tokenizer's special tokens ([PAD], [CLS], [SEP], [MASK], [UNK] or RoBERTa's <pad>,
    <s>, </s>, <mask>, <unk>, any other)."""
    ids = {i for i, token in tokenizer.get_added_tokens_decoder().items() if token.special}
    ids.update(i for names in TOKEN_NAMES.values() for name in names if (i := tokenizer.token_to_id(name)) is not None)
    return sorted(ids)


def mask_tokens(input_ids: torch.Tensor, special_ids: Sequence[int], vocab_size: int, mask_id: int,
                probability: float = 0.15, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's dynamic masking: (masked inputs, labels: the original id where chosen, -100 elsewhere).

    Each position whose id is not in `special_ids` (which must hold [PAD]; [MASK] is added) is chosen with
    `probability`; of those, 80% become [MASK], 10% a random token drawn uniformly from the non-special ids,
    10% stay as they are. The draws come from `generator` when given (a fixed-seed one makes evaluations
    comparable), else from torch's global generator (which training seeds per step, so a resumed run masks
    the same).
    """
    if not 0 <= probability <= 1:
        raise ConfigError(f"the masking probability must be in [0, 1], not {probability}")
    device = generator.device if generator is not None else input_ids.device
    special = torch.tensor(sorted({*map(int, special_ids), int(mask_id)}), dtype=input_ids.dtype, device=device)
    ids = input_ids.to(device)
    chosen = (torch.rand(ids.shape, generator=generator, device=device) < probability) & ~torch.isin(ids, special)
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    roll = torch.rand(ids.shape, generator=generator, device=device)
    ordinary = torch.arange(vocab_size, dtype=ids.dtype, device=device)
    ordinary = ordinary[~torch.isin(ordinary, special)]
    random_ids = ordinary[torch.randint(len(ordinary), ids.shape, generator=generator, device=device)]
    masked = torch.where(chosen & (roll < 0.8), torch.full_like(ids, mask_id), ids)
    masked = torch.where(chosen & (roll >= 0.8) & (roll < 0.9), random_ids, masked)
    return masked.to(input_ids.device), labels.to(input_ids.device)
