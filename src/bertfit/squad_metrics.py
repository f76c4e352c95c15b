"""SQuAD scoring, by the definitions of the official v1.1 and v2.0 evaluation scripts.

Ground truth is either a parsed SQuAD JSON dict ({"data": ...}) or a list of SquadQuestion;
predictions map question id to answer text ("" = no answer). Scores are on a 0..100 scale.
"""
from __future__ import annotations

import re
import string
import warnings
from collections import Counter

import numpy as np

from .errors import DataError

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation, drop the articles a/an/the, collapse whitespace (in that order)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> int:
    return int(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction: str, gold: str) -> float:
    """Token F1 as in the v2.0 script: when either side normalizes to nothing, 1 if both do, else 0."""
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not predicted or not expected:
        return float(predicted == expected)
    return _token_f1(predicted, expected)


def _token_f1(predicted: list[str], expected: list[str]) -> float:
    """Harmonic mean of token precision and recall over the shared bag of tokens (v1.1's f1_score)."""
    shared = sum((Counter(predicted) & Counter(expected)).values())
    if shared == 0:
        return 0.0
    precision, recall = shared / len(predicted), shared / len(expected)
    return 2 * precision * recall / (precision + recall)


def squad_v1_scores(truth, predictions: dict[str, str]) -> dict[str, float]:
    """The v1.1 script: best EM / F1 over the gold answers; a question with no prediction scores 0."""
    exact = total_f1 = 0.0
    missing = []
    golds_by_id = _gold_texts(truth)
    if not golds_by_id:
        raise DataError("no questions to score")
    for qid, golds in golds_by_id:
        if not golds:
            raise DataError(f"question {qid!r} has no answers; score SQuAD v2.0 data with squad_v2_scores")
        if qid not in predictions:
            missing.append(qid)
            continue
        prediction = predictions[qid]
        exact += max(exact_match(prediction, gold) for gold in golds)
        # v1.1's F1 has no special case for empty token lists: nothing shared is 0
        total_f1 += max(_token_f1(normalize_answer(prediction).split(), normalize_answer(gold).split())
                        for gold in golds)
    if missing:
        warnings.warn(f"{len(missing)} questions have no prediction and score 0 (first: {missing[0]!r})", stacklevel=2)
    total = len(golds_by_id)
    return {"exact_match": 100.0 * exact / total, "f1": 100.0 * total_f1 / total}


def squad_v2_scores(truth, predictions: dict[str, str], na_probs: dict[str, float] | None = None,
                    na_prob_thresh: float = 1.0) -> dict[str, float]:
    """The v2.0 script: exact/f1 overall and over HasAns/NoAns questions, and best_* thresholds.

    A question whose na_prob exceeds na_prob_thresh counts as answered "no answer". Questions
    missing from predictions are left out of every total (the script skips them, with a message).
    With na_probs, best_exact/best_f1 are the scores at the na_prob threshold that maximizes them,
    found by sweeping questions in order of na_prob, as the script does; see best_null_threshold
    for the search that uses each question's best span rather than its final answer.
    """
    golds_by_id = _gold_texts(truth)
    has_answer = {qid: bool(golds) for qid, golds in golds_by_id}
    exact_raw, f1_raw = _raw_scores(golds_by_id, predictions)
    if not exact_raw:
        raise DataError(f"none of the {len(predictions)} predictions matches a question id of the {len(golds_by_id)} questions")
    probs = {qid: 0.0 for qid in predictions} if na_probs is None else na_probs
    for qid in exact_raw:
        if qid not in probs:
            raise DataError(f"na_probs has no value for question {qid!r}")
    missing = len(golds_by_id) - len(exact_raw)
    if missing:
        warnings.warn(f"{missing} questions have no prediction and are left out of the totals", stacklevel=2)
    exact = _apply_null_threshold(exact_raw, probs, has_answer, na_prob_thresh)
    f1s = _apply_null_threshold(f1_raw, probs, has_answer, na_prob_thresh)

    result = _summary(exact, f1s, list(exact))
    for prefix, wanted in (("HasAns", True), ("NoAns", False)):
        qids = [qid for qid in exact if has_answer[qid] == wanted]
        if qids:  # the script leaves out a group the data does not have
            result.update({f"{prefix}_{key}": value for key, value in _summary(exact, f1s, qids).items()})
    if na_probs is not None:
        result["best_exact"], result["best_exact_thresh"] = _best_threshold(predictions, exact_raw, probs, has_answer)
        result["best_f1"], result["best_f1_thresh"] = _best_threshold(predictions, f1_raw, probs, has_answer)
    return result


