"""Files written whole or not at all: a reader, or a crash, never sees half of one."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import IO, Iterator


@contextlib.contextmanager
def open_atomic(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """A temporary file beside `path` that takes its place once closed without error."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
        tmp.replace(path)  # inside: a replace that fails (path is a folder) leaves no temporary file behind
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike, text: str) -> Path:
    with open_atomic(path) as f:
        f.write(text)
    return Path(path)


def write_json(path: str | os.PathLike, data) -> Path:
    return write_atomic(path, json.dumps(data, indent=2) + "\n")


def replace_folder(tmp: Path, folder: Path) -> Path:
    """Move a finished folder into place; an existing one is replaced whole, never merged."""
    if folder.exists():
        old = folder.with_name(folder.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old)
    else:
        tmp.rename(folder)
    return folder
