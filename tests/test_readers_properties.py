"""Property tests of every reader of user data: any bytes, and near-valid files made by mutating valid ones
(which reach further into a reader than noise does), give either examples or bertfit's own DataError naming
the file, never another exception and never a hang.

Readers: GLUE TSV (tasks/glue_tsv.py), a user's CSV/TSV/JSONL (tasks/table_files.py), SQuAD JSON
(tasks/squad), pretraining text and JSONL (tasks/text.py), tokenizer training (tokenizer_training.py),
token-tagged CoNLL, CoNLL-U and JSONL with their tag schemes (tasks/tagged_files.py, tasks/tag_schemes.py), texts
to embed (embedding_files.py). Each also meets texts drawn from awkward characters (lone surrogates, NUL, BOM, bidi
marks, combining marks, a 10,000-character word), which byte mutations cannot make.
"""
from __future__ import annotations

import csv
import io
import json
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bertfit.characters import lone_surrogate
from bertfit.errors import DataError
from bertfit.pretrained import embedded_model_path, load_tokenizer
from bertfit.tasks.glue_tsv import read_glue_split
from bertfit.tasks.squad import read_squad
from bertfit.tasks.table_files import read_table_file
from bertfit.tasks.text import CorpusStats, heading_level, read_documents
from bertfit.tokenizer_training import train_wordpiece

BOUNDED = settings(max_examples=120, deadline=5000, suppress_health_check=[HealthCheck.too_slow])

# characters that mean something to one reader or another
SPECIAL = ["\t", ",", '"', "\n", "\r\n", "\r", "=", " = ", "{", "}", "[", "]", ":", "\\", "\x00", "\ufeff", "\u2028",
           "\udc80", "", " ", "0", "-1", "1e999", "9" * 400, "NaN", "null", "true", '"x"']


def mutated(valid: bytes):
    """A valid file's bytes with a few edits: a slice deleted, bytes or meaningful characters inserted, a line
    repeated."""
    edit = st.one_of(
        st.tuples(st.just("delete"), st.integers(0, len(valid)), st.integers(1, 12)),
        st.tuples(st.just("insert"), st.integers(0, len(valid)), st.binary(max_size=6)),
        st.tuples(st.just("insert"), st.integers(0, len(valid)),
                  st.sampled_from(SPECIAL).map(lambda s: s.encode("utf-8", "surrogatepass"))),
        st.tuples(st.just("repeat"), st.integers(0, max(0, valid.count(b"\n"))), st.integers(1, 3)),
    )

    def apply(edits) -> bytes:
        data = valid
        for op, at, arg in edits:
            if op == "delete":
                data = data[:at] + data[at + arg :]
            elif op == "insert":
                data = data[:at] + arg + data[at:]
            else:
                lines = data.split(b"\n")
                k = min(at, len(lines) - 1)
                data = b"\n".join(lines[: k + 1] + [lines[k]] * arg + lines[k + 1 :])
        return data

    return st.lists(edit, min_size=1, max_size=4).map(apply)


def any_or_mutated(valid: bytes):
    return st.one_of(st.binary(max_size=300), mutated(valid))


def loads_or_names_the_file(read, path: Path):
    """`read()`'s result, or None when it raised a DataError that names `path`; any other exception fails."""
    try:
        return read()
    except DataError as error:
        assert str(path) in str(error), f"the error does not name the file: {error}"
        return None


