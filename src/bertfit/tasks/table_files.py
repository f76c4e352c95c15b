"""A user's own data files: CSV, TSV and JSONL tables with named text and label columns.

The TSV line reading here serves the official GLUE files too (`glue_tsv`).
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..characters import SURROGATE, lone_surrogate
from ..errors import ConfigError, DataError
from .bad_rows import BadRows
from .glue import Examples


class BadRow(Exception):
    """One record of a file is malformed; the reader turns it into a DataError or, with skip_bad, a counted skip."""


def read_table_file(path: str | Path, text_columns: Sequence[str], label_column: str | None = None,
                    labels: Sequence[str] | None = None, skip_bad: bool = False) -> Examples:
    """Read a CSV, TSV (tabs, no quoting) or JSONL file with 1 or 2 named text columns and an optional label column.

    Labels map to ids through `labels` when given (a row with another label is bad), else through their sorted
    distinct values (numerically when all are integers). Labels that are all numbers, some written with a
    fraction (2.5, "3.0"), make a regression task; float labels come back as floats with `label_names` None.
    Malformed records raise one DataError naming the file and each bad line (`bad_rows`); with skip_bad they
    are skipped and counted (num_skipped, skip_reasons). A file that cannot be read at all (no header, unknown
    format, broken CSV quoting) always raises. A file without records gives no examples, for the caller to
    refuse with what it needed them for (`errors.require_examples`).
    """
    path = Path(path)
    text_columns = [text_columns] if isinstance(text_columns, str) else list(text_columns)
    if len(text_columns) not in (1, 2):
        raise ConfigError(f"give 1 or 2 text columns, not {len(text_columns)}: {text_columns}")
    wanted = text_columns + ([label_column] if label_column else [])
    rows: list[tuple[int, list[str], object]] = []  # (line, texts, raw label)
    examples = Examples([], [] if len(text_columns) == 2 else None, None, [], str(path))
    bad = BadRows(path, skip_bad)
    for line_no, record in _table_records(path, wanted):
        examples.num_read += 1
        try:
            if isinstance(record, BadRow):
                raise record
            texts, label = _table_row(record, text_columns, label_column, wanted)
            if label_column and labels is not None and str(label) not in labels:
                raise BadRow(f"label {str(label)!r} is not one of {', '.join(labels)}")
            if not bad.failing():  # once the read is bound to fail, only the bad rows are of use
                rows.append((line_no, texts, label))
        except BadRow as why:
            bad.add(f"line {line_no}", str(why))
    bad.check()
    examples.num_skipped, examples.skip_reasons = bad.count, bad.reasons
    label_ids, label_names = ([] if label_column else None), None
    if label_column and rows:
        label_ids, label_names = _table_labels([label for _, _, label in rows], labels)
    for _, texts, _ in rows:
        examples.texts_a.append(texts[0])
        if examples.texts_b is not None:
            examples.texts_b.append(texts[1])
    examples.indices = list(range(len(rows)))
    examples.labels = label_ids
    examples.label_names = label_names
    return examples


def _table_row(record: dict, text_columns: list[str], label_column: str | None, wanted: list[str]):
    """(texts, raw label) of one record; BadRow when a column is missing or empty, or holds no whole characters."""
    missing = [c for c in wanted if c not in record]
    if missing:
        raise BadRow(f"no {' or '.join(map(repr, missing))} column; found {', '.join(map(str, record))}")
    texts = [record[c] for c in text_columns]
    for name, text in zip(text_columns, texts):
        if not isinstance(text, str) or not text.strip():
            raise BadRow(f"{name!r} is {'empty' if isinstance(text, str) else 'not text'}")
        if why := lone_surrogate(text):
            raise BadRow(f"{name!r} {why}")
    label = record[label_column] if label_column else None
    if label_column and (label is None or not str(label).strip()):
        raise BadRow(f"{label_column!r} is empty")
    if isinstance(label, str) and (why := lone_surrogate(label)):
        raise BadRow(f"{label_column!r} {why}")
    return texts, label


def _table_records(path: Path, wanted: list[str]) -> Iterator[tuple[int, dict | BadRow]]:
    """(line number, {column: value}, or the BadRow that line is) for each record of a .csv, .tsv or .jsonl file.
    A header without a `wanted` column is the file's mistake, not every row's: it raises."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".tsv", ".jsonl"):
        raise ConfigError(f"{path}: unknown table format {suffix!r}; use .csv, .tsv or .jsonl")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if suffix == ".tsv":
        lines = tsv_lines(path)
        header = tsv_header(path, lines)
        _check_header(path, header, wanted)
        for line_no, raw in lines:
            try:
                fields = raw.decode("utf-8").split("\t")
            except UnicodeDecodeError:
                yield line_no, BadRow("not UTF-8")
                continue
            if len(fields) != len(header):
                yield line_no, BadRow(f"expected {len(header)} tab-separated columns, found {len(fields)}")
                continue
            yield line_no, dict(zip(header, fields))
        return
    if suffix == ".jsonl":  # line by line, so that a line that is not UTF-8 is one bad record
        for line_no, raw in enumerate(path.read_bytes().split(b"\n"), 1):
            try:
                line = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
            except UnicodeDecodeError:
                yield line_no, BadRow("not UTF-8")
                continue
            if line.strip():
                try:
                    yield line_no, json_object(line)
                except BadRow as bad:
                    yield line_no, bad
        return
    # bytes that are not UTF-8 are kept as lone surrogates (U+DC80-U+DCFF), which the CSV parser passes through
    # like any character: the record holding one is one bad row, found after the quoting has cut the records
    text = path.read_bytes().decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: the file is empty")
        if _undecoded(header):
            raise DataError(f"{path}, line 1: the header is not UTF-8 ({_undecoded(header)})")
        _check_header(path, header, wanted)
        for fields in reader:
            if not fields:
                continue
            if _undecoded(fields):
                yield reader.line_num, BadRow(f"not UTF-8 ({_undecoded(fields)})")
                continue
            if len(fields) != len(header):
                yield reader.line_num, BadRow(f"expected {len(header)} columns, found {len(fields)}")
                continue
            yield reader.line_num, dict(zip(header, fields))
    except csv.Error as e:
        raise DataError(f"{path}, line {reader.line_num}: {e}") from None


