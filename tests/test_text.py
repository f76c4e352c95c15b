"""Raw text corpora read as documents of paragraphs: the rules for text files, WikiText and JSONL, and bad input."""
import json
import socket

import pytest

from bertfit.errors import DataError
from bertfit.tasks.text import CorpusStats, describe_sources, heading_level, read_documents, read_paragraphs

WIKITEXT = (" \n"
            " = Valkyria Chronicles III = \n"
            " \n"
            " Senjō no Valkyria 3 is a tactical role @-@ playing video game . \n"
            " \n"
            " The game began development in 2010 . \n"
            " \n"
            " = = Gameplay = = \n"
            " \n"
            " As with previous games , players control units . \n"
            " \n"
            " = = = Units = = = \n"
            " Units move across the map . \n"
            " = Tower Building of the Little Rock Arsenal = \n"
            " \n"
            " The Tower Building is a building in Little Rock . \n")


def documents_of(path, **options):
    stats = CorpusStats()
    return list(read_documents(str(path), stats=stats, **options)), stats


def test_heading_levels_follow_wikitext_one_equals_sign_each_side_per_level():
    assert heading_level(" = Valkyria Chronicles III = ") == 1
    assert heading_level(" = = Gameplay = = ") == 2
    assert heading_level("= = = Units = = =") == 3
    assert heading_level("=Title=") == 1
    for text in ("a = b =", "= not closed", "= = uneven =", "= =", "==", "x = 1"):
        assert heading_level(text) == 0, text


def test_a_plain_text_file_has_one_paragraph_per_line_and_a_blank_line_between_documents(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("First paragraph.\n  Second paragraph, stripped.  \n\n\n"
                    "Another document.\n   \nA third one.\n", encoding="utf-8")
    documents, stats = documents_of(path)
    assert documents == [["First paragraph.", "Second paragraph, stripped."], ["Another document."], ["A third one."]]
    assert (stats.documents, stats.paragraphs, stats.words, stats.skipped_lines) == (3, 4, 10, 0)
    assert stats.characters == sum(len(p) for d in documents for p in d)
    assert stats.sources == [str(path)]


def test_wikitext_titles_start_documents_headings_are_dropped_and_blank_lines_only_separate_paragraphs(tmp_path):
    path = tmp_path / "wiki.train.raw"
    path.write_text(WIKITEXT, encoding="utf-8")
    documents, stats = documents_of(path)
    assert documents == [
        ["Senjō no Valkyria 3 is a tactical role @-@ playing video game .", "The game began development in 2010 .",
         "As with previous games , players control units .", "Units move across the map ."],
        ["The Tower Building is a building in Little Rock ."],
    ]
    assert stats.skipped_lines == 4  # two titles, two headings: counted, not silently gone
    assert (stats.documents, stats.paragraphs) == (2, 5)


def test_a_jsonl_record_is_a_document_whose_lines_are_its_paragraphs(tmp_path):
    path = tmp_path / "corpus.jsonl"
    records = [{"body": "One.\nTwo.\n\n", "id": 1}, {"body": "  \n"}, {"body": "Three."}]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n\n", encoding="utf-8")
    documents, stats = documents_of(path, text_field="body")
    assert documents == [["One.", "Two."], ["Three."]]
    assert stats.skipped_lines == 1  # the record with no text


@pytest.mark.parametrize("line, message", [
    ('{"text": "fine"', "line 2: not JSON"),
    ('{"title": "no text"}', "line 2: no 'text' field; found title"),
    ('{"text": 3}', "line 2: 'text' is int, not text"),
    ('["text"]', "line 2: expected a JSON object, found list"),
])
def test_a_bad_jsonl_line_is_an_error_naming_the_file_and_line(tmp_path, line, message):
    path = tmp_path / "corpus.jsonl"
    path.write_text('{"text": "good"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DataError) as error:
        documents_of(path)
    assert f"{path}, {message}" in str(error.value)


def test_a_file_that_is_not_utf8_is_an_error_naming_the_file_and_line(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("fine\n\ncafé\n".encode("latin-1"))
    with pytest.raises(DataError) as error:
        documents_of(path)
    assert f"{path}, line 3: not UTF-8" in str(error.value)


def test_a_utf8_byte_order_mark_is_not_part_of_the_first_paragraph(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeffHello\n".encode("utf-8"))
    assert documents_of(path)[0] == [["Hello"]]


def test_a_missing_file_or_a_folder_is_an_error_naming_the_path(tmp_path):
    for source, message in ((tmp_path / "nowhere.txt", "no such file"), (tmp_path, "is a folder")):
        with pytest.raises(DataError) as error:
            documents_of(source)
        assert str(error.value).startswith(f"{source}: {message}")


def test_a_hub_name_fails_at_once_when_the_hub_cannot_be_reached_and_says_what_to_give(monkeypatch):
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(DataError) as error:
        documents_of("wikitext-2-raw-v1")
    assert "hub cannot be reached" in str(error.value) and "--train-file" in str(error.value)
    assert describe_sources(["wikitext"]) == "hub dataset Salesforce/wikitext (wikitext-103-raw-v1)"


def test_paragraphs_of_several_sources_come_in_order_and_add_to_one_count(tmp_path):
    (tmp_path / "a.txt").write_text("a1\na2\n\na3\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text('{"text": "b1\\nb2"}\n', encoding="utf-8")
    stats = CorpusStats()
    sources = [str(tmp_path / "a.txt"), str(tmp_path / "b.jsonl")]
    assert list(read_paragraphs(sources, stats=stats)) == ["a1", "a2", "a3", "b1", "b2"]
    assert (stats.documents, stats.paragraphs, stats.sources) == (3, 5, sources)
    assert "3 documents, 5 paragraphs, 5 words" in stats.summary()
    assert describe_sources(sources).splitlines()[0] == f"{sources[0]} (0.0 MB)"
