"""GLUE's data side: the task table, the official file readers, encoding, caching and submission files."""
from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from tokenizers import Tokenizer

from .. import hub
from ..batching import Features
from ..errors import ConfigError, DataError
from ..tokenization import special_ids

BINARY = ("0", "1")
NLI3 = ("entailment", "neutral", "contradiction")
NLI2 = ("entailment", "not_entailment")
STANDARD_SPLITS = {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}
MNLI_SPLITS = {
    "train": "train.tsv",
    "dev_matched": "dev_matched.tsv",
    "dev_mismatched": "dev_mismatched.tsv",
    "test_matched": "test_matched.tsv",
    "test_mismatched": "test_mismatched.tsv",
}
HUB_SPLITS = {
    "train": "train", "dev": "validation", "test": "test",
    "dev_matched": "validation_matched", "dev_mismatched": "validation_mismatched",
    "test_matched": "test_matched", "test_mismatched": "test_mismatched",
}
CACHE_FORMAT = 1  # bump when encode() changes what it writes
MAX_SKIP_REASONS = 10


@dataclass(frozen=True)
class GlueTask:
    """One GLUE task as data: where its files are, which columns hold text and label, how it is scored."""

    name: str  # our name, e.g. "sst2"; also the nyu-mll/glue config name
    folder: str  # folder in the official download, e.g. "SST-2"
    text_columns: tuple[str, ...]  # header names of text a (and text b)
    label_column: str | None  # header name of the label; None for AX (test only)
    labels: tuple[str, ...] | None  # as files and leaderboard spell them, in hub id order; None: regression
    metrics: tuple[str, ...]  # main metric first
    files: dict[str, str] = field(hash=False)  # split -> file name inside `folder`
    submissions: dict[str, str] = field(hash=False)  # test split -> leaderboard file name
    hub_columns: tuple[str, ...] = ()  # text columns of the hub dataset, when they differ from text_columns
    index_column: str = "index"  # test files number their rows here (QQP: "id")
    headerless_columns: tuple[str, ...] = ()  # CoLA's train/dev files have no header row: their columns
    # What the labels mean, where files and leaderboard write numbers (the hub's names): what people read
    readable_labels: tuple[str, ...] | None = None

    @property
    def label_names(self) -> tuple[str, ...] | None:
        """The labels as people read them (SST-2: negative, positive); the file values where they are words."""
        return self.readable_labels or self.labels

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    @property
    def is_regression(self) -> bool:
        return self.labels is None


def _glue_task(name, folder, text_columns, label_column, labels, metrics, submission, **more) -> GlueTask:
    files = MNLI_SPLITS if name == "mnli" else STANDARD_SPLITS
    submissions = {"test": submission} if isinstance(submission, str) else submission
    return GlueTask(name, folder, text_columns, label_column, labels, metrics, dict(files), submissions, **more)


