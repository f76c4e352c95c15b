"""The files of `bertfit embed`: texts read from a text file (one a line) or JSONL (a text field a record), and
embeddings written as .npy (one row a text) or JSONL (one record a text), whole or not at all."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .characters import lone_surrogate
from .errors import ConfigError, DataError
from .files import open_atomic
from .tasks.bad_rows import BadRows
from .tasks.table_files import BadRow, json_object
from .tasks.text import _file_lines

OUTPUT_SUFFIXES = (".npy", ".jsonl")


def read_texts(path: str | Path, text_field: str = "text") -> list[str]:
    """The texts of a file, in order: a .jsonl file's `text_field` of each record, else each line of a text file.
    A blank line or empty text is refused, naming its line: row i of the output must be line i's text. Every bad
    line is named in the one error (bad_rows)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {'is a folder, not a file' if path.is_dir() else 'no such file'} (--input-file)")
    jsonl = path.suffix.lower() == ".jsonl"
    bad = BadRows(path, what="lines", hint=None)
    texts = []
    for line_no, line in _file_lines(path, bad):
        where = f"line {line_no}"
        if jsonl:
            if not line.strip():
                continue  # JSONL readers skip blank lines between records
            try:
                record = json_object(line)
            except BadRow as why:
                bad.add(where, str(why))
                continue
            text = record.get(text_field)
            if text_field not in record:
                bad.add(where, f"no {text_field!r} field; found {', '.join(map(str, record)) or 'none'} "
                               f"(--text-field names the field)")
                continue
            if not isinstance(text, str):
                bad.add(where, f"{text_field!r} is {type(text).__name__}, not text")
                continue
        else:
            text = line.rstrip("\r\n")
        if not text.strip():
            bad.add(where, f"{'the text is empty' if jsonl else 'a blank line'}; one text a "
                           f"{'record' if jsonl else 'line'}, none empty")
        elif why := lone_surrogate(text):
            bad.add(where, f"the text {why}")
        else:
            texts.append(text)
    bad.check()
    if not texts:
        raise DataError(f"{path}: no texts to embed (the file is empty)")
    return texts


def check_output(path: str | Path) -> Path:
    """An output path bertfit may write: .npy or .jsonl, not there yet (bertfit never writes over a file), in a
    folder that exists. Checked before the model loads."""
    path = Path(path)
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ConfigError(f"{path}: --output must end in .npy (one row a text) or .jsonl (one record a text)")
    if path.exists() or path.is_symlink():
        raise ConfigError(f"{path}: exists; bertfit embed writes a new file and never replaces one: remove it or "
                          f"give another --output")
    if not path.parent.is_dir():
        raise ConfigError(f"{path.parent}: no such folder (--output)")
    return path


def write_embeddings(path: str | Path, vectors: np.ndarray, truncated: list[bool], tokens: list[int]) -> Path:
    """.npy: the (texts, dimensions) float32 array; .jsonl: {index, embedding, tokens, truncated} per text."""
    path = check_output(path)
    if path.suffix.lower() == ".npy":
        with open_atomic(path, "wb") as f:
            np.save(f, np.asarray(vectors, dtype=np.float32), allow_pickle=False)
        return path
    with open_atomic(path) as f:
        for i, (vector, cut, count) in enumerate(zip(vectors, truncated, tokens)):
            f.write(json.dumps({"index": i, "embedding": vector.tolist(), "tokens": count, "truncated": cut}) + "\n")
    return path
