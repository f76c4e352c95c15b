"""Files written whole or not at all: a reader, or a crash, never sees half of one."""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import IO, Iterator

from .errors import ConfigError


def temporary_name(path: Path, suffix: str = ".tmp") -> Path:
    """A name beside `path` that no file has and no other writer will take (hidden, with this process's id and
    a random part): what is written there is this run's own, so a failure may remove it."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{suffix}")


def temporary_folder(beside: Path) -> Path:
    """A new, empty folder beside `beside` (its parents made), this run's own: see `temporary_name`."""
    beside.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(beside)
    tmp.mkdir()  # fails rather than reuse anything that is there
    return tmp


@contextlib.contextmanager
def folder_in_progress(target: str | os.PathLike) -> Iterator[Path]:
    """A temporary folder (`temporary_folder`) to fill and then move onto `target` (`replace_folder`); when the
    block fails, or the move is refused, it is removed, and so is each parent folder made for it that is still empty.
    Only what this call made goes: the temporary folder is this run's own."""
    target = Path(target)
    made = [folder for folder in (target.parent, *target.parent.parents) if not folder.exists()]
    tmp = temporary_folder(target)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in made:  # innermost first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def umask() -> int:
    """The process's umask, read without changing it: os.umask reads it only by setting it, and a thread
    creating a file meanwhile would get the wrong mode."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # no /proc (macOS): the round trip
    os.umask(mask)
    return mask


def save_tensors(tensors: dict, path: str | os.PathLike, metadata: dict | None = None) -> Path:
    """A safetensors file with the mode every other file gets (0o666 less the umask): safetensors creates
    its files 0600, which hides a model from the group that may read the rest of the folder."""
    from safetensors.torch import save_file

    save_file(tensors, path, metadata=metadata)
    os.chmod(path, 0o666 & ~umask())
    return Path(path)


@contextlib.contextmanager
def open_atomic(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """A temporary file beside `path` (this run's own) that takes its place once closed without error."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        with open(tmp, mode.replace("w", "x"), encoding=None if "b" in mode else "utf-8") as f:
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
        old = temporary_name(folder, ".old")  # this call's own: nothing else is in the way, or removed with it
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
