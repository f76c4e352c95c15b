"""The mistakes matrix of the training commands (glue, squad, pretrain, tokenizer, evaluate-squad, report, demo):
each ordinary mistake stops with exit 2 and one error line, no traceback, no file changed (tests/mistakes.py).

An empty training or evaluation set once made the loop spin forever over zero batches: every case has a
timeout, so a command that hangs fails here.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mistakes import refused

from bertfit.pretrained import embedded_model_path

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models (conftest)

FAST = ["--epochs", "1", "--batch-size", "4", "--precision", "fp32", "--quiet"]
SQUAD_WINDOWS = ["--max-seq-length", "48", "--doc-stride", "16", "--max-query-length", "16"]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BERTFIT_CACHE", str(tmp_path / "cache"))  # outside the watched folders


@pytest.fixture
def data(tmp_path) -> Path:
    """Good files of every kind the commands read, in one folder the tests watch."""
    folder = tmp_path / "data"
    (folder / "SST-2").mkdir(parents=True)
    rows = "".join(f"{'a fine film' if i % 2 else 'a dull film'} number {i} .\t{i % 2}\n" for i in range(12))
    for split in ("train", "dev"):
        (folder / "SST-2" / f"{split}.tsv").write_text("sentence\tlabel\n" + rows)
    (folder / "train.csv").write_text("text,label\n" + "".join(f"text {i},{i % 2}\n" for i in range(12)))
    (folder / "dev.csv").write_text("text,label\n" + "".join(f"text {i},{i % 2}\n" for i in range(6)))
    squad_file(folder / "squad.json", 6)
    (folder / "text.txt").write_text("\n\n".join(f"the river runs north number {i} .\nkings built towers ."
                                                for i in range(20)) + "\n")
    return folder


def squad_file(path: Path, n: int, bad: int = 0) -> Path:
    """n good questions and `bad` whose answer_start points one character too far."""
    paragraphs = []
    for i in range(n + bad):
        context = f"person {i} lives in paris and works as a baker ."
        start = context.index("paris") + (i >= n)
        paragraphs.append({"context": context, "qas": [{"id": f"q{i}", "question": f"where does person {i} live ?",
                                                        "answers": [{"text": "paris", "answer_start": start}]}]})
    path.write_text(json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": paragraphs}]}))
    return path


def unrelated_folder(path: Path) -> Path:
    """A folder of the user's that bertfit did not make, with names a run writes too."""
    (path / "checkpoints").mkdir(parents=True)
    (path / "checkpoints" / "notes.txt").write_text("mine")
    (path / "results.json").write_text('{"mine": true}')
    (path / "thesis.tex").write_text("mine")
    return path


def glue(data, out, model, *more):
    return ["glue", "sst2", "--data-dir", data, "--model", model, "--output-dir", out, *FAST, *more]


def squad(train, dev, out, model, *more):
    return ["squad", "--train-file", train, "--eval-file", dev, "--model", model, "--output-dir", out, *FAST,
            *SQUAD_WINDOWS, *more]


def pretrain(train, out, *more):
    return ["pretrain", "--train-file", train, "--validation-fraction", "0.2", "--size", "tiny", "--tokenizer",
            embedded_model_path() / "tokenizer.json", "--output-dir", out, "--max-seq-length", "16", "--max-steps",
            "2", "--batch-size", "2", "--precision", "fp32", "--quiet", *more]


# ---- glue ----------------------------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_glue_refuses_a_data_dir_without_the_tasks_files(tmp_path, data, tiny_model, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    message = refused(glue(empty, tmp_path / "out", tiny_model), watch=[empty, tmp_path / "out"], capsys=capsys)
    assert "SST-2/train.tsv" in message and "not found" in message


