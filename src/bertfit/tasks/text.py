"""Raw text corpora read as documents, each a list of paragraphs: the input of pretraining.

Three kinds of source, told apart by what exists:
- a text file (WikiText's wiki.train.raw, a .txt of your own): one paragraph per line, a blank line
  between documents. Once a WikiText title line (` = Title = `) is seen, titles delimit the documents
  of that file and blank lines only separate paragraphs (WikiText puts one between every paragraph);
  section headings (` = = Section = = `, more `=`) are dropped.
- a .jsonl file: one JSON object per line; each record is a document, the non-empty lines of its
  text field its paragraphs.
- a Hugging Face dataset name, when no such file exists: `wikitext` (WikiText-103),
  `wikitext-2-raw-v1`, `wikitext-103-raw-v1`, or `name` / `name:config` (its train split). WikiText's
  rows are the lines of its files and follow the text-file rules; any other dataset's rows are
  documents, like JSONL records.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from .. import hub
from ..characters import lone_surrogate
from ..errors import DataError
from .bad_rows import BadRows
from .table_files import BadRow, json_object

WIKITEXT = "Salesforce/wikitext"
WIKITEXT_CONFIGS = {"wikitext": "wikitext-103-raw-v1", "wikitext-2-raw-v1": "wikitext-2-raw-v1",
                    "wikitext-103-raw-v1": "wikitext-103-raw-v1"}

# ` = Title = ` is level 1, ` = = Section = = ` level 2, ...: as many `=` on each side. Each edge is matched
# from its own end, in time linear in the line (a regex matching the whole line backtracks for ages on `= = = ... x`).
_EDGE = re.compile(r"[=\s]*")


@dataclass
class CorpusStats:
    """What was read, so nothing is dropped unseen; `read_documents` adds to it as it goes."""

    documents: int = 0
    paragraphs: int = 0
    words: int = 0  # whitespace-separated
    characters: int = 0
    skipped_lines: int = 0  # WikiText title and heading lines, JSONL records with no text
    sources: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.documents:,} documents, {self.paragraphs:,} paragraphs, {self.words:,} words, "
                f"{self.characters:,} characters; {self.skipped_lines:,} title/heading lines or empty records skipped")

    def as_dict(self) -> dict:
        return asdict(self)


def heading_level(line: str) -> int:
    """1 for a WikiText title line (`= Title =`), 2+ for a section heading (`= = Section = =`), 0 for text."""
    text = line.strip()
    left = _EDGE.match(text).group()
    right = _EDGE.match(text[::-1]).group()
    if not text.startswith("=") or not text.endswith("=") or len(left) + len(right) >= len(text):
        return 0  # no title text between the edges
    return left.count("=") if left.count("=") == right.count("=") else 0


def is_hub_name(source: str) -> bool:
    """No such file, and it does not look like one (no file suffix): a dataset on the hub."""
    path = Path(source)
    return not path.exists() and not path.suffix and not source.startswith((".", "/", "~"))


def read_documents(source: str, text_field: str = "text", stats: CorpusStats | None = None) -> Iterator[list[str]]:
    """The documents of one source, each a list of paragraphs (non-empty stripped lines), read as a stream.

    A bad line (not UTF-8; in JSONL, not a JSON object, no text field, text that is not whole characters) ends
    the stream: the rest of the file is only searched for more bad lines, and one DataError names each."""
    stats = stats if stats is not None else CorpusStats()
    stats.sources.append(str(source))
    bad = BadRows(source, what="lines", hint=None)  # no option skips them: the text is for the user to mend
    if is_hub_name(source):
        documents = _hub_documents(source, text_field, stats)
    else:
        path = Path(source)
        if not path.exists():
            raise DataError(f"{path}: no such file")
        if not path.is_file():
            raise DataError(f"{path}: is a folder, not a text file")
        documents = _jsonl_documents(path, text_field, stats, bad) if path.suffix.lower() == ".jsonl" \
            else _line_documents(_file_lines(path, bad), stats)
    for document in documents:
        if bad.failing():  # the read is bound to fail: only the bad lines are of use
            continue
        stats.documents += 1
        stats.paragraphs += len(document)
        stats.words += sum(len(p.split()) for p in document)
        stats.characters += sum(map(len, document))
        yield document
    bad.check()


def read_paragraphs(sources: Sequence[str], text_field: str = "text",
                    stats: CorpusStats | None = None) -> Iterator[str]:
    """Every paragraph of every source, in order (what a tokenizer trains on)."""
    for source in sources:
        for document in read_documents(source, text_field, stats):
            yield from document


def describe_sources(sources: Sequence[str]) -> str:
    """One line per source: a file's path and size, or the hub dataset and config it stands for."""
    lines = []
    for source in sources:
        if is_hub_name(source):
            name, config = hub_dataset(source)
            lines.append(f"hub dataset {name}" + (f" ({config})" if config else ""))
        elif Path(source).is_file():
            lines.append(f"{source} ({Path(source).stat().st_size / 1e6:,.1f} MB)")
        else:
            lines.append(f"{source} (no such file)")
    return "\n".join(lines)


