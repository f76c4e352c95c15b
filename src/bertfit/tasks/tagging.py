"""Tagged words as model inputs, and the model's outputs back as one prediction per word.

Each word is split into sub-tokens; its label goes on the first (run_ner's default; the others get -100,
no loss), or with `label_all_subtokens` on all of them (a B- label continues as I-, as run_ner's
`label_all_tokens`). A word the tokenizer makes nothing of (a lone control character) reads as [UNK], so
that every word has a position. A sentence longer than the model's window is cut into overlapping windows;
each word is scored in the one window where it has the most context on both sides (the rule of
google-research/bert's `_check_is_max_context`), so that every word is predicted exactly once.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..batching import Features
from ..errors import ConfigError
from ..tokenization import special_ids

IGNORE = -100  # no loss at this position (cross_entropy's ignore_index)


@dataclass
class Encoded:
    features: Features  # columns: example_index, label_ids and word_ids (max_seq_length wide, padded)
    num_sentences: int
    num_words: int
    num_windowed: int  # sentences cut into more than one window
    num_unknown_words: int  # words the tokenizer gave no sub-token, read as [UNK]


def check_window(max_seq_length: int, stride: int) -> None:
    if max_seq_length < 8:
        raise ConfigError(f"--max-seq-length must be at least 8 tokens, not {max_seq_length}")
    if not 0 <= stride < max_seq_length - 2:
        raise ConfigError(f"--stride (the tokens consecutive windows share) must be between 0 and "
                          f"{max_seq_length - 3}, not {stride}")


def windows(first: list[bool], room: int, stride: int) -> list[tuple[int, int]]:
    """[start, end) spans of at most `room` sub-tokens covering all of them, consecutive ones sharing about
    `stride`; a span after the first starts at a word's first sub-token where it can."""
    n = len(first)
    spans, start = [], 0
    while True:
        end = min(start + room, n)
        spans.append((start, end))
        if end == n:
            return spans
        following = max(end - stride, start + 1)
        while following < end and not first[following]:
            following += 1
        start = following


def owners(positions: list[int], spans: list[tuple[int, int]]) -> list[int]:
    """For each sub-token position, the span where it has the most context (the earlier on a tie)."""
    chosen = []
    for p in positions:
        best, best_context = -1, -1
        for k, (start, end) in enumerate(spans):
            if start <= p < end and min(p - start, end - 1 - p) > best_context:
                best, best_context = k, min(p - start, end - 1 - p)
        chosen.append(best)
    return chosen


def word_pieces(tokenizer, words: list[list[str]]) -> tuple[list[list[list[int]]], int]:
    """Each sentence's words as lists of sub-token ids, and how many words had none (read as [UNK])."""
    unk = special_ids(tokenizer).unk
    # each word as it reads after a space in running text: byte-level BPE marks a word's start by its space (Ġ),
    # which a word given alone lacks (run_ner's add_prefix_space); WordPiece and SentencePiece (▁) read the same
    encodings = tokenizer.encode_batch([[" " + word for word in sentence] for sentence in words],
                                       is_pretokenized=True, add_special_tokens=False)
    pieces, unknown = [], 0
    for sentence, encoding in zip(words, encodings):
        by_word = [[] for _ in sentence]
        for token_id, word in zip(encoding.ids, encoding.word_ids):
            if word is not None:
                by_word[word].append(token_id)
        for i, ids in enumerate(by_word):
            if not ids:
                by_word[i] = [unk if unk is not None else 0]
                unknown += 1
        pieces.append(by_word)
    return pieces, unknown


def continuation_labels(labels: list[str]) -> list[int]:
    """The label id a word's later sub-tokens take with label_all_subtokens: B-X continues as I-X (when the
    label set has it), anything else as itself."""
    index = {name: i for i, name in enumerate(labels)}
    return [index.get("I-" + name[2:], i) if name.startswith("B-") else i for i, name in enumerate(labels)]


def encode(words: list[list[str]], tokenizer, max_seq_length: int, stride: int,
           label_ids: list[list[int]] | None = None, label_all_subtokens: bool = False,
           continuation: list[int] | None = None) -> Encoded:
    """Windows of `[CLS] sub-tokens [SEP]` with, per position, the label (label_ids, IGNORE elsewhere) and the
    word it predicts (word_ids: the word's index where this window owns it, -1 elsewhere)."""
    check_window(max_seq_length, stride)
    special = special_ids(tokenizer)
    pieces, unknown = word_pieces(tokenizer, words)
    room = max_seq_length - 2
    ids, example_index, label_rows, word_rows, windowed = [], [], [], [], 0
    for s, sentence in enumerate(pieces):
        flat = [t for word in sentence for t in word]
        word_of = [w for w, word in enumerate(sentence) for _ in word]
        first = [i == 0 for word in sentence for i in range(len(word))]
        spans = windows(first, room, stride)
        windowed += len(spans) > 1
        starts = [p for p, is_first in enumerate(first) if is_first]
        owner = owners(starts, spans)
        for k, (start, end) in enumerate(spans):
            ids.append([special.cls, *flat[start:end], special.sep])
            example_index.append(s)
            labels = np.full(max_seq_length, IGNORE, np.int16)
            word_row = np.full(max_seq_length, -1, np.int32)
            for p in range(start, end):
                w = word_of[p]
                if label_ids is not None and (first[p] or label_all_subtokens):
                    label = label_ids[s][w]
                    labels[p - start + 1] = label if first[p] or continuation is None else continuation[label]
                if first[p] and owner[w] == k:
                    word_row[p - start + 1] = w
            label_rows.append(labels)
            word_rows.append(word_row)
    features = Features.from_lists(ids, [[0] * len(x) for x in ids], example_index=np.asarray(example_index, np.int64),
                                   label_ids=np.stack(label_rows) if label_rows else np.zeros((0, max_seq_length), np.int16),
                                   word_ids=np.stack(word_rows) if word_rows else np.zeros((0, max_seq_length), np.int32))
    return Encoded(features, len(words), sum(len(w) for w in words), windowed, unknown)


def word_logits(features: Features, logits: list[np.ndarray], words_per_sentence: list[int]) -> list[np.ndarray]:
    """Per sentence, a (words, labels) array: each word's logits from the window that owns it."""
    num_labels = logits[0].shape[-1] if logits else 0
    out = [np.full((n, num_labels), np.nan, np.float32) for n in words_per_sentence]
    for f, rows in enumerate(logits):
        word_row = features.columns["word_ids"][f][: len(rows)]
        positions = np.flatnonzero(word_row >= 0)
        out[int(features.columns["example_index"][f])][word_row[positions]] = rows[positions]
    missing = [s for s, array in enumerate(out) if np.isnan(array).any()]
    if missing:  # the windows own every word: a gap would be a bug here, not a property of the data
        raise AssertionError(f"sentences {missing[:5]} have words no window predicts")
    return out