def write(folder: str, name: str, content: bytes) -> Path:
    path = Path(folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


# ---- GLUE TSV ------------------------------------------------------------------------------------

RTE = (b"index\tsentence1\tsentence2\tlabel\n0\tNo weapons were found.\tWeapons were found.\tnot_entailment\n"
       b"1\tA place of sorrow.\tA place.\tentailment\n")
COLA = b"gj04\t1\t\tOur friends won't buy this analysis.\ncj99\t0\t*\tAs you eat the most, you want the least.\n"
STSB = (b"index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
        b"0\tmain\tMSRvid\t2012\t0001\tnone\tnone\tA plane takes off.\tA plane is taking off.\t5.000\n")


@pytest.mark.timeout(120)
@BOUNDED
@given(task=st.sampled_from([("rte", "RTE", RTE), ("cola", "CoLA", COLA), ("stsb", "STS-B", STSB)]),
       data=st.data(), skip_bad=st.booleans())
def test_glue_tsv_gives_examples_or_a_data_error_naming_the_file(task, data, skip_bad):
    name, folder_name, valid = task
    content = data.draw(any_or_mutated(valid))
    with tempfile.TemporaryDirectory() as folder:
        path = write(folder, f"{folder_name}/train.tsv", content)
        examples = loads_or_names_the_file(lambda: read_glue_split(name, folder, "train", skip_bad=skip_bad), path)
        if examples is not None:
            assert len(examples) == examples.num_read - examples.num_skipped
            assert len(examples.labels) == len(examples.texts_a) == len(examples.indices)
            assert skip_bad or not examples.num_skipped


# ---- a user's CSV, TSV and JSONL -----------------------------------------------------------------

TABLES = {
    "csv": b'text,other,label\n"Good, really good",x,pos\nBad,y,neg\n"Meh ""ok""",z,neu\n',
    "tsv": b"text\tother\tlabel\ngood film\tx\tpos\nbad film\ty\tneg\n",
    "jsonl": b'{"text": "good film", "other": "x", "label": "pos"}\n{"text": "bad", "other": "y", "label": 2.5}\n',
}


@pytest.mark.timeout(120)
@BOUNDED
@given(kind=st.sampled_from(sorted(TABLES)), data=st.data(), skip_bad=st.booleans(),
       columns=st.sampled_from([["text"], ["text", "other"]]), labels=st.sampled_from([None, ("neg", "pos")]))
def test_table_files_give_examples_or_a_data_error_naming_the_file(kind, data, skip_bad, columns, labels):
    content = data.draw(any_or_mutated(TABLES[kind]))
    with tempfile.TemporaryDirectory() as folder:
        path = write(folder, f"data.{kind}", content)
        examples = loads_or_names_the_file(
            lambda: read_table_file(path, columns, "label", labels=labels, skip_bad=skip_bad), path)
        if examples is not None:
            assert len(examples) == len(examples.labels) == len(examples.indices)
            assert len(examples) == examples.num_read - examples.num_skipped
            assert (examples.texts_b is None) == (len(columns) == 1)
            assert skip_bad or not examples.num_skipped
            assert all(isinstance(t, str) and t.strip() for t in examples.texts_a)


def test_table_files_skip_bad_records_counted_with_their_lines(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b'{"text": "good", "label": "pos"}\n{"text": ""}\n[1]\n{"text": "x", "label": "maybe"}\n'
                     b"\xff\xfe\n" + b"[" * 100000 + b"\n" + b'{"text": "bad", "label": "neg"}\n')
    examples = read_table_file(path, ["text"], "label", labels=("neg", "pos"), skip_bad=True)
    assert examples.texts_a == ["good", "bad"] and examples.labels == [1, 0]
    assert examples.num_read == 7 and examples.num_skipped == 5
    assert [reason.split(":")[0] for reason in examples.skip_reasons] == ["line 2", "line 3", "line 4", "line 5",
                                                                         "line 6"]  # in file order


def test_a_label_past_floats_range_is_a_label_not_a_traceback(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "a", "label": 1%s}\n{"text": "b", "label": 2.5}\n' % ("0" * 400))
    examples = read_table_file(path, ["text"], "label")
    assert examples.label_names == ("1" + "0" * 400, "2.5")


# ---- SQuAD JSON ----------------------------------------------------------------------------------

SQUAD = {"version": "v2.0", "data": [{"title": "t", "paragraphs": [
    {"context": "Paris is in France.", "qas": [
        {"id": "a", "question": "Where is Paris?", "answers": [{"text": "France", "answer_start": 12}],
         "is_impossible": False},
        {"id": "b", "question": "Who?", "answers": [], "is_impossible": True}]},
    {"context": "Rome.", "qas": [{"id": "c", "question": "What?", "answers": [{"text": "Rome", "answer_start": 0}]}]},
]}]}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10**30) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)


