"""Progress for long work: a live line on a terminal, plain periodic lines in logs."""
from __future__ import annotations

import sys
import time


def duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:d}:{s:02d}"


class Progress:
    """Step counter with rate, ETA, loss and learning rate; quiet when disabled."""

    def __init__(self, total: int, desc: str, enabled: bool = True, initial: int = 0, stream=None,
                 plain_every: float = 15.0, time_left: float | None = None):
        """`time_left`: seconds a time budget leaves from now; the ETA never says more."""
        self.total, self.desc, self.enabled = total, desc, enabled
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.start = time.perf_counter()
        self.initial = initial
        self.last_plain = 0.0
        self.plain_every = plain_every
        self.time_left = time_left
        self.line = ""
        self.shown = True  # whether self.line is on the screen (or in the log) already

    def update(self, step: int, loss: float | None = None, lr: float | None = None,
               rate: float | None = None, tokens_rate: float | None = None) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        done = step - self.initial
        eta = elapsed / done * (self.total - step) if done > 0 else 0.0
        if self.time_left is not None:
            eta = min(eta, max(0.0, self.time_left - elapsed))
        width = 24
        filled = int(width * step / max(1, self.total))
        parts = [f"{self.desc} {step}/{self.total}"]
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        if lr is not None:
            parts.append(f"lr {lr:.2e}")
        if rate is not None:
            parts.append(f"{rate:.1f} ex/s")
        if tokens_rate is not None:
            parts.append(f"{tokens_rate:,.0f} tok/s")
        parts.append(f"{duration(elapsed)} elapsed, ETA {duration(eta)}")
        self.line = "  ".join(parts)
        self.shown = False
        if self.tty:
            bar = "█" * filled + "·" * (width - filled)
            self.stream.write(f"\r{bar} {self.line}\033[K")
            self.stream.flush()
            self.shown = True
        elif elapsed - self.last_plain >= self.plain_every or step == self.total:
            self.last_plain = elapsed
            self.print_line()

    def print_line(self) -> None:
        print(self.line, file=self.stream, flush=True)
        self.shown = True

    def note(self, text: str) -> None:
        """A line that stays (an evaluation result), printed above the live line."""
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r\033[K")
        print(f"  {text}", file=self.stream, flush=True)

    def close(self) -> None:
        """End the live line; in plain lines, print the last update if it was not (a run that stopped before its
        planned total: a time budget spent, patience run out)."""
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
        elif self.enabled and not self.shown:
            self.print_line()
