"""Every reader of user data names every bad record in its one error (the first MAX_NAMED, then how many more),
so that a user mends a file in one go, not one run per row; with skip_bad it counts the same records."""
import json

import pytest

from bertfit.errors import DataError
from bertfit.tasks.bad_rows import MAX_NAMED
from bertfit.tasks.glue_tsv import read_glue_split
from bertfit.tasks.squad import read_squad
from bertfit.tasks.table_files import read_table_file
from bertfit.tasks.text import read_documents
from bertfit.tokenizer_training import train_wordpiece


def glue_tsv(folder, bad_lines: set[int], rows: int):
    path = folder / "SST-2" / "train.tsv"
    path.parent.mkdir()
    lines = ["sentence\tlabel"] + [f"film {n}\tmaybe" if n in bad_lines else f"film {n}\t{n % 2}"
                                   for n in range(2, rows + 2)]
    path.write_text("\n".join(lines) + "\n")
    return path, lambda skip: read_glue_split("sst2", folder, "train", skip_bad=skip)


def own_csv(folder, bad_lines: set[int], rows: int):
    path = folder / "train.csv"
    lines = ["text,label"] + [f",{n % 2}" if n in bad_lines else f"film {n},{n % 2}" for n in range(2, rows + 2)]
    path.write_text("\n".join(lines) + "\n")
    return path, lambda skip: read_table_file(path, ["text"], "label", skip_bad=skip)


def own_jsonl(folder, bad_lines: set[int], rows: int):
    path = folder / "train.jsonl"
    record = lambda n: '{"text": "film \\ud800"}' if n in bad_lines else json.dumps({"text": f"film {n}", "label": n % 2})
    path.write_text("".join(record(n) + "\n" for n in range(1, rows + 1)))
    return path, lambda skip: read_table_file(path, ["text"], "label", skip_bad=skip)


def squad_json(folder, bad_lines: set[int], rows: int):
    """Question n is bad (its answer_start one too far) when n is in `bad_lines`."""
    path = folder / "train.json"
    paragraphs = [{"context": f"person {n} lives in paris .", "qas": [{"id": f"q{n}", "question": "where ?", "answers": [
        {"text": "paris", "answer_start": f"person {n} lives in ".__len__() + (n in bad_lines)}]}]}
        for n in range(1, rows + 1)]
    path.write_text(json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": paragraphs}]}))
    return path, lambda skip: read_squad(path, skip_bad=skip)[1]


def pretraining_text(folder, bad_lines: set[int], rows: int):
    path = folder / "corpus.txt"
    path.write_bytes(b"".join(b"caf\xe9 .\n" if n in bad_lines else b"a river runs .\n" for n in range(1, rows + 1)))
    return path, lambda skip: list(read_documents(str(path)))


def pretraining_jsonl(folder, bad_lines: set[int], rows: int):
    path = folder / "corpus.jsonl"
    path.write_text("".join(("[1]" if n in bad_lines else '{"text": "a river runs ."}') + "\n"
                            for n in range(1, rows + 1)))
    return path, lambda skip: list(read_documents(str(path)))


def tokenizer_files(folder, bad_lines: set[int], rows: int):
    path = folder / "corpus.jsonl"
    path.write_text("".join(('{"text": "\\udc80 river"}' if n in bad_lines else '{"text": "a river runs ."}') + "\n"
                            for n in range(1, rows + 1)))
    return path, lambda skip: train_wordpiece([str(path)], folder / "tokenizer.json", vocab_size=40, quiet=True)


# reader -> (how one bad record is named, whether it skips with skip_bad)
READERS = {glue_tsv: ("line {}", True), own_csv: ("line {}", True), own_jsonl: ("line {}", True),
           squad_json: ("question 'q{}' (article 't')", True), pretraining_text: ("line {}", False),
           pretraining_jsonl: ("line {}", False), tokenizer_files: ("line {}", False)}


@pytest.mark.parametrize("reader", list(READERS), ids=lambda reader: reader.__name__)
def test_one_error_names_every_bad_record(tmp_path, reader):
    where, skips = READERS[reader]
    bad = {3, 5, 8}
    path, read = reader(tmp_path, bad, rows=9)
    with pytest.raises(DataError) as error:
        read(False)
    message = str(error.value)
    assert message.startswith(f"{path}: 3 bad "), message
    assert all(f"{where.format(n)}: " in message for n in bad), message
    assert not any(f"{where.format(n)}: " in message for n in set(range(1, 10)) - bad), message
    if skips:
        skipped = read(True)
        assert (len(skipped.skipped) if hasattr(skipped, "skipped") else skipped.num_skipped) == 3
    assert not (tmp_path / "tokenizer.json").exists()


@pytest.mark.parametrize("reader", list(READERS), ids=lambda reader: reader.__name__)
def test_past_the_cap_the_error_counts_the_rest(tmp_path, reader):
    where, _ = READERS[reader]
    bad = set(range(2, MAX_NAMED + 7))  # MAX_NAMED + 5 bad records, then a good one
    path, read = reader(tmp_path, bad, rows=MAX_NAMED + 8)
    with pytest.raises(DataError) as error:
        read(False)
    message = str(error.value)
    assert message.startswith(f"{path}: {MAX_NAMED + 5} bad ") and "; and 5 more" in message, message
    assert f"{where.format(MAX_NAMED + 1)}: " in message and f"{where.format(MAX_NAMED + 2)}: " not in message


@pytest.mark.parametrize("reader", list(READERS), ids=lambda reader: reader.__name__)
def test_a_single_bad_record_is_named_as_before(tmp_path, reader):
    where, _ = READERS[reader]
    path, read = reader(tmp_path, {4}, rows=6)
    with pytest.raises(DataError) as error:
        read(False)
    separator = ": " if reader is squad_json else ", "
    assert str(error.value).startswith(f"{path}{separator}{where.format(4)}"), str(error.value)