@pytest.mark.timeout(120)
@pytest.mark.parametrize("split, rows, message", [
    ("train", "a film\tmaybe\n" * 3, "train.tsv: no examples to train on (3 read, 3 skipped as bad)"),
    ("dev", "\tmaybe\n" * 2, "dev.tsv: no examples to evaluate on (2 read, 2 skipped as bad)"),
])
def test_glue_refuses_a_training_or_evaluation_set_whose_every_row_is_skipped(tmp_path, data, tiny_model, capsys,
                                                                               split, rows, message):
    (data / "SST-2" / f"{split}.tsv").write_text("sentence\tlabel\n" + rows)
    assert message in refused(glue(data, tmp_path / "out", tiny_model, "--skip-bad-examples"),
                              watch=[data, tmp_path / "out"], capsys=capsys)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("train, message", [
    ("missing.csv", "missing.csv: file not found"),
    ("header.csv", "header.csv: no examples to train on (0 read, 0 skipped as bad)"),  # fine-tuning.md's words
    ("bad.csv", "bad.csv: no examples to train on (2 read, 2 skipped as bad)"),
])
def test_glue_refuses_own_files_missing_empty_or_all_bad(tmp_path, data, tiny_model, capsys, train, message):
    (data / "header.csv").write_text("text,label\n")
    (data / "bad.csv").write_text("text,label\n,1\nonly one column\n")
    argv = ["glue", "custom", "--train-file", data / train, "--eval-file", data / "dev.csv", "--text-columns", "text",
            "--label-column", "label", "--model", tiny_model, "--output-dir", tmp_path / "out", "--skip-bad-examples",
            *FAST]
    assert message in refused(argv, watch=[data, tmp_path / "out"], capsys=capsys)


@pytest.mark.timeout(120)
def test_glue_refuses_an_evaluation_file_of_a_header_alone_in_the_documented_words(tmp_path, data, tiny_model, capsys):
    (data / "SST-2" / "dev.tsv").write_text("sentence\tlabel\n")
    message = refused(glue(data, tmp_path / "out", tiny_model), watch=[data, tmp_path / "out"], capsys=capsys)
    assert "dev.tsv: no examples to evaluate on (0 read, 0 skipped as bad)" in message


@pytest.mark.timeout(120)
def test_glue_refuses_a_validation_fraction_that_holds_out_nothing_before_the_model_loads(tmp_path, data, capsys):
    """The model named does not exist: the empty held-out set is what the user hears, as reliability.md says."""
    message = refused(glue(data, tmp_path / "out", tmp_path / "no-model", "--validation-fraction", "0.01"),
                      watch=[data, tmp_path / "out"], capsys=capsys)
    assert "--validation-fraction 0.01 of 12 training examples holds out 0: nothing to choose on" in message


def own_files(data, train, out, model, *more):
    return ["glue", "custom", "--train-file", train, "--eval-file", data / "dev.csv", "--text-columns", "text",
            "--label-column", "label", "--model", model, "--output-dir", out, *FAST, *more]


SURROGATE_ROW = '{"text": "a \\ud800 film", "label": "1"}\n'  # a JSON escape: the one way a file holds one


@pytest.mark.timeout(120)
@pytest.mark.parametrize("skip, message", [
    ([], "train.jsonl, line 2: 'text' holds a lone surrogate ('\\ud800' at character 3), which is no character"),
    (["--skip-bad-examples"], "train.jsonl: no examples to train on (2 read, 2 skipped as bad)"),
])
def test_glue_refuses_own_rows_with_a_lone_surrogate_by_line_or_skips_and_counts_them(tmp_path, data, tiny_model,
                                                                                       capsys, skip, message):
    train = data / "train.jsonl"
    train.write_text('{"text": "", "label": "0"}\n' + SURROGATE_ROW if skip else '{"text": "a", "label": "0"}\n'
                     + SURROGATE_ROW)
    assert message in refused(own_files(data, train, tmp_path / "out", tiny_model, *skip),
                              watch=[data, tmp_path / "out"], capsys=capsys)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("task, labels, message", [
    ("custom", "1", "--labels needs two or more different labels, not 1"),
    ("custom", "0,1,0", "--labels needs two or more different labels, not 0, 1, 0"),
    ("custom", "pos,neg", "train.csv: 12 bad rows: line 2: label '0' is not one of pos, neg; line 3: "),
    ("sst2", "0,1", "--labels goes with --train-file"),
])
def test_glue_refuses_labels_it_cannot_use_and_rows_outside_them(tmp_path, data, tiny_model, capsys, task, labels,
                                                                   message):
    argv = (own_files(data, data / "train.csv", tmp_path / "out", tiny_model, "--labels", labels) if task == "custom"
            else glue(data, tmp_path / "out", tiny_model, "--labels", labels))
    assert message in refused(argv, watch=[data, tmp_path / "out"], capsys=capsys)