def nodes(value, found):
    """Every (container, key) of a JSON tree, depth first."""
    if isinstance(value, dict):
        for key in list(value):
            found.append((value, key))
            nodes(value[key], found)
    elif isinstance(value, list):
        for i in range(len(value)):
            found.append((value, i))
            nodes(value[i], found)
    return found


@st.composite
def near_squad(draw):
    """The valid file with a few nodes replaced by other JSON, deleted, or given a surrogate."""
    dataset = json.loads(json.dumps(SQUAD))
    for _ in range(draw(st.integers(1, 3))):
        found = nodes(dataset, [])
        if not found:
            break
        container, key = found[draw(st.integers(0, len(found) - 1))]
        op = draw(st.sampled_from(["replace", "delete", "surrogate"]))
        if op == "delete":
            del container[key]
        elif op == "surrogate" and isinstance(container[key], str):
            container[key] += "\udc80"
        else:
            container[key] = draw(json_values)
    return json.dumps(dataset).encode()


@pytest.mark.timeout(120)
@BOUNDED
@given(content=st.one_of(st.binary(max_size=200), mutated(json.dumps(SQUAD).encode()), near_squad()),
       skip_bad=st.booleans())
def test_squad_json_gives_questions_or_a_data_error_naming_the_file(content, skip_bad):
    with tempfile.TemporaryDirectory() as folder:
        path = write(folder, "train.json", content)
        read = loads_or_names_the_file(lambda: read_squad(path, skip_bad=skip_bad), path)
        if read is not None:
            questions, stats = read
            assert stats.questions == len(questions) and len({q.id for q in questions}) == len(questions)
            assert skip_bad or not stats.skipped
            for q in questions:
                assert all(q.context[a.start : a.start + len(a.text)] == a.text for a in q.answers)


# ---- pretraining text ----------------------------------------------------------------------------

WIKITEXT = (b" = Valkyria Chronicles = \n\n Senjo no Valkyria is a game .\n\n = = Gameplay = = \n\n"
            b" It is played in turns .\n = Second = \n\n Another article .\n")
TEXT_JSONL = b'{"text": "first paragraph\\nsecond"}\n{"text": ""}\n{"text": "another document"}\n'


@pytest.mark.timeout(120)
@BOUNDED
@given(kind=st.sampled_from([("corpus.txt", WIKITEXT), ("corpus.jsonl", TEXT_JSONL)]), data=st.data())
def test_pretraining_text_gives_documents_or_a_data_error_naming_the_file(kind, data):
    name, valid = kind
    content = data.draw(any_or_mutated(valid))
    with tempfile.TemporaryDirectory() as folder:
        path = write(folder, name, content)
        stats = CorpusStats()
        documents = loads_or_names_the_file(lambda: list(read_documents(str(path), stats=stats)), path)
        if documents is not None:
            assert stats.documents == len(documents) and all(documents)
            assert all(p and p == p.strip() for document in documents for p in document)


OLD_HEADING = re.compile(r"^((?:=\s*)+)(.*?)((?:\s*=)+)$")


@BOUNDED
@given(line=st.text(alphabet=st.sampled_from(["=", " ", "\t", "a", "\u3000", "\x1f", "b"]), max_size=14))
def test_heading_levels_are_those_of_the_wikitext_pattern(line):
    """The linear-time heading test agrees with the regex it replaced (which backtracks for minutes on long
    lines of `=`), on lines short enough for the regex."""
    match = OLD_HEADING.match(line.strip())
    expected = 0
    if match and match.group(2).strip():
        left, right = match.group(1).count("="), match.group(3).count("=")
        expected = left if left == right else 0
    assert heading_level(line) == expected