def _undecoded(fields: list[str]) -> str | None:
    """The first byte of `fields` that was not UTF-8 (decoded with surrogateescape), said as `byte 0xe9`."""
    for field in fields:
        if found := SURROGATE.search(field):
            return f"byte {ord(found.group()) - 0xDC00:#04x}"
    return None


def _check_header(path: Path, header: list[str], wanted: list[str]) -> None:
    missing = [c for c in wanted if c not in header]
    if missing:
        raise DataError(f"{path}, line 1: no {' or '.join(map(repr, missing))} column; found {', '.join(header)}")


def _table_labels(values: list, labels: Sequence[str] | None):
    """(label ids or float scores, the id -> name table); every value is one of `labels` when they are given."""
    if labels is None and all(_number(v) is not None for v in values) and any(map(_is_fractional, values)):
        return [_number(v) for v in values], None
    names = [str(v) for v in values]
    if labels is None:
        distinct = set(names)
        # written as whole numbers (short enough for int(), which refuses thousands of digits): sorted by value
        integers = all(n.removeprefix("-").isdecimal() and len(n) < 1000 for n in distinct)
        labels = sorted(distinct, key=int) if integers else sorted(distinct)
    ids = {name: i for i, name in enumerate(labels)}
    return [ids[n] for n in names], tuple(labels)


def _number(value) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: a JSON integer past float's range
        return None
    return number if np.isfinite(number) else None


def _is_fractional(value) -> bool:
    """A label written as a non-integer number (2.5, "3.0", 1e-3): a regression target, not a class."""
    if isinstance(value, float):
        return True
    return isinstance(value, str) and not value.strip().lstrip("+-").isdecimal()


def tsv_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, raw line) for each line, without a first-line BOM or trailing blank lines.

    Lines stay bytes so a non-UTF-8 line becomes one bad row with its line number, not a failed file.
    Splitting on b"\\n" only (not str.splitlines) keeps U+2028 and friends inside their sentence.
    """
    blanks: list[tuple[int, bytes]] = []
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            raw = raw.rstrip(b"\r\n")
            if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):  # MRPC's header starts with a UTF-8 BOM
                raw = raw[3:]
            if not raw.strip(b" "):
                blanks.append((line_no, raw))  # only an error if a data row follows
                continue
            yield from blanks
            blanks.clear()
            yield line_no, raw


def tsv_header(path: Path, lines: Iterator[tuple[int, bytes]]) -> list[str]:
    first = next(lines, None)
    if first is None:
        raise DataError(f"{path}: the file is empty")
    line_no, raw = first
    if not raw.strip(b" "):
        raise DataError(f"{path}, line 1: blank line where the header should be")
    try:
        return raw.decode("utf-8").split("\t")
    except UnicodeDecodeError:
        raise DataError(f"{path}, line 1: header is not UTF-8") from None


def json_object(line: str) -> dict:
    """A line's JSON object; BadRow saying what else it is."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise BadRow(f"not JSON ({e.msg})") from None
    except RecursionError:
        raise BadRow("JSON nested too deeply") from None
    if not isinstance(record, dict):
        raise BadRow(f"expected a JSON object, found {type(record).__name__}")
    return record
