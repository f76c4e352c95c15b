"""Reading SQuAD: the official JSON (v1.1 or v2.0), checked question by question, or the hub's copy."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ... import hub
from ...characters import lone_surrogate
from ...errors import ConfigError, DataError
from ..bad_rows import BadRows

HUB_NAMES = {"1.1": "rajpurkar/squad", "2.0": "rajpurkar/squad_v2"}


@dataclass(frozen=True)
class Answer:
    text: str
    start: int  # character offset of text in the context


@dataclass
class SquadQuestion:
    id: str
    title: str
    question: str
    context: str
    answers: list[Answer]
    is_impossible: bool = False


@dataclass
class ReadStats:
    """What read_squad loaded, and every question it skipped with the reason (skip_bad=True)."""

    questions: int = 0
    unanswerable: int = 0
    version_2: bool = False
    skipped: list[str] = field(default_factory=list)


def read_squad(path: str | Path, skip_bad: bool = False) -> tuple[list[SquadQuestion], ReadStats]:
    """Read an official SQuAD v1.1 or v2.0 JSON file; v2.0 is recognised by `is_impossible` keys.

    A file that is not JSON or not SQuAD-shaped always raises DataError. A bad question (empty text, answer
    not found at answer_start, duplicate id, ...) raises one DataError naming each bad question (`bad_rows`);
    with skip_bad=True it is skipped and its reason kept in stats.skipped instead, so loaded + skipped = every
    question in the file.
    """
    path = Path(path)
    paragraphs = list(_paragraphs(_load_json(path), path))
    version_2 = any(isinstance(qa, dict) and "is_impossible" in qa
                    for _, _, qas in paragraphs for qa in qas)
    questions: list[SquadQuestion] = []
    stats = ReadStats(version_2=version_2)
    bad = BadRows(path, skip_bad, what="questions", separator=": ")
    seen: dict[str, str] = {}  # id -> title of the article where it first appeared
    for title, context, qas in paragraphs:
        for qa in qas:
            try:
                question = _parse_question(qa, title, context, path, seen)
            except DataError as error:
                stats.skipped.append(str(error))
                where, _, why = str(error).removeprefix(f"{path}: ").partition(": ")
                bad.add(where, why)
                continue
            questions.append(question)
            stats.unanswerable += question.is_impossible
    bad.check()
    stats.questions = len(questions)
    return questions, stats


def _load_json(path: Path):
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read SQuAD file: {error.strerror or error}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataError(f"{path}: not UTF-8 text: byte {raw[error.start]:#04x} at line {line} "
                        f"(byte {error.start}); SQuAD files are UTF-8 JSON") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON: {error.msg} at line {error.lineno} column {error.colno}") from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply to be a SQuAD file") from None


def _paragraphs(dataset, path: Path):
    """Yield (title, context, qas) after checking the article and paragraph structure."""
    if not isinstance(dataset, dict) or not isinstance(dataset.get("data"), list):
        raise DataError(f'{path}: not a SQuAD file: expected {{"version": ..., "data": [articles]}} at the top level')
    for a, article in enumerate(dataset["data"]):
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise DataError(f'{path}: article {a} is not SQuAD-shaped: expected {{"title": ..., "paragraphs": [...]}}')
        title = article.get("title", "")
        if not isinstance(title, str):
            raise DataError(f"{path}: article {a} has a title that is not a string")
        for p, paragraph in enumerate(article["paragraphs"]):
            if (not isinstance(paragraph, dict) or not isinstance(paragraph.get("context"), str)
                    or not isinstance(paragraph.get("qas"), list)):
                raise DataError(f'{path}: article {title!r} paragraph {p} is not SQuAD-shaped: '
                                f'expected {{"context": "...", "qas": [...]}}')
            yield title, paragraph["context"], paragraph["qas"]


def _parse_question(qa, title: str, context: str, path: Path, seen: dict[str, str]) -> SquadQuestion:
    """Check one question record; DataError names the file and the question id."""
    if not isinstance(qa, dict) or not isinstance(qa.get("id"), str) or not qa["id"].strip():
        text = qa.get("question") if isinstance(qa, dict) else None
        named = f" ({text!r})" if isinstance(text, str) else ""
        raise DataError(f"{path}: article {title!r}: a question{named} has no id (expected a non-empty string)")
    qid = qa["id"]
    where = f"{path}: question {qid!r} (article {title!r})"
    if qid in seen:
        raise DataError(f"{where}: duplicate id, first seen in article {seen[qid]!r}")
    seen[qid] = title
    question = qa.get("question")
    if not isinstance(question, str) or not question.strip():
        raise DataError(f"{where}: empty question text")
    if not context.strip():
        raise DataError(f"{where}: empty context")
    for name, text in (("question", question), ("context", context)):
        if why := lone_surrogate(text):
            raise DataError(f"{where}: the {name} {why}")
    is_impossible = qa.get("is_impossible", False)
    if not isinstance(is_impossible, bool):
        raise DataError(f"{where}: is_impossible must be true or false, got {is_impossible!r}")
    records = qa.get("answers", [] if is_impossible else None)
    if not isinstance(records, list):
        raise DataError(f"{where}: answers must be a list of {{\"text\", \"answer_start\"}}")
    answers = [_parse_answer(record, context, f"{where}: answer {i}") for i, record in enumerate(records)]
    if is_impossible and answers:
        raise DataError(f"{where}: marked is_impossible but has {len(answers)} answers "
                        f"(unanswerable questions keep theirs under plausible_answers)")
    if not is_impossible and not answers:
        raise DataError(f"{where}: answerable question has no answers "
                        f"(for SQuAD v2.0 mark it \"is_impossible\": true)")
    return SquadQuestion(qid, title, question, context, answers, is_impossible)


def _parse_answer(record, context: str, where: str) -> Answer:
    if not isinstance(record, dict):
        raise DataError(f'{where}: expected {{"text": ..., "answer_start": ...}}')
    text, start = record.get("text"), record.get("answer_start")
    if not isinstance(text, str) or not text:
        raise DataError(f"{where}: empty answer text")
    if not isinstance(start, int) or isinstance(start, bool):
        raise DataError(f"{where}: answer_start must be an integer, got {start!r}")
    if start < 0 or context[start : start + len(text)] != text:
        found = context.find(text)
        hint = f"; the text occurs at {found}" if found >= 0 else "; the text is not in the context"
        raise DataError(f"{where}: answer_start {start} does not point at {text!r} in the context{hint}")
    return Answer(text, start)


def load_hub_squad(version: str, split: str) -> list[SquadQuestion]:
    """Load SQuAD from the Hugging Face Hub ("1.1" or "2.0"; split "train" or "validation")."""
    version = version.removeprefix("v")
    if version not in HUB_NAMES:
        raise ConfigError(f"unknown SQuAD version {version!r}; use 1.1 or 2.0")
    name = HUB_NAMES[version]
    flag = "--train-file" if split == "train" else "--eval-file"
    if reason := hub.unreachable():
        raise DataError(f"{name} {split}: the Hugging Face hub cannot be reached ({reason}); pass {flag} with the "
                        f"official SQuAD v{version} JSON file; {hub.OFFLINE_HINT}")
    try:
        from datasets import load_dataset

        rows = load_dataset(name, split=split)
    except Exception as error:  # offline, no cache, unknown split: all end the same way for the user
        raise DataError(f"cannot load {name} split {split!r} from the Hugging Face Hub "
                        f"({type(error).__name__}: {error}); when offline, pass {flag} with the "
                        f"official SQuAD v{version} JSON file") from None
    return [
        SquadQuestion(
            id=row["id"], title=row["title"], question=row["question"], context=row["context"],
            answers=[Answer(t, s) for t, s in zip(row["answers"]["text"], row["answers"]["answer_start"])],
            is_impossible=not row["answers"]["text"],
        )
        for row in rows
    ]
