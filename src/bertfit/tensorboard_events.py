"""`--report-to tensorboard`: what log.jsonl records (the loss, learning rate and throughput every --log-every
steps, every evaluation's metrics) as TensorBoard event files in RUN_DIR/tensorboard, written as training goes.

The events mirror the log: a resumed run, whose log drops what was written after its checkpoint, writes its
events afresh from the log it keeps, so that no step is there twice.
"""
from __future__ import annotations

from pathlib import Path

FOLDER = "tensorboard"
EVENT_FILES = "events.out.tfevents.*"  # the names SummaryWriter gives its files


class TensorBoardLog:
    """Scalars `train/<name>` and `eval/<name>` by optimizer step, one per number in each log entry."""

    def __init__(self, folder: Path, entries: list[dict]):
        from torch.utils.tensorboard import SummaryWriter

        folder = Path(folder)
        # this run's events from an earlier process: the entries below are what of them its log kept
        for old in folder.glob(EVENT_FILES):
            old.unlink()
        self.writer = SummaryWriter(str(folder))
        for entry in entries:
            self.write(entry, flush=False)
        self.writer.flush()

    def write(self, entry: dict, flush: bool = True) -> None:
        event = entry.get("event")
        if event not in ("train", "eval"):
            return
        for key, value in entry.items():
            if key not in ("event", "step", "epoch") and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{event}/{key}", value, entry["step"])
        if flush:  # a run watched live, or killed, has every entry logged so far
            self.writer.flush()

    def close(self) -> None:
        self.writer.close()