GLUE_TASKS: dict[str, GlueTask] = {
    t.name: t
    for t in (
        _glue_task("cola", "CoLA", ("sentence",), "label", BINARY, ("matthews_correlation",), "CoLA.tsv",
                   headerless_columns=("source", "label", "original_label", "sentence"),
                   readable_labels=("unacceptable", "acceptable")),
        _glue_task("sst2", "SST-2", ("sentence",), "label", BINARY, ("accuracy",), "SST-2.tsv",
                   readable_labels=("negative", "positive")),
        _glue_task("mrpc", "MRPC", ("#1 String", "#2 String"), "Quality", BINARY, ("f1", "accuracy"), "MRPC.tsv",
                   hub_columns=("sentence1", "sentence2"), readable_labels=("not_equivalent", "equivalent")),
        _glue_task("stsb", "STS-B", ("sentence1", "sentence2"), "score", None, ("pearson", "spearman"), "STS-B.tsv"),
        _glue_task("qqp", "QQP", ("question1", "question2"), "is_duplicate", BINARY, ("f1", "accuracy"), "QQP.tsv",
                   index_column="id", readable_labels=("not_duplicate", "duplicate")),
        _glue_task("mnli", "MNLI", ("sentence1", "sentence2"), "gold_label", NLI3, ("accuracy",),
                   {"test_matched": "MNLI-m.tsv", "test_mismatched": "MNLI-mm.tsv"},
                   hub_columns=("premise", "hypothesis")),
        _glue_task("qnli", "QNLI", ("question", "sentence"), "label", NLI2, ("accuracy",), "QNLI.tsv"),
        _glue_task("rte", "RTE", ("sentence1", "sentence2"), "label", NLI2, ("accuracy",), "RTE.tsv"),
        _glue_task("wnli", "WNLI", ("sentence1", "sentence2"), "label", BINARY, ("accuracy",), "WNLI.tsv",
                   readable_labels=("not_entailment", "entailment")),
        # The diagnostic set is test-only and scored with R3, the 3-class Matthews correlation.
        GlueTask("ax", "diagnostic", ("sentence1", "sentence2"), None, NLI3, ("matthews_correlation",),
                 {"test": "diagnostic.tsv"}, {"test": "AX.tsv"}, hub_columns=("premise", "hypothesis")),
    )
}
# Other spellings, after lower-casing and dropping "-" and "_": GLUE's own and the leaderboard's file names.
TASK_ALIASES = {"mnlim": "mnli", "mnlimm": "mnli", "mnlimatched": "mnli", "mnlimismatched": "mnli",
                "diagnostic": "ax"}
# Other places the official-looking AX file turns up, relative to the GLUE root.
AX_CANDIDATES = ("diagnostic/diagnostic.tsv", "AX/AX.tsv", "AX/test.tsv")


def resolve_task(name: str | GlueTask) -> GlueTask:
    """Find a task by our name or GLUE's spelling (`SST-2`, `STS-B`, `MNLI-mm`, `CoLA`, `AX`), ignoring case."""
    if isinstance(name, GlueTask):
        return name
    key = name.lower().replace("-", "").replace("_", "")
    key = TASK_ALIASES.get(key, key)
    if key not in GLUE_TASKS:
        raise ConfigError(f"unknown GLUE task {name!r}; choose one of {', '.join(GLUE_TASKS)}")
    return GLUE_TASKS[key]


def resolve_split(task: GlueTask, split: str) -> str:
    """The canonical split name: "dev"/"test" mean the matched sets for MNLI."""
    if task.name == "mnli" and split in ("dev", "test"):
        split += "_matched"
    if split not in task.files:
        raise ConfigError(f"GLUE {task.name} has no split {split!r}; choose one of {', '.join(task.files)}")
    return split


@dataclass
class Examples:
    """Texts, labels and row ids read from one file; counts say how much of the file made it."""

    texts_a: list[str]
    texts_b: list[str] | None
    labels: list[int] | list[float] | None  # None: an unlabeled (test) file
    indices: list[int]  # the file's index/id column, else the row number
    source: str
    label_names: tuple[str, ...] | None = None  # label id -> string; None for regression or unlabeled
    num_read: int = 0  # data rows seen, skipped ones included
    num_skipped: int = 0
    skip_reasons: list[str] = field(default_factory=list)  # the first few, "line N: why"

    def __len__(self) -> int:
        return len(self.texts_a)


class _BadRow(Exception):
    """One data row is malformed; the reader turns it into a DataError or a counted skip."""


# ---------------------------------------------------------------------------------------------
# Reading the official GLUE files


def glue_file_candidates(task: GlueTask, data_dir: str | Path, split: str) -> list[Path]:
    """Where a split's file may be: under the GLUE root, or in `data_dir` when it is the task folder."""
    data_dir = Path(data_dir)
    relative = AX_CANDIDATES if task.name == "ax" else (f"{task.folder}/{task.files[split]}",)
    candidates = [data_dir / r for r in relative] + [data_dir / Path(r).name for r in relative]
    return list(dict.fromkeys(candidates))


