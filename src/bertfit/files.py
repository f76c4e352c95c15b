"""Files written whole or not at all: a reader, or a crash, never sees half of one."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Iterator

from .errors import ConfigError


@contextlib.contextmanager
def open_atomic(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """A temporary file beside `path` that takes its place once closed without error."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)


def write_atomic(path: str | os.PathLike, text: str) -> Path:
    with open_atomic(path) as f:
        f.write(text)
    return Path(path)


def write_json(path: str | os.PathLike, data) -> Path:
    return write_atomic(path, json.dumps(data, indent=2) + "\n")


def replace_folder(tmp: Path, folder: Path, marker: str) -> Path:
    """Move a finished folder into place; an existing one is replaced whole, never merged.

    Only a folder bertfit wrote is replaced: one holding `marker` (a file the caller's folders always
    hold, e.g. config.json), or an empty one. Anything else is refused, and `tmp` is left to the caller.
    """
    tmp, folder = Path(tmp), Path(folder)
    if folder.exists() or folder.is_symlink():
        if not folder.is_dir() or folder.is_symlink() or not ((folder / marker).is_file() or not any(folder.iterdir())):
            raise ConfigError(f"{folder}: exists and is not a folder bertfit wrote (no {marker} in it); "
                              f"refusing to replace it")
        # a name of this call's own: nothing else can be in the way, or be removed with it
        old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".old", dir=folder.parent))
        folder.rename(old / folder.name)
        tmp.rename(folder)
        shutil.rmtree(old)
    else:
        tmp.rename(folder)
    return folder