@pytest.mark.timeout(120)
def test_glue_names_every_bad_row_of_a_file_in_one_error(tmp_path, data, tiny_model, capsys):
    rows = "".join(f"film {i}\t{i % 2}\n" if i % 3 else f"film {i}\tmaybe\n" for i in range(1, 12))
    (data / "SST-2" / "train.tsv").write_text("sentence\tlabel\n" + rows)
    message = refused(glue(data, tmp_path / "out", tiny_model), watch=[data, tmp_path / "out"], capsys=capsys)
    assert "train.tsv: 3 bad rows: line 4: label 'maybe' is not one of 0, 1; line 7: " in message
    assert "line 10: label 'maybe'" in message and "--skip-bad-examples" in message


@pytest.mark.timeout(120)
@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_glue_refuses_an_output_dir_of_other_files_even_with_overwrite(tmp_path, data, tiny_model, capsys, overwrite):
    out = unrelated_folder(tmp_path / "mine")
    message = refused(glue(data, out, tiny_model, *overwrite), watch=[data, out], capsys=capsys)
    assert "not a bertfit run" in message and "thesis.tex" in message


@pytest.mark.timeout(120)
def test_glue_refuses_an_output_dir_that_is_a_file(tmp_path, data, tiny_model, capsys):
    out = tmp_path / "notes.txt"
    out.write_text("mine")
    assert "a file, not a folder" in refused(glue(data, out, tiny_model), watch=[data, out], capsys=capsys)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("more, message", [
    (["--max-seq-length", "0"], "--max-seq-length"),
    (["--epochs", "-1"], "epochs"),
    (["--max-train-samples", "0"], "--max-train-samples"),
    (["--validation-fraction", "2"], "--validation-fraction"),
    (["--batch-size", "0"], "batch"),
])
def test_glue_refuses_numbers_out_of_range(tmp_path, data, tiny_model, capsys, more, message):
    assert message in refused(glue(data, tmp_path / "out", tiny_model, *more), watch=[data, tmp_path / "out"],
                              capsys=capsys)


@pytest.mark.timeout(120)
def test_glue_refuses_an_unknown_task(tmp_path, data, tiny_model, capsys):
    argv = ["glue", "sst5", "--data-dir", data, "--model", tiny_model, "--output-dir", tmp_path / "out", *FAST]
    assert "unknown GLUE task 'sst5'" in refused(argv, watch=[data, tmp_path / "out"], capsys=capsys)


# ---- squad ---------------------------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_squad_refuses_a_file_without_questions(tmp_path, data, tiny_model, capsys):
    empty = data / "empty.json"
    empty.write_text('{"version": "1.1", "data": []}')
    message = refused(squad(empty, data / "squad.json", tmp_path / "out", tiny_model), watch=[data, tmp_path / "out"],
                      capsys=capsys)
    assert "empty.json: no questions to train on (0 read, 0 skipped as bad)" in message


@pytest.mark.timeout(120)
def test_squad_refuses_a_training_file_whose_every_question_is_skipped(tmp_path, data, tiny_model, capsys):
    bad = squad_file(data / "bad.json", 0, bad=3)
    message = refused(squad(bad, data / "squad.json", tmp_path / "out", tiny_model, "--skip-bad-examples"),
                      watch=[data, tmp_path / "out"], capsys=capsys)
    assert "bad.json: no questions to train on (3 read, 3 skipped as bad)" in message


@pytest.mark.timeout(120)
def test_squad_refuses_an_evaluation_file_without_questions(tmp_path, data, tiny_model, capsys):
    empty = data / "empty.json"
    empty.write_text('{"version": "1.1", "data": [{"title": "t", "paragraphs": []}]}')
    message = refused(squad(data / "squad.json", empty, tmp_path / "out", tiny_model),
                      watch=[data, tmp_path / "out"], capsys=capsys)
    assert "empty.json: no questions to evaluate on (0 read, 0 skipped as bad)" in message