def read_glue_split(task: str | GlueTask, data_dir: str | Path, split: str, skip_bad: bool = False) -> Examples:
    """Read one split of the official GLUE download; bad rows raise DataError, or are counted skips with skip_bad."""
    task = resolve_task(task)
    split = resolve_split(task, split)
    candidates = glue_file_candidates(task, data_dir, split)
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise DataError(f"GLUE {task.name} {split} file not found; looked for " + ", ".join(map(str, candidates)))

    lines = _tsv_lines(path)
    if task.headerless_columns and not split.startswith("test"):
        header, first_data_line = list(task.headerless_columns), 1
    else:
        header, first_data_line = _header(path, lines), 2
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
    for line_no, raw in lines:
        examples.num_read += 1
        try:
            texts, label, index = parse(line_no, raw)
        except _BadRow as bad:
            if not skip_bad:
                raise DataError(f"{path}, line {line_no}: {bad}") from None
            examples.num_skipped += 1
            if len(examples.skip_reasons) < MAX_SKIP_REASONS:
                examples.skip_reasons.append(f"line {line_no}: {bad}")
            continue
        examples.texts_a.append(texts[0])
        if examples.texts_b is not None:
            examples.texts_b.append(texts[1])
        if examples.labels is not None:
            examples.labels.append(label)
        examples.indices.append(index)
    if examples.num_read == 0:
        why = "no examples after the header" if first_data_line == 2 else "the file is empty"
        raise DataError(f"{path}: {why}")
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


def _tsv_lines(path: Path) -> Iterator[tuple[int, bytes]]:
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


def _header(path: Path, lines: Iterator[tuple[int, bytes]]) -> list[str]:
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


# ---------------------------------------------------------------------------------------------
# A user's own files


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
        lines = _tsv_lines(path)
        header = _header(path, lines)
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
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}, line {line_no}: not JSON ({e.msg})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}, line {line_no}: expected a JSON object, found {type(record).__name__}")
            yield line_no, record
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


# ---------------------------------------------------------------------------------------------
# The Hugging Face hub copy


def load_hub_split(task: str | GlueTask, split: str) -> Examples:
    """Load a split of `nyu-mll/glue` through `datasets`; any failure says to use --data-dir instead."""
    task = resolve_task(task)
    split = resolve_split(task, split)
    example = f"GLUE/{task.folder}/{task.files[split]}"
    if reason := hub.unreachable():
        raise DataError(f"GLUE {task.name} {split}: the Hugging Face hub cannot be reached ({reason}); pass "
                        f"--data-dir with the official GLUE files (e.g. {example}); {hub.OFFLINE_HINT}")
    try:
        import datasets

        table = datasets.load_dataset("nyu-mll/glue", task.name, split=HUB_SPLITS[split])
    except Exception as e:  # offline, no cache, hub down, renamed: all mean the same thing to the user
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"could not load GLUE {task.name} {split} from the Hugging Face hub ({reason}); "
                        f"pass --data-dir with the official GLUE files (e.g. {example})") from None
    columns = task.hub_columns or task.text_columns
    labels = list(table["label"]) if "label" in table.column_names else None
    if labels is not None and all(label == -1 for label in labels):  # the hub marks test labels -1
        labels = None
    return Examples(
        texts_a=list(table[columns[0]]),
        texts_b=list(table[columns[1]]) if len(columns) == 2 else None,
        labels=labels,
        indices=list(table["idx"]),
        source=f"hub:nyu-mll/glue/{task.name}/{HUB_SPLITS[split]}",
        label_names=task.labels if labels is not None else None,
        num_read=len(table),
    )


# ---------------------------------------------------------------------------------------------
# Encoding


@dataclass(frozen=True)
class EncodeStats:
    num_examples: int
    num_features: int  # more than num_examples when long texts become windows
    num_truncated: int  # examples that lost tokens
    num_tokens: int  # tokens written, special tokens included
    longest: int  # the longest example before truncation, special tokens included