def best_null_threshold(truth, best_spans: dict[str, str], null_odds: dict[str, float]) -> dict[str, float]:
    """The null-odds threshold with the best F1 (and the one with the best exact match).

    At threshold t a question is answered with its best non-null span when null_odds <= t and
    with "" otherwise, the rule decode applies. Unlike the v2 script's best_* sweep run on final
    answers, which cannot bring back a span that decoding already replaced by "" (at threshold 0,
    every question with null_odds > 0), this sweeps over the real null odds with the spans at hand,
    so the best threshold can answer more questions as well as fewer. Ties keep the lower
    threshold; "answer nothing" is reported as 1 below the lowest null odds.
    """
    rows = []
    for qid, golds in _gold_texts(truth):
        if qid not in best_spans or qid not in null_odds:
            raise DataError(f"question {qid!r} has no best span or null odds to search a threshold with")
        golds = [gold for gold in golds if normalize_answer(gold)] or [""]
        span = best_spans[qid]
        rows.append((null_odds[qid],
                     max(exact_match(span, gold) for gold in golds), max(f1(span, gold) for gold in golds),
                     max(exact_match("", gold) for gold in golds), max(f1("", gold) for gold in golds)))
    if not rows:
        raise DataError("no questions to search a null threshold on")
    odds, span_exact, span_f1, null_exact, null_f1 = (np.asarray(column, dtype=np.float64) for column in zip(*rows))
    order = np.argsort(odds, kind="stable")
    thresholds = np.concatenate([[odds.min() - 1.0], odds[order]])
    # scores after answering the first k questions by null odds, k = 0..n
    exact = null_exact.sum() + np.concatenate([[0.0], np.cumsum((span_exact - null_exact)[order])])
    f1s = null_f1.sum() + np.concatenate([[0.0], np.cumsum((span_f1 - null_f1)[order])])
    # a threshold answers every question with equal odds at once: only the last of a run of ties is reachable
    reachable = np.ones(len(thresholds), dtype=bool)
    reachable[1:-1] = thresholds[1:-1] != thresholds[2:]
    best_f1 = int(np.flatnonzero(reachable)[np.argmax(f1s[reachable])])
    best_exact = int(np.flatnonzero(reachable)[np.argmax(exact[reachable])])
    total = len(rows)
    return {"threshold": float(thresholds[best_f1]), "exact": float(100.0 * exact[best_f1] / total),
            "f1": float(100.0 * f1s[best_f1] / total), "best_exact": float(100.0 * exact[best_exact] / total),
            "best_exact_threshold": float(thresholds[best_exact]), "answered": best_f1, "total": total}


def _gold_texts(truth) -> list[tuple[str, list[str]]]:
    """(id, answer texts) per question, from a parsed SQuAD dict or a list of SquadQuestion."""
    if isinstance(truth, dict):
        return [(qa["id"], [answer["text"] for answer in qa["answers"]])
                for article in truth["data"] for paragraph in article["paragraphs"] for qa in paragraph["qas"]]
    return [(question.id, [answer.text for answer in question.answers]) for question in truth]


def _raw_scores(golds_by_id, predictions) -> tuple[dict[str, int], dict[str, float]]:
    """Best EM and F1 per predicted question; golds that normalize to nothing are dropped, none -> [""]."""
    exact, f1s = {}, {}
    for qid, golds in golds_by_id:
        if qid not in predictions:
            continue
        golds = [gold for gold in golds if normalize_answer(gold)] or [""]
        exact[qid] = max(exact_match(predictions[qid], gold) for gold in golds)
        f1s[qid] = max(f1(predictions[qid], gold) for gold in golds)
    return exact, f1s


def _apply_null_threshold(scores, na_probs, has_answer, threshold) -> dict[str, float]:
    """Above the threshold the answer is "no answer": right exactly when the question has none."""
    return {qid: float(not has_answer[qid]) if na_probs[qid] > threshold else score
            for qid, score in scores.items()}


def _summary(exact, f1s, qids) -> dict[str, float]:
    return {"exact": 100.0 * sum(exact[qid] for qid in qids) / len(qids),
            "f1": 100.0 * sum(f1s[qid] for qid in qids) / len(qids), "total": len(qids)}


def _best_threshold(predictions, scores, na_probs, has_answer) -> tuple[float, float]:
    """The v2 script's sweep: start with every scored question null, answer them in order of na_prob.

    Answering a question with an answer adds its score; answering an unanswerable one with
    non-empty text costs 1. The first best point wins; its na_prob is the threshold (0.0 when
    answering nothing is best, as in the script).
    """
    score = best = sum(1 for qid in scores if not has_answer[qid])
    best_thresh = 0.0
    for qid in sorted(na_probs, key=lambda k: na_probs[k]):
        if qid not in scores:
            continue
        if has_answer[qid]:
            score += scores[qid]
        elif predictions[qid]:
            score -= 1
        if score > best:
            best, best_thresh = score, na_probs[qid]
    return 100.0 * best / len(scores), float(best_thresh)
