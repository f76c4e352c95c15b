import pytest

from bertfit.errors import DataError
from bertfit.squad_metrics import (
    best_null_threshold, exact_match, f1, normalize_answer, squad_v1_scores, squad_v2_scores,
)
from bertfit.tasks.squad import Answer, SquadQuestion

CONTEXT = "The Denver Broncos won in Santa Clara, California, at Levi's Stadium."


def q(qid, *answers):
    return SquadQuestion(qid, "T", "?", CONTEXT, [Answer(a, CONTEXT.find(a)) for a in answers],
                         is_impossible=not answers)


def as_dataset(questions):
    """The same questions as a parsed official JSON file."""
    qas = [{"id": x.id, "question": x.question,
            "answers": [{"text": a.text, "answer_start": a.start} for a in x.answers]} for x in questions]
    return {"version": "v2.0", "data": [{"title": "T", "paragraphs": [{"context": CONTEXT, "qas": qas}]}]}


@pytest.mark.parametrize("text, normalized", [
    ("The  Quick, Brown-fox!", "quick brownfox"),  # articles go, punctuation is deleted (not spaced)
    ("an apple a day", "apple day"),
    ("Theatre of the Absurd", "theatre of absurd"),  # only whole-word articles
    ("A", ""),
    ("  Levi's\tStadium ", "levis stadium"),
])
def test_normalize_answer(text, normalized):
    assert normalize_answer(text) == normalized


def test_exact_match_ignores_case_articles_and_punctuation():
    assert exact_match("the Denver Broncos", "Denver Broncos!") == 1
    assert exact_match("Denver", "Denver Broncos") == 0


def test_f1_counts_shared_tokens_with_multiplicity():
    # [denver, broncos, won] vs [denver, broncos]: 2 shared, P = 2/3, R = 1, F1 = 2 * (2/3) / (5/3) = 0.8
    assert f1("Denver Broncos won", "the Denver Broncos") == pytest.approx(0.8)
    # [x, y, y] vs [y, y, z]: y is shared twice, P = R = 2/3
    assert f1("x y y", "y y z") == pytest.approx(2 / 3)
    assert f1("Denver", "Santa Clara") == 0.0


def test_f1_on_empty_answers_follows_the_v2_rule():
    assert f1("", "the") == 1.0  # both normalize to nothing
    assert f1("", "Denver") == 0.0
    assert f1("Denver", "") == 0.0


def test_squad_v1_scores_take_the_best_gold_and_count_missing_predictions_as_zero():
    questions = [q("q1", "Denver Broncos", "The Broncos"), q("q2", "Santa Clara"), q("q3", "Levi's Stadium")]
    predictions = {"q1": "broncos", "q2": "in Santa Clara, California"}
    # q1: EM 1 against "The Broncos"; F1 1 (against "Denver Broncos" only P = 1, R = 1/2, F1 = 2/3)
    # q2: EM 0; [in, santa, clara, california] vs [santa, clara]: P = 1/2, R = 1, F1 = 2/3
    # q3: no prediction: 0 and 0, still counted in the total of 3
    with pytest.warns(UserWarning, match="1 questions have no prediction"):
        scores = squad_v1_scores(questions, predictions)
    assert scores == pytest.approx({"exact_match": 100 / 3, "f1": 100 * (1 + 2 / 3) / 3})
    with pytest.warns(UserWarning):
        assert squad_v1_scores(as_dataset(questions), predictions) == scores


def test_squad_v1_f1_gives_nothing_for_a_gold_that_normalizes_to_nothing():
    # v1.1 has no empty-list rule: "a" vs "the" is an exact match (both "") but shares no token
    assert squad_v1_scores([q("q1", "the")], {"q1": "a"}) == {"exact_match": 100.0, "f1": 0.0}
    with pytest.raises(DataError, match="'q2' has no answers"):
        squad_v1_scores([q("q2")], {"q2": ""})


# a: answerable, right. b: answerable, half right. c: unanswerable, left empty. d: unanswerable,
# answered. e: answerable, no prediction (the v2 script leaves it out of every total).
V2_QUESTIONS = [q("a", "Broncos"), q("b", "Santa Clara", "Santa Clara, California"), q("c"), q("d"), q("e", "Denver")]
V2_PREDICTIONS = {"a": "Broncos", "b": "Clara", "c": "", "d": "Denver"}
# per question (EM, F1): a (1, 1); b (0, 2/3: [clara] vs [santa, clara] P = 1, R = 1/2; 1/2 against
# the longer gold); c (1, 1); d (0, 0)


