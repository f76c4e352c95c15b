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

from ..errors import ConfigError, DataError
from .glue import Examples


def read_table_file(path: str | Path, text_columns: Sequence[str], label_column: str | None = None,
                    labels: Sequence[str] | None = None) -> Examples:
    """Read a CSV, TSV (tabs, no quoting) or JSONL file with 1 or 2 named text columns and an optional label column.

    Labels map to ids through `labels` when given, else through their sorted distinct values (numerically
    when all are integers). Labels that are all numbers, some written with a fraction (2.5, "3.0"), make a
    regression task; float labels come back as floats with `label_names` None.
    """
    path = Path(path)
    text_columns = [text_columns] if isinstance(text_columns, str) else list(text_columns)
    if len(text_columns) not in (1, 2):
        raise ConfigError(f"give 1 or 2 text columns, not {len(text_columns)}: {text_columns}")
    wanted = text_columns + ([label_column] if label_column else [])
    texts_a, texts_b, raw_labels, lines = [], [] if len(text_columns) == 2 else None, [], []
    for line_no, record in _table_records(path):
        missing = [c for c in wanted if c not in record]
        if missing:
            raise DataError(f"{path}, line {line_no}: no {' or '.join(map(repr, missing))} column; "
                            f"found {', '.join(map(str, record))}")
        texts = [record[c] for c in text_columns]
        for name, text in zip(text_columns, texts):
            if not isinstance(text, str) or not text.strip():
                what = "empty" if isinstance(text, str) else "not text"
                raise DataError(f"{path}, line {line_no}: {name!r} is {what}")
        texts_a.append(texts[0])
        if texts_b is not None:
            texts_b.append(texts[1])
        if label_column:
            if record[label_column] is None or not str(record[label_column]).strip():
                raise DataError(f"{path}, line {line_no}: {label_column!r} is empty")
            raw_labels.append(record[label_column])
        lines.append(line_no)
    if not lines:
        raise DataError(f"{path}: no examples")
    label_ids, label_names = (None, None) if not label_column else _table_labels(path, raw_labels, lines, labels)
    return Examples(texts_a, texts_b, label_ids, list(range(len(texts_a))), str(path), label_names=label_names,
                    num_read=len(texts_a))


def _table_records(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, {column: value}) for each record of a .csv, .tsv or .jsonl file."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".tsv", ".jsonl"):
        raise ConfigError(f"{path}: unknown table format {suffix!r}; use .csv, .tsv or .jsonl")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if suffix == ".tsv":
        lines = tsv_lines(path)
        header = tsv_header(path, lines)
        for line_no, raw in lines:
            try:
                fields = raw.decode("utf-8").split("\t")
            except UnicodeDecodeError:
                raise DataError(f"{path}, line {line_no}: not UTF-8") from None
            if len(fields) != len(header):
                raise DataError(f"{path}, line {line_no}: expected {len(header)} tab-separated columns, "
                                f"found {len(fields)}")
            yield line_no, dict(zip(header, fields))
        return
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line_no = data[: e.start].count(b"\n") + 1
        raise DataError(f"{path}, line {line_no}: not UTF-8") from None
    if suffix == ".jsonl":
        for line_no, line in enumerate(text.split("\n"), 1):
            if line.strip():
                yield line_no, jsonl_record(path, line_no, line)
        return
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        raise DataError(f"{path}: the file is empty")
    try:
        for fields in reader:
            if not fields:
                continue
            if len(fields) != len(header):
                raise DataError(f"{path}, line {reader.line_num}: expected {len(header)} columns, "
                                f"found {len(fields)}")
            yield reader.line_num, dict(zip(header, fields))
    except csv.Error as e:
        raise DataError(f"{path}, line {reader.line_num}: {e}") from None


def _table_labels(path: Path, values: list, lines: list[int], labels: Sequence[str] | None):
    """Label ids (or float scores) and the id -> name table for a user's file."""
    if labels is None and all(_number(v) is not None for v in values) and any(map(_is_fractional, values)):
        return [_number(v) for v in values], None
    names = [str(v) for v in values]
    if labels is None:
        distinct = set(names)
        integers = all(n.lstrip("-").isdecimal() for n in distinct)
        labels = sorted(distinct, key=int) if integers else sorted(distinct)
    ids = {name: i for i, name in enumerate(labels)}
    for name, line_no in zip(names, lines):
        if name not in ids:
            raise DataError(f"{path}, line {line_no}: label {name!r} is not one of {', '.join(labels)}")
    return [ids[n] for n in names], tuple(labels)


def _number(value) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
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


def jsonl_record(path, line_no: int, line: str) -> dict:
    """One line of a JSONL file as its JSON object; anything else is an error naming the file and line."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}, line {line_no}: not JSON ({e.msg})") from None
    if not isinstance(record, dict):
        raise DataError(f"{path}, line {line_no}: expected a JSON object, found {type(record).__name__}")
    return record
