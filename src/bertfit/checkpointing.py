"""Training checkpoints that survive a crash: atomic writes, verified loads, exact resume.

A checkpoint is a folder `step-00001234/` holding the model (safetensors), the optimizer,
scheduler, scaler and RNG states (a tensor-only torch file, loaded with weights_only=True),
the loop's position as JSON, and a manifest of SHA-256 sums checked on load.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .errors import BertfitError, ConfigError

MANIFEST = "manifest.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
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
        if not self.folder.exists():
            return []
        return sorted((p for p in self.folder.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp")),
                      reverse=True)

    def save(self, model, optimizer, scheduler, scaler, state: dict, main: bool = True) -> Path | None:
        if not main:
            return None
        final = self.folder / f"step-{state['step']:08d}"
        tmp = final.with_name(final.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, tmp / "model.safetensors")
        trainer = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                   "scaler": scaler.state_dict(), "rng_cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            trainer["rng_cuda"] = torch.cuda.get_rng_state_all()
        torch.save(trainer, tmp / "trainer.pt")
        (tmp / "state.json").write_text(json.dumps(state, indent=1))
        files = ["model.safetensors", "trainer.pt", "state.json"]
        for name in files:
            _fsync(tmp / name)
        (tmp / MANIFEST).write_text(json.dumps({name: _sha256(tmp / name) for name in files}, indent=1))
        _fsync(tmp / MANIFEST)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        _fsync(self.folder)
        for old in self.checkpoints()[self.keep:]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def load_latest(self, model, optimizer, scheduler, scaler) -> dict | None:
        """Restore the newest checkpoint that verifies; report each damaged one passed over."""
        for folder in self.checkpoints():
            try:
                return self._load(folder, model, optimizer, scheduler, scaler)
            except Exception as exc:  # a damaged checkpoint must never end the run: fall back
                print(f"warning: checkpoint {folder} is damaged ({exc}); trying the previous one", file=sys.stderr)
        return None

    def _load(self, folder: Path, model, optimizer, scheduler, scaler) -> dict:
        manifest = json.loads((folder / MANIFEST).read_text())
        for name, digest in manifest.items():
            if _sha256(folder / name) != digest:
                raise BertfitError(f"{name} does not match its checksum")
        state = json.loads((folder / "state.json").read_text())
        weights = load_file(folder / "model.safetensors")
        trainer = torch.load(folder / "trainer.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(weights)
        optimizer.load_state_dict(trainer["optimizer"])
        scheduler.load_state_dict(trainer["scheduler"])
        scaler.load_state_dict(trainer["scaler"])
        torch.set_rng_state(trainer["rng_cpu"])
        if "rng_cuda" in trainer and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(trainer["rng_cuda"])
        return state


def check_fingerprint(run_dir: Path, fingerprint: dict, resume: bool) -> None:
    """Refuse to resume a run whose settings or data changed; name what changed."""
    run_dir = Path(run_dir)
    path = run_dir / "run.json"
    has_checkpoints = any((run_dir / "checkpoints").glob("step-*")) if (run_dir / "checkpoints").exists() else False
    if resume and has_checkpoints and path.exists():
        before = json.loads(path.read_text())
        changed = sorted(k for k in set(before) | set(fingerprint) if before.get(k) != fingerprint.get(k))
        if changed:
            raise ConfigError(
                f"{run_dir} holds a run with different {', '.join(changed)}; resuming it would mix two runs. "
                f"Use another --output-dir, or --overwrite to start this one afresh")
    if not resume and (run_dir / "checkpoints").exists():
        shutil.rmtree(run_dir / "checkpoints")
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("run.json.tmp")
    tmp.write_text(json.dumps(fingerprint, indent=1, sort_keys=True))
    tmp.replace(path)


def fingerprint_of(**parts) -> dict:
    """Each part hashed on its own, so a mismatch can say which part changed."""
    return {name: hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]
            for name, value in parts.items()}


class RunLock:
    """An exclusive lock on a run dir, so two runs cannot write into it at once."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "w")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.close()
            raise ConfigError(f"{self.path.parent} is in use by another bertfit run") from None
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()


class JsonlLog:
    """Append-only JSON lines: the loss every few steps and each evaluation."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, entry: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(entry) + "\n")
