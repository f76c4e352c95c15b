"""The GLUE tasks as data: a table of where each task's files are, its columns, labels and metrics, and the
Examples a reader returns.

Reading: `glue_tsv` (the official download), `glue_hub` (the hub copy), `table_files` (a user's own
CSV, TSV or JSONL). Then `glue_encoding` (features and their cache) and `glue_leaderboard` (test files).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError

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


def readable_labels(labels: list[str], task_name: str | None) -> list[str]:
    """A GLUE task's labels by name where its files write numbers (runs saved with the numbers read so too)."""
    task = GLUE_TASKS.get(task_name or "")
    return list(task.label_names) if task and tuple(labels) == task.labels else labels


def predictions_from_logits(task: GlueTask, logits):
    """The predicted label ids (argmax), or the scores of a regression task (its one output)."""
    return logits[:, 0] if task.is_regression else logits.argmax(-1)
