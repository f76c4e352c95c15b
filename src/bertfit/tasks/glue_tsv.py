"""The official GLUE download: each task's TSV files, read row by row with errors that name file and line."""
from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .bad_rows import BadRows
from .glue import Examples, GlueTask, resolve_split, resolve_task
from .table_files import tsv_header, tsv_lines

# Other places the official-looking AX file turns up, relative to the GLUE root.
AX_CANDIDATES = ("diagnostic/diagnostic.tsv", "AX/AX.tsv", "AX/test.tsv")


class _BadRow(Exception):
    """One data row is malformed; the reader turns it into a DataError or a counted skip."""


def glue_file_candidates(task: GlueTask, data_dir: str | Path, split: str) -> list[Path]:
    """Where a split's file may be: under the GLUE root, or in `data_dir` when it is the task folder."""
    data_dir = Path(data_dir)
    relative = AX_CANDIDATES if task.name == "ax" else (f"{task.folder}/{task.files[split]}",)
    candidates = [data_dir / r for r in relative] + [data_dir / Path(r).name for r in relative]
    return list(dict.fromkeys(candidates))


def read_glue_split(task: str | GlueTask, data_dir: str | Path, split: str, skip_bad: bool = False) -> Examples:
    """Read one split of the official GLUE download; bad rows raise one DataError naming each (`bad_rows`), or are
    counted skips with skip_bad. A file without data rows gives no examples, for the caller to refuse
    (`errors.require_examples`)."""
    task = resolve_task(task)
    split = resolve_split(task, split)
    candidates = glue_file_candidates(task, data_dir, split)
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise DataError(f"GLUE {task.name} {split} file not found; looked for " + ", ".join(map(str, candidates)))

    lines = tsv_lines(path)
    if task.headerless_columns and not split.startswith("test"):
        header, first_data_line = list(task.headerless_columns), 1
    else:
        header, first_data_line = tsv_header(path, lines), 2
    labeled = task.label_column is not None and task.label_column in header
    if not labeled and not split.startswith("test") and task.label_column is not None:
        raise DataError(f"{path}, line 1: no {task.label_column!r} column in header {header}")
    missing = [c for c in task.text_columns if c not in header]
    if missing:
        raise DataError(f"{path}, line 1: no {' or '.join(map(repr, missing))} column in header {header}")
    text_at = [header.index(c) for c in task.text_columns]
    label_at = header.index(task.label_column) if labeled else None
    index_at = header.index(task.index_column) if task.index_column in header else None
    label_ids = {name: i for i, name in enumerate(task.labels or ())}

    def parse(line_no: int, raw: bytes):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise _BadRow(f"not UTF-8 ({raw[e.start:e.start + 4]!r} at byte {e.start})") from None
        if not line.strip(" "):
            raise _BadRow("blank line")
        fields = line.split("\t")
        if len(fields) != len(header):
            raise _BadRow(f"expected {len(header)} tab-separated columns, found {len(fields)}")
        texts = [fields[i] for i in text_at]
        for name, text in zip(task.text_columns, texts):
            if not text.strip():
                raise _BadRow(f"empty {name!r} text")
        label = None
        if label_at is not None:
            value = fields[label_at]
            if task.labels is None:
                label = _score(value)
            elif value in label_ids:
                label = label_ids[value]
            else:
                raise _BadRow(f"label {value!r} is not one of {', '.join(task.labels)}")
        index = line_no - first_data_line
        if index_at is not None:
            try:
                index = int(fields[index_at])
            except ValueError:
                raise _BadRow(f"{task.index_column} {fields[index_at]!r} is not an integer") from None
        return texts, label, index

    examples = Examples([], [] if len(task.text_columns) == 2 else None, [] if labeled else None, [], str(path),
                        label_names=task.labels if labeled else None)
    bad = BadRows(path, skip_bad)
    for line_no, raw in lines:
        examples.num_read += 1
        try:
            texts, label, index = parse(line_no, raw)
        except _BadRow as why:
            bad.add(f"line {line_no}", str(why))
            continue
        if bad.failing():  # the read is bound to fail: only the bad rows are of use
            continue
        examples.texts_a.append(texts[0])
        if examples.texts_b is not None:
            examples.texts_b.append(texts[1])
        if examples.labels is not None:
            examples.labels.append(label)
        examples.indices.append(index)
    bad.check()
    examples.num_skipped, examples.skip_reasons = bad.count, bad.reasons
    return examples


def _score(value: str) -> float:
    """An STS-B similarity score, a float in 0..5."""
    try:
        score = float(value)
    except ValueError:
        raise _BadRow(f"score {value!r} is not a number") from None
    if not 0.0 <= score <= 5.0:
        raise _BadRow(f"score {value!r} is outside 0..5")
    return score
