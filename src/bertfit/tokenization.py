"""The model's `tokenizers` tokenizer, set up the way every task encodes with it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from .errors import CheckpointError


@dataclass(frozen=True)
class SpecialIds:
    cls: int
    sep: int
    pad: int
    unk: int | None


def prepare(tokenizer: Tokenizer) -> Tokenizer:
    """Turn off the file's own truncation, padding and special tokens: tasks add them."""
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def special_ids(tokenizer: Tokenizer, source: str | Path = "tokenizer") -> SpecialIds:
    ids = {name: tokenizer.token_to_id(f"[{name}]") for name in ("CLS", "SEP", "PAD", "UNK")}
    missing = [f"[{name}]" for name in ("CLS", "SEP", "PAD") if ids[name] is None]
    if missing:
        raise CheckpointError(f"{source}: tokenizer has no {', '.join(missing)} token; BERT needs [CLS], [SEP] and [PAD]")
    return SpecialIds(cls=ids["CLS"], sep=ids["SEP"], pad=ids["PAD"], unk=ids["UNK"])
