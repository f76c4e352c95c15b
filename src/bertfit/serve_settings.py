"""What `bertfit serve` can be told, with its defaults; no torch, so `bertfit --help` stays fast. The CLI's
serve options are these fields (`add_options`), as its training options are TrainSettings'."""
from __future__ import annotations

import argparse
import math
import typing
from dataclasses import dataclass, fields

from .errors import ConfigError
from .settings import PRECISIONS, option

API_KEY_ENV = "BERTFIT_API_KEY"
ENGINES = ("torch", "onnx")  # inference.ENGINES, without importing torch


def limit(default, help: str, **argparse_options):
    """A field of the "limits and batching" group of options."""
    return option(default, help, group="limits and batching", **argparse_options)


@dataclass
class ServeSettings:
    """Everything `bertfit serve` can be told; the defaults live here and nowhere else."""

    host: str = option("127.0.0.1", "address to listen on, IPv4 or IPv6 (127.0.0.1 or ::1: this machine only; 0.0.0.0 "
                                    "or [::]: every interface)")
    port: int = option(8000, "port to listen on, 1-65535 (0 picks a free one)")
    engine: str = option("torch", "onnx: serve each run's export (`bertfit export`) with ONNX Runtime", choices=ENGINES)
    precision: str = option("auto", "torch engine: auto is bf16 where the CPU runs it fast, else fp32 (as "
                                    "classify, qa and fill-mask resolve it)", choices=PRECISIONS)
    api_key: str | None = option(None, f"require Authorization: Bearer KEY on every route but /health and the page; "
                                       f"printable ASCII (default: the {API_KEY_ENV} environment variable, else none)",
                                 metavar="KEY")
    max_batch_tokens: int = limit(4096, "tokens in one model pass; a larger request is run over several passes, "
                                        "taking turns with the other models")
    max_wait_ms: float = limit(5.0, "how long the first request of a pass waits for others to share it")
    max_queue: int = limit(256, "requests in flight (their body arriving, being tokenized, waiting for or in the "
                                "model), every model together; one more gets 503")
    timeout: float = limit(30.0, "seconds a request may take from its headers on: 408 while its body is still "
                                 "arriving, 504 once it is in (tokenizing and queue included)")
    max_body_bytes: int = limit(1 << 20, "largest request body; a larger one gets 413")
    max_inputs: int = limit(64, "texts, pairs or questions in one request")
    max_masks: int = limit(128, "[MASK]s in one fill-mask request, its texts together (each keeps top_k candidates "
                                "until the answer is sent)")
    max_text_chars: int = limit(20_000, "characters of one text to classify or fill (the model reads its first "
                                        "tokens anyway)")
    max_question_chars: int = limit(2_000, "characters of one question (the model reads its first tokens)")
    max_context_chars: int = limit(100_000, "characters of one QA context (read whole, window by window)")
    max_windows: int = limit(256, "model sequences (windows of long contexts included) one request may make")
    max_request_tokens: int = limit(65_536, "tokens one request may make, every window together")
    batch_size: int = limit(128, "sequences per forward inside a pass")
    tokenizer_threads: int = limit(2, "threads that tokenize requests and decode their answers, apart from the event "
                                         "loop and the model's thread")

    def validate(self) -> None:
        """Refuse settings the server cannot start with, before any run is loaded."""
        positive = ["max_batch_tokens", "max_queue", "max_body_bytes", "max_inputs", "max_masks", "max_text_chars",
                    "max_question_chars", "max_context_chars", "max_windows", "max_request_tokens", "batch_size",
                    "tokenizer_threads"]
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}")
        if not (math.isfinite(self.max_wait_ms) and self.max_wait_ms >= 0):
            raise ConfigError(f"--max-wait-ms must be 0 or more, not {self.max_wait_ms:g}")
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ConfigError(f"--timeout must be more than 0 seconds, not {self.timeout:g}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be between 1 and 65535 (0: a free one), not {self.port}")
        if not self.host.strip():
            raise ConfigError("--host is empty; 127.0.0.1 serves this machine only, 0.0.0.0 every interface")
        if self.engine not in ENGINES:
            raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}, not {self.engine!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.api_key is not None:
            check_api_key(self.api_key)


def check_api_key(key: str) -> None:
    """A key must be printable ASCII: HTTP headers are bytes, and clients encode other characters differently
    (latin-1 or UTF-8), so such a key could never match reliably."""
    if not key.strip():
        raise ConfigError(f"the API key (--api-key or {API_KEY_ENV}) is empty")
    for i, char in enumerate(key):
        if not "!" <= char <= "~":
            raise ConfigError(f"the API key (--api-key or {API_KEY_ENV}) has {char!r} at character {i + 1}; a key "
                              f"is printable ASCII without spaces (letters, digits, punctuation), as HTTP headers carry it")


def add_options(parser: argparse.ArgumentParser) -> None:
    """An option for each ServeSettings field (max_batch_tokens: --max-batch-tokens), with its type, help and
    default; the limits in a group of their own."""
    hints = typing.get_type_hints(ServeSettings)
    defaults = ServeSettings()
    groups = {}
    for f in fields(ServeSettings):
        more = dict(f.metadata)
        title = more.pop("group", None)
        target = parser if title is None else groups.setdefault(title, parser.add_argument_group(title))
        value_type = next((t for t in typing.get_args(hints[f.name]) if t is not type(None)), hints[f.name])
        target.add_argument("--" + f.name.replace("_", "-"), type=value_type, default=getattr(defaults, f.name),
                            **more)


def settings_from(args: argparse.Namespace) -> ServeSettings:
    return ServeSettings(**{f.name: getattr(args, f.name) for f in fields(ServeSettings)})