def test_squad_v2_scores_split_has_answer_and_no_answer_and_skip_missing():
    with pytest.warns(UserWarning, match="1 questions have no prediction"):
        scores = squad_v2_scores(V2_QUESTIONS, V2_PREDICTIONS)
    assert scores == pytest.approx({
        "exact": 100 * 2 / 4, "f1": 100 * (1 + 2 / 3 + 1 + 0) / 4, "total": 4,
        "HasAns_exact": 100 * 1 / 2, "HasAns_f1": 100 * (1 + 2 / 3) / 2, "HasAns_total": 2,
        "NoAns_exact": 50.0, "NoAns_f1": 50.0, "NoAns_total": 2,
    })
    assert list(scores)[:3] == ["exact", "f1", "total"]
    with pytest.warns(UserWarning):
        assert squad_v2_scores(as_dataset(V2_QUESTIONS), V2_PREDICTIONS) == scores


def test_squad_v2_scores_apply_na_prob_threshold_and_find_best_thresholds():
    na_probs = {"a": 0.1, "b": 0.2, "c": 0.9, "d": 0.3}
    with pytest.warns(UserWarning):
        scores = squad_v2_scores(V2_QUESTIONS, V2_PREDICTIONS, na_probs, na_prob_thresh=0.5)
    # above 0.5 only c turns null, which it already was: the raw scores stand
    assert scores["exact"] == 50.0 and scores["f1"] == pytest.approx(100 * (2 + 2 / 3) / 4)
    # sweep from "all null" (c and d right: 2) in na_prob order a, b, d, c:
    #   EM: a +1 -> 3 (best, 0.1), b +0 -> 3, d -1 -> 2, c +0 -> 2           => 75 at 0.1
    #   F1: a +1 -> 3, b +2/3 -> 3.667 (best, 0.2), d -1 -> 2.667, c +0   => 91.67 at 0.2
    assert scores["best_exact"] == 75.0 and scores["best_exact_thresh"] == 0.1
    assert scores["best_f1"] == pytest.approx(100 * (3 + 2 / 3) / 4) and scores["best_f1_thresh"] == 0.2
    with pytest.raises(DataError, match="no value for question 'd'"):
        squad_v2_scores(V2_QUESTIONS, V2_PREDICTIONS, {"a": 0.1, "b": 0.2, "c": 0.9})


def test_squad_v2_scores_treat_a_gold_that_normalizes_to_nothing_as_no_answer():
    # "The" normalizes to "": the only gold left is "", so "" is right, though the question counts as HasAns
    scores = squad_v2_scores([q("f", "The")], {"f": ""})
    assert scores["exact"] == 100.0 and scores["HasAns_total"] == 1 and "NoAns_total" not in scores


def test_squad_v2_scores_with_no_matching_prediction_is_an_error():
    with pytest.raises(DataError, match="none of the 1 predictions"):
        squad_v2_scores(V2_QUESTIONS, {"zzz": "x"})


def test_best_null_threshold_can_answer_more_questions_than_threshold_zero():
    questions = [q("a", "Broncos"), q("b", "Santa Clara"), q("c"), q("d")]
    best_spans = {"a": "Broncos", "b": "Clara", "c": "Denver", "d": "Levi's"}
    null_odds = {"a": 2.0, "b": -1.0, "c": 3.0, "d": 4.0}
    # (EM, F1) if answered / if null: a (1, 1) / (0, 0); b (0, 2/3) / (0, 0); c and d (0, 0) / (1, 1)
    # answering in order of null odds b, a, c, d, starting from nothing answered (EM 2, F1 2):
    #   b: EM 2, F1 2.667; a: EM 3, F1 3.667 (best, threshold 2.0); c: EM 2, F1 2.667; d: EM 1, F1 1.667
    result = best_null_threshold(questions, best_spans, null_odds)
    assert result == pytest.approx({"threshold": 2.0, "exact": 75.0, "f1": 100 * (3 + 2 / 3) / 4,
                                    "best_exact": 75.0, "best_exact_threshold": 2.0, "answered": 2, "total": 4})
    # decode at threshold 0 answers only b; the v2 script's sweep over those answers cannot bring back
    # "Broncos" for a, so its best F1 stays at answering b alone: (2/3 + 1 + 1) / 4
    emptied = {qid: best_spans[qid] if null_odds[qid] <= 0 else "" for qid in best_spans}
    official = squad_v2_scores(questions, emptied, na_probs=null_odds)
    assert official["best_f1"] == pytest.approx(100 * (2 / 3 + 2) / 4)
    assert official["best_f1"] < result["f1"]


def test_best_null_threshold_answers_tied_null_odds_together():
    questions = [q("x", "Broncos"), q("y")]
    # answering x alone would be perfect, but y has the same null odds, so any threshold answers both
    # (EM 1) or neither (EM 1): the first, "answer nothing", is reported 1 below the lowest odds
    result = best_null_threshold(questions, {"x": "Broncos", "y": "Denver"}, {"x": 1.0, "y": 1.0})
    assert result["threshold"] == 0.0 and result["exact"] == 50.0 and result["answered"] == 0
    with pytest.raises(DataError, match="'y' has no best span"):
        best_null_threshold(questions, {"x": "Broncos"}, {"x": 1.0})
