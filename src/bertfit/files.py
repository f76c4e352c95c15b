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


# ---- the cache ------------------------------------------------------------------------------------

CACHE_ENV = "BERTFIT_CACHE"  # where bertfit keeps what it can make again, shared by every run


def cache_root() -> Path:
    """BERTFIT_CACHE, else ~/.cache/bertfit."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "bertfit"))


def features_cache_dir() -> Path:
    """Where encoded GLUE features are kept between runs."""
    return cache_root() / "features"


def tokens_cache_dir() -> Path:
    """Where pretraining's token files are kept between runs."""
    return cache_root() / "tokens"
