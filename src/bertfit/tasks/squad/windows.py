"""Cutting SQuAD contexts into windows: `[CLS] question [SEP] window [SEP]` features, the answer's token
positions for training, and where each window's tokens come from, for decoding."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tokenizers import Tokenizer

from ...batching import Features
from ...errors import ConfigError
from ...tokenization import prepare, template
from .reading import SquadQuestion


def check_window_settings(max_seq_length: int, doc_stride: int, max_query_length: int, num_special: int = 3) -> None:
    """Raise ConfigError unless every window has room for context and consecutive windows overlap; `num_special`:
    the special tokens of a window (3 in BERT's `[CLS] question [SEP] context [SEP]`, 4 in RoBERTa's)."""
    for name, value in (("max_seq_length", max_seq_length), ("doc_stride", doc_stride),
                        ("max_query_length", max_query_length)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    room = max_seq_length - max_query_length - num_special  # [CLS] question [SEP] context [SEP]
    if room < 1:
        raise ConfigError(
            f"max_seq_length {max_seq_length} leaves no room for the context: a question of up to "
            f"max_query_length {max_query_length} tokens and {num_special} special tokens ([CLS], [SEP]) already "
            f"take {max_query_length + num_special}; raise max_seq_length above {max_query_length + num_special} "
            f"or lower max_query_length")
    if doc_stride >= room:
        raise ConfigError(
            f"doc_stride {doc_stride} must be smaller than the {room} context tokens that fit in a window "
            f"with a maximal question (max_seq_length {max_seq_length} - max_query_length {max_query_length} "
            f"- {num_special}), or windows would not overlap; use doc_stride <= {room - 1}")


@dataclass
class Windows:
    """Where each window's context tokens come from, in flat arrays, for decoding.

    Window w holds context tokens at positions context_start[w] .. context_start[w] +
    context_length[w] - 1 (after [CLS] question [SEP]). Their (start, end) character offsets into
    the question's context are char_offsets[offset_index[w] + k] for the k-th context token:
    offsets are stored once per distinct context, since the windows of the several questions on
    one paragraph share them. token_is_max_context holds one flag per context token of each
    window, windows end to end (bounds[w] .. bounds[w + 1]).
    """

    example_index: np.ndarray  # int64 (W,), index into the questions list
    context_start: np.ndarray  # int32 (W,)
    context_length: np.ndarray  # int32 (W,)
    offset_index: np.ndarray  # int64 (W,), row of char_offsets for the window's first context token
    char_offsets: np.ndarray  # int32 (T, 2)
    token_is_max_context: np.ndarray  # bool (sum of context_length,)
    answers_outside: int = 0  # training: answerable questions whose answer fits in no window
    bounds: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        self.bounds = np.zeros(len(self.context_length) + 1, dtype=np.int64)
        np.cumsum(self.context_length, out=self.bounds[1:])

    def __len__(self) -> int:
        return len(self.example_index)

    def length(self, w: int) -> int:
        """Tokens in window w: [CLS] question [SEP] context [SEP]."""
        return int(self.context_start[w] + self.context_length[w] + 1)

    def offsets(self, w: int) -> np.ndarray:
        """(context_length, 2) character offsets of window w's context tokens."""
        first = self.offset_index[w]
        return self.char_offsets[first : first + self.context_length[w]]

    def max_context(self, w: int) -> np.ndarray:
        return self.token_is_max_context[self.bounds[w] : self.bounds[w + 1]]

    def token_offsets(self, w: int) -> np.ndarray:
        """(length, 2) offsets for every position of window w; -1 where the token is not context."""
        out = np.full((self.length(w), 2), -1, dtype=np.int64)
        start = self.context_start[w]
        out[start : start + self.context_length[w]] = self.offsets(w)
        return out


