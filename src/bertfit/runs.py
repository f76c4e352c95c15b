"""A run dir's own files: checkpoints that survive a crash, the fingerprint, the lock, the JSON log.

A checkpoint is a folder `step-00001234/` holding the model (safetensors), the optimizer,
scheduler and scaler states (a tensor-only torch file, loaded with weights_only=True), the
loop's position as JSON, and a manifest of SHA-256 sums checked on load. It is written as
`step-00001234.tmp/` and renamed into place, so a crash leaves the previous checkpoints as they were.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load

from .errors import BertfitError, CheckpointError, ConfigError
from .files import save_tensors, write_atomic

MANIFEST = "manifest.json"
FILES = ("model.safetensors", "trainer.pt", "state.json")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)  # folders too: a rename is durable once its folder is synced
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CheckpointStore:
    """The last `keep` checkpoints of a run, newest first on load; a damaged one falls back to the previous."""

    def __init__(self, folder: Path, keep: int = 2):
        self.folder = Path(folder)
        self.keep = max(1, keep)

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, newest first (a `.tmp` folder is one a crash interrupted)."""
        if not self.folder.exists():
            return []
        return sorted((p for p in self.folder.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp")),
                      reverse=True)

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def save(self, model, optimizer, scheduler, scaler, state: dict) -> Path:
        final = self.folder / f"step-{state['step']:08d}"
        tmp = final.with_name(final.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_tensors({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, tmp / "model.safetensors")
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict()}, tmp / "trainer.pt")
        (tmp / "state.json").write_text(json.dumps(state, indent=1))
        for name in FILES:
            _fsync(tmp / name)
        (tmp / MANIFEST).write_text(json.dumps({name: _sha256(tmp / name) for name in FILES}, indent=1))
        _fsync(tmp / MANIFEST)
        _fsync(tmp)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        _fsync(self.folder)
        for old in self.checkpoints()[self.keep:]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def load_latest(self, model, optimizer, scheduler, scaler, warn: bool = True) -> dict | None:
        """Restore the newest checkpoint that verifies and return its loop state; None when there is none."""
        files = self.read_latest(warn)
        return None if files is None else restore(files, model, optimizer, scheduler, scaler)

    def read_latest(self, warn: bool = True) -> dict[str, bytes] | None:
        """The files of the newest checkpoint whose checksums verify, by name; None when there is none.

        Each damaged checkpoint passed over is named in a warning. When every one is damaged the run
        stops rather than start over silently: the user decides, with --overwrite.
        """
        problems = []
        for folder in self.checkpoints():
            try:
                return self._read(folder)
            except Exception as exc:  # any damage, whatever it looks like, means: try the previous one
                problems.append(f"{folder.name}: {exc}")
                if warn:
                    print(f"warning: checkpoint {folder} is damaged ({exc}); falling back to the previous one",
                          file=sys.stderr)
        if problems:
            raise BertfitError(f"no checkpoint in {self.folder} can be loaded ({'; '.join(problems)}); "
                               f"pass --overwrite to start this run afresh")
        return None

    @staticmethod
    def _read(folder: Path) -> dict[str, bytes]:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = {}
        for name in FILES:
            if name not in manifest:
                raise BertfitError(f"{MANIFEST} does not list {name}")
            files[name] = (folder / name).read_bytes()
            if hashlib.sha256(files[name]).hexdigest() != manifest[name]:
                raise BertfitError(f"{name} does not match its checksum")
        return files


def restore(files: dict[str, bytes], model, optimizer, scheduler, scaler) -> dict:
    """Load a checkpoint's files (as read_latest gives them) into the model and the trainer; its loop state."""
    # everything is parsed before anything is applied, so a checkpoint that does not load changes nothing
    state = json.loads(files["state.json"])
    weights = load(files["model.safetensors"])
    trainer = torch.load(io.BytesIO(files["trainer.pt"]), map_location="cpu", weights_only=True)
    model.load_state_dict(weights)
    optimizer.load_state_dict(trainer["optimizer"])
    scheduler.load_state_dict(trainer["scheduler"])
    scaler.load_state_dict(trainer["scaler"])
    return state


# ---- what a run is: resuming must not mix two different runs --------------------------------------

def fingerprint_of(**parts) -> dict:
    """Each part hashed on its own, so a mismatch can say which part changed."""
    return {name: "sha256:" + hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]
            for name, value in parts.items()}


def features_digest(features) -> str:
    """A hash of encoded features (tokens, types, boundaries and columns): the data a run trains on."""
    digest = hashlib.sha256()
    arrays = {"ids": features.ids, "type_ids": features.type_ids, "offsets": features.offsets,
              **{name: features.columns[name] for name in sorted(features.columns)}}
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)
        digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
        digest.update(array.data)
    return "sha256:" + digest.hexdigest()[:16]


def _describe_change(name: str, before, now) -> str:
    hashed = any(isinstance(v, str) and v.startswith("sha256:") for v in (before, now))
    return name if hashed else f"{name} ({before!r} before, {now!r} now)"


def check_fingerprint(path: Path, fingerprint: dict) -> None:
    """Refuse to resume a run whose settings or data changed; name what changed."""
    path = Path(path)
    if not path.exists():
        return
    try:
        before = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        before = None
    if not isinstance(before, dict):
        raise ConfigError(f"{path}: not a bertfit run's fingerprint; use another --output-dir")
    changed = [_describe_change(k, before.get(k), fingerprint.get(k))
               for k in sorted(set(before) | set(fingerprint)) if before.get(k) != fingerprint.get(k)]
    if changed:
        raise ConfigError(
            f"{path.parent} holds a run with different {', '.join(changed)}; resuming it would mix two runs. "
            f"Use another --output-dir, or --overwrite to start this one afresh")