def hub_dataset(source: str) -> tuple[str, str | None]:
    """(dataset name, config) for a hub source: `wikitext` names WikiText-103, `name:config` a config."""
    if source in WIKITEXT_CONFIGS:
        return WIKITEXT, WIKITEXT_CONFIGS[source]
    name, _, config = source.partition(":")
    return name, config or None


def _file_lines(path: Path, bad: BadRows) -> Iterator[tuple[int, str]]:
    """(line number, text) of a UTF-8 file, read line by line; a line that is not UTF-8 goes to `bad`."""
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                bad.add(f"line {line_no}", f"not UTF-8 text (byte {exc.start} of the line); give a UTF-8 text file")
                continue
            yield line_no, line


def _line_documents(lines: Iterable[tuple[int, str]], stats: CorpusStats) -> Iterator[list[str]]:
    """Documents from lines: the text-file rules of the module docstring."""
    document: list[str] = []
    titled = False  # a WikiText title was seen: titles, not blank lines, end documents from here on
    for _, line in lines:
        text = line.strip()
        level = heading_level(text) if text.startswith("=") else 0
        if level:
            stats.skipped_lines += 1
            if level == 1:
                titled = True
                if document:
                    yield document
                document = []
        elif text:
            document.append(text)
        elif document and not titled:
            yield document
            document = []
    if document:
        yield document


def _jsonl_documents(path: Path, text_field: str, stats: CorpusStats, bad: BadRows) -> Iterator[list[str]]:
    for line_no, line in _file_lines(path, bad):
        if not line.strip():
            continue
        try:
            text = _jsonl_text(line, text_field)
        except BadRow as why:
            bad.add(f"line {line_no}", str(why))
            continue
        paragraphs = [p.strip() for p in text.splitlines() if p.strip()]
        if paragraphs:
            yield paragraphs
        else:
            stats.skipped_lines += 1


def _jsonl_text(line: str, text_field: str) -> str:
    """The text field of one JSONL line; BadRow saying what is wrong with the line."""
    record = json_object(line)
    if text_field not in record:
        raise BadRow(f"no {text_field!r} field; found {', '.join(map(str, record))} (--text-field names the field)")
    text = record[text_field]
    if not isinstance(text, str):
        raise BadRow(f"{text_field!r} is {type(text).__name__}, not text")
    if why := lone_surrogate(text):
        raise BadRow(f"{text_field!r} {why}")
    return text


def _hub_documents(source: str, text_field: str, stats: CorpusStats) -> Iterator[list[str]]:
    name, config = hub_dataset(source)
    instead = "give --train-file with a text or .jsonl file instead"
    if reason := hub.unreachable():
        raise DataError(f"{source}: no such file, and the Hugging Face hub cannot be reached to load it as a "
                        f"dataset ({reason}); {instead}; {hub.OFFLINE_HINT}")
    try:
        import datasets

        rows = datasets.load_dataset(name, config, split="train")
    except Exception as exc:  # offline, no cache, renamed, no train split: all mean the same to the user
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{source}: no such file, and it could not be loaded as a hub dataset ({reason}); "
                        f"{instead}") from None
    field_name = "text" if name == WIKITEXT else text_field
    if field_name not in rows.column_names:
        raise DataError(f"hub dataset {source}: no {field_name!r} column; found {', '.join(rows.column_names)}")
    texts = (text for batch in rows.iter(batch_size=1000) for text in batch[field_name])
    if name == WIKITEXT:  # its rows are the lines of wiki.train.raw
        yield from _line_documents(enumerate(texts, 1), stats)
        return
    for text in texts:
        paragraphs = [p.strip() for p in (text or "").splitlines() if p.strip()]
        if paragraphs:
            yield paragraphs
        else:
            stats.skipped_lines += 1