def encode(examples: Examples, tokenizer: Tokenizer, max_seq_length: int, long_texts: str = "truncate",
           stride: int = 64) -> tuple[Features, EncodeStats]:
    """Encode as `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]` (token types 0, then 1 for b [SEP]).

    long_texts="truncate" cuts pairs longest-first exactly as Hugging Face's fast tokenizers do.
    long_texts="window" splits text a into windows overlapping by `stride` tokens, each a feature with
    the example's `example_index` and label (b keeps at most half the room; the overlap is capped at half
    a window so windows always move on); average their predictions with `average_by_example`.
    """
    if long_texts not in ("truncate", "window"):
        raise ConfigError(f"long_texts must be 'truncate' or 'window', not {long_texts!r}")
    if tokenizer.truncation or tokenizer.padding:
        raise ConfigError("the tokenizer truncates or pads by itself; pass it through tokenization.prepare first")
    special = special_ids(tokenizer)
    pair = examples.texts_b is not None
    num_special = 3 if pair else 2
    budget = max_seq_length - num_special
    if budget < (2 if pair else 1):
        raise ConfigError(f"max_seq_length {max_seq_length} leaves no room for text")
    if long_texts == "window" and not 0 <= stride < budget:
        raise ConfigError(f"stride (window overlap) must be in 0..{budget - 1} for max_seq_length {max_seq_length}")

    ids_a = [e.ids for e in tokenizer.encode_batch(examples.texts_a, add_special_tokens=False)]
    ids_b = [e.ids for e in tokenizer.encode_batch(examples.texts_b, add_special_tokens=False)] if pair else None
    input_ids, type_ids, example_index = [], [], []
    num_truncated = longest = 0
    for i, a in enumerate(ids_a):
        b = ids_b[i] if pair else []
        longest = max(longest, len(a) + len(b) + num_special)
        if len(a) + len(b) <= budget:
            pieces = [(a, b)]
        elif long_texts == "truncate":
            keep_a, keep_b = _longest_first(len(a), len(b), budget)
            pieces = [(a[:keep_a], b[:keep_b])]
            num_truncated += 1
        else:
            b_kept = b[: budget // 2]
            pieces = [(window, b_kept) for window in _windows(a, budget - len(b_kept), stride)]
            num_truncated += len(b_kept) < len(b)
        for piece_a, piece_b in pieces:
            ids = [special.cls, *piece_a, special.sep]
            types = [0] * len(ids)
            if pair:
                ids += [*piece_b, special.sep]
                types += [1] * (len(piece_b) + 1)
            input_ids.append(ids)
            type_ids.append(types)
            example_index.append(i)

    columns = {"example_index": np.asarray(example_index, dtype=np.int64)}
    if examples.labels is not None:
        labels = np.asarray(examples.labels)
        dtype = np.float32 if labels.dtype.kind == "f" else np.int64
        columns["label_ids"] = labels.astype(dtype)[columns["example_index"]]
    features = Features.from_lists(input_ids, type_ids, **columns)
    stats = EncodeStats(len(ids_a), len(features), num_truncated, int(features.offsets[-1]), longest)
    return features, stats


def _longest_first(len_a: int, len_b: int, budget: int) -> tuple[int, int]:
    """How many tokens of a and b survive longest-first truncation to `budget`, in closed form.

    Trimming the longer text one token at a time comes to: cut only the longer one when the shorter
    takes at most half the budget, else give each half. The odd token goes to the longer text, to b
    on a tie, as in the `tokenizers` library (Hugging Face's fast tokenizers).
    """
    if len_a + len_b <= budget:
        return len_a, len_b
    short = min(len_a, len_b)
    if 2 * short <= budget:
        keep_short, keep_long = short, budget - short
    else:
        keep_short, keep_long = budget // 2, budget - budget // 2
    return (keep_long, keep_short) if len_a > len_b else (keep_short, keep_long)


def _windows(tokens: list[int], width: int, stride: int) -> list[list[int]]:
    """Slices of `width` tokens overlapping by `stride`, the last one ending at the end of `tokens`."""
    step = width - min(stride, width // 2)
    windows, start = [], 0
    while True:
        windows.append(tokens[start : start + width])
        if start + width >= len(tokens):
            return windows
        start += step


def average_by_example(logits: np.ndarray, example_index: np.ndarray, num_examples: int) -> np.ndarray:
    """Average the predictions of each example's windows: (num_features, ...) -> (num_examples, ...)."""
    logits = np.asarray(logits, dtype=np.float64)
    example_index = np.asarray(example_index, dtype=np.int64)
    sums = np.zeros((num_examples,) + logits.shape[1:])
    np.add.at(sums, example_index, logits)
    counts = np.bincount(example_index, minlength=num_examples)
    if (counts == 0).any():
        missing = np.flatnonzero(counts == 0)
        raise DataError(f"no predictions for examples {missing[:10].tolist()} of {num_examples}")
    return sums / counts.reshape((-1,) + (1,) * (logits.ndim - 1))


def encode_cached(examples: Examples, tokenizer: Tokenizer, max_seq_length: int, cache_dir: str | Path,
                  long_texts: str = "truncate", stride: int = 64) -> tuple[Features, EncodeStats, bool]:
    """`encode`, served from `cache_dir` when the same texts, labels, tokenizer and settings were encoded before.

    The key hashes the content itself, not file names or dates, so an edited data file is never served stale.
    Returns (features, stats, hit).
    """
    digest = hashlib.sha256()
    settings = {"format": CACHE_FORMAT, "max_seq_length": max_seq_length, "long_texts": long_texts,
                "stride": stride if long_texts == "window" else None}
    for part in (settings, examples.texts_a, examples.texts_b, examples.labels):
        digest.update(json.dumps(part, default=str).encode())
        digest.update(b"\n")
    digest.update(tokenizer.to_str().encode())
    cache_dir = Path(cache_dir)
    features_path = cache_dir / f"features-{digest.hexdigest()}.npz"
    stats_path = features_path.with_suffix(".json")
    if features_path.is_file() and stats_path.is_file():
        try:
            return Features.load(features_path), EncodeStats(**json.loads(stats_path.read_text())), True
        except (OSError, ValueError, KeyError, TypeError):
            pass  # a damaged cache entry is just a miss: encode again and overwrite it
    features, stats = encode(examples, tokenizer, max_seq_length, long_texts, stride)
    cache_dir.mkdir(parents=True, exist_ok=True)
    features.save(features_path)
    tmp = stats_path.with_name(stats_path.name + ".tmp")
    tmp.write_text(json.dumps(asdict(stats)))
    tmp.replace(stats_path)
    return features, stats, False


# ---------------------------------------------------------------------------------------------
# Leaderboard files


def write_submission(task: str | GlueTask, split: str, indices: Sequence[int], predictions: Sequence,
                     out_dir: str | Path) -> Path:
    """Write the GLUE leaderboard file (`index<TAB>prediction`, labels as GLUE spells them) and return its path."""
    task = resolve_task(task)
    split = resolve_split(task, split)
    if split not in task.submissions:
        raise ConfigError(f"GLUE takes submissions for {task.name} {', '.join(task.submissions)} only, not {split!r}")
    if len(indices) != len(predictions):
        raise DataError(f"{len(predictions)} predictions for {len(indices)} indices")
    predictions = np.asarray(predictions)
    if predictions.ndim != 1:
        raise DataError(f"predictions must be one label id (or score) per example, not shape {predictions.shape}")
    if task.labels is None:
        values = [f"{x:.3f}" for x in np.clip(predictions.astype(np.float64), 0.0, 5.0)]
    else:
        ids = predictions.astype(np.int64)
        if len(ids) and (ids.min() < 0 or ids.max() >= task.num_labels):
            raise DataError(f"{task.name} predictions must be label ids 0..{task.num_labels - 1}")
        values = [task.labels[i] for i in ids]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / task.submissions[split]
    rows = "".join(f"{int(i)}\t{v}\n" for i, v in zip(indices, values))
    path.write_text("index\tprediction\n" + rows, encoding="utf-8")
    return path
