"""Decoding SQuAD: per-window start and end logits into answer text, as run_squad's write_predictions does."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .reading import SquadQuestion
from .windows import Windows

# null_odds of a question with no valid span in any window: far above any real score
# difference, so a threshold search never answers it by accident.
NO_SPAN_NULL_ODDS = 1e6


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