def make_windows(questions: list[SquadQuestion], tokenizer: Tokenizer, max_seq_length: int = 384,
                 doc_stride: int = 128, max_query_length: int = 64,
                 training: bool = False) -> tuple[Features, Windows]:
    """Encode each question with its context as `[CLS] question [SEP] window [SEP]` features.

    The question is cut to max_query_length tokens. A context longer than the room left is cut into
    windows that overlap by doc_stride tokens (the meaning of HF run_qa's --doc_stride, so the same
    flag cuts the same windows; google-research/bert's step between window starts is room - doc_stride). With training=True
    the features carry start_positions / end_positions of the first answer; a window that does not
    hold the whole answer, and every unanswerable question, points at 0 ([CLS]).
    """
    prepare(tokenizer)
    layout = template(tokenizer)
    # [CLS] question [SEP] window [SEP] in BERT, <s> question </s></s> window </s> in RoBERTa
    num_special = layout.num_special(pair=True)
    check_window_settings(max_seq_length, doc_stride, max_query_length, num_special)

    # Many questions share a paragraph: tokenize each distinct context once.
    context_index: dict[str, int] = {}
    for question in questions:
        context_index.setdefault(question.context, len(context_index))
    context_encodings = tokenizer.encode_batch(list(context_index), add_special_tokens=False)
    question_encodings = tokenizer.encode_batch([q.question for q in questions], add_special_tokens=False)
    context_ids = [encoding.ids for encoding in context_encodings]
    context_offsets = [without_leading_spaces(np.asarray(encoding.offsets, dtype=np.int32).reshape(-1, 2), context)
                       for encoding, context in zip(context_encodings, context_index)]
    first_row = np.zeros(len(context_offsets) + 1, dtype=np.int64)
    np.cumsum([len(offsets) for offsets in context_offsets], out=first_row[1:])

    input_ids, type_ids, example_index, starts, ends = [], [], [], [], []
    context_start, context_length, offset_index, max_context = [], [], [], []
    answers_outside = 0
    for i, question in enumerate(questions):
        c = context_index[question.context]
        ids, offsets = context_ids[c], context_offsets[c]
        query = question_encodings[i].ids[:max_query_length]
        spans = _window_spans(len(ids), max_seq_length - len(query) - num_special, doc_stride)
        answer_tokens = None
        if training and not question.is_impossible:
            answer = question.answers[0]
            answer_tokens = _answer_tokens(offsets, answer.start, answer.start + len(answer.text))
        answer_found = False
        for (doc_start, length), flags in zip(spans, _max_context_flags(spans, len(ids))):
            prefix = len(query) + layout.before("B")
            window_ids, window_types = layout.apply(query, ids[doc_start : doc_start + length])
            input_ids.append(window_ids)
            type_ids.append(window_types)
            example_index.append(i)
            context_start.append(prefix)
            context_length.append(length)
            offset_index.append(first_row[c] + doc_start)
            max_context.append(flags)
            if training:
                start = end = 0
                if answer_tokens and doc_start <= answer_tokens[0] and answer_tokens[1] < doc_start + length:
                    start, end = (prefix + t - doc_start for t in answer_tokens)
                    answer_found = True
                starts.append(start)
                ends.append(end)
        if training and not question.is_impossible and not answer_found:
            answers_outside += 1

    columns = {"example_index": np.asarray(example_index, dtype=np.int64)}
    if training:
        columns["start_positions"] = np.asarray(starts, dtype=np.int64)
        columns["end_positions"] = np.asarray(ends, dtype=np.int64)
    features = Features.from_lists(input_ids, type_ids, **columns)
    windows = Windows(
        example_index=columns["example_index"],
        context_start=np.asarray(context_start, dtype=np.int32),
        context_length=np.asarray(context_length, dtype=np.int32),
        offset_index=np.asarray(offset_index, dtype=np.int64),
        char_offsets=np.concatenate(context_offsets) if context_offsets else np.zeros((0, 2), np.int32),
        token_is_max_context=np.concatenate(max_context) if max_context else np.zeros(0, bool),
        answers_outside=answers_outside,
    )
    return features, windows


def _window_spans(n_tokens: int, room: int, doc_stride: int) -> list[tuple[int, int]]:
    """(doc_start, length) of each window; consecutive windows share doc_stride tokens; the last ends at the last token."""
    doc_starts = [0]
    while doc_starts[-1] + room < n_tokens:
        doc_starts.append(doc_starts[-1] + room - doc_stride)
    return [(start, min(room, n_tokens - start)) for start in doc_starts]


def _max_context_flags(spans: list[tuple[int, int]], n_tokens: int) -> list[np.ndarray]:
    """For each window, flag the tokens that have more context in it than in any other window.

    A token near a window's edge is predicted with little context on one side, so when windows
    overlap each token is scored only in the window where min(left context, right context) is
    largest (plus 0.01 * window length to prefer longer windows; ties go to the earlier window).
    This is `_check_is_max_context` of google-research/bert; decoding takes answer starts only
    from such tokens, so each token competes once, with its best view of the paragraph.
    """
    if len(spans) == 1:
        return [np.ones(spans[0][1], dtype=bool)]
    scores = np.full((len(spans), n_tokens), -np.inf)
    for k, (start, length) in enumerate(spans):
        position = np.arange(length)
        scores[k, start : start + length] = np.minimum(position, length - 1 - position) + 0.01 * length
    best = scores.argmax(axis=0)  # first maximum: ties go to the earlier window
    return [best[start : start + length] == k for k, (start, length) in enumerate(spans)]


def without_leading_spaces(offsets: np.ndarray, text: str) -> np.ndarray:
    """Token offsets that start after the spaces before a word: SentencePiece's `▁` stands for the space in front
    of a word, and a tokenizer that does not split on whitespace first (DeBERTa-v3's) counts that space as the
    token's first character, which an answer's span must not take. (n, 2) offsets, changed in place."""
    for row in np.flatnonzero([start < len(text) and text[start].isspace() for start in offsets[:, 0].tolist()]):
        start, end = offsets[row]
        while start < end and text[start].isspace():
            start += 1
        offsets[row, 0] = start
    return offsets


def _answer_tokens(offsets: np.ndarray, char_start: int, char_end: int) -> tuple[int, int] | None:
    """First and last context token of the answer's characters, or None if it covers no token.

    The first token is the first whose span ends after the answer starts and the last is the last
    whose span starts before the answer ends, so an answer that cuts a word keeps the whole word
    piece: the character offsets make run_squad's `_improve_answer_span` search unnecessary.
    """
    after = np.flatnonzero(offsets[:, 1] > char_start)
    before = np.flatnonzero(offsets[:, 0] < char_end)
    if not len(after) or not len(before) or after[0] > before[-1]:
        return None
    return int(after[0]), int(before[-1])
