"""Token-tagged files: CoNLL (a token and its tags a line, the tag last), UD's CoNLL-U, and JSONL
`{"tokens": [...], "tags": [...]}`; each sentence's words and tags, with the line of every word, so that a
mistake found later (a tag outside the scheme) is named by file and line too.

CoNLL: columns split at tabs when the file's first token line has one, else at runs of spaces (CoNLL-2003's
four columns); a blank line, or a line of whitespace alone (WNUT-17's train ends sentences with a tab), ends a
sentence; `-DOCSTART-` lines separate documents. CoNLL-U: comment lines start with #; a multi-word token
line (`1-2`) is the surface form of the words that follow it, which carry the tags, and an empty node
(`1.1`) is no word of the sentence: both are passed over, as UD's own evaluation counts words.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..characters import lone_surrogate
from ..errors import ConfigError, DataError
from .bad_rows import BadRows

MAX_SKIP_REASONS = 10
FORMATS = ("conll", "conllu", "jsonl")
POS_COLUMNS = {"upos": 3, "xpos": 4}  # CoNLL-U's 0-based columns


@dataclass
class TaggedSentences:
    words: list[list[str]] = field(default_factory=list)
    tags: list[list[str]] = field(default_factory=list)
    lines: list[list[int]] = field(default_factory=list)  # each word's line in the file (JSONL: its record's)
    source: str = ""
    num_read: int = 0  # sentences read, the skipped ones included
    num_skipped: int = 0
    skip_reasons: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.words)

    def add(self, words: list[str], tags: list[str], lines: list[int]) -> None:
        self.words.append(words)
        self.tags.append(tags)
        self.lines.append(lines)

    def take(self, n: int | None) -> "TaggedSentences":
        if not n or n >= len(self):
            return self
        return TaggedSentences(self.words[:n], self.tags[:n], self.lines[:n], self.source, self.num_read,
                               self.num_skipped, self.skip_reasons)


class BadSentence(Exception):
    """One line or record is malformed: a DataError, or with skip_bad a counted skip of its sentence."""

    def __init__(self, line: int, reason: str):
        super().__init__(reason)
        self.line = line


def file_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    return {".conllu": "conllu", ".jsonl": "jsonl", ".json": "jsonl"}.get(suffix, "conll")


UNTAGGED = "_"  # the tag of a word read without one (words_only)


def read_tagged_file(path: str | Path, pos_column: str = "upos", skip_bad: bool = False,
                     words_only: bool = False) -> TaggedSentences:
    """The sentences of a CoNLL, CoNLL-U (by suffix .conllu) or JSONL (.jsonl) file; a malformed line raises
    DataError naming the file and line, or with skip_bad skips its sentence, counted. `words_only`: words to
    tag, their tags optional (a CoNLL line of one column, a JSONL record without tags: UNTAGGED)."""
    path = Path(path)
    if pos_column not in POS_COLUMNS:
        raise ConfigError(f"--pos-column must be upos or xpos, not {pos_column!r}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not a file") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    sentences = TaggedSentences(source=str(path))
    bad = BadRows(path, skip_bad, what="sentences")
    reader = {"conll": _conll_sentences, "conllu": _conllu_sentences, "jsonl": _jsonl_sentences}[file_format(path)]
    for sentence in reader(text.splitlines(), pos_column, words_only):
        sentences.num_read += 1
        if not isinstance(sentence, BadSentence):
            problem = next(((line, why) for word, line in zip(sentence[0], sentence[2])
                            if (why := lone_surrogate(word))), None)
            if problem:
                sentence = BadSentence(problem[0], f"a token {problem[1]}")
        if isinstance(sentence, BadSentence):
            bad.add(f"line {sentence.line}", str(sentence))
            continue
        if not bad.failing():
            sentences.add(*sentence)
    bad.check()
    sentences.num_skipped = bad.count
    sentences.skip_reasons = bad.reasons[:MAX_SKIP_REASONS]
    if not sentences.num_read:
        raise DataError(f"{path}: no sentences (the file is empty)")
    return sentences


def _conll_sentences(lines: list[str], _pos_column: str, words_only: bool = False):
    """(words, tags, lines) per sentence, or a BadSentence in place of a sentence with a bad line."""
    words, tags, numbers, bad, separator = [], [], [], None, None
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.split()[0] == "-DOCSTART-":
            if words or bad:
                yield bad or (words, tags, numbers)
            words, tags, numbers, bad = [], [], [], None
            continue
        if bad:
            continue
        if separator is None:
            separator = "\t" if "\t" in line else " "
        if separator == "\t" and "\t" not in line and " " in line.strip():
            bad = BadSentence(number, f"columns separated by spaces where the file's first token line uses tabs: "
                                      f"{line[:60]!r}")
            continue
        if separator == " " and "\t" in line:
            bad = BadSentence(number, f"a tab where the file's first token line separates its columns with spaces: "
                                      f"{line[:60]!r}")
            continue
        columns = line.rstrip("\r").split("\t") if separator == "\t" else line.split()
        if words_only and len(columns) == 1 and columns[0]:
            columns.append(UNTAGGED)
        if len(columns) < 2 or not columns[-1].strip() or not columns[0]:
            bad = BadSentence(number, f"a token line needs the token and its tag (token{'<TAB>' if separator == chr(9) else ' '}"
                                      f"tag, the tag last): {line[:60]!r}")
            continue
        words.append(columns[0])
        tags.append(columns[-1].strip())
        numbers.append(number)
    if words or bad:
        yield bad or (words, tags, numbers)


RANGE_ID = re.compile(r"\d+-\d+")
EMPTY_NODE_ID = re.compile(r"\d+\.\d+")


def _conllu_sentences(lines: list[str], pos_column: str, words_only: bool = False):
    column = POS_COLUMNS[pos_column]
    words, tags, numbers, bad = [], [], [], None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            if words or bad:
                yield bad or (words, tags, numbers)
            words, tags, numbers, bad = [], [], [], None
            continue
        if bad or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 10:
            bad = BadSentence(number, f"a CoNLL-U word line has 10 tab-separated fields, this one {len(fields)}")
            continue
        if RANGE_ID.fullmatch(fields[0]) or EMPTY_NODE_ID.fullmatch(fields[0]):
            continue  # a multi-word token's surface form, or an empty node: the words carry the tags
        if not fields[0].isdigit():
            bad = BadSentence(number, f"ID {fields[0]!r} is not a word number, a range (1-2) or an empty node (1.1)")
            continue
        if fields[column] in ("", "_") and words_only:
            fields[column] = UNTAGGED
        elif fields[column] in ("", "_"):
            bad = BadSentence(number, f"word {fields[1]!r} has no {pos_column.upper()} (column {column + 1} is "
                                      f"{fields[column]!r})")
            continue
        words.append(fields[1])
        tags.append(fields[column])
        numbers.append(number)
    if words or bad:
        yield bad or (words, tags, numbers)


def _jsonl_sentences(lines: list[str], _pos_column: str, words_only: bool = False):
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield BadSentence(number, f"not valid JSON ({exc.msg})")
            continue
        if words_only and isinstance(record, dict) and "tags" not in record and isinstance(record.get("tokens"), list):
            record["tags"] = [UNTAGGED] * len(record["tokens"])
        if not isinstance(record, dict) or not isinstance(record.get("tokens"), list) \
                or not isinstance(record.get("tags"), list):
            yield BadSentence(number, 'a record is {"tokens": [...], "tags": [...]}')
            continue
        words, tags = record["tokens"], record["tags"]
        if not all(isinstance(w, str) and w for w in words) or not all(isinstance(t, str) and t for t in tags):
            yield BadSentence(number, "tokens and tags must be non-empty strings")
        elif len(words) != len(tags):
            yield BadSentence(number, f"{len(words)} tokens but {len(tags)} tags")
        elif not words:
            yield BadSentence(number, "an empty sentence (no tokens)")
        else:
            yield words, [t.strip() for t in tags], [number] * len(words)
