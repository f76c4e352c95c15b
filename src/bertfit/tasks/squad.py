"""SQuAD v1.1 / v2.0: read the official JSON, cut contexts into windows, decode logits into answers.

The pipeline follows google-research/bert `run_squad.py`, with character offsets from the fast
tokenizer instead of whitespace tokens, so answers are always cut from the original context text.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from .. import hub
from ..batching import Features
from ..errors import ConfigError, DataError
from ..tokenization import prepare, special_ids

HUB_NAMES = {"1.1": "rajpurkar/squad", "2.0": "rajpurkar/squad_v2"}

# null_odds of a question with no valid span in any window: far above any real score
# difference, so a threshold search never answers it by accident.
NO_SPAN_NULL_ODDS = 1e6


@dataclass(frozen=True)
class Answer:
    text: str
    start: int  # character offset of text in the context


@dataclass
class SquadQuestion:
    id: str
    title: str
    question: str
    context: str
    answers: list[Answer]
    is_impossible: bool = False


@dataclass
class ReadStats:
    """What read_squad loaded, and every question it skipped with the reason (skip_bad=True)."""

    questions: int = 0
    unanswerable: int = 0
    version_2: bool = False
    skipped: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------- read


def read_squad(path: str | Path, skip_bad: bool = False) -> tuple[list[SquadQuestion], ReadStats]:
    """Read an official SQuAD v1.1 or v2.0 JSON file; v2.0 is recognised by `is_impossible` keys.

    A file that is not JSON or not SQuAD-shaped always raises DataError. With skip_bad=True a bad
    question (empty text, answer not found at answer_start, duplicate id, ...) is skipped and its
    reason kept in stats.skipped instead, so loaded + skipped = every question in the file.
    """
    path = Path(path)
    paragraphs = list(_paragraphs(_load_json(path), path))
    version_2 = any(isinstance(qa, dict) and "is_impossible" in qa
                    for _, _, qas in paragraphs for qa in qas)
    questions: list[SquadQuestion] = []
    stats = ReadStats(version_2=version_2)
    seen: dict[str, str] = {}  # id -> title of the article where it first appeared
    for title, context, qas in paragraphs:
        for qa in qas:
            try:
                question = _parse_question(qa, title, context, path, seen)
            except DataError as error:
                if not skip_bad:
                    raise
                stats.skipped.append(str(error))
                continue
            questions.append(question)
            stats.unanswerable += question.is_impossible
    stats.questions = len(questions)
    return questions, stats


def _load_json(path: Path):
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read SQuAD file: {error.strerror or error}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataError(f"{path}: not UTF-8 text: byte {raw[error.start]:#04x} at line {line} "
                        f"(byte {error.start}); SQuAD files are UTF-8 JSON") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON: {error.msg} at line {error.lineno} column {error.colno}") from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply to be a SQuAD file") from None


def _paragraphs(dataset, path: Path):
    """Yield (title, context, qas) after checking the article and paragraph structure."""
    if not isinstance(dataset, dict) or not isinstance(dataset.get("data"), list):
        raise DataError(f'{path}: not a SQuAD file: expected {{"version": ..., "data": [articles]}} at the top level')
    for a, article in enumerate(dataset["data"]):
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise DataError(f'{path}: article {a} is not SQuAD-shaped: expected {{"title": ..., "paragraphs": [...]}}')
        title = article.get("title", "")
        if not isinstance(title, str):
            raise DataError(f"{path}: article {a} has a title that is not a string")
        for p, paragraph in enumerate(article["paragraphs"]):
            if (not isinstance(paragraph, dict) or not isinstance(paragraph.get("context"), str)
                    or not isinstance(paragraph.get("qas"), list)):
                raise DataError(f'{path}: article {title!r} paragraph {p} is not SQuAD-shaped: '
                                f'expected {{"context": "...", "qas": [...]}}')
            yield title, paragraph["context"], paragraph["qas"]


def _parse_question(qa, title: str, context: str, path: Path, seen: dict[str, str]) -> SquadQuestion:
    """Check one question record; DataError names the file and the question id."""
    if not isinstance(qa, dict) or not isinstance(qa.get("id"), str) or not qa["id"].strip():
        text = qa.get("question") if isinstance(qa, dict) else None
        named = f" ({text!r})" if isinstance(text, str) else ""
        raise DataError(f"{path}: article {title!r}: a question{named} has no id (expected a non-empty string)")
    qid = qa["id"]
    where = f"{path}: question {qid!r} (article {title!r})"
    if qid in seen:
        raise DataError(f"{where}: duplicate id, first seen in article {seen[qid]!r}")
    seen[qid] = title
    question = qa.get("question")
    if not isinstance(question, str) or not question.strip():
        raise DataError(f"{where}: empty question text")
    if not context.strip():
        raise DataError(f"{where}: empty context")
    if not _is_unicode(question) or not _is_unicode(context):
        raise DataError(f"{where}: text holds an unpaired surrogate escape (\\udXXX), which is not a character")
    is_impossible = qa.get("is_impossible", False)
    if not isinstance(is_impossible, bool):
        raise DataError(f"{where}: is_impossible must be true or false, got {is_impossible!r}")
    records = qa.get("answers", [] if is_impossible else None)
    if not isinstance(records, list):
        raise DataError(f"{where}: answers must be a list of {{\"text\", \"answer_start\"}}")
    answers = [_parse_answer(record, context, f"{where}: answer {i}") for i, record in enumerate(records)]
    if is_impossible and answers:
        raise DataError(f"{where}: marked is_impossible but has {len(answers)} answers "
                        f"(unanswerable questions keep theirs under plausible_answers)")
    if not is_impossible and not answers:
        raise DataError(f"{where}: answerable question has no answers "
                        f"(for SQuAD v2.0 mark it \"is_impossible\": true)")
    return SquadQuestion(qid, title, question, context, answers, is_impossible)


def _parse_answer(record, context: str, where: str) -> Answer:
    if not isinstance(record, dict):
        raise DataError(f'{where}: expected {{"text": ..., "answer_start": ...}}')
    text, start = record.get("text"), record.get("answer_start")
    if not isinstance(text, str) or not text:
        raise DataError(f"{where}: empty answer text")
    if not isinstance(start, int) or isinstance(start, bool):
        raise DataError(f"{where}: answer_start must be an integer, got {start!r}")
    if start < 0 or context[start : start + len(text)] != text:
        found = context.find(text)
        hint = f"; the text occurs at {found}" if found >= 0 else "; the text is not in the context"
        raise DataError(f"{where}: answer_start {start} does not point at {text!r} in the context{hint}")
    return Answer(text, start)


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def load_hub_squad(version: str, split: str) -> list[SquadQuestion]:
    """Load SQuAD from the Hugging Face Hub ("1.1" or "2.0"; split "train" or "validation")."""
    version = version.removeprefix("v")
    if version not in HUB_NAMES:
        raise ConfigError(f"unknown SQuAD version {version!r}; use 1.1 or 2.0")
    name = HUB_NAMES[version]
    flag = "--train-file" if split == "train" else "--eval-file"
    if reason := hub.unreachable():
        raise DataError(f"{name} {split}: the Hugging Face hub cannot be reached ({reason}); pass {flag} with the "
                        f"official SQuAD v{version} JSON file; {hub.OFFLINE_HINT}")
    try:
        from datasets import load_dataset

        rows = load_dataset(name, split=split)
    except Exception as error:  # offline, no cache, unknown split: all end the same way for the user
        raise DataError(f"cannot load {name} split {split!r} from the Hugging Face Hub "
                        f"({type(error).__name__}: {error}); when offline, pass {flag} with the "
                        f"official SQuAD v{version} JSON file") from None
    return [
        SquadQuestion(
            id=row["id"], title=row["title"], question=row["question"], context=row["context"],
            answers=[Answer(t, s) for t, s in zip(row["answers"]["text"], row["answers"]["answer_start"])],
            is_impossible=not row["answers"]["text"],
        )
        for row in rows
    ]


# ------------------------------------------------------------------------------------- windows


def check_window_settings(max_seq_length: int, doc_stride: int, max_query_length: int) -> None:
    """Raise ConfigError unless every window has room for context and consecutive windows overlap."""
    for name, value in (("max_seq_length", max_seq_length), ("doc_stride", doc_stride),
                        ("max_query_length", max_query_length)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    room = max_seq_length - max_query_length - 3  # [CLS] question [SEP] context [SEP]
    if room < 1:
        raise ConfigError(
            f"max_seq_length {max_seq_length} leaves no room for the context: [CLS], a question of up to "
            f"max_query_length {max_query_length} tokens and two [SEP] already take {max_query_length + 3}; "
            f"raise max_seq_length above {max_query_length + 3} or lower max_query_length")
    if doc_stride >= room:
        raise ConfigError(
            f"doc_stride {doc_stride} must be smaller than the {room} context tokens that fit in a window "
            f"with a maximal question (max_seq_length {max_seq_length} - max_query_length {max_query_length} "
            f"- 3), or windows would not overlap; use doc_stride <= {room - 1}")


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
    check_window_settings(max_seq_length, doc_stride, max_query_length)
    prepare(tokenizer)
    special = special_ids(tokenizer)

    # Many questions share a paragraph: tokenize each distinct context once.
    context_index: dict[str, int] = {}
    for question in questions:
        context_index.setdefault(question.context, len(context_index))
    context_encodings = tokenizer.encode_batch(list(context_index), add_special_tokens=False)
    question_encodings = tokenizer.encode_batch([q.question for q in questions], add_special_tokens=False)
    context_ids = [encoding.ids for encoding in context_encodings]
    context_offsets = [np.asarray(encoding.offsets, dtype=np.int32).reshape(-1, 2)
                       for encoding in context_encodings]
    first_row = np.zeros(len(context_offsets) + 1, dtype=np.int64)
    np.cumsum([len(offsets) for offsets in context_offsets], out=first_row[1:])

    input_ids, type_ids, example_index, starts, ends = [], [], [], [], []
    context_start, context_length, offset_index, max_context = [], [], [], []
    answers_outside = 0
    for i, question in enumerate(questions):
        c = context_index[question.context]
        ids, offsets = context_ids[c], context_offsets[c]
        query = question_encodings[i].ids[:max_query_length]
        spans = _window_spans(len(ids), max_seq_length - len(query) - 3, doc_stride)
        answer_tokens = None
        if training and not question.is_impossible:
            answer = question.answers[0]
            answer_tokens = _answer_tokens(offsets, answer.start, answer.start + len(answer.text))
        answer_found = False
        for (doc_start, length), flags in zip(spans, _max_context_flags(spans, len(ids))):
            prefix = len(query) + 2
            input_ids.append([special.cls, *query, special.sep, *ids[doc_start : doc_start + length], special.sep])
            type_ids.append([0] * prefix + [1] * (length + 1))
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


# -------------------------------------------------------------------------------------- decode


@dataclass
class Predictions:
    answers: dict[str, str]  # "" means: no answer
    null_odds: dict[str, float]  # null score - best span score; above the threshold -> ""
    best_spans: dict[str, str]  # best non-empty span, whatever the null score
    nbest: dict[str, list[dict]]  # text, start_logit, end_logit, score, char_start, char_end, probability; best first


def decode(questions: list[SquadQuestion], windows: Windows, start_logits, end_logits, n_best: int = 20,
           max_answer_length: int = 30, version_2: bool = False, null_threshold: float = 0.0) -> Predictions:
    """Turn per-window start/end logits into answer text, following run_squad's write_predictions.

    start_logits[w] and end_logits[w] are window w's logits over its tokens: a list of 1-D arrays
    (one per window) or a 2-D array padded on the right both work; positions past windows.length(w)
    are ignored. In each window the n_best highest starts and ends are paired; a pair counts when
    both are context tokens, start <= end, the span is at most max_answer_length tokens and the
    start token has its max context in this window. Its score is start + end logit and its text is
    cut from the original context by character offsets. The null score is start + end logit at
    [CLS]; across a question's windows the minimum is kept, as run_squad does (the window most
    sure that an answer exists speaks for the question). With version_2 the answer is "" when
    null_odds = null score - best span score > null_threshold. A question with no valid span in
    any window gets "" and null_odds NO_SPAN_NULL_ODDS; best_spans then keeps its best single
    max-context token, if the context has any.
    """
    if len(start_logits) != len(windows) or len(end_logits) != len(windows):
        raise ValueError(f"{len(windows)} windows but {len(start_logits)} start and {len(end_logits)} end logit rows")
    order = np.argsort(windows.example_index, kind="stable")
    cuts = np.searchsorted(windows.example_index[order], np.arange(len(questions) + 1))
    predictions = Predictions({}, {}, {}, {})
    for i, question in enumerate(questions):
        spans, null, fallback = [], None, None
        for w in order[cuts[i] : cuts[i + 1]]:
            start, end = _window_logits(windows, w, start_logits[w], end_logits[w])
            spans.append(_span_candidates(windows, w, start, end, n_best, max_answer_length))
            if null is None or start[0] + end[0] < null[0] + null[1]:
                null = (float(start[0]), float(end[0]))
            fallback = _best_single_token(windows, w, start, end, fallback)
        _add_prediction(predictions, question, spans, null, fallback, n_best, version_2, null_threshold)
    return predictions


def _window_logits(windows: Windows, w: int, start, end) -> tuple[np.ndarray, np.ndarray]:
    length = windows.length(w)
    start, end = np.asarray(start, dtype=np.float64), np.asarray(end, dtype=np.float64)
    if start.ndim != 1 or end.ndim != 1 or len(start) < length or len(end) < length:
        raise ValueError(f"window {w} has {length} tokens but start/end logits of shape {start.shape}/{end.shape}")
    return start[:length], end[:length]


def _span_candidates(windows: Windows, w: int, start: np.ndarray, end: np.ndarray, n_best: int,
                         max_answer_length: int) -> np.ndarray:
    """Valid (score, start_logit, end_logit, char_start, char_end) rows of one window."""
    first, count = int(windows.context_start[w]), int(windows.context_length[w])
    top_starts = np.argsort(-start, kind="stable")[:n_best]  # stable: ties keep token order, as sorted() does
    top_ends = np.argsort(-end, kind="stable")[:n_best]
    in_context_start = (top_starts >= first) & (top_starts < first + count)
    in_context_end = (top_ends >= first) & (top_ends < first + count)
    max_context = windows.max_context(w)
    in_context_start[in_context_start] &= max_context[top_starts[in_context_start] - first]
    length = top_ends[None, :] - top_starts[:, None] + 1
    valid = in_context_start[:, None] & in_context_end[None, :] & (length >= 1) & (length <= max_answer_length)
    rows, cols = np.nonzero(valid)
    span_starts, span_ends = top_starts[rows], top_ends[cols]
    offsets = windows.offsets(w)
    return np.stack([start[span_starts] + end[span_ends], start[span_starts], end[span_ends],
                     offsets[span_starts - first, 0], offsets[span_ends - first, 1]], axis=1)


def _best_single_token(windows: Windows, w: int, start: np.ndarray, end: np.ndarray, best):
    """Keep the best (score, char_start, char_end) one-token span over max-context tokens."""
    first, count = int(windows.context_start[w]), int(windows.context_length[w])
    scores = np.where(windows.max_context(w), start[first : first + count] + end[first : first + count], -np.inf)
    if count and np.isfinite(scores.max()) and (best is None or scores.max() > best[0]):
        k = int(scores.argmax())
        char_start, char_end = windows.offsets(w)[k]
        return float(scores[k]), int(char_start), int(char_end)
    return best


def _add_prediction(predictions: Predictions, question: SquadQuestion, spans: list[np.ndarray], null,
                    fallback, n_best: int, version_2: bool, null_threshold: float) -> None:
    qid, context = question.id, question.context
    spans = np.concatenate(spans) if spans else np.zeros((0, 5))
    nbest, seen = [], set()
    for score, start_logit, end_logit, char_start, char_end in spans[np.argsort(-spans[:, 0], kind="stable")]:
        text = context[int(char_start) : int(char_end)]
        if text in seen:  # the same text from another window or another token pair
            continue
        seen.add(text)
        nbest.append({"text": text, "start_logit": float(start_logit), "end_logit": float(end_logit),
                      "score": float(score), "char_start": int(char_start), "char_end": int(char_end)})
        if len(nbest) == n_best:
            break
    best_span = nbest[0] if nbest else None
    null_entry = None
    if null is not None:
        null_entry = {"text": "", "start_logit": null[0], "end_logit": null[1], "score": null[0] + null[1]}
    if version_2 or best_span is None:
        # the null answer competes in the n-best list, so its probability is comparable
        nbest = sorted(nbest + [null_entry] * (null_entry is not None), key=lambda e: -e["score"])
    scores = np.array([entry["score"] for entry in nbest])
    probabilities = np.exp(scores - scores.max()) if len(scores) else scores
    for entry, probability in zip(nbest, probabilities / probabilities.sum() if len(scores) else []):
        entry["probability"] = float(probability)

    if best_span is None:
        predictions.answers[qid] = ""
        predictions.null_odds[qid] = NO_SPAN_NULL_ODDS
        predictions.best_spans[qid] = context[fallback[1] : fallback[2]] if fallback else ""
    else:
        odds = null_entry["score"] - best_span["score"]
        predictions.null_odds[qid] = odds
        predictions.best_spans[qid] = best_span["text"]
        predictions.answers[qid] = "" if version_2 and odds > null_threshold else best_span["text"]
    predictions.nbest[qid] = nbest