@pytest.mark.timeout(120)
def test_squad_refuses_a_question_with_a_lone_surrogate_naming_it(tmp_path, data, tiny_model, capsys):
    bad = data / "bad.json"
    bad.write_text((data / "squad.json").read_text().replace("where does person 2 live ?", "where \\udc80 ?"))
    message = refused(squad(bad, data / "squad.json", tmp_path / "out", tiny_model), watch=[data, tmp_path / "out"],
                      capsys=capsys)
    assert "bad.json: question 'q2' (article 't'): the question holds a lone surrogate" in message


@pytest.mark.timeout(120)
def test_squad_refuses_a_missing_training_file(tmp_path, data, tiny_model, capsys):
    message = refused(squad(data / "missing.json", data / "squad.json", tmp_path / "out", tiny_model),
                      watch=[data, tmp_path / "out"], capsys=capsys)
    assert "missing.json" in message


@pytest.mark.timeout(120)
@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_squad_refuses_an_output_dir_of_other_files_even_with_overwrite(tmp_path, data, tiny_model, capsys,
                                                                         overwrite):
    out = unrelated_folder(tmp_path / "mine")
    message = refused(squad(data / "squad.json", data / "squad.json", out, tiny_model, *overwrite),
                      watch=[data, out], capsys=capsys)
    assert "not a bertfit run" in message


@pytest.mark.timeout(120)
@pytest.mark.parametrize("more, message", [
    (["--version", "3"], "--version"),
    (["--max-train-samples", "-1"], "--max-train-samples"),
    (["--max-eval-samples", "0"], "--max-eval-samples"),
    (["--n-best", "0"], "--n-best"),
    (["--max-answer-length", "0"], "--max-answer-length"),
    (["--doc-stride", "0"], "doc_stride"),
    (["--lr", "-1"], "lr"),
])
def test_squad_refuses_numbers_out_of_range_and_unknown_versions(tmp_path, data, tiny_model, capsys, more, message):
    argv = squad(data / "squad.json", data / "squad.json", tmp_path / "out", tiny_model, *more)
    assert message in refused(argv, watch=[data, tmp_path / "out"], capsys=capsys)


# ---- pretrain ------------------------------------------------------------------------------------

@pytest.mark.timeout(120)
@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("", "corpus.txt: no text to tokenize (read 0 documents, 0 paragraphs, 0 words, 0 characters; 0 title/heading"),
    ("\n\n = Title = \n\n", "no text to tokenize (read 0 documents, 0 paragraphs, 0 words, 0 characters; 1 title"),
])
def test_pretrain_refuses_missing_or_empty_text(tmp_path, data, capsys, content, message):
    train = data / "corpus.txt"
    if content is not None:
        train.write_text(content)
    assert message in refused(pretrain(train, tmp_path / "out"), watch=[data, tmp_path / "out"], capsys=capsys)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name, content, message", [
    ("corpus.jsonl", '{"text": "a river"}\n{"text": "a \\ud800 river"}\n',
     "corpus.jsonl, line 2: 'text' holds a lone surrogate ('\\ud800' at character 3)"),
    ("corpus.txt", b"a river .\n\xff river .\nthe sea .\n\xc3 sea .\n",
     "corpus.txt: 2 bad lines: line 2: not UTF-8 text (byte 0 of the line); give a UTF-8 text file; line 4: "),
])
def test_pretrain_and_tokenizer_name_every_bad_line_of_their_text(tmp_path, data, capsys, name, content, message):
    train = data / name
    train.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert message in refused(pretrain(train, tmp_path / "out"), watch=[data, tmp_path / "out"], capsys=capsys)
    argv = ["tokenizer", "--train-file", train, "--output", tmp_path / "out" / "t.json", "--quiet"]
    assert message in refused(argv, watch=[data, tmp_path / "out"], capsys=capsys)


@pytest.mark.timeout(120)
def test_pretrain_refuses_text_too_short_for_one_block_naming_the_file(tmp_path, data, capsys):
    train = data / "short.txt"
    train.write_text("one .\n\ntwo .\n\nthree .\n\nfour .\n\nfive .\n")
    message = refused(pretrain(train, tmp_path / "out", "--max-seq-length", "64"), watch=[data, tmp_path / "out"],
                      capsys=capsys)
    assert "short.txt" in message and "no blocks" in message