@pytest.mark.timeout(30)
def test_a_long_line_of_equals_signs_is_read_without_backtracking(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("= " * 5000 + "x\n\n" + "=" * 3000 + " y " + "= " * 2999 + "\nsome text .\n")
    documents = list(read_documents(str(path)))  # neither long line is a heading: their `=`s do not pair up
    assert documents == [[("= " * 5000 + "x")], ["=" * 3000 + " y " + ("= " * 2999).strip(), "some text ."]]


def test_labels_that_only_look_like_integers_sort_as_text(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("text,label\na,--5\nb,1\n")
    assert read_table_file(path, ["text"], "label").label_names == ("--5", "1")


def test_a_pretraining_jsonl_line_nested_too_deeply_names_its_line(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text('{"text": "a"}\n' + "[" * 100000 + "\n")
    with pytest.raises(DataError, match=f"{re.escape(str(path))}, line 2: JSON nested too deeply"):
        list(read_documents(str(path)))



# ---- texts to embed (embedding_files.py) ---------------------------------------------------------

EMBED_TEXTS = b"A first text.\nA second, with a comma\n\xc3\xa9t\xc3\xa9 in UTF-8\n"
EMBED_JSONL = b'{"text": "A first text."}\n{"text": "another", "id": 2}\n'


@BOUNDED
@given(kind=st.sampled_from([("texts.txt", EMBED_TEXTS), ("texts.jsonl", EMBED_JSONL)]), data=st.data())
def test_texts_to_embed_are_texts_or_a_data_error_naming_the_file(kind, data):
    from bertfit.embedding_files import read_texts

    name, valid = kind
    content = data.draw(any_or_mutated(valid))
    with tempfile.TemporaryDirectory() as folder:
        path = write(folder, name, content)
        texts = loads_or_names_the_file(lambda: read_texts(path), path)
        if texts is not None:
            assert texts and all(isinstance(t, str) and t.strip() for t in texts)
            if name.endswith(".txt"):  # one text a line: row i is line i
                assert len(texts) == len(content.removesuffix(b"\n").split(b"\n"))


# ---- token-tagged files (CoNLL, CoNLL-U, JSONL) and their tag schemes -----------------------------

TAGGED = {
    "conll": b"-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n",
    "conllu": (b"# text = Vamonos al mar\n1-2\tVamonos\t_\t_\t_\t_\t_\t_\t_\t_\n1\tVamos\tir\tVERB\tV\t_\t0\troot\t_\t_\n"
               b"2\tnos\tnos\tPRON\tP\t_\t1\tobj\t_\t_\n2.1\tir\tir\tVERB\tV\t_\t_\t_\t1:conj\t_\n\n"),
    "jsonl": b'{"tokens": ["John", "runs"], "tags": ["B-PER", "O"]}\n{"tokens": ["Paris"], "tags": ["I-LOC"]}\n',
}


@pytest.mark.timeout(120)
@BOUNDED
@given(kind=st.sampled_from(sorted(TAGGED)), data=st.data(), skip_bad=st.booleans(),
       scheme=st.sampled_from(["auto", "bio", "iob1", "bioes", "none"]), repair=st.booleans())
def test_tagged_files_give_sentences_or_a_data_error_naming_the_file(kind, data, skip_bad, scheme, repair):
    from bertfit.tasks import tag_schemes, tagged_files

    content = data.draw(any_or_mutated(TAGGED[kind]))
    with tempfile.TemporaryDirectory() as folder:
        path = write(folder, f"data.{kind}", content)
        sentences = loads_or_names_the_file(lambda: tagged_files.read_tagged_file(path, skip_bad=skip_bad), path)
        if sentences is None:
            return
        assert len(sentences) == sentences.num_read - sentences.num_skipped
        assert skip_bad or not sentences.num_skipped
        for words, tags, lines in zip(sentences.words, sentences.tags, sentences.lines):
            assert words and len(words) == len(tags) == len(lines)
            assert all(isinstance(w, str) and w for w in words) and all(t and t == t.strip() for t in tags)
        chosen = tag_schemes.detect(sentences.tags) if scheme == "auto" else scheme
        kept = loads_or_names_the_file(
            lambda: tag_schemes.normalize(sentences, chosen, "repair" if repair else "refuse"), path)
        if kept is not None and kept[0] == "bio":  # every entity run now parses: strict IOB2 reads them all
            from bertfit import tag_metrics

            for tags in sentences.tags:
                spans = lambda chunks: [(start, end) for _, start, end in chunks]
                assert spans(tag_metrics.strict_chunks(tags, "IOB2")) == spans(tag_metrics.chunks(tags))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.tuples(st.text(st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Zs", "Zl", "Zp")),
                                           min_size=1, max_size=8),
                                   st.sampled_from(["O", "B-PER", "I-PER", "B-LOC"])), min_size=1, max_size=6),
                min_size=1, max_size=5))