def record_fingerprint(path: Path, fingerprint: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(fingerprint, indent=1, sort_keys=True))


# ---- whose folder: a run writes only into a folder that is empty or holds a bertfit run ------------

RUN_MARK = "run.json"  # every run dir holds it from the start of training on


def is_run_dir(folder: str | Path) -> bool:
    """A folder whose run.json bertfit wrote: `{}` (claimed, nothing trained yet) or a run's fingerprint, which
    always names the training data and the batch order; a run.json of anyone else's does not make a run dir."""
    try:
        mark = json.loads((Path(folder) / RUN_MARK).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(mark, dict) and (not mark or {"train data", "batch order"} <= mark.keys())


def check_output_dir(folder: str | Path) -> None:
    """Refuse a run dir that bertfit did not make: a file, or a folder holding files but no run.

    Training writes (and --overwrite clears) checkpoints/, model/, results.json and more in the run dir,
    so a folder of other files must not become one: nothing in it may be replaced or deleted."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder}: a file, not a folder; --output-dir names the folder of the run")
    # a run killed between taking the lock and recording its fingerprint leaves only its lock file
    names = sorted(p.name for p in folder.iterdir() if p.name != ".lock") if folder.is_dir() else []
    if names and not is_run_dir(folder):
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise ConfigError(f"{folder} holds files that are not a bertfit run ({shown}); bertfit writes a run only "
                          f"into a new or empty folder or a run dir of its own, and --overwrite clears only those; "
                          f"choose another --output-dir")


def claim_run_dir(folder: str | Path) -> Path:
    """Make `folder` a run dir before anything else is written there (check_output_dir first)."""
    folder = Path(folder)
    check_output_dir(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not is_run_dir(folder):
        write_atomic(folder / RUN_MARK, "{}")
    return folder


# ---- the model a run keeps ---------------------------------------------------------------------------

def model_folder(run_dir: str | Path) -> Path:
    """The fine-tuned model of a run dir (its best model, `model/`), or `run_dir` itself if it is a model folder."""
    folder = Path(run_dir)
    folder = folder / "model" if (folder / "model" / "config.json").exists() else folder
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"{run_dir}: no fine-tuned model here (looked for model/config.json and config.json)")
    from .checkpoints.hf import read_config_json

    read_config_json(folder / "config.json")  # a damaged one is refused here, naming the file, before it is read
    return folder


# ---- one run per folder -----------------------------------------------------------------------------

_held_locks: dict[Path, list] = {}  # lock path -> [open file, depth]: this process's locks


class RunLock:
    """An exclusive lock on a run dir, so two runs cannot write into it at once.

    Another process holding it is an error. Within one process it nests: a recipe holds it
    around `fit`, which takes it too. The kernel drops it when the process dies, even by SIGKILL.
    A run dir the lock made and nothing else wrote into (a run that failed before it began) is
    removed on release, so nothing is left that looks like a run.
    """

    def __init__(self, run_dir: Path):
        self.path = (Path(run_dir) / ".lock").absolute()

    def __enter__(self):
        if self.path in _held_locks:
            _held_locks[self.path][1] += 1
            return self
        made = not self.path.parent.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = open(self.path, "a")  # never truncates: the lock holds nothing, and a file is left as found
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            raise ConfigError(f"{self.path.parent} is in use by another bertfit run; wait for it to finish "
                              f"or choose another --output-dir") from None
        _held_locks[self.path] = [file, 1, made]
        return self

    def __exit__(self, *exc):
        held = _held_locks[self.path]
        held[1] -= 1
        if held[1] == 0:
            del _held_locks[self.path]
            # unlinked while still locked: a process that opened the file meanwhile finds it locked and stops
            empty = held[2] and [p.name for p in self.path.parent.iterdir()] == [self.path.name]
            if empty:
                self.path.unlink()
            fcntl.flock(held[0], fcntl.LOCK_UN)
            held[0].close()
            if empty:
                with contextlib.suppress(OSError):  # something arrived after all: leave it
                    self.path.parent.rmdir()


class JsonlLog:
    """Append-only JSON lines: the loss every few steps and each evaluation; `mirrors` get each entry too."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.mirrors: list = []  # objects with write(entry) and close(): TensorBoard events

    def write(self, entry: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(entry) + "\n")
        for mirror in self.mirrors:
            mirror.write(entry)

    def entries(self) -> list[dict]:
        """The entries written so far; a half-written last line (a killed run) is left out."""
        entries = []
        for line in self.path.read_text().splitlines() if self.path.exists() else []:
            try:
                entries.append(json.loads(line))
            except ValueError:
                pass
        return entries

    def close(self) -> None:
        for mirror in self.mirrors:
            mirror.close()
        self.mirrors = []

    def rewind(self, step: int) -> None:
        """Drop the entries after `step`: a run resumed there writes them again (a fresh run: step 0)."""
        if not self.path.exists():
            return
        text = self.path.read_text()
        kept = []
        for line in text.splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line + "\n")
            except ValueError:
                pass  # the half-written last line of a killed run
        if "".join(kept) != text:
            write_atomic(self.path, "".join(kept))