@pytest.mark.timeout(120)
@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_pretrain_refuses_an_output_dir_of_other_files_even_with_overwrite(tmp_path, data, capsys, overwrite):
    out = unrelated_folder(tmp_path / "mine")
    message = refused(pretrain(data / "text.txt", out, *overwrite), watch=[data, out], capsys=capsys)
    assert "not a bertfit run" in message


@pytest.mark.timeout(120)
@pytest.mark.parametrize("more, message", [
    (["--size", "huge"], "huge"),
    (["--max-seq-length", "2"], "max-seq-length"),
    (["--mlm-probability", "1.5"], "--mlm-probability"),
    (["--validation-fraction", "1.5"], "fraction"),
])
def test_pretrain_refuses_numbers_out_of_range_and_unknown_sizes(tmp_path, data, capsys, more, message):
    assert message in refused(pretrain(data / "text.txt", tmp_path / "out", *more), watch=[data, tmp_path / "out"],
                              capsys=capsys)


@pytest.fixture
def bpe(tmp_path, data) -> Path:
    """A byte-level BPE tokenizer (`bertfit tokenizer --kind bpe`), outside the watched folders."""
    from bertfit.tokenizer_training import train_bpe

    train_bpe([str(data / "text.txt")], tmp_path / "bpe.json", vocab_size=300, min_frequency=1, quiet=True)
    return tmp_path / "bpe.json"


def roberta(train, out, tokenizer, *more):
    return ["pretrain", "--train-file", train, "--validation-fraction", "0.2", "--size", "tiny", "--architecture",
            "roberta", "--tokenizer", tokenizer, "--output-dir", out, "--max-seq-length", "16", "--max-steps", "2",
            "--batch-size", "2", "--precision", "fp32", "--quiet", *more]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("", "corpus.txt: no text to tokenize (read 0 documents, 0 paragraphs, 0 words, 0 characters; 0 title/heading"),
    ("\n\n = Title = \n\n", "no text to tokenize (read 0 documents, 0 paragraphs, 0 words, 0 characters; 1 title"),
])
def test_pretrain_roberta_refuses_missing_or_empty_text(tmp_path, data, bpe, capsys, content, message):
    train = data / "corpus.txt"
    if content is not None:
        train.write_text(content)
    assert message in refused(roberta(train, tmp_path / "out", bpe), watch=[data, tmp_path / "out"], capsys=capsys)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("more, message", [
    (["--nsp"], "--nsp (next-sentence prediction) is BERT's: --architecture roberta pretrains with masked-language "
                "modelling alone"),
    (["--tokenizer", "WORDPIECE"], "tokenizer.json: a wordpiece tokenizer, and --architecture roberta takes a bpe one "
                                   "(`bertfit tokenizer --kind bpe`); architectures: bert (a --kind wordpiece "
                                   "tokenizer), roberta (a --kind bpe tokenizer), modernbert (a --kind bpe tokenizer)"),
    (["--max-seq-length", "2"], "max-seq-length"),
    (["--validation-fraction", "0.99"], "too few to hold out"),
    # the last --architecture wins: ModernBERT's refusals are RoBERTa's
    (["--architecture", "modernbert", "--nsp"], "--nsp (next-sentence prediction) is BERT's: --architecture "
                                                "modernbert pretrains with masked-language modelling alone"),
    (["--architecture", "modernbert", "--tokenizer", "WORDPIECE"],
     "tokenizer.json: a wordpiece tokenizer, and --architecture modernbert takes a bpe one"),
    (["--architecture", "modernbert", "--mlm-probability", "1.5"], "--mlm-probability must be between 0 and 1"),
    (["--architecture", "ModernBERT"], "argument --architecture: invalid choice: 'ModernBERT'"),
])
def test_pretrain_roberta_and_modernbert_refuse_what_they_do_not_do(tmp_path, data, bpe, capsys, more, message):
    more = [str(embedded_model_path() / "tokenizer.json") if m == "WORDPIECE" else m for m in more]
    assert message in refused(roberta(data / "text.txt", tmp_path / "out", bpe, *more), watch=[data, tmp_path / "out"],
                              capsys=capsys)