def test_conll_and_jsonl_read_back_the_sentences_written(sentences):
    from bertfit.tasks import tagged_files

    with tempfile.TemporaryDirectory() as folder:
        conll = write(folder, "data.conll", "".join("".join(f"{w}\t{t}\n" for w, t in s) + "\n"
                                                      for s in sentences).encode())
        jsonl = write(folder, "data.jsonl", "".join(json.dumps({"tokens": [w for w, _ in s], "tags": [t for _, t in s]})
                                                    + "\n" for s in sentences).encode())
        for path in (conll, jsonl):
            read = tagged_files.read_tagged_file(path)
            expected_words = [[w for w, _ in s] for s in sentences]
            if path == conll and any(w == "-DOCSTART-" for s in expected_words for w in s):
                continue  # a line whose token is -DOCSTART- separates documents
            assert read.words == expected_words and read.tags == [[t for _, t in s] for s in sentences]


# ---- texts, not bytes ----------------------------------------------------------------------------
# The byte mutations above cannot make a lone surrogate (only a JSON `\ud800` escape can), nor a 10,000-character
# word: texts drawn from awkward characters, written in each reader's format, reach the readers' text checks.
# A text a reader hands on must be one the tokenizer can take (a lone surrogate is a TypeError there).

AWKWARD = ["\ud800", "\udfff", "\udc80", "\x00", "\ufeff", "\u200f", "\u202e", "\u2066", "\u0301", "e\u0301",
           "\u2028", "\u00a0", " ", ",", '"', "a", "film", "w" * 10_000]
awkward_texts = st.lists(st.sampled_from(AWKWARD) | st.text(max_size=4), min_size=1, max_size=5).map("".join)
TEXT_BOUNDED = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def whole(text: str) -> bool:
    return lone_surrogate(text) is None


_TOKENIZER = []


def tokenizes(texts) -> None:
    """The embedded tokenizer takes every text (it raises a TypeError on a lone surrogate)."""
    if not _TOKENIZER:
        _TOKENIZER.append(load_tokenizer(embedded_model_path()))
    _TOKENIZER[0].encode_batch([t for t in texts if t is not None])


def through_json(text: str) -> str:
    """The text a JSON reader gets back: two lone surrogates that make a pair come back as one character."""
    return json.loads(json.dumps(text))


def one_line(text: str) -> str:
    """A text as one TSV field: no tab, no line break."""
    return re.sub("[\t\r\n]", " ", text)


def in_bytes(text: str) -> bytes:
    """As a program that does not check would write it: a surrogate as the three bytes UTF-8 forbids."""
    return text.encode("utf-8", "surrogatepass")


@pytest.mark.timeout(300)
@TEXT_BOUNDED
@given(texts=st.lists(awkward_texts, min_size=1, max_size=4), skip_bad=st.booleans())
def test_jsonl_tables_keep_every_whole_text_and_name_every_other(texts, skip_bad):
    with tempfile.TemporaryDirectory() as folder:
        path = write(folder, "data.jsonl", "".join(json.dumps({"text": t, "label": k % 2}) + "\n"
                                                   for k, t in enumerate(texts)).encode())
        texts = list(map(through_json, texts))
        good = [t for t in texts if t.strip() and whole(t)]
        bad_lines = [k + 1 for k, t in enumerate(texts) if not (t.strip() and whole(t))]
        examples = loads_or_names_the_file(lambda: read_table_file(path, ["text"], "label", skip_bad=skip_bad), path)
        if examples is None:
            assert bad_lines and not skip_bad
            with pytest.raises(DataError) as error:
                read_table_file(path, ["text"], "label")
            assert all(f"line {n}: " in str(error.value) for n in bad_lines), str(error.value)
            return
        assert examples.texts_a == good and examples.num_skipped == len(bad_lines)
        tokenizes(examples.texts_a)


