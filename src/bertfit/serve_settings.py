"""What `bertfit serve` can be told, with its defaults; no torch, so `bertfit --help` stays fast."""
from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError

API_KEY_ENV = "BERTFIT_API_KEY"


@dataclass
class ServeSettings:
    """Everything `bertfit serve` can be told; the defaults live here and nowhere else."""

    host: str = "127.0.0.1"
    port: int = 8000
    engine: str = "torch"
    precision: str = "auto"
    api_key: str | None = None
    max_batch_tokens: int = 4096  # a pass stops taking requests past this many tokens (one request always fits)
    max_wait_ms: float = 5.0  # the first request of a pass waits at most this long for company
    max_queue: int = 256  # requests waiting for the model; one more is refused with 503
    timeout: float = 30.0  # seconds a request may wait for its answer, queue included
    max_body_bytes: int = 1 << 20
    max_inputs: int = 64  # texts, pairs or questions in one request
    max_text_chars: int = 20_000  # one text of a classification request (the model reads its first tokens)
    max_context_chars: int = 100_000  # one QA context (read whole, window by window)
    batch_size: int = 128  # sequences in one forward inside a pass

    def validate(self) -> None:
        positive = ["max_batch_tokens", "max_queue", "max_body_bytes", "max_inputs", "max_text_chars",
                    "max_context_chars", "batch_size"]
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}")
        if self.max_wait_ms < 0 or self.timeout <= 0:
            raise ConfigError("--max-wait-ms must be 0 or more and --timeout more than 0")
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError(f"the API key (--api-key or {API_KEY_ENV}) is empty")