@pytest.mark.timeout(120)
def test_pretrain_refuses_an_architecture_for_a_model_it_continues(tmp_path, data, capsys):
    argv = ["pretrain", "--train-file", data / "text.txt", "--validation-fraction", "0.2", "--model", "embedded",
            "--architecture", "bert", "--output-dir", tmp_path / "out", "--quiet"]
    assert "--model continues pretraining the model's own architecture: leave --architecture out" in refused(
        argv, watch=[data, tmp_path / "out"], capsys=capsys)


@pytest.mark.timeout(120)
def test_pretrain_bert_refuses_a_bpe_tokenizer(tmp_path, data, bpe, capsys):
    argv = pretrain(data / "text.txt", tmp_path / "out")
    argv[argv.index("--tokenizer") + 1] = bpe
    assert "bpe.json: a bpe tokenizer, and --architecture bert takes a wordpiece one" in refused(
        argv, watch=[data, tmp_path / "out", bpe], capsys=capsys)


# ---- tokenizer -----------------------------------------------------------------------------------

@pytest.mark.timeout(120)
@pytest.mark.parametrize("content, message", [(None, "no such file"),
                                              ("\n \n", "corpus.txt: no text to train a tokenizer on (read 0 documents")])
@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_tokenizer_refuses_missing_or_empty_text(tmp_path, data, capsys, content, message, kind):
    train = data / "corpus.txt"
    if content is not None:
        train.write_text(content)
    argv = ["tokenizer", "--train-file", train, "--output", tmp_path / "out" / "t.json", "--quiet", "--kind", kind]
    assert message in refused(argv, watch=[data, tmp_path / "out"], capsys=capsys)


@pytest.mark.timeout(120)
def test_tokenizer_refuses_to_replace_a_file_that_is_not_a_tokenizer(tmp_path, data, capsys):
    mine = tmp_path / "mine.json"
    mine.write_text('{"mine": true}')
    argv = ["tokenizer", "--train-file", data / "text.txt", "--output", mine, "--quiet"]
    assert "not a tokenizer file" in refused(argv, watch=[data, mine], capsys=capsys)


@pytest.mark.timeout(120)
def test_tokenizer_refuses_to_replace_a_tokenizer_it_did_not_write(tmp_path, data, capsys):
    from bertfit.pretrained import embedded_model_path

    downloaded = tmp_path / "tokenizer.json"  # another tool's: BERT's normalizer and pre-tokenizer
    downloaded.write_bytes((embedded_model_path() / "tokenizer.json").read_bytes())
    argv = ["tokenizer", "--train-file", data / "text.txt", "--output", downloaded, "--quiet"]
    assert "did not write" in refused(argv, watch=[data, downloaded], capsys=capsys)


@pytest.mark.timeout(120)
def test_tokenizer_refuses_an_output_that_is_a_folder(tmp_path, data, capsys):
    argv = ["tokenizer", "--train-file", data / "text.txt", "--output", data, "--quiet"]
    assert "a folder" in refused(argv, watch=[data], capsys=capsys)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("more, message", [(["--vocab-size", "3"], "--vocab-size"),
                                           (["--min-frequency", "0"], "--min-frequency"),
                                           (["--kind", "bpe", "--vocab-size", "200"],
                                            "--vocab-size must exceed the 261 tokens of every byte-level BPE "
                                            "(5 special, 256 bytes), not 200"),
                                           (["--kind", "bpe", "--lowercase"], "--lowercase is for --kind wordpiece"),
                                           (["--kind", "unigram"], "invalid choice: 'unigram'")])
def test_tokenizer_refuses_numbers_out_of_range(tmp_path, data, capsys, more, message):
    argv = ["tokenizer", "--train-file", data / "text.txt", "--output", tmp_path / "out" / "t.json", "--quiet", *more]
    assert message in refused(argv, watch=[data, tmp_path / "out"], capsys=capsys)


# ---- evaluate-squad ------------------------------------------------------------------------------