@pytest.mark.timeout(300)
@TEXT_BOUNDED
@given(texts=st.lists(awkward_texts, min_size=1, max_size=4), kind=st.sampled_from(["csv", "tsv"]),
       skip_bad=st.booleans())
def test_csv_and_tsv_tables_give_whole_texts_or_a_data_error(texts, kind, skip_bad):
    with tempfile.TemporaryDirectory() as folder:
        if kind == "csv":
            buffer = io.StringIO()
            csv.writer(buffer).writerows([["text", "label"], *([t, k % 2] for k, t in enumerate(texts))])
            content = in_bytes(buffer.getvalue())
        else:
            content = in_bytes("text\tlabel\n" + "".join(f"{one_line(t)}\t{k % 2}\n" for k, t in enumerate(texts)))
        path = write(folder, f"data.{kind}", content)
        examples = loads_or_names_the_file(lambda: read_table_file(path, ["text"], "label", skip_bad=skip_bad), path)
        if examples is not None:
            assert all(whole(t) and t.strip() for t in examples.texts_a)
            assert len(examples) == examples.num_read - examples.num_skipped
            tokenizes(examples.texts_a)


@pytest.mark.timeout(300)
@TEXT_BOUNDED
@given(texts=st.lists(awkward_texts, min_size=1, max_size=4), skip_bad=st.booleans())
def test_glue_tsv_gives_whole_texts_or_a_data_error(texts, skip_bad):
    with tempfile.TemporaryDirectory() as folder:
        rows = "".join(f"{k}\t{one_line(t)}\ta hypothesis\tentailment\n" for k, t in enumerate(texts))
        path = write(folder, "RTE/train.tsv", in_bytes("index\tsentence1\tsentence2\tlabel\n" + rows))
        examples = loads_or_names_the_file(lambda: read_glue_split("rte", folder, "train", skip_bad=skip_bad), path)
        if examples is not None:
            assert all(whole(t) for t in examples.texts_a) and len(examples) == examples.num_read - examples.num_skipped
            tokenizes(examples.texts_a)


@pytest.mark.timeout(300)
@TEXT_BOUNDED
@given(questions=st.lists(st.tuples(awkward_texts, awkward_texts), min_size=1, max_size=3), skip_bad=st.booleans())
def test_squad_keeps_every_whole_question_and_names_every_other(questions, skip_bad):
    paragraphs = [{"context": f"{before} Paris", "qas": [{"id": f"q{k}", "question": question, "answers": [
        {"text": "Paris", "answer_start": len(through_json(before)) + 1}]}]}  # as the file reads: JSON joins a pair
        for k, (question, before) in enumerate(questions)]  # of escaped surrogates into one character
    seen = [(through_json(question), through_json(before)) for question, before in questions]
    good = [f"q{k}" for k, (question, before) in enumerate(seen) if question.strip() and whole(question + before)]
    with tempfile.TemporaryDirectory() as folder:
        path = write(folder, "train.json", json.dumps({"version": "1.1", "data": [
            {"title": "t", "paragraphs": paragraphs}]}).encode())
        read = loads_or_names_the_file(lambda: read_squad(path, skip_bad=skip_bad), path)
        if read is None:
            assert len(good) < len(questions) and not skip_bad
            return
        assert [q.id for q in read[0]] == good and len(read[1].skipped) == len(questions) - len(good)
        tokenizes([q.question for q in read[0]] + [q.context for q in read[0]])


@pytest.mark.timeout(300)
@TEXT_BOUNDED
@given(texts=st.lists(awkward_texts, min_size=1, max_size=4), kind=st.sampled_from(["txt", "jsonl"]))
def test_pretraining_text_keeps_every_whole_paragraph_or_names_every_bad_line(texts, kind):
    with tempfile.TemporaryDirectory() as folder:
        if kind == "jsonl":
            path = write(folder, "corpus.jsonl", "".join(json.dumps({"text": t}) + "\n" for t in texts).encode())
            texts = list(map(through_json, texts))
            bad_lines = [k + 1 for k, t in enumerate(texts) if not whole(t)]
        else:
            path = write(folder, "corpus.txt", in_bytes("".join(t.replace("\r", " ") + "\n\n" for t in texts)))
            bad_lines = None  # a text's own line breaks move the lines
        documents = loads_or_names_the_file(lambda: list(read_documents(str(path))), path)
        if documents is None:
            assert not all(map(whole, texts))
            if bad_lines:
                with pytest.raises(DataError) as error:
                    list(read_documents(str(path)))
                assert all(f"line {n}: " in str(error.value) for n in bad_lines), str(error.value)
            return
        assert all(map(whole, texts))
        if kind == "jsonl":
            expected = [[p.strip() for p in t.splitlines() if p.strip()] for t in texts]
            assert documents == [d for d in expected if d]
        tokenizes([p for document in documents for p in document])


@pytest.mark.timeout(300)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(awkward_texts, min_size=1, max_size=4))
def test_tokenizer_training_trains_on_whole_texts_or_names_the_file(texts):
    with tempfile.TemporaryDirectory() as folder:
        path = write(folder, "corpus.jsonl", "".join(json.dumps({"text": t}) + "\n" for t in texts).encode())
        texts = list(map(through_json, texts))
        output = Path(folder) / "out" / "tokenizer.json"
        trained = loads_or_names_the_file(lambda: train_wordpiece([str(path)], output, vocab_size=60, quiet=True),
                                          path)
        if trained is None:
            assert not output.exists()
            assert not all(map(whole, texts)) or not any(t.strip() for t in texts)
            return
        assert all(map(whole, texts))
        trained[0].encode_batch(texts)


@pytest.mark.timeout(300)
@TEXT_BOUNDED
@given(words=st.lists(awkward_texts, min_size=1, max_size=4), skip_bad=st.booleans())
def test_tagged_jsonl_keeps_every_whole_sentence_and_names_every_other(words, skip_bad):
    from bertfit.tasks.tagged_files import read_tagged_file

    sentences = [[w] for w in words]  # a sentence a word, so that a bad word names its own line
    with tempfile.TemporaryDirectory() as folder:
        path = write(folder, "data.jsonl", "".join(json.dumps({"tokens": s, "tags": ["O"] * len(s)}) + "\n"
                                                   for s in sentences).encode())
        seen = [through_json(w) for w in words]
        bad_lines = [k + 1 for k, w in enumerate(seen) if not (w and whole(w))]
        read = loads_or_names_the_file(lambda: read_tagged_file(path, skip_bad=skip_bad), path)
        if read is None:
            assert bad_lines and not skip_bad
            with pytest.raises(DataError) as error:
                read_tagged_file(path)
            assert all(f"line {n}: " in str(error.value) for n in bad_lines[:20]), str(error.value)
            return
        assert read.words == [[w] for w in seen if w and whole(w)] and read.num_skipped == len(bad_lines)
        tokenizes([w for s in read.words for w in s])


@pytest.mark.timeout(300)
@TEXT_BOUNDED
@given(texts=st.lists(awkward_texts, min_size=1, max_size=4), kind=st.sampled_from(["txt", "jsonl"]))
def test_texts_to_embed_are_whole_texts_or_a_data_error(texts, kind):
    from bertfit.embedding_files import read_texts

    with tempfile.TemporaryDirectory() as folder:
        if kind == "jsonl":
            path = write(folder, "texts.jsonl", "".join(json.dumps({"text": t}) + "\n" for t in texts).encode())
        else:
            path = write(folder, "texts.txt", in_bytes("".join(re.sub("[\r\n\u2028\u2029\x0b\x0c\x1c-\x1e\x85]", " ", t)
                                                               + "\n" for t in texts)))
        read = loads_or_names_the_file(lambda: read_texts(path), path)
        if read is not None:
            assert all(whole(t) and t.strip() for t in read)
            tokenizes(read)