@pytest.mark.timeout(60)
@pytest.mark.parametrize("data_file, predictions, message", [
    ("missing.json", '{"q0": "paris"}', "missing.json"),
    ("squad.json", None, "predictions.json: file not found"),
    ("squad.json", '["paris"]', "must be a JSON object"),
    ("squad.json", "{not json", "not valid JSON"),
    ("text.txt", '{"q0": "paris"}', "text.txt: not valid JSON"),
])
def test_evaluate_squad_refuses_missing_or_malformed_files(tmp_path, data, capsys, data_file, predictions, message):
    if predictions is not None:
        (data / "predictions.json").write_text(predictions)
    argv = ["evaluate-squad", data / data_file, data / "predictions.json"]
    assert message in refused(argv, watch=[data], capsys=capsys)


# ---- report --------------------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_report_refuses_a_missing_folder_and_one_without_runs(tmp_path, data, capsys):
    assert "missing" in refused(["report", tmp_path / "missing"], watch=[data], capsys=capsys)
    assert str(data) in refused(["report", data], watch=[data], capsys=capsys)


# ---- demo ----------------------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_demo_refuses_an_output_dir_of_other_files(tmp_path, capsys):
    out = unrelated_folder(tmp_path / "mine")
    assert "not a bertfit run" in refused(["demo", "--output-dir", out, "--quiet"], watch=[out], capsys=capsys)


@pytest.mark.timeout(60)
def test_demo_refuses_an_output_dir_that_is_a_file(tmp_path, capsys):
    out = tmp_path / "notes.txt"
    out.write_text("mine")
    assert "a file, not a folder" in refused(["demo", "--output-dir", out, "--quiet"], watch=[out], capsys=capsys)


# ---- ner -----------------------------------------------------------------------------------------

def ner(train, evaluation, out, *more) -> list:
    return ["ner", "--train-file", train, "--eval-file", evaluation, "--output-dir", out, *FAST, *more]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name, content, message", [
    ("missing-tag.conll", "John\tB-PER\nruns\n\n", "missing-tag.conll, line 2: a token line needs the token and its tag"),
    ("outside.conll", "John\tB-PER\nruns\tVERB\n\n", "outside.conll, line 2: tag 'VERB' is outside the bio scheme"),
    ("i-after-o.conll", "the\tO\nJohn\tI-PER\n\n", "i-after-o.conll, line 2: I-PER after O does not parse in bio"),
    ("mixed.conll", "John\tB-PER\nruns O\n\n", "mixed.conll, line 2: columns separated by spaces"),
    ("empty-sentence.jsonl", '{"tokens": [], "tags": []}\n', "empty-sentence.jsonl, line 1: an empty sentence"),
    ("empty.conll", "", "empty.conll: no sentences"),
    ("absent.conll", None, "absent.conll: file not found"),
])
def test_ner_refuses_a_bad_line_naming_file_and_line_before_any_work(tmp_path, data, tiny_model, capsys, name,
                                                                      content, message):
    good = data / "good.conll"
    good.write_text("John\tB-PER\nruns\tO\n\nParis\tB-LOC\n\n")
    bad = data / name
    if content is not None:
        bad.write_text(content)
    out = tmp_path / "out"
    for train, evaluation in ((bad, good), (good, bad)):
        assert message in refused(ner(train, evaluation, out, "--model", tiny_model), watch=[data, out],
                                  capsys=capsys)


@pytest.mark.timeout(120)
def test_ner_refuses_a_file_whose_every_sentence_is_skipped(tmp_path, data, tiny_model, capsys):
    (data / "bad.conll").write_text("John\tB-PER\nruns\n\n")
    (data / "good.conll").write_text("Paris\tB-LOC\n\n")
    message = refused(ner(data / "bad.conll", data / "good.conll", tmp_path / "out", "--model", tiny_model,
                          "--skip-bad-examples"), watch=[data, tmp_path / "out"], capsys=capsys)
    assert "bad.conll: no sentences to train on (1 read, 1 skipped as bad)" in message


@pytest.mark.timeout(120)
def test_tag_refuses_an_empty_text_and_a_run_of_another_kind(tmp_path, tiny_model, capsys):
    assert "the text is empty" in refused(["tag", tiny_model, " "], watch=[tiny_model], capsys=capsys)
    assert "not a token-classification run" in refused(["tag", tiny_model, "Paris"], watch=[tiny_model],
                                                        capsys=capsys)
